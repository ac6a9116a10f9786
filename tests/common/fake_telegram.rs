//! A fake Telegram Bot API for tests: an actix-web server on 127.0.0.1:0 (own
//! thread and runtime, so plain `#[test]`s can use it) that speaks the real
//! wire format on `/bot<TOKEN>/<method>` — JSON, form and multipart bodies in;
//! `{"ok":true,"result":…}` with real-shaped results, or Telegram's error
//! bodies, out. It records every call, serves `getUpdates` long polls from
//! updates the test enqueues, and can be scripted to fail (429 with
//! `retry_after`, 403 for a blocked chat, any status). Like Telegram, it
//! refuses malformed HTML, over-long texts and over-long `callback_data`, so
//! escaping bugs show up in tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Map, Value, json};

/// The token `FakeTelegram::start` accepts.
pub const FAKE_TOKEN: &str = "123456789:TEST-fake-token";
/// The bot's own user id and username (`getMe`).
pub const BOT_ID: i64 = 123_456_789;
pub const BOT_USERNAME: &str = "stockbot_test_bot";
/// Telegram's exact description for an edit that changes nothing.
pub const NOT_MODIFIED: &str = "Bad Request: message is not modified: specified new message content and reply markup \
                                are exactly the same as a current content and reply markup of the message";

const TEXT_LEN_MAX: usize = 4096;
const CAPTION_LEN_MAX: usize = 1024;
const CALLBACK_DATA_LEN_MAX: usize = 64;
const CALLBACK_TEXT_LEN_MAX: usize = 200;
const LONG_POLL_MAX_SECS: u64 = 50;
const BODY_LEN_MAX: usize = 50 << 20;
const ALLOWED_TAGS: [&str; 16] = [
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "tg-emoji",
    "code",
    "pre",
    "blockquote",
];

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    /// Bot API method, e.g. `sendMessage`.
    pub method: String,
    /// Parameters as a JSON object, whatever the encoding (query, JSON, form,
    /// multipart). Multipart/form values that are JSON objects or arrays
    /// (`reply_markup`) are parsed; `*_id` values that are integers become numbers.
    pub params: Value,
    /// Uploaded files by parameter name (`photo`), `attach://` resolved.
    pub files: HashMap<String, Vec<u8>>,
    /// HTTP status answered.
    pub status: u16,
    /// The whole response body.
    pub response: Value,
    /// When the request arrived.
    pub at: Instant,
}

impl Call {
    /// Whether Telegram said ok.
    pub fn ok(&self) -> bool {
        self.status == 200
    }

    /// The `result` of a successful call.
    pub fn result(&self) -> &Value {
        &self.response["result"]
    }

    /// `chat_id` as a number (a `@username` string gives `None`).
    pub fn chat_id(&self) -> Option<i64> {
        as_i64(&self.params["chat_id"])
    }

    /// `text`, or `caption` for media.
    pub fn text(&self) -> Option<&str> {
        self.params["text"].as_str().or_else(|| self.params["caption"].as_str())
    }

    /// The message id of a sent message (or of the edited one).
    pub fn message_id(&self) -> Option<i64> {
        self.result()["message_id"].as_i64()
    }

