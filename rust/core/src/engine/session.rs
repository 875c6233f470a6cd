//! One account's connection, for as long as the account is held: connect under the box's
//! budget, auth, subscribe, resync over REST, read and ping, and on any loss back off and do
//! it all again. Every step is a row of `connection_events`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::decoder::{FrameOutcome, Table};
use crate::engine::backoff::Backoff;
use crate::engine::config::AccountSpec;
use crate::engine::ledger::{self, LedgerMark};
use crate::engine::now_us;
use crate::engine::rest::KnownPositions;
use crate::engine::stats::{AccountStats, State};
use crate::engine::Shared;
use crate::events::{ConnectionEvent, Event};
use crate::protocol::{
    ControlFrame, OP_AUTH, OP_PING, OP_SUBSCRIBE, POSITION_TOPIC, WS_AUTH_VALIDITY_MS,
};
use crate::sign::{redact_key, ws_auth_signature};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a connection ended.
enum Ended {
    /// The account was removed or the collector closed.
    Stopped,
    /// The connection was lost; `stable` if it had been up long enough to reset the backoff.
    Lost { reason: String, stable: bool },
    /// The exchange refused auth or a subscription.
    Refused,
}

pub struct Session {
    pub account: AccountSpec,
    pub shared: Arc<Shared>,
    pub stats: Arc<AccountStats>,
    pub stop: watch::Receiver<bool>,
    /// Positions this account was last seen to hold, for the resync after a gap.
    pub known: Arc<KnownPositions>,
    /// Up to when its ledger is known complete, for the backfill after a gap.
    pub ledger: Arc<LedgerMark>,
    /// Which connection this is (1 for the first): tells a late backfill of an earlier
    /// connection from this one's.
    pub connection: u64,
}

