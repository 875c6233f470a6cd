//! Bybit V5 request signing, and the one type that holds an API secret.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::protocol::WS_AUTH_PREFIX;

/// An API secret. It can sign, and nothing else: no `Display`, a redacted `Debug`, so it
/// cannot reach a log line, an error or a stat by accident.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: String) -> Self {
        Secret(secret)
    }

    /// Lowercase hex HMAC-SHA256 of `message` keyed with the secret.
    pub fn sign(&self, message: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.0.as_bytes()).expect("HMAC takes any key length");
        mac.update(message.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `text` with every occurrence of the API key replaced by `***`.
///
/// Bybit echoes the key in some errors (10004's `origin_string[...]` holds timestamp, key,
/// window and query), and errors end up in events, stats and logs, where a key must not.
pub fn redact_key(text: &str, api_key: &str) -> String {
    if api_key.is_empty() {
        return text.to_owned();
    }
    text.replace(api_key, "***")
}

/// The signature of a WebSocket `auth` request expiring at `expires_ms`.
pub fn ws_auth_signature(secret: &Secret, expires_ms: i64) -> String {
    secret.sign(&format!("{WS_AUTH_PREFIX}{expires_ms}"))
}

/// The `X-BAPI-SIGN` of a GET request: timestamp + key + recv window + query string.
pub fn rest_signature(
    secret: &Secret,
    timestamp_ms: i64,
    api_key: &str,
    recv_window_ms: i64,
    query: &str,
) -> String {
    secret.sign(&format!("{timestamp_ms}{api_key}{recv_window_ms}{query}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_the_rfc_4231_vector() {
        // RFC 4231 test case 2.
        let secret = Secret::new("Jefe".into());
        assert_eq!(
            secret.sign("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn ws_and_rest_sign_what_bybit_documents() {
        let secret = Secret::new("s3cr3t".into());
        assert_eq!(
            ws_auth_signature(&secret, 1_700_000_000_000),
            secret.sign("GET/realtime1700000000000")
        );
        assert_eq!(
            rest_signature(&secret, 1_700_000_000_000, "KEY", 5000, "category=linear"),
            secret.sign("1700000000000KEY5000category=linear")
        );
    }

    #[test]
    fn keys_echoed_by_the_exchange_are_redacted() {
        let text =
            "retCode 10004: error sign! origin_string[1700000000000AbCdKey5000category=linear]";
        assert_eq!(
            redact_key(text, "AbCdKey"),
            "retCode 10004: error sign! origin_string[1700000000000***5000category=linear]"
        );
        assert_eq!(redact_key("nothing here", ""), "nothing here");
    }

    #[test]
    fn secrets_do_not_print() {
        let secret = Secret::new("do-not-print-me".into());
        assert_eq!(format!("{secret:?}"), "Secret(***)");
    }
}
