//! `stockbot loadgen --target URL`: simulated Telegram players driving a
//! running server through its webhook (several servers, comma-separated:
//! the players take them in turn). With `--bot-api-bind`, the load
//! generator also plays the Bot API the server replies to (start the server
//! with `TELEGRAM_API_URL` pointing there), and each player waits for its
//! reply before the next message: latency is update sent → reply received.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{LoadReport, LoadgenArgs, LoadgenError};

/// Longest wait for one reply before the player moves on (counted as lost).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Telegram user ids of simulated players start here.
const PLAYER_ID_BASE: i64 = 7_000_000_000;

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
        let waiting = Arc::clone(&waiting);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(Arc::clone(&waiting)))
                .app_data(web::PayloadConfig::new(8 << 20))
                .route("/bot{token}/{method}", web::post().to(fake_bot_api))
                .route("/bot{token}/{method}", web::get().to(fake_bot_api))
        })
        .workers(1)
        .disable_signals()
        .bind(bind)
        .map_err(|error| LoadgenError::Target(format!("cannot bind the fake Bot API on {bind}: {error}")))?
        .run();
        actix::spawn(server);
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|error| LoadgenError::Target(error.to_string()))?;
    let urls: Vec<String> = target
        .split(',')
        .map(str::trim)
        .filter(|target| !target.is_empty())
        .map(|target| format!("{}/telegram/webhook", target.trim_end_matches('/')))
        .collect();
    if urls.is_empty() {
        return Err(LoadgenError::Args);
    }
    let update_ids = Rc::new(AtomicI64::new(first_update_id()));
    let concurrency = usize::try_from(args.players).unwrap_or(1).min(args.concurrency.unwrap_or(usize::MAX)).max(1);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    let players: Vec<_> = (0..concurrency)
        .map(|index| {
            let player = Player {
                id: PLAYER_ID_BASE + i64::try_from(index).unwrap_or(0),
                client: client.clone(),
                // Players take the gateways in turn (a load balancer's job).
                url: urls.get(index % urls.len()).cloned().unwrap_or_default(),
                secret: secret.clone(),
                update_ids: Rc::clone(&update_ids),
                waiting: bot_api_bind.map(|_| Arc::clone(&waiting)),
            };
            actix::spawn(player.run(started, deadline))
        })
        .collect();
    Ok(LoadReport::gather(players, started).await)
}

/// Where this run's update ids start: servers remember update ids for a day
/// (Telegram may redeliver), so each run takes ids of its own — 10,000 per
/// second of the clock, within Telegram's 32-bit range.
fn first_update_id() -> i64 {
    let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    i64::try_from(seconds % 400_000).unwrap_or(0) * 10_000 + 1
}

struct Player {
    id: i64,
    client: reqwest::Client,
    url: String,
    secret: Option<String>,
    update_ids: Rc<AtomicI64>,
    waiting: Option<Waiting>,
}

impl Player {
    async fn run(self, started: Instant, deadline: Instant) -> LoadReport {
        let mut report = LoadReport::default();
        let mut turn = 0_u64;
        while Instant::now() < deadline {
            let text = match turn {
                0 => "/start".to_owned(),
                t if t % 2 == 1 => "/buy ACME 1".to_owned(),
                _ => "/sell ACME 1".to_owned(),
            };
            let reply = self.waiting.as_ref().map(|waiting| {
                let (sender, receiver) = oneshot::channel();
                if let Ok(mut waiting) = waiting.lock() {
                    waiting.insert(self.id, sender);
                }
                receiver
            });
            let sent = Instant::now();
            let status = self.post(&text).await;
            match status {
                Some(200) => {}
                Some(503 | 429) | None => {
                    report.busy += 1;
                    actix::clock::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Some(_) => {
                    report.rejected += 1;
                    continue;
                }
            }
            // Accepted: the next message follows (a refused one is sent again).
            let opening = turn == 0;
            turn += 1;
            if let Some(reply) = reply {
                match actix::clock::timeout(REPLY_TIMEOUT, reply).await {
                    // Counted only when the reply confirms the trade.
                    Ok(Ok(text)) if opening || text.contains("Bought ") || text.contains("Sold ") => {}
                    _ => {
                        report.rejected += 1;
                        continue;
                    }
                }
            }
            if opening {
                continue;
            }
            report.confirm(sent, started);
        }
        report
    }

    async fn post(&self, text: &str) -> Option<u16> {
        let update_id = self.update_ids.fetch_add(1, Ordering::Relaxed);
        let update = json!({
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "date": 1_700_000_000,
                "chat": {"id": self.id, "type": "private", "first_name": "Load"},
                "from": {"id": self.id, "is_bot": false, "first_name": "Load", "username": format!("load{}", self.id)},
                "text": text,
                "entities": [{"type": "bot_command", "offset": 0, "length": text.split(' ').next().map_or(0, str::len)}]
            }
        });
        let mut request = self.client.post(&self.url).json(&update);
        if let Some(secret) = &self.secret {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
        }
        request.send().await.ok().map(|response| response.status().as_u16())
    }
}

/// The Bot API as far as the server needs it under load.
async fn fake_bot_api(
    path: web::Path<(String, String)>,
    body: web::Bytes,
    waiting: web::Data<Waiting>,
) -> HttpResponse {
    let (_, method) = path.into_inner();
    let params: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let chat_id = params.get("chat_id").and_then(Value::as_i64).unwrap_or(0);
    // Telegram's method names are case-insensitive (teloxide sends `SendMessage`).
    let result = match method.to_ascii_lowercase().as_str() {
        "getme" => json!({
            "id": 1, "is_bot": true, "first_name": "stockbot", "username": "stockbot_load_bot",
            "can_join_groups": true, "can_read_all_group_messages": false, "supports_inline_queries": false,
            "can_connect_to_business": false, "has_main_web_app": false
        }),
        "sendmessage" | "sendphoto" | "editmessagetext" => {
            if let Ok(mut waiting) = waiting.lock()
                && let Some(sender) = waiting.remove(&chat_id)
            {
                let text = params.get("text").or_else(|| params.get("caption")).and_then(Value::as_str);
                let _ = sender.send(text.unwrap_or_default().to_owned());
            }
            json!({"message_id": 1, "date": 1_700_000_000, "chat": {"id": chat_id, "type": "private"}, "text": ""})
        }
        "getupdates" => json!([]),
        _ => json!(true),
    };
    HttpResponse::Ok().json(json!({"ok": true, "result": result}))
}
