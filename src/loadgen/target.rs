//! `stockbot loadgen --target URL`: simulated Telegram players driving a
//! running server through its webhook (several servers, comma-separated:
//! the players take them in turn). With `--bot-api-bind`, the load
//! generator also plays the Bot API the server replies to (start the server
//! with `TELEGRAM_API_URL` pointing there), and each player waits for its
//! reply before the next message: latency is update sent → reply received.
//!
//! Every player first opens its account (`/start`, retried until it is
//! answered); the measured run starts once all are open, so the figure is
//! trades on a warm server, and the opening is reported beside it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::oneshot;

use super::{LoadReport, LoadgenArgs, LoadgenError};
use gateway::http1::{self, Client};

/// Longest wait for one reply before the player moves on (counted as lost).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the webhook's answer to one update.
const POST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the opening of all accounts may take; a player still not open
/// then sits the run out (and is reported).
const OPENING_MAX: Duration = Duration::from_secs(60);
/// Pause before a refused or unanswered update is sent again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Telegram user ids of simulated players start here.
const PLAYER_ID_BASE: i64 = 7_000_000_000;
/// The webhook's path on every target.
const WEBHOOK_PATH: &str = "/telegram/webhook";

/// Replies awaited, by chat id.
type Waiting = Arc<Mutex<HashMap<i64, oneshot::Sender<String>>>>;

/// Drives `target`'s webhook. Must run inside an actix system.
///
/// # Errors
/// Bad arguments, or a fake Bot API that cannot bind.
pub async fn run_against(
    target: &str,
    secret: Option<String>,
    bot_api_bind: Option<SocketAddr>,
    args: &LoadgenArgs,
) -> Result<LoadReport, LoadgenError> {
    if !(args.seconds > 0.0 && args.seconds <= 3600.0) || args.players == 0 {
        return Err(LoadgenError::Args);
    }
    let waiting: Waiting = Arc::new(Mutex::new(HashMap::new()));
    if let Some(bind) = bot_api_bind {
        let listener = http1::listen([bind])
            .map_err(|error| LoadgenError::Target(format!("cannot bind the fake Bot API on {bind}: {error}")))?;
        let waiting = Arc::clone(&waiting);
        actix::spawn(http1::serve(listener, move |path: &str, body: &[u8]| fake_bot_api(path, body, &waiting)));
    }
    let mut addresses = Vec::new();
    for target in target.split(',').map(str::trim).filter(|target| !target.is_empty()) {
        addresses.push(target_address(target).await?);
    }
    if addresses.is_empty() {
        return Err(LoadgenError::Args);
    }
    let secret: Option<Rc<str>> = secret.map(Rc::from);
    let update_ids = Rc::new(AtomicI64::new(first_update_id()));
    let concurrency = usize::try_from(args.players).unwrap_or(1).min(args.concurrency.unwrap_or(usize::MAX)).max(1);
    // Players take the gateways in turn (a load balancer's job).
    let players: Vec<_> = (0..concurrency)
        .zip(addresses.iter().cycle())
        .map(|(index, &address)| Player {
            id: PLAYER_ID_BASE + i64::try_from(index).unwrap_or(0),
            client: Client::new(address),
            secret: secret.clone(),
            update_ids: Rc::clone(&update_ids),
            waiting: bot_api_bind.map(|_| Arc::clone(&waiting)),
        })
        .collect();
    let opening_started = Instant::now();
    let opening_deadline = opening_started + OPENING_MAX;
    let openings: Vec<_> = players.into_iter().map(|player| actix::spawn(player.open(opening_deadline))).collect();
    let mut open = Vec::with_capacity(openings.len());
    for opening in openings {
        if let Ok(Some(player)) = opening.await {
            open.push(player);
        }
    }
    let opening = opening_started.elapsed();
    let opened = open.len();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    let players: Vec<_> = open.into_iter().map(|player| actix::spawn(player.run(started, deadline))).collect();
    let mut report = LoadReport::gather(players, started).await;
    let unmatched = UNMATCHED_CALLS.swap(0, Ordering::Relaxed);
    let calls = BOT_API_CALLS.swap(0, Ordering::Relaxed);
    report.note = format!("accounts opened before the run: {opened} in {:.2} s", opening.as_secs_f64());
    if opened < concurrency {
        report.note.push_str(&format!(" ({} never answered: they sat the run out)", concurrency - opened));
    }
    if bot_api_bind.is_some() {
        report.note.push_str(&format!("\nBot API calls received: {calls}, of them for nobody waiting: {unmatched}"));
    }
    Ok(report)
}

