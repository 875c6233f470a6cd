//! The fast path for the common shape of a position push: one pass over the frame, straight
//! into the typed elements, with no second parse of each element.
//!
//! Bybit sends `{"id":..,"topic":"position",..,"creationTime":..,"data":[{flat object}]}`,
//! where every element is a flat object of strings, integers, booleans and nulls without
//! escapes. This reader handles exactly that and nothing more. It is not a JSON parser: on
//! anything it does not fully handle (an escape, a control character, a nested value, a
//! fraction or exponent, a long or odd number, a duplicate known key, a control frame, a
//! topic other than a position topic, a value of the wrong type, a value the rules refuse,
//! trailing text, ...) it gives up and returns `None`, and the decoder reads the frame again
//! with serde, which stays the reference for every case. So the fast path only ever produces
//! what the serde path would, and the serde path alone decides failures and their reasons.

use crate::decimal;
use crate::fields::{Dec, Flag, Int, Millis, Text};
use crate::position::PositionElement;
use crate::protocol::{classify_topic, TopicKind};

/// One flat JSON value, still as the frame wrote it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scalar<'a> {
    /// A string without escapes or control characters.
    Str(&'a str),
    /// An integer of at most 18 digits in JSON's canonical form (no leading zero, not
    /// `-0`), with its text.
    Int(&'a str, i64),
    Bool(bool),
    Null,
}

// The conversions mirror the serde readers in `fields.rs` case by case (and call the same
// rule functions); `None` means "serde would refuse this", which the fast path never decides.
impl<'a> Scalar<'a> {
    /// Text as the frame holds it: `""` and `null` are NULL.
    #[inline]
    pub(crate) fn str(self) -> Option<Option<&'a str>> {
        match self {
            Scalar::Str(s) => Some((!s.is_empty()).then_some(s)),
            Scalar::Null => Some(None),
            Scalar::Int(..) | Scalar::Bool(_) => None,
        }
    }

    #[inline]
    pub(crate) fn text(self) -> Option<Text<'a>> {
        self.str().map(|s| s.map_or(Text(None), Text::borrowed))
    }

    #[inline]
    pub(crate) fn dec(self) -> Option<Dec> {
        match self {
            // serde hands a JSON integer over as `i64`/`u64` and the reader formats it back
            // to text: for a canonical integer that text is the one in the frame.
            Scalar::Str(s) | Scalar::Int(s, _) => Dec::from_text(s).ok(),
            Scalar::Null => Some(Dec(None)),
            Scalar::Bool(_) => None,
        }
    }

    #[inline]
    pub(crate) fn int(self) -> Option<Int> {
        match self {
            Scalar::Str(s) => Int::from_text(s),
            Scalar::Int(_, v) => Some(Int(Some(v))),
            Scalar::Null => Some(Int(None)),
            Scalar::Bool(_) => None,
        }
    }

    #[inline]
    pub(crate) fn millis(self) -> Option<Millis> {
        Millis::from_int(self.int()?)
    }

    #[inline]
    pub(crate) fn flag(self) -> Option<Flag> {
        match self {
            Scalar::Bool(b) => Some(Flag(Some(b))),
            Scalar::Str(s) => Flag::from_text(s),
            Scalar::Null => Some(Flag(None)),
            Scalar::Int(..) => None,
        }
    }
}

/// Each element of a push: its text exactly as received, and the element read from it.
pub type Elements<'a> = Vec<(&'a str, PositionElement<'a>)>;

/// The envelope of a position push read by the fast path.
pub struct PositionFrame<'a> {
    pub topic: &'a str,
    pub category: Option<&'a str>,
    pub id: Option<&'a str>,
    pub creation_ts: i64,
}

