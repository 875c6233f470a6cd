//! Typed readers for the value kinds Bybit uses inside pushes.
//!
//! Each type deserializes one JSON value straight from the frame (no intermediate
//! `serde_json::Value`) and applies the capture's rules: an empty string is NULL, never zero;
//! numbers written as strings are read exactly; anything else is a typed error that turns the
//! element into a reject.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::decimal;

/// A decimal amount or price, scaled by 10^18; `None` for `""` or `null`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dec(pub Option<i128>);

/// A millisecond epoch timestamp, held as microseconds; `None` for `""` or `null`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Millis(pub Option<i64>);

/// An integer given as a JSON integer or as a string of digits; `None` for `""` or `null`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Int(pub Option<i64>);

/// A flag given as a JSON boolean (or `"true"`/`"false"`); `None` for `""` or `null`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub Option<bool>);

/// Text that may be absent, `""` or `null`, all of which become NULL.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Text<'a>(pub Option<Cow<'a, str>>);

impl Text<'_> {
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// A nested value (`extraFees`, an array; `cumFeeDetail`, an object of coin to fee) kept as its
/// exact text in the frame, for a JSON text column; `None` for `""`, `null` or absent.
///
/// Kept whole rather than flattened into columns: its shape is Bybit's to extend (fee types,
/// coins), and the text loses nothing. Any other value (a number, another string) is kept as
/// its text too rather than rejecting the row it is part of: it is not what the row is for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Json<'a>(pub Option<&'a str>);