/// The address of a target given as `http://host:port`.
async fn target_address(target: &str) -> Result<SocketAddr, LoadgenError> {
    let Some(authority) = target.strip_prefix("http://") else {
        return Err(LoadgenError::Target(format!("{target}: only plain http:// targets are driven")));
    };
    let authority = authority.trim_end_matches('/');
    let mut found =
        tokio::net::lookup_host(authority).await.map_err(|error| LoadgenError::Target(format!("{target}: {error}")))?;
    found.next().ok_or_else(|| LoadgenError::Target(format!("{target}: no address")))
}

/// Where this run's update ids start: servers remember update ids for a day
/// (Telegram may redeliver), so each run takes ids of its own — 100,000 per
/// second of the clock (runs here go past 10,000 a second), below 2^31
/// (update and message ids are 32-bit signed in the Bot API's clients).
fn first_update_id() -> i64 {
    let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    i64::try_from(seconds % 21_000).unwrap_or(0) * 100_000 + 1
}

struct Player {
    id: i64,
    client: Client,
    secret: Option<Rc<str>>,
    update_ids: Rc<AtomicI64>,
    waiting: Option<Waiting>,
}

impl Player {
    /// Opens the player's account, sending `/start` until it is taken (and
    /// answered, when replies are awaited); the player, or `None` when
    /// `deadline` passed first.
    async fn open(mut self, deadline: Instant) -> Option<Self> {
        while Instant::now() < deadline {
            let reply = self.await_reply();
            match self.post("/start").await {
                Some(200) => {}
                _ => {
                    actix::clock::sleep(RETRY_PAUSE).await;
                    continue;
                }
            }
            let Some(reply) = reply else { return Some(self) };
            let left = deadline.saturating_duration_since(Instant::now());
            if let Ok(Ok(_)) = actix::clock::timeout(REPLY_TIMEOUT.min(left), reply).await {
                return Some(self);
            }
        }
        None
    }

    /// Trades (a buy, then a sell, in turn) until `deadline`.
    async fn run(mut self, started: Instant, deadline: Instant) -> LoadReport {
        let mut report = LoadReport::default();
        let mut buying = true;
        while Instant::now() < deadline {
            let text = if buying { "/buy ACME 1" } else { "/sell ACME 1" };
            let reply = self.await_reply();
            let sent = Instant::now();
            let status = self.post(text).await;
            match status {
                Some(200) => {}
                Some(503 | 429) | None => {
                    report.busy += 1;
                    report.unanswered += u64::from(status.is_none());
                    actix::clock::sleep(RETRY_PAUSE).await;
                    continue;
                }
                Some(_) => {
                    report.rejected += 1;
                    continue;
                }
            }
            // Accepted: the next message follows (a refused one is sent again).
            buying = !buying;
            if let Some(reply) = reply {
                match actix::clock::timeout(REPLY_TIMEOUT, reply).await {
                    // Counted only when the reply confirms the trade.
                    Ok(Ok(text)) if text.contains("Bought ") || text.contains("Sold ") => {}
                    Ok(Ok(text)) => {
                        report.rejected += 1;
                        report.odd_reply.get_or_insert(text);
                        continue;
                    }
                    _ => {
                        report.rejected += 1;
                        report.reply_timeouts += 1;
                        continue;
                    }
                }
            }
            report.confirm(sent, started);
        }
        report
    }