/// Reads `text` as a position push of the common shape into its envelope and `elements`, or
/// returns `None` for the serde path to decide (`elements` then holds nothing of use).
pub fn position_frame<'a>(
    text: &'a str,
    elements: &mut Elements<'a>,
    order: &mut KeyOrder,
) -> Option<PositionFrame<'a>> {
    elements.clear();
    let mut c = Cursor::new(text);
    let mut topic: Option<Option<&'a str>> = None;
    let mut id: Option<Option<&'a str>> = None;
    let mut creation: Option<Millis> = None;
    let mut data = false;

    c.eat(b'{')?;
    if c.peek()? != b'}' {
        loop {
            let key = c.key()?;
            match key {
                "topic" if topic.is_none() => {
                    let t = c.scalar()?.str()?;
                    // A wallet or control frame: leave it to the serde path at once.
                    if !matches!(classify_topic(t?), TopicKind::Position { .. }) {
                        return None;
                    }
                    topic = Some(t);
                }
                "id" if id.is_none() => id = Some(c.scalar()?.str()?),
                "creationTime" if creation.is_none() => creation = Some(c.scalar()?.millis()?),
                "data" if !data => {
                    data = true;
                    c.eat(b'[')?;
                    if c.peek()? == b']' {
                        c.pos += 1;
                    } else {
                        loop {
                            c.skip_ws();
                            let start = c.pos;
                            // Filled in place: an element is over a kilobyte.
                            elements.push(("", PositionElement::default()));
                            let slot = elements.last_mut()?;
                            c.element(&mut slot.1, order)?;
                            slot.0 = text.get(start..c.pos)?;
                            match c.peek()? {
                                b',' => c.pos += 1,
                                b']' => {
                                    c.pos += 1;
                                    break;
                                }
                                _ => return None,
                            }
                        }
                    }
                }
                // Envelope fields this path does not read (`op` and the control answer's
                // fields), and repeated keys, which serde refuses.
                "topic" | "id" | "creationTime" | "data" | "op" | "success" | "ret_msg"
                | "conn_id" | "req_id" | "args" => return None,
                // Unknown fields are ignored, as serde does; only flat ones are skipped here.
                _ => {
                    c.scalar()?;
                }
            }
            match c.peek()? {
                b',' => c.pos += 1,
                b'}' => break,
                _ => return None,
            }
        }
    }
    c.pos += 1;
    c.skip_ws();
    if c.pos != c.bytes.len() || !data {
        return None;
    }
    let topic = topic??;
    let TopicKind::Position { category } = classify_topic(topic) else {
        return None;
    };
    Some(PositionFrame {
        topic,
        category,
        id: id.flatten(),
        creation_ts: creation?.0?,
    })
}

/// Gives a borrowed-element vector's allocation back for the next frame.
pub fn recycle<'b>(mut elements: Elements<'_>) -> Elements<'b> {
    elements.clear();
    // An empty vector mapped onto the same layout reuses its allocation in place.
    elements.into_iter().map(|_| unreachable!()).collect()
}