    /// Inline keyboard as rows of (text, callback_data).
    pub fn buttons(&self) -> Vec<Vec<(String, String)>> {
        let rows = self.params["reply_markup"]["inline_keyboard"].as_array().cloned().unwrap_or_default();
        rows.iter()
            .map(|row| {
                row.as_array()
                    .map(|buttons| {
                        buttons
                            .iter()
                            .map(|b| {
                                let text = b["text"].as_str().unwrap_or_default().to_owned();
                                let data = b["callback_data"].as_str().unwrap_or_default().to_owned();
                                (text, data)
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The uploaded photo's bytes.
    pub fn photo(&self) -> Option<&[u8]> {
        self.files.get("photo").map(Vec::as_slice)
    }
}

/// A running fake Bot API. Dropping it stops the server.
pub struct FakeTelegram {
    /// `http://127.0.0.1:PORT` — the value for `TELEGRAM_API_URL`.
    pub base_url: String,
    /// The token it accepts (`TELEGRAM_BOT_TOKEN`).
    pub token: String,
    pub addr: SocketAddr,
    state: Arc<State>,
    server: ServerHandle,
    system: actix_web::rt::System,
    stopped: Option<std::sync::mpsc::Receiver<()>>,
}

impl FakeTelegram {
    /// Starts a fake accepting `FAKE_TOKEN`.
    pub fn start() -> Self {
        Self::start_with_token(FAKE_TOKEN)
    }

    /// Starts a fake accepting `token`.
    pub fn start_with_token(token: &str) -> Self {
        let state = Arc::new(State::new(token));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (stopped_tx, stopped_rx) = std::sync::mpsc::channel();
        let thread_state = Arc::clone(&state);
        std::thread::Builder::new()
            .name("fake-telegram".to_owned())
            .spawn(move || {
                let system = actix_web::rt::System::new();
                let started = system.block_on(async move {
                    let data = web::Data::from(thread_state);
                    let server = HttpServer::new(move || {
                        App::new()
                            .app_data(data.clone())
                            .app_data(web::PayloadConfig::new(BODY_LEN_MAX))
                            .default_service(web::to(handle))
                    })
                    .workers(1)
                    .disable_signals()
                    .shutdown_timeout(1)
                    .bind(("127.0.0.1", 0))?;
                    let addr = server.addrs()[0];
                    let server = server.run();
                    let handle = server.handle();
                    actix_web::rt::spawn(server);
                    Ok::<_, std::io::Error>((addr, handle, actix_web::rt::System::current()))
                });
                let _ = started_tx.send(started);
                let _ = system.run();
                let _ = stopped_tx.send(());
            })
            .expect("spawn the fake Telegram thread");
        let (addr, server, system) = started_rx.recv().expect("fake Telegram thread died").expect("bind fake Telegram");
        Self {
            base_url: format!("http://{addr}"),
            token: token.to_owned(),
            addr,
            state,
            server,
            system,
            stopped: Some(stopped_rx),
        }
    }

    /// Environment for `stockbot serve` pointing at this fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![("TELEGRAM_BOT_TOKEN", self.token.clone()), ("TELEGRAM_API_URL", self.base_url.clone())]
    }

    /// Every call so far, in the order answered.
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().calls.clone()
    }

    /// Calls of one method.
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.state.lock().calls.iter().filter(|call| call.method == method).cloned().collect()
    }

    /// Successful `sendMessage`/`sendPhoto`/`sendInvoice` calls to a chat, in order.
    pub fn messages_to(&self, chat_id: i64) -> Vec<Call> {
        messages_to(&self.state.lock().calls, chat_id)
    }

    /// Texts (or captions) of `messages_to(chat_id)`.
    pub fn texts_to(&self, chat_id: i64) -> Vec<String> {
        self.messages_to(chat_id).iter().filter_map(|call| call.text().map(str::to_owned)).collect()
    }

    /// Forgets the calls recorded so far.
    pub fn clear_calls(&self) {
        self.state.lock().calls.clear();
    }

    /// Waits until `done(calls)` holds or `timeout` passes; returns whether it held.
    pub fn wait_for(&self, mut done: impl FnMut(&[Call]) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut inner = self.state.lock();
        loop {
            if done(&inner.calls) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            inner = self.state.changed.wait_timeout(inner, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Waits for `n` successful messages to `chat_id` and returns them;
    /// panics (listing every call) after `timeout`.
    pub fn wait_for_messages(&self, chat_id: i64, n: usize, timeout: Duration) -> Vec<Call> {
        let held = self.wait_for(|calls| messages_to(calls, chat_id).len() >= n, timeout);
        if !held {
            let calls: Vec<String> =
                self.calls().iter().map(|c| format!("{} {} {} {}", c.method, c.status, c.params, c.response)).collect();
            panic!("no {n} messages to chat {chat_id} within {timeout:?}; calls:\n{}", calls.join("\n"));
        }
        self.messages_to(chat_id)
    }

    /// Queues an update for `getUpdates`; assigns `update_id` when missing
    /// and returns it.
    pub fn enqueue_update(&self, mut update: Value) -> i64 {
        let id = {
            let mut inner = self.state.lock();
            let id = match update.get("update_id").and_then(Value::as_i64) {
                Some(id) => id,
                None => {
                    let id = inner.next_update_id;
                    update["update_id"] = json!(id);
                    id
                }
            };
            inner.next_update_id = inner.next_update_id.max(id + 1);
            inner.updates.push_back(update);
            id
        };
        self.state.updates.notify_waiters();
        id
    }

    /// Updates enqueued and not yet confirmed by a `getUpdates` offset.
    pub fn pending_updates(&self) -> usize {
        self.state.lock().updates.len()
    }

    /// The next `n` calls of `method` answer 429 with `retry_after_secs`.
    pub fn fail_next(&self, method: &str, n: usize, retry_after_secs: u32) {
        let body = json!({
            "ok": false,
            "error_code": 429,
            "description": format!("Too Many Requests: retry after {retry_after_secs}"),
            "parameters": {"retry_after": retry_after_secs},
        });
        self.script(method, n, 429, body);
    }

    /// The next `n` calls of `method` answer `status` with `description`
    /// (e.g. 500 "Internal Server Error"; note teloxide waits 10 s on 5xx).
    pub fn fail_next_with(&self, method: &str, n: usize, status: u16, description: &str) {
        let body = json!({"ok": false, "error_code": status, "description": description});
        self.script(method, n, status, body);
    }

    fn script(&self, method: &str, n: usize, status: u16, body: Value) {
        let mut inner = self.state.lock();
        let queue = inner.failures.entry(method.to_owned()).or_default();
        queue.extend(std::iter::repeat_n((status, body), n));
    }

    /// From now on, sending to `chat_id` answers 403 "bot was blocked by the user".
    pub fn block_chat(&self, chat_id: i64) {
        self.state.lock().blocked.insert(chat_id);
    }

    /// Undoes `block_chat`.
    pub fn unblock_chat(&self, chat_id: i64) {
        self.state.lock().blocked.remove(&chat_id);
    }

    /// The `setWebhook` parameters in force, if any.
    pub fn webhook(&self) -> Option<Value> {
        self.state.lock().webhook.clone()
    }

    /// The last `setChatMenuButton` button, if any.
    pub fn menu_button(&self) -> Option<Value> {
        self.state.lock().menu_button.clone()
    }

    /// The last `setMyCommands` list.
    pub fn commands(&self) -> Option<Value> {
        self.state.lock().commands.clone()
    }

    /// A private-chat text message from `user_id` (chat id = user id).
    pub fn text_update(user_id: i64, text: &str) -> Value {
        Self::chat_text_update(user_id, user_id, text)
    }

    /// A text message from `user_id` in `chat_id` (negative: a group).
    pub fn chat_text_update(user_id: i64, chat_id: i64, text: &str) -> Value {
        let mut message = json!({
            "message_id": next_incoming_id(),
            "date": unix_now(),
            "chat": chat_json(chat_id),
            "from": user_json(user_id),
            "text": text,
        });
        if text.starts_with('/') {
            let len = text.split_whitespace().next().map_or(0, |command| command.encode_utf16().count());
            message["entities"] = json!([{"type": "bot_command", "offset": 0, "length": len}]);
        }
        json!({ "message": message })
    }

    /// A button press by `user_id` on message `message_id` in `chat_id`.
    pub fn callback_update(user_id: i64, chat_id: i64, message_id: i64, data: &str) -> Value {
        json!({
            "callback_query": {
                "id": format!("cbq{}", next_incoming_id()),
                "from": user_json(user_id),
                "message": {
                    "message_id": message_id,
                    "date": unix_now(),
                    "chat": chat_json(chat_id),
                    "from": bot_json(),
                    "text": "…",
                },
                "chat_instance": format!("ci{chat_id}"),
                "data": data,
            }
        })
    }

    /// A Telegram Stars pre-checkout query.
    pub fn pre_checkout_update(user_id: i64, payload: &str, total_amount: i64) -> Value {
        json!({
            "pre_checkout_query": {
                "id": format!("pcq{}", next_incoming_id()),
                "from": user_json(user_id),
                "currency": "XTR",
                "total_amount": total_amount,
                "invoice_payload": payload,
            }
        })
    }

    /// The service message Telegram sends in `user_id`'s private chat once a
    /// Stars payment went through.
    pub fn successful_payment_update(user_id: i64, payload: &str, total_amount: i64, charge_id: &str) -> Value {
        json!({
            "message": {
                "message_id": next_incoming_id(),
                "date": unix_now(),
                "chat": chat_json(user_id),
                "from": user_json(user_id),
                "successful_payment": {
                    "currency": "XTR",
                    "total_amount": total_amount,
                    "invoice_payload": payload,
                    "telegram_payment_charge_id": charge_id,
                    "provider_payment_charge_id": "",
                },
            }
        })
    }

    /// The service message in group `chat_id` when `user_id` upgraded it to
    /// the supergroup `to_chat_id`.
    pub fn migrate_to_update(user_id: i64, chat_id: i64, to_chat_id: i64) -> Value {
        json!({
            "message": {
                "message_id": next_incoming_id(),
                "date": unix_now(),
                "chat": chat_json(chat_id),
                "from": user_json(user_id),
                "migrate_to_chat_id": to_chat_id,
            }
        })
    }

    /// Its twin in the new supergroup `chat_id`, naming the old group.
    pub fn migrate_from_update(user_id: i64, chat_id: i64, from_chat_id: i64) -> Value {
        json!({
            "message": {
                "message_id": next_incoming_id(),
                "date": unix_now(),
                "chat": chat_json(chat_id),
                "from": user_json(user_id),
                "migrate_from_chat_id": from_chat_id,
            }
        })
    }
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        let server = self.server.clone();
        self.system.arbiter().spawn(async move {
            server.stop(false).await;
            actix_web::rt::System::current().stop();
        });
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.recv_timeout(Duration::from_secs(5));
        }
    }
}

fn messages_to(calls: &[Call], chat_id: i64) -> Vec<Call> {
    calls
        .iter()
        .filter(|call| {
            call.ok()
                && matches!(call.method.as_str(), "sendMessage" | "sendPhoto" | "sendInvoice")
                && call.chat_id() == Some(chat_id)
        })
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------
// Server side.

struct State {
    token: String,
    inner: Mutex<Inner>,
    /// Signalled on every recorded call.
    changed: Condvar,
    /// Signalled on every enqueued update.
    updates: tokio::sync::Notify,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    updates: VecDeque<Value>,
    next_update_id: i64,
    failures: HashMap<String, VecDeque<(u16, Value)>>,
    blocked: HashSet<i64>,
    /// Sent messages' (text, reply_markup), for edits.
    messages: HashMap<(i64, i64), (String, Value)>,
    next_message_id: i64,
    webhook: Option<Value>,
    commands: Option<Value>,
    menu_button: Option<Value>,
}

impl State {
    fn new(token: &str) -> Self {
        let inner = Inner { next_update_id: 1, next_message_id: 1, ..Inner::default() };
        Self {
            token: token.to_owned(),
            inner: Mutex::new(inner),
            changed: Condvar::new(),
            updates: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An answer: HTTP status and body.
type Answer = (u16, Value);

fn ok(result: Value) -> Answer {
    (200, json!({"ok": true, "result": result}))
}

fn error(status: u16, description: &str) -> Answer {
    (status, json!({"ok": false, "error_code": status, "description": description}))
}

fn bad_request(description: &str) -> Answer {
    error(400, &format!("Bad Request: {description}"))
}

async fn handle(request: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let at = Instant::now();
    let path = request.path().trim_start_matches('/');
    let (bot, method) = path.split_once('/').unwrap_or((path, ""));
    let method = canonical(method);
    let (params, files) = match parse_params(&request, &body) {
        Ok(parsed) => parsed,
        Err(description) => {
            let answer = bad_request(&description);
            return respond(&state, method, Value::Object(Map::new()), HashMap::new(), at, answer);
        }
    };
    let answer = if bot.strip_prefix("bot") != Some(state.token.as_str()) {
        error(401, "Unauthorized")
    } else if method == "getUpdates" {
        get_updates(&state, &params).await
    } else {
        answer(&state, &method, &params, &files)
    };
    respond(&state, method, params, files, at, answer)
}

/// Bot API method names are case-insensitive (teloxide sends `SendMessage`);
/// calls are recorded under the documented spelling.
fn canonical(method: &str) -> String {
    const METHODS: [&str; 18] = [
        "getMe",
        "sendMessage",
        "sendPhoto",
        "editMessageText",
        "editMessageMedia",
        "setChatMenuButton",
        "editMessageCaption",
        "answerCallbackQuery",
        "setWebhook",
        "deleteWebhook",
        "getWebhookInfo",
        "setMyCommands",
        "deleteMyCommands",
        "getUpdates",
        "sendInvoice",
        "answerPreCheckoutQuery",
        "sendChatAction",
        "deleteMessage",
    ];
    METHODS
        .iter()
        .find(|known| known.eq_ignore_ascii_case(method))
        .map_or_else(|| method.to_owned(), |known| (*known).to_owned())
}

fn respond(
    state: &State,
    method: String,
    params: Value,
    files: HashMap<String, Vec<u8>>,
    at: Instant,
    (status, body): Answer,
) -> HttpResponse {
    state.lock().calls.push(Call { method, params, files, status, response: body.clone(), at });
    state.changed.notify_all();
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)).json(body)
}

/// Everything but `getUpdates` (which waits).
fn answer(state: &State, method: &str, params: &Value, files: &HashMap<String, Vec<u8>>) -> Answer {
    let mut inner = state.lock();
    if let Some(scripted) = inner.failures.get_mut(method).and_then(VecDeque::pop_front) {
        return scripted;
    }
    let chat_id = as_i64(&params["chat_id"]);
    let sends_to_chat = matches!(
        method,
        "sendMessage" | "sendPhoto" | "editMessageText" | "editMessageMedia" | "sendInvoice" | "editMessageCaption"
    );
    if sends_to_chat {
        match chat_id {
            None => return bad_request("chat_id is empty"),
            Some(id) if inner.blocked.contains(&id) => {
                return if id > 0 {
                    error(403, "Forbidden: bot was blocked by the user")
                } else {
                    error(403, "Forbidden: bot was kicked from the group chat")
                };
            }
            Some(_) => {}
        }
    }
    let chat_id = chat_id.unwrap_or_default();
    match method {
        "getMe" => ok(json!({
            "id": BOT_ID,
            "is_bot": true,
            "first_name": "StockBot",
            "username": BOT_USERNAME,
            "can_join_groups": true,
            "can_read_all_group_messages": false,
            "supports_inline_queries": false,
            "can_connect_to_business": false,
            "has_main_web_app": false,
        })),
        "sendMessage" => {
            let text = match check_text(params, "text", TEXT_LEN_MAX, "message is too long") {
                Ok(text) => text,
                Err(answer) => return answer,
            };
            if let Err(answer) = check_markup(params) {
                return answer;
            }
            let mut message = new_message(&mut inner, chat_id, params);
            message["text"] = json!(text);
            ok(message)
        }
        "sendPhoto" => {
            let photo_len = match (files.get("photo"), params["photo"].as_str()) {
                (Some(bytes), _) => bytes.len(),
                (None, Some(file_id)) if !file_id.is_empty() && !file_id.starts_with("attach://") => 1,
                _ => return bad_request("there is no photo in the request"),
            };
            let caption = if params["caption"].is_null() {
                None
            } else {
                match check_text(params, "caption", CAPTION_LEN_MAX, "message caption is too long") {
                    Ok(caption) => Some(caption),
                    Err(answer) => return answer,
                }
            };
            if let Err(answer) = check_markup(params) {
                return answer;
            }
            let mut message = new_message(&mut inner, chat_id, params);
            message["photo"] = json!([{
                "file_id": format!("AgACAgQAAx0Cfake{}", message["message_id"]),
                "file_unique_id": format!("AQADfake{}", message["message_id"]),
                "width": 800,
                "height": 450,
                "file_size": photo_len,
            }]);
            if let Some(caption) = caption {
                message["caption"] = json!(caption);
            }
            ok(message)
        }
        "editMessageText" => {
            let text = match check_text(params, "text", TEXT_LEN_MAX, "message is too long") {
                Ok(text) => text,
                Err(answer) => return answer,
            };
            if let Err(answer) = check_markup(params) {
                return answer;
            }
            if params["inline_message_id"].is_string() {
                return ok(json!(true));
            }
            let Some(message_id) = as_i64(&params["message_id"]) else {
                return bad_request("message identifier is not specified");
            };
            let content = (params["text"].as_str().unwrap_or_default().to_owned(), params["reply_markup"].clone());
            if inner.messages.get(&(chat_id, message_id)) == Some(&content) {
                return error(400, NOT_MODIFIED);
            }
            inner.messages.insert((chat_id, message_id), content);
            let mut message = message_json(chat_id, message_id, params);
            message["text"] = json!(text);
            message["edit_date"] = json!(unix_now());
            ok(message)
        }
        "editMessageMedia" => {
            // `media` is an InputMedia (a JSON string in multipart bodies)
            // whose file is `attach://<part>`.
            let media = match &params["media"] {
                Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
                other => other.clone(),
            };
            if media["type"] != "photo" {
                return bad_request("there is no media in the request");
            }
            let attached = media["media"].as_str().and_then(|m| m.strip_prefix("attach://")).and_then(|p| files.get(p));
            let Some(photo) = attached.filter(|bytes| !bytes.is_empty()) else {
                return bad_request("wrong file identifier/HTTP URL specified");
            };
            let caption = media["caption"].as_str().unwrap_or_default().to_owned();
            if caption.chars().count() > CAPTION_LEN_MAX {
                return bad_request("message caption is too long");
            }
            if let Err(answer) = check_markup(params) {
                return answer;
            }
            let Some(message_id) = as_i64(&params["message_id"]) else {
                return bad_request("message identifier is not specified");
            };
            inner.messages.insert((chat_id, message_id), (caption.clone(), params["reply_markup"].clone()));
            let mut message = message_json(chat_id, message_id, params);
            message["photo"] = json!([{
                "file_id": format!("AgACAgQAAx0Cfake{message_id}e"),
                "file_unique_id": format!("AQADfake{message_id}e"),
                "width": 800,
                "height": 450,
                "file_size": photo.len(),
            }]);
            message["caption"] = json!(caption);
            message["edit_date"] = json!(unix_now());
            ok(message)
        }
        "setChatMenuButton" => {
            inner.menu_button = Some(params["menu_button"].clone());
            ok(json!(true))
        }
        "answerCallbackQuery" => {
            if params["callback_query_id"].as_str().is_none_or(str::is_empty) {
                return bad_request("query is too old and response timeout expired or query ID is invalid");
            }
            if params["text"].as_str().is_some_and(|t| t.chars().count() > CALLBACK_TEXT_LEN_MAX) {
                return bad_request("MESSAGE_TOO_LONG");
            }
            ok(json!(true))
        }
        "setWebhook" => {
            if params["url"].as_str().is_none() {
                return bad_request("bad webhook: URL is empty");
            }
            inner.webhook = Some(params.clone());
            ok(json!(true))
        }
        "deleteWebhook" => {
            inner.webhook = None;
            if params["drop_pending_updates"].as_bool() == Some(true) {
                inner.updates.clear();
            }
            ok(json!(true))
        }
        "getWebhookInfo" => {
            let url = inner.webhook.as_ref().and_then(|w| w["url"].as_str()).unwrap_or_default().to_owned();
            ok(json!({"url": url, "has_custom_certificate": false, "pending_update_count": inner.updates.len()}))
        }
        "setMyCommands" => {
            if !params["commands"].is_array() {
                return bad_request("parameter \"commands\" is required");
            }
            inner.commands = Some(params["commands"].clone());
            ok(json!(true))
        }
        "deleteMyCommands" | "sendChatAction" | "deleteMessage" => ok(json!(true)),
        "sendInvoice" => {
            for field in ["title", "description", "payload", "currency"] {
                if params[field].as_str().is_none_or(str::is_empty) {
                    return bad_request(&format!("parameter \"{field}\" is required"));
                }
            }
            // Telegram's limits: title 1-32 characters, description 1-255, payload 1-128 bytes.
            let chars = |field: &str| params[field].as_str().map_or(0, |text| text.chars().count());
            if chars("title") > 32 || chars("description") > 255 || params["payload"].as_str().map_or(0, str::len) > 128
            {
                return bad_request("invoice title, description or payload is too long");
            }
            // Stars: currency XTR, exactly one price, no payment provider.
            if params["currency"] == "XTR"
                && (params["prices"].as_array().map_or(0, Vec::len) != 1
                    || params["provider_token"].as_str().is_some_and(|token| !token.is_empty()))
            {
                return bad_request("Stars invoices take one price and an empty provider_token");
            }
            let Some(prices) = params["prices"].as_array().filter(|p| !p.is_empty()) else {
                return bad_request("parameter \"prices\" is required");
            };
            let total: i64 = prices.iter().filter_map(|p| p["amount"].as_i64()).sum();
            let mut message = new_message(&mut inner, chat_id, params);
            message["invoice"] = json!({
                "title": params["title"],
                "description": params["description"],
                "start_parameter": params["start_parameter"].as_str().unwrap_or_default(),
                "currency": params["currency"],
                "total_amount": total,
            });
            ok(message)
        }
        "answerPreCheckoutQuery" => {
            if params["pre_checkout_query_id"].as_str().is_none() || params["ok"].as_bool().is_none() {
                return bad_request("parameters \"pre_checkout_query_id\" and \"ok\" are required");
            }
            if params["ok"] == json!(false) && params["error_message"].as_str().is_none_or(str::is_empty) {
                return bad_request("error_message is required when ok is false");
            }
            ok(json!(true))
        }
        _ => error(404, "Not Found"),
    }
}

async fn get_updates(state: &State, params: &Value) -> Answer {
    let offset = as_i64(&params["offset"]);
    let limit = as_i64(&params["limit"]).unwrap_or(100).clamp(1, 100);
    let timeout = as_i64(&params["timeout"]).unwrap_or(0).clamp(0, 3600);
    let deadline = Instant::now() + Duration::from_secs(u64::try_from(timeout).unwrap_or(0).min(LONG_POLL_MAX_SECS));
    loop {
        let notified = state.updates.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut inner = state.lock();
            if let Some(failure) = inner.failures.get_mut("getUpdates").and_then(VecDeque::pop_front) {
                return failure;
            }
            if inner.webhook.is_some() {
                return error(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete \
                     the webhook first",
                );
            }
            if let Some(offset) = offset.filter(|offset| *offset > 0) {
                // Everything below the offset is confirmed.
                inner.updates.retain(|update| update["update_id"].as_i64().unwrap_or(0) >= offset);
            }
            let batch: Vec<Value> = inner.updates.iter().take(usize::try_from(limit).unwrap_or(100)).cloned().collect();
            if !batch.is_empty() || Instant::now() >= deadline {
                return ok(Value::Array(batch));
            }
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep_until(deadline.into()) => {}
        }
    }
}

/// Checks `params[field]` as Telegram would (present, HTML well-formed when
/// `parse_mode` is HTML, not too long) and returns the text as shown.
fn check_text(params: &Value, field: &str, len_max: usize, too_long: &str) -> Result<String, Answer> {
    let raw = params[field].as_str().unwrap_or_default();
    let html = params["parse_mode"].as_str().is_some_and(|mode| mode.eq_ignore_ascii_case("html"));
    let shown = if html {
        parse_html(raw).map_err(|problem| bad_request(&format!("can't parse entities: {problem}")))?
    } else {
        raw.to_owned()
    };
    if field == "text" && shown.trim().is_empty() {
        return Err(bad_request("message text is empty"));
    }
    if shown.encode_utf16().count() > len_max {
        return Err(bad_request(too_long));
    }
    Ok(shown)
}

/// Inline keyboards: every button needs text and at most 64 bytes of callback data.
fn check_markup(params: &Value) -> Result<(), Answer> {
    let markup = &params["reply_markup"];
    if markup.is_null() {
        return Ok(());
    }
    if markup.is_string() {
        return Err(bad_request("can't parse reply keyboard markup JSON object"));
    }
    for row in markup["inline_keyboard"].as_array().into_iter().flatten() {
        for button in row.as_array().into_iter().flatten() {
            if button["text"].as_str().is_none_or(str::is_empty) {
                return Err(bad_request("text buttons are unallowed in the inline keyboard"));
            }
            if let Some(data) = button["callback_data"].as_str()
                && (data.is_empty() || data.len() > CALLBACK_DATA_LEN_MAX)
            {
                return Err(bad_request("BUTTON_DATA_INVALID"));
            }
        }
    }
    Ok(())
}

/// Telegram's HTML subset: known tags, properly nested; returns the text with
/// tags removed and entities decoded.
fn parse_html(text: &str) -> Result<String, String> {
    let mut shown = String::with_capacity(text.len());
    let mut open: Vec<String> = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(position) = rest.find(['<', '&']) {
        shown.push_str(&rest[..position]);
        let at = offset + position;
        let tail = &rest[position..];
        let consumed = if tail.starts_with('<') {
            let Some(end) = tail.find('>') else {
                return Err(format!("Unclosed start tag at byte offset {at}"));
            };
            let inner = &tail[1..end];
            if let Some(name) = inner.strip_prefix('/') {
                let name = name.trim().to_ascii_lowercase();
                match open.pop() {
                    Some(top) if top == name => {}
                    _ => return Err(format!("Unexpected end tag at byte offset {at}")),
                }
            } else {
                let name = inner.split([' ', '\t', '\n', '/']).next().unwrap_or_default().to_ascii_lowercase();
                if !ALLOWED_TAGS.contains(&name.as_str()) {
                    return Err(format!("Unsupported start tag \"{name}\" at byte offset {at}"));
                }
                open.push(name);
            }
            end + 1
        } else {
            let entity_end = tail.find(';').filter(|end| *end <= 10);
            match entity_end.map(|end| &tail[..=end]) {
                Some("&lt;") => shown.push('<'),
                Some("&gt;") => shown.push('>'),
                Some("&amp;") => shown.push('&'),
                Some("&quot;") => shown.push('"'),
                _ => {
                    shown.push('&');
                    rest = &tail[1..];
                    offset = at + 1;
                    continue;
                }
            }
            entity_end.map_or(1, |end| end + 1)
        };
        rest = &tail[consumed..];
        offset = at + consumed;
    }
    shown.push_str(rest);
    if let Some(name) = open.pop() {
        return Err(format!("Can't find end tag corresponding to start tag \"{name}\""));
    }
    Ok(shown)
}

fn new_message(inner: &mut Inner, chat_id: i64, params: &Value) -> Value {
    let message_id = inner.next_message_id;
    inner.next_message_id += 1;
    let text = params["text"].as_str().or_else(|| params["caption"].as_str()).unwrap_or_default().to_owned();
    inner.messages.insert((chat_id, message_id), (text, params["reply_markup"].clone()));
    message_json(chat_id, message_id, params)
}

fn message_json(chat_id: i64, message_id: i64, params: &Value) -> Value {
    let mut message = json!({
        "message_id": message_id,
        "date": unix_now(),
        "chat": chat_json(chat_id),
        "from": bot_json(),
    });
    if params["reply_markup"].is_object() {
        message["reply_markup"] = params["reply_markup"].clone();
    }
    message
}

fn chat_json(chat_id: i64) -> Value {
    if chat_id > 0 {
        json!({"id": chat_id, "type": "private", "first_name": format!("Player{chat_id}")})
    } else if chat_id < -1_000_000_000_000 {
        json!({"id": chat_id, "type": "supergroup", "title": format!("Group {chat_id}")})
    } else {
        json!({"id": chat_id, "type": "group", "title": format!("Group {chat_id}")})
    }
}

fn user_json(user_id: i64) -> Value {
    json!({"id": user_id, "is_bot": false, "first_name": format!("Player{user_id}"), "language_code": "en"})
}

fn bot_json() -> Value {
    json!({"id": BOT_ID, "is_bot": true, "first_name": "StockBot", "username": BOT_USERNAME})
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn next_incoming_id() -> i64 {
    static NEXT: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1_000_000);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn as_i64(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

// ---------------------------------------------------------------------------
// Request parsing: query string, JSON, urlencoded form, multipart.

type Parsed = (Value, HashMap<String, Vec<u8>>);

fn parse_params(request: &HttpRequest, body: &[u8]) -> Result<Parsed, String> {
    let mut params = Map::new();
    let mut files = HashMap::new();
    for (key, value) in urlencoded(request.query_string())? {
        params.insert(key.clone(), form_value(&key, value));
    }
    let content_type =
        request.headers().get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
    let mime = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match mime.as_str() {
        _ if body.is_empty() => {}
        "application/json" => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => params.extend(map),
            _ => return Err("can't parse JSON object".to_owned()),
        },
        "application/x-www-form-urlencoded" => {
            let text = std::str::from_utf8(body).map_err(|_| "invalid form body".to_owned())?;
            for (key, value) in urlencoded(text)? {
                params.insert(key.clone(), form_value(&key, value));
            }
        }
        "multipart/form-data" => {
            let boundary = content_type
                .split(';')
                .filter_map(|part| part.trim().strip_prefix("boundary="))
                .next()
                .map(|b| b.trim_matches('"').to_owned())
                .ok_or_else(|| "multipart without boundary".to_owned())?;
            let mut parts = HashMap::new();
            for part in multipart(body, &boundary)? {
                if part.filename.is_some() {
                    parts.insert(part.name, part.data);
                } else {
                    let value = String::from_utf8(part.data).map_err(|_| "non-UTF-8 form field".to_owned())?;
                    params.insert(part.name.clone(), form_value(&part.name, value));
                }
            }
            // `photo=attach://<part>` names the part holding the file.
            for (key, value) in &params {
                if let Some(part) = value.as_str().and_then(|v| v.strip_prefix("attach://"))
                    && let Some(data) = parts.get(part)
                {
                    files.insert(key.clone(), data.clone());
                }
            }
            for (name, data) in parts {
                files.entry(name).or_insert(data);
            }
        }
        _ => {}
    }
    Ok((Value::Object(params), files))
}

fn urlencoded(text: &str) -> Result<Vec<(String, String)>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    web::Query::<Vec<(String, String)>>::from_query(text).map(web::Query::into_inner).map_err(|e| e.to_string())
}

/// A form value as Telegram reads it: JSON objects/arrays (`reply_markup`,
/// `prices`) parsed, `*_id` integers as numbers, booleans as booleans.
fn form_value(key: &str, value: String) -> Value {
    if (value.starts_with('{') || value.starts_with('['))
        && let Ok(parsed) = serde_json::from_str::<Value>(&value)
    {
        return parsed;
    }
    if (key.ends_with("_id") || key == "offset" || key == "limit" || key == "timeout")
        && let Ok(number) = value.parse::<i64>()
    {
        return json!(number);
    }
    match value.as_str() {
        "true" => json!(true),
        "false" => json!(false),
        _ => Value::String(value),
    }
}

struct Part {
    name: String,
    filename: Option<String>,
    data: Vec<u8>,
}

fn multipart(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let delimiter = format!("--{boundary}").into_bytes();
    let next_delimiter = format!("\r\n--{boundary}").into_bytes();
    let mut position = find(body, &delimiter, 0).ok_or("multipart body without boundary")? + delimiter.len();
    let mut parts = Vec::new();
    loop {
        if body.get(position..position + 2) == Some(b"--") {
            return Ok(parts);
        }
        if body.get(position..position + 2) == Some(b"\r\n") {
            position += 2;
        }
        let headers_end = find(body, b"\r\n\r\n", position).ok_or("multipart part without headers")?;
        let headers = String::from_utf8_lossy(&body[position..headers_end]).into_owned();
        let data_start = headers_end + 4;
        let data_end = find(body, &next_delimiter, data_start).ok_or("unterminated multipart part")?;
        let mut name = None;
        let mut filename = None;
        for line in headers.lines() {
            if line.to_ascii_lowercase().starts_with("content-disposition") {
                name = disposition_param(line, "name");
                filename = disposition_param(line, "filename");
            }
        }
        let name = name.ok_or("multipart part without a name")?;
        parts.push(Part { name, filename, data: body[data_start..data_end].to_vec() });
        position = data_end + next_delimiter.len();
    }
}

fn disposition_param(line: &str, key: &str) -> Option<String> {
    line.split(';').map(str::trim).find_map(|item| {
        let (k, v) = item.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(key)).then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack.get(from..)?.windows(needle.len()).position(|window| window == needle).map(|i| i + from)
}
