//! Exact decimal strings to Arrow `Decimal128(38, 18)`.
//!
//! Bybit sends every amount and price as a decimal string. Going through `f64` would round
//! (`"0.1"` is not a binary fraction), so the digits are read straight into a scaled `i128`.
//! A value that cannot be held exactly is an error, never a rounded number: more than 18
//! significant fractional digits, or more than 38 digits in all.

use std::fmt;

/// Digits after the decimal point in every decimal column.
pub const SCALE: i8 = 18;
/// Total digits in every decimal column (the most a `Decimal128` holds).
pub const PRECISION: u8 = 38;

/// 10^38: the first magnitude that no longer fits `PRECISION` digits.
const LIMIT: i128 = POW10[PRECISION as usize];

/// Why a string is not an exact decimal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecimalError {
    NotANumber,
    TooManyFractionDigits,
    TooManyDigits,
}

impl fmt::Display for DecimalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecimalError::NotANumber => "not a decimal number",
            DecimalError::TooManyFractionDigits => {
                "more than 18 decimal places: cannot be held exactly"
            }
            DecimalError::TooManyDigits => "more than 38 digits: cannot be held exactly",
        })
    }
}

impl std::error::Error for DecimalError {}

/// Parses a decimal string into its value times 10^18.
///
/// Accepts an optional sign, digits with an optional point, and an optional exponent
/// (`1e-8`), since some feeds print small values that way. Trailing zeros beyond the 18th
/// fractional digit are exact and accepted; any other digit there is an error.
pub fn parse_scaled(text: &str) -> Result<i128, DecimalError> {
    match parse_plain(text.as_bytes()) {
        Some(value) => Ok(value),
        None => parse_general(text),
    }
}

