//! The REST resync: after every (re)connect, read the account's positions and balances so
//! the snapshot tables are right even if pushes were missed during the gap (Bybit sends no
//! snapshot on subscribe).

use std::time::Duration;

use crate::decoder::{RestEndpoint, RestError};
use crate::engine::batcher::Batcher;
use crate::engine::config::AccountSpec;
use crate::engine::now_us;
use crate::protocol::{
    HEADER_API_KEY, HEADER_RECV_WINDOW, HEADER_SIGN, HEADER_TIMESTAMP, POSITION_PAGE_LIMIT,
    POSITION_SNAPSHOT_QUERIES, REST_RECV_WINDOW_MS,
};
use crate::sign::rest_signature;

/// Bybit's codes for a refused key, a bad signature and missing permission: retrying cannot
/// help.
const FINAL_CODES: &[i64] = &[10003, 10004, 10005];
/// Pages read per position query at most: 200 positions a page, so 50,000 positions.
const MAX_PAGES: usize = 250;

pub struct RestClient {
    http: reqwest::Client,
    attempts: u32,
}

/// What a finished resync read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResyncSummary {
    pub requests: usize,
    pub rows: usize,
}

impl RestClient {
    pub fn new(http: reqwest::Client, attempts: u32) -> Self {
        RestClient {
            http,
            attempts: attempts.max(1),
        }
    }

    /// Reads every position category and wallet account type the account asks for.
    pub async fn resync(
        &self,
        account: &AccountSpec,
        base: &str,
        batcher: &Batcher,
    ) -> Result<ResyncSummary, String> {
        let mut summary = ResyncSummary::default();
        if account.wants_positions() {
            for (category, settle) in POSITION_SNAPSHOT_QUERIES {
                if !account.categories.iter().any(|c| c == category) {
                    continue;
                }
                let mut cursor: Option<String> = None;
                for _ in 0..MAX_PAGES {
                    let mut query = format!("category={category}&limit={POSITION_PAGE_LIMIT}");
                    if let Some(settle) = settle {
                        query.push_str(&format!("&settleCoin={settle}"));
                    }
                    if let Some(cursor) = &cursor {
                        query.push_str(&format!("&cursor={cursor}"));
                    }
                    let page = self
                        .read(account, base, RestEndpoint::PositionList, &query, batcher)
                        .await?;
                    summary.requests += 1;
                    summary.rows += page.rows;
                    match page.next_cursor {
                        Some(next) if cursor.as_deref() != Some(next.as_str()) => {
                            cursor = Some(next)
                        }
                        _ => break,
                    }
                }
            }
        }
        if account.wants_wallet() {
            for account_type in &account.account_types {
                let query = format!("accountType={account_type}");
                let page = self
                    .read(account, base, RestEndpoint::WalletBalance, &query, batcher)
                    .await?;
                summary.requests += 1;
                summary.rows += page.rows;
            }
        }
        Ok(summary)
    }

    /// One signed GET, decoded into the shared tables; retried when retrying can help.
    async fn read(
        &self,
        account: &AccountSpec,
        base: &str,
        endpoint: RestEndpoint,
        query: &str,
        batcher: &Batcher,
    ) -> Result<crate::decoder::RestPage, String> {
        let mut last_error = String::new();
        for attempt in 0..self.attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 << attempt.min(6))).await;
            }
            let body = match self.get(account, base, endpoint.path(), query).await {
                Ok(body) => body,
                Err(e) => {
                    last_error = e;
                    continue;
                }
            };
            let decoded =
                batcher.with_decoder(|d| d.decode_rest(&account.id, endpoint, &body, now_us()));
            match decoded {
                Ok(page) => return Ok(page),
                Err(RestError::Api { code, message }) if FINAL_CODES.contains(&code) => {
                    return Err(format!("{}: retCode {code}: {message}", endpoint.path()));
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(format!(
            "{}: {last_error} (after {} attempts)",
            endpoint.path(),
            self.attempts
        ))
    }

    async fn get(
        &self,
        account: &AccountSpec,
        base: &str,
        path: &str,
        query: &str,
    ) -> Result<Vec<u8>, String> {
        let timestamp = now_us() / 1000;
        let signature = rest_signature(
            &account.api_secret,
            timestamp,
            &account.api_key,
            REST_RECV_WINDOW_MS,
            query,
        );
        let url = format!("{}{path}?{query}", base.trim_end_matches('/'));
        let response = self
            .http
            .get(&url)
            .header(HEADER_API_KEY, &account.api_key)
            .header(HEADER_TIMESTAMP, timestamp.to_string())
            .header(HEADER_RECV_WINDOW, REST_RECV_WINDOW_MS.to_string())
            .header(HEADER_SIGN, signature)
            .send()
            .await
            .map_err(|e| format!("request failed: {}", e.without_url()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("reading the answer failed: {}", e.without_url()))?;
        if status.as_u16() == 403 {
            return Err("HTTP 403: the IP may be banned for too many requests".into());
        }
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        Ok(body.to_vec())
    }
}