/// Where the first quote, backslash or control character of `bytes` is.
///
/// Eight bytes at a time (SWAR, safe code): in each word, a byte equal to `"` or `\\` or below
/// 0x20 sets its high bit in `stops`. The borrow of the subtraction can also set bits above a
/// matching byte but never below one, so the lowest bit set is exact.
#[inline(always)]
fn string_stop(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().ok()?);
        let stops = zero(word ^ (ONES * b'"' as u64))
            | zero(word ^ (ONES * b'\\' as u64))
            | (word.wrapping_sub(ONES * 0x20) & !word & HIGH);
        if stops != 0 {
            return Some(offset + (stops.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    let tail = chunks.remainder();
    tail.iter()
        .position(|&b| STRING_STOP[b as usize])
        .map(|i| offset + i)
}

/// The order of the fields in the last position elements read: `next[i]` is the index of the
/// key that followed key `i` (`next[FIRST]`: the first key). Only a guess to try first; a
/// wrong one costs one comparison.
#[derive(Debug, Clone)]
pub struct KeyOrder {
    next: [u8; FIRST + 1],
}

/// The slot of `KeyOrder::next` for "before the first key".
const FIRST: usize = 64;

impl Default for KeyOrder {
    fn default() -> Self {
        KeyOrder {
            next: [0; FIRST + 1],
        }
    }
}

/// A position in the frame.
pub(crate) struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

/// Bytes that end the fast scan of a string: the closing quote, an escape, or a control
/// character (which JSON forbids inside strings).
const STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    /// Skips JSON whitespace.
    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    #[inline(always)]
    fn peek(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.pos)?;
        // Every JSON whitespace byte is at most a space; pushes seldom have any.
        if byte > b' ' {
            return Some(byte);
        }
        self.skip_ws();
        self.bytes.get(self.pos).copied()
    }

    #[inline(always)]
    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    /// A string without escapes or control characters; the cursor is on its opening quote.
    #[inline(always)]
    fn string(&mut self) -> Option<&'a str> {
        let start = self.pos + 1;
        let rest = self.bytes.get(start..)?;
        let len = string_stop(rest)?;
        if rest[len] != b'"' {
            return None;
        }
        self.pos = start + len + 1;
        // Both ends are ASCII quotes, hence character boundaries.
        self.text.get(start..start + len)
    }

    /// Where `part`, a slice of the frame, starts in it.
    #[inline(always)]
    fn pos_of(&self, part: &str) -> usize {
        part.as_ptr() as usize - self.text.as_ptr() as usize
    }

    /// An object key and its colon.
    #[inline(always)]
    fn key(&mut self) -> Option<&'a str> {
        if self.peek()? != b'"' {
            return None;
        }
        let key = self.string()?;
        self.eat(b':')?;
        Some(key)
    }

    /// An integer in canonical form of at most 18 digits; anything else is left to serde
    /// (`-0` and fractions are floats there, longer numbers may be too).
    #[inline]
    fn integer(&mut self) -> Option<Scalar<'a>> {
        let start = self.pos;
        let negative = self.bytes[start] == b'-';
        let first = start + negative as usize;
        let mut end = first;
        let mut value: i64 = 0;
        while let Some(&b) = self.bytes.get(end) {
            let digit = b.wrapping_sub(b'0');
            if digit > 9 {
                if matches!(b, b'.' | b'e' | b'E') {
                    return None;
                }
                break;
            }
            value = value * 10 + digit as i64;
            end += 1;
            if end - first > 18 {
                return None;
            }
        }
        let digits = end - first;
        if digits == 0 || (self.bytes[first] == b'0' && (digits > 1 || negative)) {
            return None;
        }
        self.pos = end;
        Some(Scalar::Int(
            self.text.get(start..end)?,
            if negative { -value } else { value },
        ))
    }

    /// One flat value; `None` for an object, an array or anything unexpected.
    #[inline(always)]
    fn scalar(&mut self) -> Option<Scalar<'a>> {
        let literal = |c: &mut Self, word: &[u8], value: Scalar<'a>| {
            c.bytes[c.pos..].starts_with(word).then(|| {
                c.pos += word.len();
                value
            })
        };
        match self.peek()? {
            b'"' => self.string().map(Scalar::Str),
            b'-' | b'0'..=b'9' => self.integer(),
            b't' => literal(self, b"true", Scalar::Bool(true)),
            b'f' => literal(self, b"false", Scalar::Bool(false)),
            b'n' => literal(self, b"null", Scalar::Null),
            _ => None,
        }
    }

    /// A position element: a flat object whose known fields are set on `element` (each at
    /// most once, as serde requires) and whose unknown fields are skipped.
    #[inline]
    fn element(&mut self, element: &mut PositionElement<'a>, order: &mut KeyOrder) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(());
        }
        let mut seen = 0u64;
        let mut previous = FIRST;
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            // Bybit writes the fields in the same order every time: try the key that followed
            // the previous one last time, compared in place, before reading the key as a
            // string and looking it up.
            let guess = order.next[previous] as usize;
            let known = match POSITION_KEYS.matches_at(self.bytes, self.pos + 1, guess) {
                Some(len) => {
                    self.pos += len + 2;
                    self.eat(b':')?;
                    Some(guess)
                }
                None => {
                    let key = self.key()?;
                    let start = self.pos_of(key);
                    let found = POSITION_KEYS.find_at(self.bytes, start, key.len());
                    if let Some(index) = found {
                        order.next[previous] = index as u8;
                    }
                    found
                }
            };
            match known {
                Some(index) => {
                    let bit = 1u64 << index;
                    if seen & bit != 0 {
                        return None;
                    }
                    seen |= bit;
                    element.set_flat(index, self)?;
                    previous = index;
                }
                None => {
                    self.scalar()?;
                }
            }
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    // Typed values: each reads the common case directly and otherwise the general `Scalar`.

    #[inline(always)]
    pub(crate) fn text(&mut self) -> Option<Text<'a>> {
        self.scalar()?.text()
    }

    /// An integer: a plain string of digits is read in the same pass that finds its end.
    #[inline(always)]
    pub(crate) fn int(&mut self) -> Option<Int> {
        if self.peek()? == b'"' {
            if let Some(value) = self.plain_integer_string() {
                return Some(value);
            }
        }
        self.scalar()?.int()
    }

    #[inline(always)]
    pub(crate) fn millis(&mut self) -> Option<Millis> {
        Millis::from_int(self.int()?)
    }

    /// `"digits"` (at most 18, so no `i64` overflow) or `""`; the cursor is on the opening
    /// quote and moves past the closing one only on success. The value is the one
    /// `Int::from_text` gives for the same text (which also reads signs, left to it).
    #[inline(always)]
    fn plain_integer_string(&mut self) -> Option<Int> {
        let bytes = self.bytes;
        let first = self.pos + 1;
        let mut i = first;
        let mut value: i64 = 0;
        loop {
            let b = *bytes.get(i)?;
            let digit = b.wrapping_sub(b'0');
            if digit < 10 {
                value = value * 10 + digit as i64;
                i += 1;
                if i - first > 18 {
                    return None;
                }
            } else if b == b'"' {
                break;
            } else {
                return None;
            }
        }
        self.pos = i + 1;
        Some(Int((i > first).then_some(value)))
    }

    #[inline(always)]
    pub(crate) fn flag(&mut self) -> Option<Flag> {
        self.scalar()?.flag()
    }

    /// A decimal: a plain decimal string is read in the same pass that finds its end.
    #[inline(always)]
    pub(crate) fn dec(&mut self) -> Option<Dec> {
        if self.peek()? == b'"' {
            if let Some(value) = self.plain_decimal_string() {
                return Some(value);
            }
        }
        self.scalar()?.dec()
    }

    /// `"digits"`, `"-digits"`, with at most one point, at most 19 digits in all and at least
    /// one, or `""`; the cursor is on the opening quote and moves past the closing one only
    /// on success. The value is the one `Dec::from_text` gives for the same text.
    #[inline(always)]
    fn plain_decimal_string(&mut self) -> Option<Dec> {
        let bytes = self.bytes;
        let mut i = self.pos + 1;
        if *bytes.get(i)? == b'"' {
            self.pos = i + 1;
            return Some(Dec(None));
        }
        let negative = bytes[i] == b'-';
        i += negative as usize;
        let mut digits: u64 = 0;
        let mut count = 0usize;
        let mut point = 0usize;
        loop {
            let b = *bytes.get(i)?;
            let digit = b.wrapping_sub(b'0');
            if digit < 10 {
                digits = digits * 10 + digit as u64;
                count += 1;
                if count > 19 {
                    return None;
                }
            } else if b == b'"' {
                break;
            } else if b == b'.' && point == 0 {
                point = i;
            } else {
                return None;
            }
            i += 1;
        }
        if count == 0 {
            return None;
        }
        let fraction = if point == 0 { 0 } else { i - point - 1 };
        let value = decimal::scaled(digits, fraction, negative)?;
        self.pos = i + 1;
        Some(Dec(Some(value)))
    }
}