    /// When replies are awaited: where the next reply to this player will arrive.
    fn await_reply(&self) -> Option<oneshot::Receiver<String>> {
        self.waiting.as_ref().map(|waiting| {
            let (sender, receiver) = oneshot::channel();
            if let Ok(mut waiting) = waiting.lock() {
                waiting.insert(self.id, sender);
            }
            receiver
        })
    }

    /// Posts the next update carrying `text`; the webhook's status.
    async fn post(&mut self, text: &str) -> Option<u16> {
        let update_id = self.update_ids.fetch_add(1, Ordering::Relaxed);
        let command_len = text.split(' ').next().map_or(0, str::len);
        let (id, text_json) = (self.id, serde_json::to_string(text).ok()?);
        let update = format!(
            r#"{{"update_id":{update_id},"message":{{"message_id":{update_id},"date":1700000000,"chat":{{"id":{id},"type":"private","first_name":"Load"}},"from":{{"id":{id},"is_bot":false,"first_name":"Load","username":"load{id}"}},"text":{text_json},"entities":[{{"type":"bot_command","offset":0,"length":{command_len}}}]}}}}"#
        );
        let secret = self.secret.clone();
        let headers: Vec<(&str, &str)> =
            secret.as_deref().map(|secret| vec![("X-Telegram-Bot-Api-Secret-Token", secret)]).unwrap_or_default();
        let posted = self.client.post(WEBHOOK_PATH, &headers, update.as_bytes());
        actix::clock::timeout(POST_TIMEOUT, posted).await.ok()?.ok().map(|answer| answer.status)
    }
}

/// What the fake Bot API reads of a call.
#[derive(Deserialize)]
struct Call {
    chat_id: Option<i64>,
    text: Option<String>,
    caption: Option<String>,
}

/// Bot API calls the fake received, and those for a chat nobody waited on
/// (a reply that came after its player gave up, or twice).
static BOT_API_CALLS: AtomicU64 = AtomicU64::new(0);
static UNMATCHED_CALLS: AtomicU64 = AtomicU64::new(0);

/// The Bot API as far as the server needs it under load: `path` is
/// `/bot<token>/<method>`, `body` the call's JSON.
fn fake_bot_api(path: &str, body: &[u8], waiting: &Waiting) -> Vec<u8> {
    // Telegram's method names are case-insensitive (teloxide sends `SendMessage`).
    let method = path.rsplit('/').next().unwrap_or_default().to_ascii_lowercase();
    let result = match method.as_str() {
        "getme" => r#"{"id":1,"is_bot":true,"first_name":"stockbot","username":"stockbot_load_bot","can_join_groups":true,"can_read_all_group_messages":false,"supports_inline_queries":false,"can_connect_to_business":false,"has_main_web_app":false}"#.to_owned(),
        "sendmessage" | "sendphoto" | "editmessagetext" => {
            let call: Option<Call> = serde_json::from_slice(body).ok();
            let chat_id = call.as_ref().and_then(|call| call.chat_id).unwrap_or(0);
            BOT_API_CALLS.fetch_add(1, Ordering::Relaxed);
            let sender = waiting.lock().ok().and_then(|mut waiting| waiting.remove(&chat_id));
            match (call, sender) {
                (Some(call), Some(sender)) => {
                    let _ = sender.send(call.text.or(call.caption).unwrap_or_default());
                }
                _ => {
                    UNMATCHED_CALLS.fetch_add(1, Ordering::Relaxed);
                }
            }
            format!(r#"{{"message_id":1,"date":1700000000,"chat":{{"id":{chat_id},"type":"private"}},"text":""}}"#)
        }
        "getupdates" => "[]".to_owned(),
        _ => "true".to_owned(),
    };
    format!(r#"{{"ok":true,"result":{result}}}"#).into_bytes()
}
