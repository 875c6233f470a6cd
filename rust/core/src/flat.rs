//! The fast path for the common shape of a push: one pass over the frame, straight into the
//! typed elements, with no second parse of each element.
//!
//! Bybit sends `{"id":..,"topic":"position",..,"creationTime":..,"data":[{..}]}`, where every
//! position element is a flat object of strings, integers, booleans and nulls without escapes,
//! every wallet element is such an object with one nested array, `coin`, of flat objects, and
//! execution and order elements are flat objects but for one nested value each (`extraFees`,
//! `cumFeeDetail`), kept as its text. This reader handles exactly that and nothing more. It is
//! not a JSON parser: on anything it does not fully handle (an escape, a control character, a
//! nested value other than those, a fraction or exponent, a long or odd number, a duplicate
//! known key, a control frame, a topic that is not captured, a value of the wrong type, a value
//! the rules refuse, trailing text, ...) it gives up and returns `None`, and the decoder reads
//! the frame again with serde, which stays the reference for every case. So the fast path only ever
//! produces what the serde path would, and the serde path alone decides failures and their
//! reasons.

use crate::decimal;
use crate::execution::ExecutionElement;
use crate::fields::{Dec, Flag, Int, Json, Millis, Text};
use crate::order::OrderElement;
use crate::position::PositionElement;
use crate::protocol::{classify_topic, PushKind, TopicKind};
use crate::wallet::WalletElement;

/// An object the fast path reads field by field: its known keys, and how each is read.
/// Implemented by `flat_object!`, from one list of keys and readers.
pub(crate) trait FlatObject<'a>: Default {
    /// Whether the key of index `guess` is at `start` in `bytes`, whole; its length if so.
    fn matches_at(bytes: &[u8], start: usize, guess: usize) -> Option<usize>;
    /// The index of the `len`-byte key at `start` in `bytes`, if it is a known one.
    fn find_at(bytes: &[u8], start: usize, len: usize) -> Option<usize>;
    /// The field order this kind of object had last time.
    fn order(orders: &mut KeyOrders) -> &mut KeyOrder;
    /// Reads the value of the `index`-th key into its field; `None`: a value serde would
    /// refuse, for the serde path to decide.
    fn set_flat(&mut self, index: usize, value: &mut Cursor<'a>) -> Option<()>;
}

/// Declares a fast-path object once: its key names (`FLAT_KEYS`, in order), each with the
/// field it sets and the `Cursor` reader of its value, and the multiplier of its key table
/// (any under which its keys land in distinct slots: the build fails otherwise).
macro_rules! flat_object {
    ($ty:ident, order: $order:ident, multiplier: $mult:expr,
     { $($key:literal => $field:ident: $read:ident,)* }) => {
        impl<'a> $ty<'a> {
            pub(crate) const FLAT_KEYS: [&'static str; [$($key),*].len()] = [$($key),*];
            pub(crate) const KEY_TABLE: $crate::flat::KeyTable<
                { [$($key),*].len() },
                { $crate::flat::wide(&[$($key),*]) },
            > =
                $crate::flat::KeyTable::new(Self::FLAT_KEYS, $mult);
        }

        impl<'a> $crate::flat::FlatObject<'a> for $ty<'a> {
            #[inline(always)]
            fn matches_at(bytes: &[u8], start: usize, guess: usize) -> Option<usize> {
                Self::KEY_TABLE.matches_at(bytes, start, guess)
            }

            #[inline(always)]
            fn find_at(bytes: &[u8], start: usize, len: usize) -> Option<usize> {
                Self::KEY_TABLE.find_at(bytes, start, len)
            }

            #[inline(always)]
            fn order(orders: &mut $crate::flat::KeyOrders) -> &mut $crate::flat::KeyOrder {
                &mut orders.$order
            }

            #[inline(always)]
            fn set_flat(
                &mut self,
                index: usize,
                value: &mut $crate::flat::Cursor<'a>,
            ) -> Option<()> {
                let mut i = 0;
                $(
                    if index == i {
                        self.$field = value.$read()?;
                        return Some(());
                    }
                    i += 1;
                )*
                let _ = i;
                None
            }
        }
    };
}
pub(crate) use flat_object;

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
pub type Elements<'a, T> = Vec<(&'a str, T)>;

/// The elements of the last frame read, by kind (only one kind holds any), kept between
/// frames for their allocations.
#[derive(Default)]
pub struct Parsed<'a> {
    pub positions: Elements<'a, PositionElement<'a>>,
    pub wallets: Elements<'a, WalletElement<'a>>,
    pub executions: Elements<'a, ExecutionElement<'a>>,
    pub orders: Elements<'a, OrderElement<'a>>,
}