/// Finds a known key among `N` names in one probe. A key of up to 24 bytes is three words
/// (bytes 0..8, 8..16, 16..24, zero-padded) and its length, which say every byte of it; a
/// multiplicative hash of them picks a slot, and the key is the name in that slot only if
/// all four are equal. Longer keys are no name.
pub(crate) struct KeyTable<const N: usize> {
    slots: [Slot; 128],
    /// Each name's slot, by index.
    by_index: [Slot; N],
}

#[derive(Clone, Copy)]
struct Slot {
    index: u8,
    len: u8,
    words: [u64; 3],
    masks: [u64; 3],
}

const EMPTY: u8 = u8::MAX;
const LONGEST: usize = 24;

/// A multiplier under which the position keys land in distinct slots (checked when the table
/// is built, at compile time: a new key that collides fails the build, and another
/// multiplier is needed).
const MULTIPLIER: u64 = 0xb248_9191_7b12_1dc5;

/// The slot of a key's words and length.
#[inline(always)]
const fn slot_of(words: [u64; 3], len: usize) -> usize {
    let feature = words[0] ^ words[1].wrapping_mul(31) ^ words[2].wrapping_mul(961) ^ len as u64;
    (feature.wrapping_mul(MULTIPLIER) >> 57) as usize
}

/// A name's words, byte by byte (for building the table, and for keys at the very end of a
/// frame).
const fn name_words(name: &[u8]) -> [u64; 3] {
    let mut words = [0u64; 3];
    let mut i = 0;
    while i < name.len() && i < LONGEST {
        words[i / 8] |= (name[i] as u64) << (8 * (i % 8));
        i += 1;
    }
    words
}