impl<'a> Json<'a> {
    /// The exact text of a JSON value: `null` and `""` are NULL.
    #[inline]
    pub(crate) fn from_raw(text: &'a str) -> Json<'a> {
        Json((text != "null" && text != "\"\"").then_some(text))
    }
}

// The rules, shared by the serde readers below and the flat fast path (`flat.rs`), so the
// two cannot disagree on a value.

impl Dec {
    /// A decimal string: `""` is NULL, anything else must be an exact decimal.
    #[inline]
    pub(crate) fn from_text(v: &str) -> Result<Dec, decimal::DecimalError> {
        if v.is_empty() {
            return Ok(Dec(None));
        }
        decimal::parse_scaled(v).map(|x| Dec(Some(x)))
    }
}

impl Int {
    /// A string of digits (`""` is NULL); `None` if it is not an `i64`.
    #[inline]
    pub(crate) fn from_text(v: &str) -> Option<Int> {
        if v.is_empty() {
            return Some(Int(None));
        }
        v.parse::<i64>().ok().map(|x| Int(Some(x)))
    }
}

impl Millis {
    /// Milliseconds to microseconds; `None` if that overflows.
    #[inline]
    pub(crate) fn from_int(ms: Int) -> Option<Millis> {
        match ms.0 {
            None => Some(Millis(None)),
            Some(ms) => ms.checked_mul(1000).map(|us| Millis(Some(us))),
        }
    }
}

impl Flag {
    /// `"true"`, `"false"` or `""` (NULL); `None` for any other text.
    #[inline]
    pub(crate) fn from_text(v: &str) -> Option<Flag> {
        match v {
            "" => Some(Flag(None)),
            "true" => Some(Flag(Some(true))),
            "false" => Some(Flag(Some(false))),
            _ => None,
        }
    }
}

impl<'a> Text<'a> {
    /// Text borrowed from the frame; `""` is NULL.
    #[inline]
    pub(crate) fn borrowed(v: &'a str) -> Text<'a> {
        Text((!v.is_empty()).then_some(Cow::Borrowed(v)))
    }
}

impl<'de> Deserialize<'de> for Dec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a decimal string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dec, E> {
                Dec::from_text(v).map_err(|e| E::custom(format_args!("{e}: {v:?}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dec, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dec, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dec, E> {
                // A JSON number with a fraction has already been rounded to binary by the
                // parser: refuse it rather than store a value the exchange never sent.
                Err(E::custom(format_args!(
                    "a JSON number with a fraction ({v}) cannot be read exactly; expected a decimal string"
                )))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Dec, E> {
                Ok(Dec(None))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ms = Int::deserialize(deserializer)?;
        Millis::from_int(ms).ok_or_else(|| {
            de::Error::custom(format_args!(
                "timestamp out of range: {}",
                ms.0.unwrap_or_default()
            ))
        })
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Int, E> {
                Int::from_text(v).ok_or_else(|| E::custom(format_args!("not an integer: {v:?}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(Some(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                i64::try_from(v)
                    .map(|x| Int(Some(x)))
                    .map_err(|_| E::custom(format_args!("integer out of range: {v}")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Int, E> {
                Ok(Int(None))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(Some(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Flag, E> {
                Flag::from_text(v).ok_or_else(|| E::custom(format_args!("not a boolean: {v:?}")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Flag, E> {
                Ok(Flag(None))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // serde's own `Cow<str>` always copies; this visitor borrows from the frame whenever
        // the string has no escapes, which is nearly always.
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text::borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text((!v.is_empty()).then(|| Cow::Owned(v.to_owned()))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Text<'de>, E> {
                Ok(Text(None))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Json<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // serde_json's raw value is the value's slice of the frame, escapes and all, without
        // the whitespace around it: the same text the fast path keeps.
        let raw = <&'de RawValue>::deserialize(deserializer)?;
        Ok(Json::from_raw(raw.get()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn de<'a, T: Deserialize<'a>>(json: &'a str) -> Result<T, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn decimal_empty_is_null_not_zero() {
        assert_eq!(de::<Dec>(r#""""#), Ok(Dec(None)));
        assert_eq!(de::<Dec>("null"), Ok(Dec(None)));
        assert_eq!(de::<Dec>(r#""0""#), Ok(Dec(Some(0))));
    }

    #[test]
    fn decimal_reads_strings_and_integers_and_refuses_floats() {
        assert_eq!(
            de::<Dec>(r#""0.5""#),
            Ok(Dec(Some(500_000_000_000_000_000)))
        );
        assert_eq!(de::<Dec>("7"), Ok(Dec(Some(7_000_000_000_000_000_000))));
        assert!(de::<Dec>("0.1")
            .unwrap_err()
            .contains("cannot be read exactly"));
        assert!(de::<Dec>(r#""abc""#).unwrap_err().contains("not a decimal"));
        assert!(de::<Dec>("true").is_err());
    }

    #[test]
    fn millis_become_micros() {
        assert_eq!(
            de::<Millis>(r#""1700000000123""#),
            Ok(Millis(Some(1_700_000_000_123_000)))
        );
        assert_eq!(
            de::<Millis>("1700000000123"),
            Ok(Millis(Some(1_700_000_000_123_000)))
        );
        assert_eq!(de::<Millis>(r#""""#), Ok(Millis(None)));
        assert!(de::<Millis>(r#""12:00""#).is_err());
        assert!(de::<Millis>("9223372036854775807").is_err());
    }

    #[test]
    fn ints_accept_numbers_and_digit_strings() {
        assert_eq!(de::<Int>("-1"), Ok(Int(Some(-1))));
        assert_eq!(de::<Int>(r#""2""#), Ok(Int(Some(2))));
        assert_eq!(de::<Int>(r#""""#), Ok(Int(None)));
        assert!(de::<Int>("1.5").is_err());
        assert!(de::<Int>("18446744073709551615").is_err());
    }

    #[test]
    fn flags() {
        assert_eq!(de::<Flag>("true"), Ok(Flag(Some(true))));
        assert_eq!(de::<Flag>(r#""false""#), Ok(Flag(Some(false))));
        assert_eq!(de::<Flag>(r#""""#), Ok(Flag(None)));
        assert!(de::<Flag>("1").is_err());
    }

    #[test]
    fn json_keeps_the_exact_text_and_empties_to_null() {
        let fees = r#"[{"feeCoin":"USDT", "fee":"0.1"}]"#;
        assert_eq!(de::<Json>(fees), Ok(Json(Some(fees))));
        assert_eq!(
            de::<Json>(r#"{"MNT":"1"}"#),
            Ok(Json(Some(r#"{"MNT":"1"}"#)))
        );
        assert_eq!(de::<Json>(r#""""#), Ok(Json(None)));
        assert_eq!(de::<Json>("null"), Ok(Json(None)));
        assert_eq!(de::<Json>(" [] "), Ok(Json(Some("[]"))));
        assert_eq!(de::<Json>(r#""\u0041""#), Ok(Json(Some(r#""\u0041""#))));
        assert!(de::<Json>("[1,]").is_err());
    }

    #[test]
    fn text_borrows_and_empties_to_null() {
        let t: Text = de(r#""BTCUSDT""#).unwrap();
        assert!(matches!(t.0, Some(Cow::Borrowed("BTCUSDT"))));
        assert_eq!(de::<Text>(r#""""#), Ok(Text(None)));
        let escaped: Text = de(r#""a\"b""#).unwrap();
        assert_eq!(escaped.as_deref(), Some("a\"b"));
        assert!(de::<Text>("5").is_err());
    }
}