impl Session {
    pub async fn run(mut self) {
        let config = &self.shared.config;
        let mut backoff = Backoff::new(config.backoff_base, config.backoff_cap);
        loop {
            self.stats.set_state(State::Queued);
            tokio::select! {
                _ = self.shared.budget.acquire() => {}
                _ = self.stop.changed() => break,
            }
            let delay = match self.connect_once().await {
                Ended::Stopped => break,
                Ended::Lost { reason, stable } => {
                    self.ledger
                        .connection_lost(self.connection, now_us() / 1000);
                    self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    self.fail(&reason);
                    self.event(Event::Disconnected, Some(&reason), None, None);
                    if stable {
                        backoff.reset();
                    }
                    self.stats.set_state(State::Backoff);
                    backoff.next_delay()
                }
                Ended::Refused => {
                    self.stats.set_state(State::Failing);
                    backoff.refused_delay()
                }
            };
            let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            self.event(Event::Backoff, None, Some(delay_ms), None);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.stop.changed() => break,
            }
        }
        self.stats.set_state(State::Closed);
    }

    /// Keeps the last failure's reason for `stats()`, without the API key if it was echoed.
    fn fail(&self, reason: &str) {
        self.stats
            .set_error(&redact_key(reason, &self.account.api_key));
    }

    fn event(
        &self,
        event: Event,
        reason: Option<&str>,
        backoff_ms: Option<i64>,
        conn: Option<&str>,
    ) {
        let reason = reason.map(|r| redact_key(r, &self.account.api_key));
        let row = ConnectionEvent {
            account_id: &self.account.id,
            local_ts: now_us(),
            event,
            reason: reason.as_deref(),
            backoff_ms,
            conn_id: conn,
        };
        self.shared.batcher.with_decoder(|d| d.record_event(&row));
    }

    /// Decodes one frame into the shared tables; hands back a control answer.
    fn on_frame(&self, frame: Frame<'_>) -> Option<ControlFrame> {
        let local_ts = now_us();
        self.stats.frames.fetch_add(1, Ordering::Relaxed);
        self.stats
            .last_message_us
            .store(local_ts, Ordering::Relaxed);
        let outcome = self.shared.batcher.with_decoder(|d| {
            let outcome = match frame {
                // Text frames were checked for UTF-8 by tungstenite already.
                Frame::Text(text) => d.decode_text(&self.account.id, text, local_ts),
                Frame::Binary(bytes) => d.decode_frame(&self.account.id, bytes, local_ts),
            };
            if let FrameOutcome::Push {
                table: Table::PositionSnapshots,
                rows,
                ..
            } = outcome
            {
                d.for_recent_position_keys(rows, |category, symbol, idx, open| {
                    self.known.note(category, symbol, idx, open)
                });
            }
            outcome
        });
        match outcome {
            FrameOutcome::Push { rows, rejected, .. } => {
                self.stats.rows.fetch_add(rows as u64, Ordering::Relaxed);
                self.stats
                    .rejects
                    .fetch_add(rejected as u64, Ordering::Relaxed);
                None
            }
            FrameOutcome::Control(control) => Some(control),
            FrameOutcome::Rejected => {
                self.stats.rejects.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    async fn connect_once(&mut self) -> Ended {
        self.connection += 1;
        let config = &self.shared.config;
        self.stats.set_state(State::Connecting);
        self.event(Event::Connecting, None, None, None);
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            self.account.ws_url.as_str(),
            Some(socket_config()),
            false,
            self.shared.tls.clone(),
        );
        let mut socket = match tokio::time::timeout(config.handshake_timeout, connect).await {
            Ok(Ok((socket, _response))) => socket,
            Ok(Err(e)) => return lost(format!("connect failed: {e}"), false),
            Err(_) => return lost("connect timed out".into(), false),
        };
        self.event(Event::Connected, None, None, None);

        self.stats.set_state(State::Authenticating);
        let expires = now_us() / 1000 + WS_AUTH_VALIDITY_MS;
        let auth = serde_json::json!({
            "req_id": "auth",
            "op": OP_AUTH,
            "args": [
                self.account.api_key,
                expires,
                ws_auth_signature(&self.account.api_secret, expires),
            ],
        });
        if let Err(ended) = self.send(&mut socket, auth).await {
            return ended;
        }
        let answer = match self.answer(&mut socket, OP_AUTH).await {
            Ok(answer) => answer,
            Err(ended) => return ended,
        };
        let conn_id = answer.conn_id.clone();
        if answer.success != Some(true) {
            let reason = refusal("auth refused", &answer);
            self.fail(&reason);
            self.event(Event::AuthFailed, Some(&reason), None, conn_id.as_deref());
            return Ended::Refused;
        }
        self.event(Event::AuthOk, None, None, conn_id.as_deref());

        self.stats.set_state(State::Subscribing);
        for (n, topics) in subscribe_requests(&self.account.topics)
            .into_iter()
            .enumerate()
        {
            let request = serde_json::json!({
                "req_id": format!("sub-{n}"),
                "op": OP_SUBSCRIBE,
                "args": topics,
            });
            if let Err(ended) = self.send(&mut socket, request).await {
                return ended;
            }
            let answer = match self.answer(&mut socket, OP_SUBSCRIBE).await {
                Ok(answer) => answer,
                Err(ended) => return ended,
            };
            if answer.success != Some(true) {
                let reason = refusal(&format!("subscribe {topics:?} refused"), &answer);
                self.fail(&reason);
                self.event(
                    Event::SubscribeFailed,
                    Some(&reason),
                    None,
                    conn_id.as_deref(),
                );
                let _ = socket.close(None).await;
                return Ended::Refused;
            }
        }
        self.event(Event::Subscribed, None, None, conn_id.as_deref());
        self.stats.set_state(State::Live);

        let resync = self.spawn_resync();
        let ended = self.read(&mut socket, conn_id.as_deref()).await;
        // With its connection: the next one reads again, and a backfill that finished after
        // its connection was lost would claim a window no stream watched
        // (`queries.ledger_complete` takes `backfilled` to be followed by its own
        // connection's loss).
        if let Some(task) = resync {
            task.abort();
        }
        ended
    }

    /// Reads the state the pushes will only change, then the ledger the stream missed, in the
    /// background of the stream.
    fn spawn_resync(&self) -> Option<tokio::task::JoinHandle<()>> {
        let base = self.account.rest_url.clone()?;
        let shared = self.shared.clone();
        let account = self.account.clone();
        let stats = self.stats.clone();
        let known = self.known.clone();
        let ledger = self.ledger.clone();
        let connection = self.connection;
        Some(tokio::spawn(async move {
            let record = |event: Event, reason: &str| {
                let reason = redact_key(reason, &account.api_key);
                let row = ConnectionEvent {
                    account_id: &account.id,
                    local_ts: now_us(),
                    event,
                    reason: Some(&reason),
                    backoff_ms: None,
                    conn_id: None,
                };
                shared.batcher.with_decoder(|d| d.record_event(&row));
                reason
            };
            let result = shared
                .rest
                .resync(&account, &base, &shared.batcher, &known)
                .await;
            match result {
                Ok(summary) => {
                    stats.resyncs.fetch_add(1, Ordering::Relaxed);
                    let reason =
                        format!("{} rows from {} requests", summary.rows, summary.requests);
                    record(Event::Resynced, &reason);
                }
                Err(reason) => stats.set_error(&record(Event::ResyncFailed, &reason)),
            }
            if ledger::kinds(&account).is_empty() {
                return;
            }
            let depth_ms = i64::try_from(shared.config.backfill_depth.as_millis()).unwrap_or(0);
            let complete_ms = ledger.complete_ms();
            let (summary, failed) = ledger::backfill(
                &shared.rest,
                &account,
                &base,
                &shared.batcher,
                complete_ms,
                depth_ms,
            )
            .await;
            if failed.is_empty() {
                ledger.backfilled(connection);
                let reason = format!("{} rows from {} requests", summary.rows, summary.requests);
                record(Event::Backfilled, &reason);
            }
            for (plan, why) in failed {
                // The next connection reads the window again (the mark stays); if none
                // comes, the record says what may be missing.
                let reason = record(Event::BackfillFailed, &why);
                stats.set_error(&reason);
                let reason = format!("backfill failed: {reason}");
                let window = (plan.from_ms, plan.to_ms);
                ledger::record_gap(&shared.batcher, &account, plan.kind, window, &reason);
            }
        }))
    }

    async fn send(&self, socket: &mut Socket, request: serde_json::Value) -> Result<(), Ended> {
        socket
            .send(Message::text(request.to_string()))
            .await
            .map_err(|e| Ended::Lost {
                reason: format!("send failed: {e}"),
                stable: false,
            })
    }

    /// Reads until the answer to `op` arrives (pushes that come first are decoded as usual).
    async fn answer(&mut self, socket: &mut Socket, op: &str) -> Result<ControlFrame, Ended> {
        let deadline = tokio::time::Instant::now() + self.shared.config.handshake_timeout;
        loop {
            let message = tokio::select! {
                m = tokio::time::timeout_at(deadline, socket.next()) => m,
                _ = self.stop.changed() => return Err(Ended::Stopped),
            };
            let message = match message {
                Err(_) => return Err(lost(format!("no {op} answer in time"), false)),
                Ok(None) => return Err(lost("connection closed".into(), false)),
                Ok(Some(Err(e))) => return Err(lost(format!("read failed: {e}"), false)),
                Ok(Some(Ok(message))) => message,
            };
            match self.on_message(&message) {
                Received::Control(control) if control.op == op => return Ok(control),
                Received::Closed(reason) => return Err(lost(reason, false)),
                _ => {}
            }
        }
    }

    fn on_message(&self, message: &Message) -> Received {
        match message {
            Message::Text(text) => self
                .on_frame(Frame::Text(text.as_str()))
                .map_or(Received::Data, Received::Control),
            Message::Binary(bytes) => self
                .on_frame(Frame::Binary(bytes))
                .map_or(Received::Data, Received::Control),
            Message::Close(frame) => Received::Closed(match frame {
                Some(f) => format!("server closed: {} {}", u16::from(f.code), f.reason),
                None => "server closed".into(),
            }),
            _ => Received::Data,
        }
    }

    /// The live phase: frames in, pings out, until the connection is lost or stopped.
    async fn read(&mut self, socket: &mut Socket, conn_id: Option<&str>) -> Ended {
        let config = self.shared.config.clone();
        let since = Instant::now();
        let lost_now = |reason: String| Ended::Lost {
            stable: since.elapsed() >= config.stable_after,
            reason,
        };
        let mut ping = tokio::time::interval(config.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await; // the first tick is immediate; the first ping is due later
        let mut pings_sent: u64 = 0;
        let mut awaiting_pong: Option<Instant> = None;
        // One wait for the stop for the whole phase: made anew for every frame, its waiter
        // was queued and dequeued under a lock each time (~2% of a busy collector's CPU).
        let mut stop = self.stop.clone();
        let stopped = stop.changed();
        tokio::pin!(stopped);
        loop {
            if self.shared.batcher.is_full() {
                self.stats.set_state(State::Paused);
                tokio::select! {
                    _ = self.shared.batcher.wait_for_room() => {}
                    _ = &mut stopped => return self.close(socket, conn_id).await,
                }
                // Nothing was read while paused, so a pong may be waiting unread.
                awaiting_pong = None;
                self.stats.set_state(State::Live);
            }
            tokio::select! {
                message = socket.next() => {
                    let message = match message {
                        None => return lost_now("connection closed".into()),
                        Some(Err(e)) => return lost_now(format!("read failed: {e}")),
                        Some(Ok(message)) => message,
                    };
                    // Any frame shows the connection alive, not only the pong: behind a
                    // backlog of pushes the pong waits in line, and at 1,000 busy accounts
                    // it waited longer than pong_timeout and live connections were dropped.
                    match self.on_message(&message) {
                        Received::Closed(reason) => return lost_now(reason),
                        _ => awaiting_pong = None,
                    }
                }
                _ = ping.tick() => {
                    pings_sent += 1;
                    let request = serde_json::json!({"req_id": format!("ping-{pings_sent}"), "op": OP_PING});
                    if let Err(e) = socket.send(Message::text(request.to_string())).await {
                        return lost_now(format!("send failed: {e}"));
                    }
                    awaiting_pong.get_or_insert_with(Instant::now);
                }
                _ = pong_deadline(awaiting_pong, config.pong_timeout) => {
                    return lost_now(format!(
                        "no pong within {:.1} s",
                        config.pong_timeout.as_secs_f64()
                    ));
                }
                _ = &mut stopped => return self.close(socket, conn_id).await,
            }
        }
    }

    async fn close(&self, socket: &mut Socket, conn_id: Option<&str>) -> Ended {
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
        self.event(Event::Disconnected, Some("closed by client"), None, conn_id);
        Ended::Stopped
    }
}

/// Small buffers: tungstenite's defaults (128 KiB to read, 128 KiB to write) would cost a
/// quarter of a MiB per idle account. Bybit's pushes are a few KiB; the read buffer still
/// grows for a larger frame, and our requests are written straight through. (32 KiB was
/// measured: ~4% less CPU a message under the firehose, but 97.6 KiB per idle connection at
/// 1,000 against 51.)
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
}

enum Frame<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

enum Received {
    Data,
    Control(ControlFrame),
    Closed(String),
}

fn lost(reason: String, stable: bool) -> Ended {
    Ended::Lost { reason, stable }
}

fn refusal(what: &str, answer: &ControlFrame) -> String {
    match answer.ret_msg.as_deref() {
        Some(message) => format!("{what}: {message}"),
        None => what.to_owned(),
    }
}

/// Resolves when an unanswered ping has waited `timeout`; never while none is out.
async fn pong_deadline(sent: Option<Instant>, timeout: Duration) {
    match sent {
        Some(sent) => tokio::time::sleep_until((sent + timeout).into()).await,
        None => std::future::pending().await,
    }
}

/// Bybit refuses the all-in-one `position` topic and a `position.<category>` topic in one
/// request, so they go in separate requests; everything else shares the first.
pub fn subscribe_requests(topics: &[String]) -> Vec<Vec<String>> {
    let (per_category, rest): (Vec<String>, Vec<String>) = topics
        .iter()
        .cloned()
        .partition(|t| t.starts_with(&format!("{POSITION_TOPIC}.")));
    [rest, per_category]
        .into_iter()
        .filter(|group| !group.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::subscribe_requests;

    fn topics(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn position_and_per_category_topics_go_in_separate_requests() {
        assert_eq!(
            subscribe_requests(&topics(&["position", "wallet"])),
            vec![topics(&["position", "wallet"])]
        );
        assert_eq!(
            subscribe_requests(&topics(&["position", "position.linear", "wallet"])),
            vec![
                topics(&["position", "wallet"]),
                topics(&["position.linear"])
            ]
        );
        assert!(subscribe_requests(&[]).is_empty());
    }
}