/// The masks that keep the first `len` bytes of three words.
#[inline(always)]
const fn masks(len: usize) -> [u64; 3] {
    const fn mask(len: usize, k: usize) -> u64 {
        let keep = len.saturating_sub(8 * k);
        let keep = if keep > 8 { 8 } else { keep };
        ((1u128 << (8 * keep)) - 1) as u64
    }
    [mask(len, 0), mask(len, 1), mask(len, 2)]
}

/// Twenty-four bytes of `bytes` from `start` as three words, if there are that many.
#[inline(always)]
fn window(bytes: &[u8], start: usize) -> Option<[u64; 3]> {
    let window: &[u8; LONGEST] = bytes.get(start..start + LONGEST)?.try_into().ok()?;
    let word = |k: usize| {
        let mut array = [0u8; 8];
        array.copy_from_slice(&window[8 * k..8 * k + 8]);
        u64::from_le_bytes(array)
    };
    Some([word(0), word(1), word(2)])
}

/// The words of the `len`-byte key at `start` in `bytes`: whole words read from the frame
/// and masked to the key, with no loop over its bytes.
#[inline(always)]
fn key_words(bytes: &[u8], start: usize, len: usize) -> [u64; 3] {
    match window(bytes, start) {
        Some(words) => {
            let masks = masks(len);
            [
                words[0] & masks[0],
                words[1] & masks[1],
                words[2] & masks[2],
            ]
        }
        None => name_words(bytes.get(start..start + len).unwrap_or_default()),
    }
}