impl Parsed<'_> {
    /// Gives the allocations back for the next frame, whose text lives elsewhere.
    pub fn recycle<'b>(self) -> Parsed<'b> {
        Parsed {
            positions: recycle(self.positions),
            wallets: recycle(self.wallets),
            executions: recycle(self.executions),
            orders: recycle(self.orders),
        }
    }

    fn clear(&mut self) {
        self.positions.clear();
        self.wallets.clear();
        self.executions.clear();
        self.orders.clear();
    }
}

/// The envelope of a push read by the fast path.
pub struct PushFrame<'a> {
    pub topic: &'a str,
    pub kind: PushKind,
    /// The category a `<topic>.<category>` name implies.
    pub category: Option<&'a str>,
    pub id: Option<&'a str>,
    pub creation_ts: i64,
}

/// Reads `text` as a captured push of the common shape into its envelope and `parsed`, or
/// returns `None` for the serde path to decide (`parsed` then holds nothing of use).
pub fn push_frame<'a>(
    text: &'a str,
    parsed: &mut Parsed<'a>,
    orders: &mut KeyOrders,
) -> Option<PushFrame<'a>> {
    parsed.clear();
    let mut c = Cursor::new(text);
    c.orders = orders.clone();
    let mut topic: Option<Option<&'a str>> = None;
    let mut kind: Option<PushKind> = None;
    let mut id: Option<Option<&'a str>> = None;
    let mut creation: Option<Millis> = None;
    // The kind the elements were read as.
    let mut data: Option<PushKind> = None;

    c.eat(b'{')?;
    if c.peek()? != b'}' {
        loop {
            let key = c.key()?;
            match key {
                "topic" if topic.is_none() => {
                    let t = c.scalar()?.str()?;
                    // A control frame or another topic: leave it to the serde path at once.
                    match classify_topic(t?) {
                        TopicKind::Push { kind: k, .. } => kind = Some(k),
                        _ => return None,
                    }
                    topic = Some(t);
                }
                "id" if id.is_none() => id = Some(c.scalar()?.str()?),
                "creationTime" if creation.is_none() => creation = Some(c.scalar()?.millis()?),
                // Data before the topic is read as positions; another topic after it sends the
                // frame to serde below.
                "data" if data.is_none() => {
                    let k = kind.unwrap_or(PushKind::Position);
                    data = Some(k);
                    match k {
                        PushKind::Position => c.elements(&mut parsed.positions)?,
                        PushKind::Wallet => c.elements(&mut parsed.wallets)?,
                        PushKind::Execution => c.elements(&mut parsed.executions)?,
                        PushKind::Order => c.elements(&mut parsed.orders)?,
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
    if c.pos != c.bytes.len() || data.is_none() || data != kind {
        return None;
    }
    let topic = topic??;
    let TopicKind::Push { kind, category } = classify_topic(topic) else {
        return None;
    };
    *orders = c.orders;
    Some(PushFrame {
        topic,
        kind,
        category,
        id: id.flatten(),
        creation_ts: creation?.0?,
    })
}

/// Gives a borrowed-element vector's allocation back for the next frame.
pub fn recycle<'b, T, U>(mut elements: Elements<'_, T>) -> Elements<'b, U> {
    elements.clear();
    // An empty vector mapped onto the same layout reuses its allocation in place (the
    // element types differ only in lifetimes).
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

/// The order of the fields in the last objects of a kind read: `next[i]` is the index of the
/// key that followed key `i` (`next[FIRST]`: the first key). Only a guess to try first; a
/// wrong one costs one comparison.
#[derive(Debug, Clone)]
pub struct KeyOrder {
    next: [u8; FIRST + 1],
}

/// The slot of `KeyOrder::next` for "before the first key": past the last key index, as an
/// object has at most 64 known keys (`object`'s `seen` is a `u64`; the largest, an order,
/// has 53).
const FIRST: usize = 64;

impl Default for KeyOrder {
    fn default() -> Self {
        KeyOrder {
            next: [0; FIRST + 1],
        }
    }
}

/// The field orders of each kind of object, kept by the decoder between frames.
#[derive(Debug, Clone, Default)]
pub struct KeyOrders {
    pub(crate) position: KeyOrder,
    pub(crate) wallet: KeyOrder,
    pub(crate) coin: KeyOrder,
    pub(crate) execution: KeyOrder,
    pub(crate) order: KeyOrder,
}

/// A position in the frame, and the field orders guessed while reading it.
pub(crate) struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    orders: KeyOrders,
}

/// How deep `Cursor::value` follows nested arrays and objects (Bybit's nest one or two).
const MAX_NESTING: usize = 8;

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
            orders: KeyOrders::default(),
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

    /// `[` elements `]`, each a flat object read into `elements` with the text it spans.
    #[inline]
    fn elements<T: FlatObject<'a>>(&mut self, elements: &mut Elements<'a, T>) -> Option<()> {
        self.array(|c| {
            c.skip_ws();
            let start = c.pos;
            // Filled in place: a position element is over a kilobyte.
            elements.push(("", T::default()));
            let slot = elements.last_mut()?;
            c.object(&mut slot.1)?;
            slot.0 = c.text.get(start..c.pos)?;
            Some(())
        })
    }

    /// An array of flat objects (a wallet element's `coin`); serde refuses `null` for it.
    #[inline]
    pub(crate) fn objects<T: FlatObject<'a>>(&mut self) -> Option<Vec<T>> {
        let mut objects = Vec::new();
        self.array(|c| {
            objects.push(T::default());
            c.object(objects.last_mut()?)
        })?;
        Some(objects)
    }

    /// `[`, then `item` for each element up to the closing `]`.
    #[inline(always)]
    fn array(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.pos += 1;
            return Some(());
        }
        loop {
            item(self)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A flat object whose known fields are set on `object` (each at most once, as serde
    /// requires) and whose unknown fields are skipped.
    #[inline]
    fn object<T: FlatObject<'a>>(&mut self, object: &mut T) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(());
        }
        let mut seen = 0u64;
        let mut previous = FIRST;
        // A local copy while reading (nested objects use another kind's order), given back
        // when the object is read whole.
        let mut order = T::order(&mut self.orders).clone();
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            // Bybit writes the fields in the same order every time: try the key that followed
            // the previous one last time, compared in place, before reading the key as a
            // string and looking it up.
            let guess = order.next[previous] as usize;
            let known = match T::matches_at(self.bytes, self.pos + 1, guess) {
                Some(len) => {
                    self.pos += len + 2;
                    self.eat(b':')?;
                    Some(guess)
                }
                None => {
                    let key = self.key()?;
                    let start = self.pos_of(key);
                    let found = T::find_at(self.bytes, start, key.len());
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
                    object.set_flat(index, self)?;
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
                    *T::order(&mut self.orders) = order;
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

    /// A value kept as its exact text (`extraFees`, `cumFeeDetail`); `""` and `null` are NULL.
    #[inline]
    pub(crate) fn json(&mut self) -> Option<Json<'a>> {
        self.peek()?;
        let start = self.pos;
        self.value(0)?;
        Some(Json::from_raw(self.text.get(start..self.pos)?))
    }

    /// Any value made of what this reader reads (strings without escapes, canonical integers,
    /// booleans, nulls) in arrays and objects nested at most `MAX_NESTING` deep. Each is valid
    /// JSON, so serde's raw value takes the same text; anything else (a fraction, an escape,
    /// deeper nesting) is left to serde.
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'[' if depth < MAX_NESTING => self.array(|c| c.value(depth + 1)),
            b'{' if depth < MAX_NESTING => {
                self.pos += 1;
                if self.peek()? == b'}' {
                    self.pos += 1;
                    return Some(());
                }
                loop {
                    self.key()?;
                    self.value(depth + 1)?;
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
            _ => self.scalar().map(drop),
        }
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

/// Finds a known key among `N` names in one probe. A key of up to 32 bytes is four words
/// (bytes 0..8, 8..16, 16..24, 24..32, zero-padded) and its length, which say every byte of
/// it; a multiplicative hash of them picks a slot, and the key is the name in that slot only
/// if all five are equal. Longer keys are no name.
pub(crate) struct KeyTable<const N: usize, const WIDE: bool> {
    /// Under which the names land in distinct slots.
    multiplier: u64,
    slots: [Slot; 128],
    /// Each name's slot, by index.
    by_index: [Slot; N],
}

#[derive(Clone, Copy)]
struct Slot {
    index: u8,
    len: u8,
    words: Words,
    masks: Words,
}

/// A key's bytes as little-endian words.
type Words = [u64; 4];

const EMPTY: u8 = u8::MAX;
const LONGEST: usize = 32;

/// The slot of a key's words and length under a table's multiplier.
#[inline(always)]
const fn slot_of(words: Words, len: usize, multiplier: u64) -> usize {
    let feature = words[0]
        ^ words[1].wrapping_mul(31)
        ^ words[2].wrapping_mul(961)
        ^ words[3].wrapping_mul(29_791)
        ^ len as u64;
    (feature.wrapping_mul(multiplier) >> 57) as usize
}

/// A name's words, byte by byte (for building the table, and for keys at the very end of a
/// frame).
const fn name_words(name: &[u8]) -> Words {
    let mut words = [0u64; 4];
    let mut i = 0;
    while i < name.len() && i < LONGEST {
        words[i / 8] |= (name[i] as u64) << (8 * (i % 8));
        i += 1;
    }
    words
}

/// The masks that keep the first `len` bytes of four words.
#[inline(always)]
const fn masks(len: usize) -> Words {
    const fn mask(len: usize, k: usize) -> u64 {
        let keep = len.saturating_sub(8 * k);
        let keep = if keep > 8 { 8 } else { keep };
        ((1u128 << (8 * keep)) - 1) as u64
    }
    [mask(len, 0), mask(len, 1), mask(len, 2), mask(len, 3)]
}

/// Thirty-two bytes of `bytes` from `start` as four words (`wide`), or twenty-four as three
/// and a zero, if there are that many.
#[inline(always)]
fn window(bytes: &[u8], start: usize, wide: bool) -> Option<Words> {
    // Fixed-size arrays, so the words are read with no bounds check of their own.
    fn words<const B: usize>(bytes: &[u8], start: usize) -> Option<[u64; B]> {
        let window: &[[u8; 8]; B] = bytes
            .get(start..start + 8 * B)?
            .as_chunks()
            .0
            .try_into()
            .ok()?;
        Some(window.map(u64::from_le_bytes))
    }
    if wide {
        words::<4>(bytes, start)
    } else {
        let [a, b, c] = words::<3>(bytes, start)?;
        Some([a, b, c, 0])
    }
}

/// The words of the `len`-byte key at `start` in `bytes`: whole words read from the frame
/// and masked to the key, with no loop over its bytes.
#[inline(always)]
fn key_words(bytes: &[u8], start: usize, len: usize, wide: bool) -> Words {
    match window(bytes, start, wide) {
        Some(words) => {
            let masks = masks(len);
            [
                words[0] & masks[0],
                words[1] & masks[1],
                words[2] & masks[2],
                words[3] & masks[3],
            ]
        }
        None => name_words(bytes.get(start..start + len).unwrap_or_default()),
    }
}

/// Whether a table of `names` needs four words: most names fit in three, and their tables
/// read only three (`WIDE` is a constant, so each table's code has only its own reads).
pub(crate) const fn wide(names: &[&str]) -> bool {
    let mut k = 0;
    while k < names.len() {
        if names[k].len() > LONGEST - 8 {
            return true;
        }
        k += 1;
    }
    false
}

impl<const N: usize, const WIDE: bool> KeyTable<N, WIDE> {
    /// The table of `names`; the build fails if two of them share a slot under `multiplier`
    /// (a new key that collides needs another multiplier).
    pub(crate) const fn new(names: [&'static str; N], multiplier: u64) -> Self {
        assert!(N < EMPTY as usize && N <= 64);
        let empty = Slot {
            index: EMPTY,
            len: 0,
            words: [0; 4],
            masks: [0; 4],
        };
        let mut slots = [empty; 128];
        let mut by_index = [empty; N];
        let mut i = 0;
        while i < N {
            let name = names[i].as_bytes();
            assert!(name.len() <= LONGEST);
            let words = name_words(name);
            let s = slot_of(words, name.len(), multiplier);
            assert!(
                slots[s].index == EMPTY,
                "two keys share a slot: choose another multiplier"
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
        assert!(WIDE == wide(&names), "WIDE must be `wide(names)`");
        KeyTable {
            multiplier,
            slots,
            by_index,
        }
    }

    /// The index of the `len`-byte key at `start` in `bytes` among the names, if it is one.
    #[inline(always)]
    pub(crate) fn find_at(&self, bytes: &[u8], start: usize, len: usize) -> Option<usize> {
        if len > LONGEST || (len > LONGEST - 8 && !WIDE) {
            return None;
        }
        let words = key_words(bytes, start, len, WIDE);
        let slot = &self.slots[slot_of(words, len, self.multiplier)];
        // Word by word, not as an array: the array compare is vectorised and stalls on the
        // words just stored.
        let differ = (slot.words[0] ^ words[0])
            | (slot.words[1] ^ words[1])
            | (slot.words[2] ^ words[2])
            | if WIDE { slot.words[3] ^ words[3] } else { 0 };
        (slot.index != EMPTY && slot.len as usize == len && differ == 0)
            .then_some(slot.index as usize)
    }

    /// Whether the name of index `guess` is at `start` in `bytes`, followed by a quote (so it
    /// is the whole key: names hold no quote or backslash); its length if so.
    #[inline(always)]
    pub(crate) fn matches_at(&self, bytes: &[u8], start: usize, guess: usize) -> Option<usize> {
        let slot = self.by_index.get(guess)?;
        let len = slot.len as usize;
        let words = window(bytes, start, WIDE)?;
        let differ = ((slot.words[0] ^ words[0]) & slot.masks[0])
            | ((slot.words[1] ^ words[1]) & slot.masks[1])
            | ((slot.words[2] ^ words[2]) & slot.masks[2])
            | if WIDE {
                (slot.words[3] ^ words[3]) & slot.masks[3]
            } else {
                0
            };
        (differ == 0 && bytes.get(start + len) == Some(&b'"')).then_some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wallet::WalletCoin;

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

    /// A key table's `find_at` or `matches_at`.
    type Lookup = fn(&[u8], usize, usize) -> Option<usize>;

    /// Each kind of fast-path object's key table, with its names.
    fn tables() -> Vec<(&'static [&'static str], Lookup)> {
        vec![
            (&PositionElement::FLAT_KEYS, PositionElement::find_at),
            (&WalletElement::FLAT_KEYS, WalletElement::find_at),
            (&WalletCoin::FLAT_KEYS, WalletCoin::find_at),
            (&ExecutionElement::FLAT_KEYS, ExecutionElement::find_at),
            (&OrderElement::FLAT_KEYS, OrderElement::find_at),
        ]
    }

    fn matchers() -> Vec<(&'static [&'static str], Lookup)> {
        vec![
            (&PositionElement::FLAT_KEYS, PositionElement::matches_at),
            (&WalletElement::FLAT_KEYS, WalletElement::matches_at),
            (&WalletCoin::FLAT_KEYS, WalletCoin::matches_at),
            (&ExecutionElement::FLAT_KEYS, ExecutionElement::matches_at),
            (&OrderElement::FLAT_KEYS, OrderElement::matches_at),
        ]
    }

    #[test]
    fn key_table_finds_each_name_and_nothing_else() {
        for (keys, find_at) in tables() {
            let find = |key: &str| find_at(key.as_bytes(), 0, key.len());
            for (i, name) in keys.iter().enumerate() {
                assert_eq!(find(name), Some(i), "{name}");
                // Also inside a frame, where whole words are read past the key.
                let framed = format!("\"{name}\":\"{}\"", "x".repeat(40));
                assert_eq!(find_at(framed.as_bytes(), 1, name.len()), Some(i), "{name}");
                let mut near = name.to_string();
                near.push('x');
                assert_eq!(find(&near), None, "{near}");
                assert_eq!(find(&name[1..]), None);
                assert_eq!(find(&name[..name.len() - 1]), None);
                let upper = name.to_uppercase();
                assert_eq!(find(&upper), None, "{upper}");
            }
            for key in [
                "",
                "x",
                "positionIMByMq",
                "positionImByMp",
                "leverageSysUpdatedTimes",
                "totalMaintenanceMarginByMq",
                "totalMaintenanceMarginByMpX",
            ] {
                assert_eq!(find(key), None, "{key}");
            }
            assert_eq!(find(&"a".repeat(100)), None);
        }
    }

    #[test]
    fn a_guessed_key_matches_only_itself_whole() {
        for (keys, matches_at) in matchers() {
            let padding = " ".repeat(40);
            for (i, name) in keys.iter().enumerate() {
                let text = format!("\"{name}\":1{padding}");
                assert_eq!(matches_at(text.as_bytes(), 1, i), Some(name.len()));
                for (j, other) in keys.iter().enumerate() {
                    if j != i {
                        assert_eq!(matches_at(text.as_bytes(), 1, j), None, "{other}");
                    }
                }
                // Too near the end of the frame to read in words: left to the general lookup.
                let short = format!("\"{name}\"");
                assert_eq!(matches_at(short.as_bytes(), 1, i), None);
                // A longer key that starts with this one.
                let longer = format!("\"{name}X\":1{padding}");
                assert_eq!(matches_at(longer.as_bytes(), 1, i), None, "{name}X");
            }
            assert_eq!(matches_at(b"\"x\":1", 1, 99), None);
        }
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
