//! The REST resync: after every (re)connect, read the account's positions and balances so
//! the snapshot tables are right even if pushes were missed during the gap (Bybit sends no
//! snapshot on subscribe).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use crate::decoder::{RestEndpoint, RestError};
use crate::engine::batcher::Batcher;
use crate::engine::budget::TokenBudget;
use crate::engine::config::AccountSpec;
use crate::engine::now_us;
use crate::position::PositionKey;
use crate::protocol::{
    HEADER_API_KEY, HEADER_RECV_WINDOW, HEADER_SIGN, HEADER_TIMESTAMP, POSITION_PAGE_LIMIT,
    POSITION_SNAPSHOT_QUERIES, REST_RECV_WINDOW_MS,
};
use crate::sign::rest_signature;

/// Categories in the order a resync reads them.
const POSITION_CATEGORIES: [&str; 3] = ["linear", "inverse", "option"];

/// The positions an account was last seen to hold, from pushes and resyncs.
///
/// Keyed by category, then symbol (each found by `&str`), so noting a position already known
/// (every push of a held position) allocates nothing.
#[derive(Default)]
pub struct KnownPositions {
    open: Mutex<ByCategory>,
}

/// category → symbol → (position_idx, last seen open).
type ByCategory = HashMap<String, HashMap<String, Vec<(i32, bool)>>>;

impl KnownPositions {
    pub fn update(&self, keys: Vec<(PositionKey, bool)>) {
        if keys.is_empty() {
            return;
        }
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        for (key, is_open) in keys {
            note(
                &mut open,
                &key.category,
                &key.symbol,
                key.position_idx,
                is_open,
            );
        }
    }

    /// Notes one position as open or not.
    pub fn note(&self, category: &str, symbol: &str, position_idx: i32, is_open: bool) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        note(&mut open, category, symbol, position_idx, is_open);
    }

    /// The positions of `category` last seen open, as (symbol, position_idx), sorted.
    pub fn open_positions(&self, category: &str) -> Vec<(String, i32)> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mut positions: Vec<(String, i32)> = open
            .get(category)
            .into_iter()
            .flatten()
            .flat_map(|(symbol, sides)| {
                sides
                    .iter()
                    .filter(|&&(_, is_open)| is_open)
                    .map(move |&(idx, _)| (symbol.clone(), idx))
            })
            .collect();
        positions.sort();
        positions
    }
}

fn note(open: &mut ByCategory, category: &str, symbol: &str, position_idx: i32, is_open: bool) {
    // A symbol already seen is found by &str; only a new one needs owned keys.
    let sides = match open.get_mut(category).and_then(|s| s.get_mut(symbol)) {
        Some(sides) => sides,
        None => open
            .entry(category.to_owned())
            .or_default()
            .entry(symbol.to_owned())
            .or_default(),
    };
    match sides.iter_mut().find(|(idx, _)| *idx == position_idx) {
        Some(side) => side.1 = is_open,
        None => sides.push((position_idx, is_open)),
    }
}

/// Bybit's codes for a refused key, a bad signature and missing permission: retrying cannot
/// help.
const FINAL_CODES: &[i64] = &[10003, 10004, 10005];
/// Pages read per position query at most: 200 positions a page, so 50,000 positions.
const MAX_PAGES: usize = 250;

pub struct RestClient {
    http: reqwest::Client,
    attempts: u32,
    /// Every request of every account draws from it.
    budget: TokenBudget,
}

/// What a finished resync read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResyncSummary {
    pub requests: usize,
    pub rows: usize,
}

impl RestClient {
    pub fn new(http: reqwest::Client, attempts: u32, budget: TokenBudget) -> Self {
        RestClient {
            http,
            attempts: attempts.max(1),
            budget,
        }
    }