impl<const N: usize> KeyTable<N> {
    pub(crate) const fn new(names: [&'static str; N]) -> Self {
        assert!(N < EMPTY as usize && N <= 64);
        let empty = Slot {
            index: EMPTY,
            len: 0,
            words: [0; 3],
            masks: [0; 3],
        };
        let mut slots = [empty; 128];
        let mut by_index = [empty; N];
        let mut i = 0;
        while i < N {
            let name = names[i].as_bytes();
            assert!(name.len() <= LONGEST);
            let words = name_words(name);
            let s = slot_of(words, name.len());
            assert!(
                slots[s].index == EMPTY,
                "two keys share a slot: choose another MULTIPLIER"
            );
            slots[s] = Slot {
                index: i as u8,
                len: name.len() as u8,
                words,
                masks: masks(name.len()),
            };
            by_index[i] = slots[s];
            i += 1;
        }
        KeyTable { slots, by_index }
    }

    /// The index of the `len`-byte key at `start` in `bytes` among the names, if it is one.
    #[inline(always)]
    pub(crate) fn find_at(&self, bytes: &[u8], start: usize, len: usize) -> Option<usize> {
        if len > LONGEST {
            return None;
        }
        let words = key_words(bytes, start, len);
        let slot = &self.slots[slot_of(words, len)];
        // Word by word, not as an array: the array compare is vectorised and stalls on the
        // words just stored.
        let differ =
            (slot.words[0] ^ words[0]) | (slot.words[1] ^ words[1]) | (slot.words[2] ^ words[2]);
        (slot.index != EMPTY && slot.len as usize == len && differ == 0)
            .then_some(slot.index as usize)
    }

    /// Whether the name of index `guess` is at `start` in `bytes`, followed by a quote (so it
    /// is the whole key: names hold no quote or backslash); its length if so.
    #[inline(always)]
    pub(crate) fn matches_at(&self, bytes: &[u8], start: usize, guess: usize) -> Option<usize> {
        let slot = self.by_index.get(guess)?;
        let len = slot.len as usize;
        let words = window(bytes, start)?;
        let differ = ((slot.words[0] ^ words[0]) & slot.masks[0])
            | ((slot.words[1] ^ words[1]) & slot.masks[1])
            | ((slot.words[2] ^ words[2]) & slot.masks[2]);
        (differ == 0 && bytes.get(start + len) == Some(&b'"')).then_some(len)
    }

    /// The index of `key` among the names, if it is one.
    #[cfg(test)]
    pub(crate) fn find(&self, key: &str) -> Option<usize> {
        self.find_at(key.as_bytes(), 0, key.len())
    }
}

const POSITION_KEYS: KeyTable<{ PositionElement::FLAT_KEYS.len() }> =
    KeyTable::new(PositionElement::FLAT_KEYS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_stop_finds_the_first_stop_byte() {
        let mut rng = fastrand::Rng::with_seed(3);
        let alphabet = [
            b'a', b'"', b'\\', 0x01, 0x1f, 0x20, 0x21, 0x7f, 0x80, 0xff, b'0',
        ];
        for _ in 0..100_000 {
            let bytes: Vec<u8> = (0..rng.usize(0..40))
                .map(|_| {
                    if rng.u8(..4) == 0 {
                        alphabet[rng.usize(..alphabet.len())]
                    } else {
                        rng.u8(0x20..0x7f)
                    }
                })
                .collect();
            let expected = bytes.iter().position(|&b| STRING_STOP[b as usize]);
            assert_eq!(string_stop(&bytes), expected, "{bytes:?}");
        }
    }

    #[test]
    fn key_table_finds_each_name_and_nothing_else() {
        for (i, name) in PositionElement::FLAT_KEYS.iter().enumerate() {
            assert_eq!(POSITION_KEYS.find(name), Some(i), "{name}");
            let mut near = name.to_string();
            near.push('x');
            assert_eq!(POSITION_KEYS.find(&near), None, "{near}");
            assert_eq!(POSITION_KEYS.find(&name[1..]), None);
            assert_eq!(POSITION_KEYS.find(&name[..name.len() - 1]), None);
            let upper = name.to_uppercase();
            assert_eq!(POSITION_KEYS.find(&upper), None, "{upper}");
        }
        for key in [
            "",
            "x",
            "positionIMByMq",
            "positionImByMp",
            "leverageSysUpdatedTimes",
        ] {
            assert_eq!(POSITION_KEYS.find(key), None, "{key}");
        }
        assert_eq!(POSITION_KEYS.find(&"a".repeat(100)), None);
    }

    #[test]
    fn a_guessed_key_matches_only_itself_whole() {
        let keys = PositionElement::FLAT_KEYS;
        let index = |name: &str| keys.iter().position(|k| *k == name).unwrap();
        let padding = " ".repeat(30);
        for (i, name) in keys.iter().enumerate() {
            let text = format!("\"{name}\":1{padding}");
            assert_eq!(
                POSITION_KEYS.matches_at(text.as_bytes(), 1, i),
                Some(name.len())
            );
            for (j, other) in keys.iter().enumerate() {
                if j != i {
                    assert_eq!(
                        POSITION_KEYS.matches_at(text.as_bytes(), 1, j),
                        None,
                        "{other}"
                    );
                }
            }
            // Too near the end of the frame to read in words: left to the general lookup.
            let short = format!("\"{name}\"");
            assert_eq!(POSITION_KEYS.matches_at(short.as_bytes(), 1, i), None);
        }
        let longer = format!("\"positionIMByMp\":1{padding}");
        assert_eq!(
            POSITION_KEYS.matches_at(longer.as_bytes(), 1, index("positionIM")),
            None
        );
        assert_eq!(POSITION_KEYS.matches_at(longer.as_bytes(), 1, 99), None);
    }

    #[test]
    fn plain_decimal_strings_agree_with_the_rules_on_random_text() {
        let mut rng = fastrand::Rng::with_seed(11);
        let alphabet = b"0123456789012345678901234567890123456789.-+e x/:";
        let mut plain = 0;
        for _ in 0..200_000 {
            let text: String = (0..rng.usize(0..24))
                .map(|_| alphabet[rng.usize(..alphabet.len())] as char)
                .collect();
            // Followed by as little of a frame as possible, and by plenty.
            for tail in ["", "}", ",\"next\":\"0123456789012345678901234\"}"] {
                let quoted = format!("\"{text}\"{tail}");
                let mut c = Cursor::new(&quoted);
                let expected = Dec::from_text(&text).ok();
                let got = c.plain_decimal_string();
                if let Some(value) = got {
                    plain += 1;
                    assert_eq!(Some(value), expected, "{text:?}");
                    assert_eq!(c.pos, text.len() + 2, "{text:?}");
                } else {
                    assert_eq!(c.pos, 0);
                }
                assert_eq!(Cursor::new(&quoted).dec(), expected, "{text:?}");
            }
        }
        // The one-pass reader took a good share (the rest went to the general one).
        assert!(plain > 50_000, "{plain}");
    }

    #[test]
    fn plain_integer_strings_agree_with_the_rules() {
        let mut rng = fastrand::Rng::with_seed(12);
        let alphabet = b"01234567890123456789+- x.";
        let mut plain = 0;
        for _ in 0..100_000 {
            let text: String = (0..rng.usize(0..22))
                .map(|_| alphabet[rng.usize(..alphabet.len())] as char)
                .collect();
            for tail in ["", "}"] {
                let quoted = format!("\"{text}\"{tail}");
                let expected = Int::from_text(&text);
                let mut c = Cursor::new(&quoted);
                if let Some(value) = c.plain_integer_string() {
                    plain += 1;
                    assert_eq!(Some(value), expected, "{text:?}");
                    assert_eq!(c.pos, text.len() + 2, "{text:?}");
                } else {
                    assert_eq!(c.pos, 0);
                }
                assert_eq!(Cursor::new(&quoted).int(), expected, "{text:?}");
            }
        }
        assert!(plain > 10_000, "{plain}");
    }

    #[test]
    fn plain_decimal_strings_read_as_the_rules_do() {
        for text in [
            "0",
            "-0",
            "1.5",
            "-2.25",
            "61234.56",
            ".5",
            "5.",
            "-",
            ".",
            "1.2.3",
            "+1",
            "1e3",
            "0.000000000000000001",
            "0.0000000000000000001",
            "1234567890123456789",
            "12345678901234567890",
            "",
            "abc",
        ] {
            let quoted = format!("\"{text}\",");
            let mut c = Cursor::new(&quoted);
            let expected = Dec::from_text(text).ok();
            assert_eq!(c.dec(), expected, "{text:?}");
            if expected.is_some() {
                assert_eq!(c.pos, quoted.len() - 1, "{text:?}");
            }
        }
    }
}
