//! A webhook rig: the fake Bot API plus the real `stockbot serve` in webhook
//! mode on a fresh data dir, with helpers to send real-shaped updates and to
//! wait for what reaches the fake. Waits are generous: a slow machine makes a
//! test slow, never red.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Server;
use super::fake_telegram::{Call, FakeTelegram};

pub const SECRET: &str = "webhook-secret_0123456789";
/// How long anything that must happen is waited for.
pub const WAIT: Duration = Duration::from_secs(30);
/// How long something that must not happen is given to show up anyway.
pub const SETTLE: Duration = Duration::from_millis(1500);

static UPDATE_IDS: AtomicI64 = AtomicI64::new(50_000);

/// A fresh `update_id`.
pub fn next_update_id() -> i64 {
    UPDATE_IDS.fetch_add(1, Ordering::SeqCst)
}

/// `update` with a fresh `update_id` unless it has one.
pub fn with_id(mut update: Value) -> Value {
    if update.get("update_id").is_none() {
        update["update_id"] = json!(next_update_id());
    }
    update
}

/// Removes the data dir when dropped.
pub struct DataDir(pub PathBuf);

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The environment of a server in polling mode on `dir`, Telegram's sending
/// limits raised (tests wait for the bot, not for the limits).
pub fn polling_env(fake: &FakeTelegram, dir: &DataDir) -> Vec<(&'static str, String)> {
    let mut env = fake.env();
    env.extend([
        ("TELEGRAM_MODE", "polling".to_owned()),
        ("STOCKBOT_DATA_DIR", dir.0.display().to_string()),
        ("TELEGRAM_RATE_GLOBAL_PER_SEC", "1000".to_owned()),
        ("TELEGRAM_RATE_CHAT_PER_SEC", "1000".to_owned()),
    ]);
    env
}

/// Messages (text, photo, invoice) Telegram took for `chat`.
pub fn sent(calls: &[Call], chat: i64) -> Vec<&Call> {
    calls
        .iter()
        .filter(|c| {
            c.ok()
                && matches!(c.method.as_str(), "sendMessage" | "sendPhoto" | "sendInvoice")
                && c.chat_id() == Some(chat)
        })
        .collect()
}

/// The fake Bot API and the real server in webhook mode. Fields drop in
/// order: the server first, then the fake, then the data dir.
pub struct Rig {
    pub server: Server,
    pub client: reqwest::blocking::Client,
    pub fake: FakeTelegram,
    pub dir: DataDir,
}

impl Rig {
    /// Starts with Telegram's sending limits raised (so tests wait for the
    /// bot, not for the limits) and `extra` environment on top.
    pub fn start(tag: &str, extra: &[(&'static str, String)]) -> Self {
        let fake = FakeTelegram::start();
        let dir = DataDir(super::fresh_data_dir(tag));
        let mut env = fake.env();
        env.extend([
            ("TELEGRAM_MODE", "webhook".to_owned()),
            ("TELEGRAM_WEBHOOK_SECRET", SECRET.to_owned()),
            ("STOCKBOT_DATA_DIR", dir.0.display().to_string()),
            ("TELEGRAM_RATE_GLOBAL_PER_SEC", "1000".to_owned()),
            ("TELEGRAM_RATE_CHAT_PER_SEC", "1000".to_owned()),
            ("TELEGRAM_RATE_GROUP_PER_MIN", "10000".to_owned()),
        ]);
        // Later entries win: `extra` may lower the limits again.
        env.extend(extra.iter().cloned());
        let server = Server::start(&env);
        let client = server.client();
        Self { server, client, fake, dir }
    }

    /// POSTs an update (given an `update_id` if it has none); returns the status.
    pub fn post(&self, update: &Value) -> u16 {
        post_webhook(&self.client, &self.server.base, update)
    }

    /// A private message from `user`; asserts the webhook took it.
    pub fn say(&self, user: i64, text: &str) {
        assert_eq!(self.post(&FakeTelegram::text_update(user, text)), 200, "{text}");
    }

    /// A message from `user` in group `chat`; asserts the webhook took it.
    pub fn say_in(&self, user: i64, chat: i64, text: &str) {
        assert_eq!(self.post(&FakeTelegram::chat_text_update(user, chat, text)), 200, "{text}");
    }

    /// How many messages reached `chat` so far.
    pub fn count(&self, chat: i64) -> usize {
        sent(&self.fake.calls(), chat).len()
    }

    /// Waits for a message to `chat` after the first `after` whose text
    /// matches `wanted`; panics (listing what came) after `WAIT`.
    pub fn wait_text(&self, chat: i64, after: usize, wanted: impl Fn(&str) -> bool) -> Call {
        let found =
            |calls: &[Call]| sent(calls, chat).into_iter().skip(after).find(|c| c.text().is_some_and(&wanted)).cloned();
        let mut hit = None;
        self.fake.wait_for(
            |calls| {
                hit = found(calls);
                hit.is_some()
            },
            WAIT,
        );
        hit.unwrap_or_else(|| panic!("no such message to {chat} within {WAIT:?}; got {:?}", self.texts(chat)))
    }

    /// `say`, then the first reply matching `wanted`.
    pub fn ask(&self, user: i64, text: &str, wanted: impl Fn(&str) -> bool) -> Call {
        let after = self.count(user);
        self.say(user, text);
        self.wait_text(user, after, wanted)
    }

    /// `say_in`, then the first reply in the group matching `wanted`.
    pub fn ask_in(&self, user: i64, chat: i64, text: &str, wanted: impl Fn(&str) -> bool) -> Call {
        let after = self.count(chat);
        self.say_in(user, chat, text);
        self.wait_text(chat, after, wanted)
    }

    /// Texts of the messages to `chat`.
    pub fn texts(&self, chat: i64) -> Vec<String> {
        self.fake.texts_to(chat)
    }

    /// How many messages to `chat` match `wanted`, after waiting `SETTLE`
    /// for late ones.
    pub fn settled_count(&self, chat: i64, wanted: impl Fn(&str) -> bool) -> usize {
        std::thread::sleep(SETTLE);
        self.texts(chat).iter().filter(|text| wanted(text)).count()
    }

    /// `GET /admin/players/{player}`, asserting 200.
    pub fn player(&self, player: i64) -> Value {
        let (status, body) = self.server.admin(&self.client, &format!("/admin/players/{player}"));
        assert_eq!(status, 200, "admin player {player}: {body}");
        body
    }

    /// The player's cash as a decimal string.
    pub fn cash(&self, player: i64) -> String {
        self.player(player)["cash"].as_str().unwrap().to_owned()
    }
}

/// POSTs `update` (given an `update_id` if it has none) to a server's webhook
/// with the right secret; returns the status (0: no connection).
pub fn post_webhook(client: &reqwest::blocking::Client, base: &str, update: &Value) -> u16 {
    client
        .post(format!("{base}/telegram/webhook"))
        .header("content-type", "application/json")
        .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
        .body(serde_json::to_vec(&with_id(update.clone())).unwrap())
        .send()
        .map_or(0, |response| response.status().as_u16())
}

/// Polls `done` until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}