    /// Reads every position category and wallet account type the account asks for.
    ///
    /// A position closed while the connection was down is absent from the listing (Bybit
    /// lists open positions only), so each position `known` to be open but not listed is read
    /// by symbol, which answers with its flat state.
    pub async fn resync(
        &self,
        account: &AccountSpec,
        base: &str,
        batcher: &Batcher,
        known: &KnownPositions,
    ) -> Result<ResyncSummary, String> {
        let mut summary = ResyncSummary::default();
        if account.wants_positions() {
            for category in POSITION_CATEGORIES {
                if !account.categories.iter().any(|c| c == category) {
                    continue;
                }
                let mut listed = HashSet::new();
                for (_, settle) in POSITION_SNAPSHOT_QUERIES
                    .iter()
                    .filter(|(c, _)| *c == category)
                {
                    self.list_positions(
                        account,
                        base,
                        category,
                        *settle,
                        batcher,
                        known,
                        &mut listed,
                        &mut summary,
                    )
                    .await?;
                }
                // By position, not by symbol: the listing shows open sides only, so in hedge
                // mode a side that closed while the other stays open is absent from a listing
                // that shows its symbol (a drop at the wrong moment left one "open" for good).
                let mut unlisted: Vec<String> = known
                    .open_positions(category)
                    .into_iter()
                    .filter(|position| !listed.contains(position))
                    .map(|(symbol, _)| symbol)
                    .collect();
                unlisted.dedup(); // sorted: one read answers for every side of a symbol
                for symbol in unlisted {
                    let query = format!("category={category}&symbol={symbol}");
                    let (page, keys) = self
                        .read(account, base, RestEndpoint::PositionList, &query, batcher)
                        .await?;
                    known.update(keys);
                    summary.requests += 1;
                    summary.rows += page.rows;
                }
            }
        }
        if account.wants_wallet() {
            for account_type in &account.account_types {
                let query = format!("accountType={account_type}");
                let (page, _) = self
                    .read(account, base, RestEndpoint::WalletBalance, &query, batcher)
                    .await?;
                summary.requests += 1;
                summary.rows += page.rows;
            }
        }
        Ok(summary)
    }

    /// Every page of one `/v5/position/list` listing; notes the positions listed.
    #[allow(clippy::too_many_arguments)]
    async fn list_positions(
        &self,
        account: &AccountSpec,
        base: &str,
        category: &str,
        settle: Option<&str>,
        batcher: &Batcher,
        known: &KnownPositions,
        listed: &mut HashSet<(String, i32)>,
        summary: &mut ResyncSummary,
    ) -> Result<(), String> {
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = format!("category={category}&limit={POSITION_PAGE_LIMIT}");
            if let Some(settle) = settle {
                query.push_str(&format!("&settleCoin={settle}"));
            }
            if let Some(cursor) = &cursor {
                query.push_str(&format!("&cursor={cursor}"));
            }
            let (page, keys) = self
                .read(account, base, RestEndpoint::PositionList, &query, batcher)
                .await?;
            listed.extend(
                keys.iter()
                    .map(|(key, _)| (key.symbol.clone(), key.position_idx)),
            );
            known.update(keys);
            summary.requests += 1;
            summary.rows += page.rows;
            match page.next_cursor {
                Some(next) if cursor.as_deref() != Some(next.as_str()) => cursor = Some(next),
                _ => break,
            }
        }
        Ok(())
    }

    /// One signed GET, decoded into the shared tables; retried when retrying can help.
    pub(crate) async fn read(
        &self,
        account: &AccountSpec,
        base: &str,
        endpoint: RestEndpoint,
        query: &str,
        batcher: &Batcher,
    ) -> Result<(crate::decoder::RestPage, Vec<(PositionKey, bool)>), String> {
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
            let decoded = batcher.with_decoder(|d| {
                let page = d.decode_rest(&account.id, endpoint, &body, now_us())?;
                let keys = match endpoint {
                    RestEndpoint::PositionList => d.recent_position_keys(page.rows),
                    _ => Vec::new(),
                };
                Ok((page, keys))
            });
            match decoded {
                Ok(answer) => return Ok(answer),
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
        self.budget.acquire().await;
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

#[cfg(test)]
mod tests {
    use super::KnownPositions;
    use crate::position::PositionKey;

    fn key(category: &str, symbol: &str, position_idx: i32) -> PositionKey {
        PositionKey {
            category: category.into(),
            symbol: symbol.into(),
            position_idx,
        }
    }

    #[test]
    fn each_side_is_known_open_or_closed_on_its_own() {
        let known = KnownPositions::default();
        known.update(vec![
            (key("linear", "BTCUSDT", 1), true),
            (key("linear", "BTCUSDT", 2), true),
            (key("linear", "ETHUSDT", 0), true),
            (key("inverse", "BTCUSD", 0), true),
        ]);
        known.note("linear", "BTCUSDT", 1, false);
        let open = |c| known.open_positions(c);
        let pos = |s: &str, i| (s.to_owned(), i);
        assert_eq!(open("linear"), [pos("BTCUSDT", 2), pos("ETHUSDT", 0)]);
        known.note("linear", "BTCUSDT", 2, false);
        known.note("linear", "SOLUSDT", 0, true);
        assert_eq!(open("linear"), [pos("ETHUSDT", 0), pos("SOLUSDT", 0)]);
        assert_eq!(open("inverse"), [pos("BTCUSD", 0)]);
        assert!(open("option").is_empty());
        // Seen open again after closing.
        known.note("linear", "BTCUSDT", 2, true);
        assert_eq!(
            open("linear"),
            [pos("BTCUSDT", 2), pos("ETHUSDT", 0), pos("SOLUSDT", 0)]
        );
    }
}