/// The common shape in one pass: an optional sign, at most 19 digits with at most one point
/// and at most 18 of them after it (so the digits fit a `u64` and the scaled value cannot
/// reach 10^38). Anything else (an exponent, more digits, no digit at all, garbage) is left
/// to [`parse_general`], which decides it; on the inputs accepted here both give the same
/// value.
#[inline]
fn parse_plain(bytes: &[u8]) -> Option<i128> {
    let (negative, body) = match bytes.first()? {
        b'-' => (true, &bytes[1..]),
        b'+' => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    if body.len() > 20 {
        return None;
    }
    let mut digits: u64 = 0;
    let mut count = 0usize;
    let mut point: Option<usize> = None;
    for (i, &b) in body.iter().enumerate() {
        let digit = b.wrapping_sub(b'0');
        if digit < 10 {
            digits = digits * 10 + digit as u64;
            count += 1;
        } else if b == b'.' && point.is_none() {
            point = Some(i);
        } else {
            return None;
        }
    }
    let fraction = point.map_or(0, |p| body.len() - p - 1);
    if count == 0 || count > 19 {
        return None;
    }
    scaled(digits, fraction, negative)
}

/// The value of `digits` (at most 19 of them, read as one integer) with `fraction` of them
/// after the point, scaled by 10^18; `None` past 18 fractional digits. Such a value always
/// fits: below 10^19 · 10^18.
#[inline(always)]
pub(crate) fn scaled(digits: u64, fraction: usize, negative: bool) -> Option<i128> {
    let shift = (SCALE as usize).checked_sub(fraction)?;
    let value = digits as i128 * POW10[shift];
    Some(if negative { -value } else { value })
}

/// Any decimal text, exponents and long digit runs included.
fn parse_general(text: &str) -> Result<i128, DecimalError> {
    let bytes = text.as_bytes();
    let (negative, body) = match bytes.first() {
        Some(b'-') => (true, &bytes[1..]),
        Some(b'+') => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    let (mantissa, exponent) = split_exponent(body)?;
    let (int_part, frac_part) = match mantissa.iter().position(|&b| b == b'.') {
        Some(dot) => (&mantissa[..dot], &mantissa[dot + 1..]),
        None => (mantissa, &mantissa[..0]),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(DecimalError::NotANumber);
    }
    // value = digits * 10^(exponent - frac_len); scaled = digits * 10^shift.
    let shift = SCALE as i64 + exponent - frac_part.len() as i64;
    let total = int_part.len() + frac_part.len();
    let dropped = if shift < 0 { (-shift) as usize } else { 0 };
    let keep = total.saturating_sub(dropped);

    // Digits gather in a u64 and fold into the i128 18 at a time: i128 arithmetic per digit
    // (and its checked multiply above all) would dominate the whole decode. Overflow cannot
    // happen because at most PRECISION significant digits are ever gathered.
    let mut value: i128 = 0;
    let mut chunk: u64 = 0;
    let mut chunk_len = 0usize;
    let mut significant = 0usize;
    for (i, &b) in int_part.iter().chain(frac_part).enumerate() {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return Err(DecimalError::NotANumber);
        }
        if i >= keep {
            if digit != 0 {
                return Err(DecimalError::TooManyFractionDigits);
            }
            continue;
        }
        if significant == 0 && digit == 0 {
            continue;
        }
        significant += 1;
        if significant > PRECISION as usize {
            return Err(DecimalError::TooManyDigits);
        }
        chunk = chunk * 10 + digit as u64;
        chunk_len += 1;
        if chunk_len == 18 {
            value = value * POW10[18] + chunk as i128;
            (chunk, chunk_len) = (0, 0);
        }
    }
    value = value * POW10[chunk_len] + chunk as i128;
    if shift > 0 && value != 0 {
        if significant + shift as usize > PRECISION as usize {
            return Err(DecimalError::TooManyDigits);
        }
        value *= POW10[shift as usize];
    }
    if value >= LIMIT {
        return Err(DecimalError::TooManyDigits);
    }
    Ok(if negative { -value } else { value })
}

/// 10^0 ..= 10^38.
const POW10: [i128; PRECISION as usize + 1] = {
    let mut table = [1i128; PRECISION as usize + 1];
    let mut i = 1;
    while i < table.len() {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

/// Splits `1.5e-3` into (`1.5`, -3). The exponent is bounded so it cannot overflow.
fn split_exponent(body: &[u8]) -> Result<(&[u8], i64), DecimalError> {
    let Some(e) = body.iter().position(|&b| b == b'e' || b == b'E') else {
        return Ok((body, 0));
    };
    let (mantissa, exp_text) = (&body[..e], &body[e + 1..]);
    let (exp_negative, exp_digits) = match exp_text.first() {
        Some(b'-') => (true, &exp_text[1..]),
        Some(b'+') => (false, &exp_text[1..]),
        _ => (false, exp_text),
    };
    if exp_digits.is_empty() || exp_digits.len() > 4 || !exp_digits.iter().all(u8::is_ascii_digit) {
        return Err(DecimalError::NotANumber);
    }
    let magnitude = exp_digits
        .iter()
        .fold(0i64, |acc, &b| acc * 10 + (b - b'0') as i64);
    Ok((mantissa, if exp_negative { -magnitude } else { magnitude }))
}

/// Formats a scaled value back to its shortest exact decimal text (for errors and tests).
pub fn format_scaled(value: i128) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let magnitude = value.unsigned_abs();
    let unit = 10u128.pow(SCALE as u32);
    let (int, frac) = (magnitude / unit, magnitude % unit);
    if frac == 0 {
        return format!("{sign}{int}");
    }
    let frac = format!("{frac:018}");
    format!("{sign}{int}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: i128 = 1_000_000_000_000_000_000;

    #[test]
    fn plain_values_are_exact() {
        assert_eq!(parse_scaled("0"), Ok(0));
        assert_eq!(parse_scaled("1"), Ok(ONE));
        assert_eq!(parse_scaled("0.1"), Ok(ONE / 10));
        assert_eq!(parse_scaled("-2.5"), Ok(-5 * ONE / 2));
        assert_eq!(parse_scaled("+3"), Ok(3 * ONE));
        assert_eq!(parse_scaled("61234.56"), Ok(6_123_456 * ONE / 100));
        assert_eq!(parse_scaled(".5"), Ok(ONE / 2));
        assert_eq!(parse_scaled("5."), Ok(5 * ONE));
        assert_eq!(parse_scaled("-0"), Ok(0));
    }

    #[test]
    fn eighteen_places_fit_and_nineteen_do_not() {
        assert_eq!(parse_scaled("0.000000000000000001"), Ok(1));
        assert_eq!(
            parse_scaled("0.0000000000000000001"),
            Err(DecimalError::TooManyFractionDigits)
        );
        // Trailing zeros past the 18th place change nothing, so they are exact.
        assert_eq!(parse_scaled("1.50000000000000000000000"), Ok(3 * ONE / 2));
    }

    #[test]
    fn twenty_integer_digits_fit_and_twenty_one_do_not() {
        let max = "99999999999999999999.999999999999999999";
        assert_eq!(parse_scaled(max), Ok(LIMIT - 1));
        assert_eq!(
            parse_scaled("100000000000000000000"),
            Err(DecimalError::TooManyDigits)
        );
        assert_eq!(
            parse_scaled("123456789012345678901234567890123456789012345"),
            Err(DecimalError::TooManyDigits)
        );
    }

    #[test]
    fn exponents_are_exact() {
        assert_eq!(parse_scaled("1e-8"), Ok(ONE / 100_000_000));
        assert_eq!(parse_scaled("1.5E+3"), Ok(1500 * ONE));
        assert_eq!(parse_scaled("0e9999"), Ok(0));
        assert_eq!(
            parse_scaled("1e-19"),
            Err(DecimalError::TooManyFractionDigits)
        );
        assert_eq!(parse_scaled("1e30"), Err(DecimalError::TooManyDigits));
    }

    #[test]
    fn garbage_is_not_a_number() {
        for text in [
            "", "-", "+", ".", "abc", "1.2.3", "1,5", " 1", "1 ", "0x10", "1e", "1e+", "NaN",
            "inf", "1e99999", "--1", "١",
        ] {
            assert_eq!(
                parse_scaled(text),
                Err(DecimalError::NotANumber),
                "{text:?}"
            );
        }
    }

    #[test]
    fn plain_and_general_agree() {
        // The one-pass reader takes the common shape; the general one must agree on all of it
        // and decide everything else the same way it always has.
        let cases = [
            "0",
            "-0",
            "+0",
            "00",
            "0.",
            ".0",
            "5.",
            ".5",
            "1",
            "-1",
            "+1",
            "10",
            "1.0",
            "61234.56",
            "-2506.57933700",
            "0.000000000000000001",
            "0.0000000000000000010",
            "0.0000000000000000001",
            "9999999999999999999",
            "99999999999999999999",
            "1999999999999999999.9",
            "0.123456789012345678",
            "1234567890.123456789",
            "-1234567890123456789",
            "+",
            "-",
            ".",
            "",
            "1.2.3",
            "1e3",
            "1E-3",
            "1,5",
            " 1",
            "1 ",
            "--1",
            "+-1",
            "١",
            "12a",
            "0x1",
            "000000000000000000001",
            "0000000000000000000.1",
            "00000000000000000000",
            "1.000000000000000000",
        ];
        for text in cases {
            if let Some(plain) = parse_plain(text.as_bytes()) {
                assert_eq!(Ok(plain), parse_general(text), "{text:?}");
            }
            assert_eq!(parse_scaled(text), parse_general(text), "{text:?}");
        }
        assert_eq!(
            parse_plain(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999 * ONE)
        );
        assert_eq!(parse_plain(b"-0.5"), Some(-ONE / 2));
        assert_eq!(parse_plain(b"1e3"), None);
        assert_eq!(parse_plain(b"99999999999999999999"), None);
    }

    #[test]
    fn plain_and_general_agree_on_random_text() {
        let mut rng = fastrand::Rng::with_seed(18);
        let alphabet = b"0123456789.-+eE0000099999 x";
        for _ in 0..200_000 {
            let len = rng.usize(0..24);
            let text: String = (0..len)
                .map(|_| alphabet[rng.usize(..alphabet.len())] as char)
                .collect();
            if let Some(plain) = parse_plain(text.as_bytes()) {
                assert_eq!(Ok(plain), parse_general(&text), "{text:?}");
            }
        }
    }

    #[test]
    fn format_round_trips() {
        for text in [
            "0",
            "1",
            "-2.5",
            "0.000000000000000001",
            "61234.56",
            "12345678901234567890.123456789012345678",
            "-98765432109876543210.9",
            "1000000000000000000",
        ] {
            assert_eq!(format_scaled(parse_scaled(text).unwrap()), text);
        }
    }
}
