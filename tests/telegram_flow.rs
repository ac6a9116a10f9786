//! The Telegram front, black box: the real binary in webhook mode (and once
//! in polling mode) against the fake Bot API, driven with real-shaped
//! updates. Every reply is checked where Telegram would see it: at the fake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::fake_telegram::{BOT_USERNAME, Call, FakeTelegram};
use common::rig::{self, DataDir, SECRET, SETTLE, WAIT, with_id};
use common::{Server, parse_fill};
use serde_json::{Value, json};

const EVIL: &str = "<b>x</b>&<script>";
const EVIL_ESCAPED: &str = "&lt;b&gt;x&lt;/b&gt;&amp;&lt;script&gt;";
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// The fake Bot API and the real server in webhook mode.
struct Rig {
    server: Server,
    client: reqwest::blocking::Client,
    fake: FakeTelegram,
    _dir: DataDir,
}

impl Rig {
    fn webhook(tag: &str) -> Self {
        Self::webhook_with(tag, &[])
    }

    fn webhook_with(tag: &str, extra: &[(&'static str, String)]) -> Self {
        let rig::Rig { server, client, fake, dir } = rig::Rig::start(tag, extra);
        Self { server, client, fake, _dir: dir }
    }

    /// POSTs raw bytes to the webhook with `secret` (none: no header).
    fn post_raw(&self, body: Vec<u8>, secret: Option<&str>) -> u16 {
        post_webhook(&self.client, &self.server.base, body, secret)
    }

    /// POSTs an update (given an `update_id` if it has none) with the right secret.
    fn post(&self, update: &Value) -> u16 {
        self.post_raw(serde_json::to_vec(&with_id(update.clone())).unwrap(), Some(SECRET))
    }

    /// A private message from `user`; asserts the webhook took it.
    fn say(&self, user: i64, text: &str) {
        assert_eq!(self.post(&FakeTelegram::text_update(user, text)), 200, "{text}");
    }

    /// The `n`-th (1-based) message to `chat`, waiting for it.
    fn message(&self, chat: i64, n: usize) -> Call {
        self.fake.wait_for_messages(chat, n, WAIT)[n - 1].clone()
    }

    /// `say`, then the reply (the `n`-th message to the user).
    fn ask(&self, user: i64, text: &str, n: usize) -> Call {
        self.say(user, text);
        self.message(user, n)
    }

    fn admin_player(&self, player: i64) -> (u16, Value) {
        self.server.admin(&self.client, &format!("/admin/players/{player}"))
    }

    /// Asserts that no more than `n` messages reach `chat` within `SETTLE`.
    fn assert_no_more_than(&self, chat: i64, n: usize) {
        let more = self.fake.wait_for(|calls| sent_to(calls, chat) > n, SETTLE);
        assert!(!more, "more than {n} messages to {chat}: {:?}", self.fake.texts_to(chat));
    }
}

/// Messages Telegram took for `chat` (as `FakeTelegram::messages_to`, but
/// usable inside `wait_for`, which holds the fake's lock).
fn sent_to(calls: &[Call], chat: i64) -> usize {
    calls
        .iter()
        .filter(|c| c.ok() && matches!(c.method.as_str(), "sendMessage" | "sendPhoto") && c.chat_id() == Some(chat))
        .count()
}

fn post_webhook(client: &reqwest::blocking::Client, base: &str, body: Vec<u8>, secret: Option<&str>) -> u16 {
    let mut request =
        client.post(format!("{base}/telegram/webhook")).header("content-type", "application/json").body(body);
    if let Some(secret) = secret {
        request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
    }
    request.send().unwrap().status().as_u16()
}

/// Sends only the head of a webhook POST declaring `length` bytes (with the
/// right secret) and reads the status: a big body is refused from its
/// declared length, before it is read.
fn declared_length_status(base: &str, length: usize) -> u16 {
    use std::io::{Read, Write};
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let head = format!(
        "POST /telegram/webhook HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         X-Telegram-Bot-Api-Secret-Token: {SECRET}\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut response = [0_u8; 64];
    let read = stream.read(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response[..read]);
    text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

/// A press of `data` on the message `on` recorded at the fake (its text and keyboard included).
fn press(user: i64, on: &Call, data: &str) -> Value {
    let chat = on.chat_id().unwrap();
    let mut update = FakeTelegram::callback_update(user, chat, on.message_id().unwrap(), data);
    let message = &mut update["callback_query"]["message"];
    if let Some(text) = on.result()["text"].as_str() {
        message["text"] = json!(text);
    }
    if on.params["reply_markup"].is_object() {
        message["reply_markup"] = on.params["reply_markup"].clone();
    }
    update
}

fn callback_id(update: &Value) -> String {
    update["callback_query"]["id"].as_str().unwrap().to_owned()
}

fn answered(calls: &[Call], callback_id: &str) -> bool {
    calls.iter().any(|c| c.method == "answerCallbackQuery" && c.ok() && c.params["callback_query_id"] == callback_id)
}

/// The button labelled `label` (its callback data).
fn button(call: &Call, label: &str) -> String {
    call.buttons()
        .into_iter()
        .flatten()
        .find(|(text, _)| text == label)
        .map(|(_, data)| data)
        .unwrap_or_else(|| panic!("no button {label:?} in {:?}", call.buttons()))
}

/// Asserts a message went out in HTML parse mode and Telegram took it.
fn assert_html(call: &Call) {
    assert!(call.ok(), "refused: {} {}", call.params, call.response);
    assert_eq!(call.params["parse_mode"].as_str().map(str::to_ascii_lowercase).as_deref(), Some("html"), "{call:?}");
}

/// The first word after the leading emoji (`Bought`, `Sold`, …), and whether
/// there was an emoji before it.
fn verb(text: &str) -> (bool, &str) {
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or_default();
    let emoji = first.chars().next().is_some_and(|c| !c.is_alphanumeric() && !c.is_ascii());
    (emoji, if emoji { words.next().unwrap_or_default() } else { first })
}

fn trade_replies(texts: &[String]) -> usize {
    texts.iter().filter(|t| matches!(verb(t).1, "Bought" | "Sold")).count()
}

#[test]
fn new_player_flow_from_start_to_sell() {
    let rig =
        Rig::webhook_with("tg_flow", &[("TELEGRAM_WEBHOOK_URL", "https://bot.example.com/telegram/webhook".into())]);
    let user = 1001;

    // Registered at start: the webhook with its secret, and the command menu.
    let webhook = rig.fake.webhook().expect("setWebhook at start");
    assert_eq!(webhook["url"], "https://bot.example.com/telegram/webhook");
    assert_eq!(webhook["secret_token"], SECRET);
    assert!(webhook["allowed_updates"].to_string().contains("callback_query"), "{webhook}");
    let commands = rig.fake.commands().expect("setMyCommands at start");
    assert!(commands.as_array().unwrap().iter().any(|c| c["command"] == "quote"), "{commands}");

    let start = rig.ask(user, "/start", 1);
    assert_html(&start);
    assert!(start.text().unwrap().contains("Welcome"), "{start:?}");
    assert!(start.text().unwrap().contains(&format!("Player{user}")));
    assert_eq!(button(&start, "Market"), "/market");

    let market = rig.ask(user, "/market", 2);
    assert_html(&market);
    let text = market.text().unwrap();
    assert!(text.contains("Market") && text.contains("ACME"), "{text}");
    assert!(market.buttons().iter().flatten().any(|(_, data)| data.starts_with("~/market ")), "{:?}", market.buttons());

    let quote = rig.ask(user, "/quote ACME", 3);
    assert_html(&quote);
    let text = quote.text().unwrap();
    assert!(text.contains("ACME") && text.contains("Bid") && text.contains("Ask"), "{text}");
    let buy_10 = button(&quote, "Buy 10");
    assert_eq!(buy_10, "/buy ACME 10");
    assert_eq!(button(&quote, "Sell 10"), "/sell ACME 10");

    // Tap "Buy 10" on the quote.
    let tap = with_id(press(user, &quote, &buy_10));
    assert_eq!(rig.post(&tap), 200);
    let bought = rig.message(user, 4);
    assert_html(&bought);
    let text = bought.text().unwrap();
    assert_eq!(verb(text), (true, "Bought"), "{text}");
    assert_eq!(parse_fill(text), Some((10, "ACME".to_owned())), "{text}");
    assert!(text.contains("Fee") && text.contains("Cash now"), "{text}");
    assert!(rig.fake.wait_for(|calls| answered(calls, &callback_id(&tap)), WAIT), "callback not answered");

    let portfolio = rig.ask(user, "/portfolio", 5);
    assert_html(&portfolio);
    let text = portfolio.text().unwrap();
    assert!(text.contains("ACME: 10"), "{text}");
    // A view's own buttons carry the edit mark.
    assert_eq!(button(&portfolio, "↻ Refresh"), "~/portfolio");

    // Refresh edits the portfolio message in place (unchanged counts too).
    let refresh = with_id(press(user, &portfolio, "~/portfolio"));
    assert_eq!(rig.post(&refresh), 200);
    let message_id = portfolio.message_id().unwrap();
    let edited = rig.fake.wait_for(
        |calls| {
            calls.iter().any(|c| {
                c.method == "editMessageText"
                    && c.chat_id() == Some(user)
                    && c.params["message_id"] == message_id
                    && (c.ok() || c.response["description"].as_str().unwrap_or("").contains("not modified"))
            })
        },
        WAIT,
    );
    assert!(edited, "refresh did not edit: {:?}", rig.fake.calls_of("editMessageText"));
    assert!(rig.fake.wait_for(|calls| answered(calls, &callback_id(&refresh)), WAIT));
    for edit in rig.fake.calls_of("editMessageText") {
        assert_eq!(edit.params["parse_mode"].as_str().map(str::to_ascii_lowercase).as_deref(), Some("html"));
        assert!(edit.text().unwrap().contains("Portfolio"));
    }

    let sold = rig.ask(user, "/sell ACME 5", 6);
    assert_html(&sold);
    let text = sold.text().unwrap();
    assert_eq!(verb(text), (true, "Sold"), "{text}");
    assert_eq!(parse_fill(text), Some((-5, "ACME".to_owned())), "{text}");

    rig.assert_no_more_than(user, 6);
    let texts = rig.fake.texts_to(user);
    assert_eq!(trade_replies(&texts), 2, "only trade replies start with Bought/Sold: {texts:?}");
    for call in rig.fake.messages_to(user) {
        assert_html(&call);
    }
    let (status, player) = rig.admin_player(user);
    assert_eq!(status, 200);
    assert_eq!(player["holdings"]["ACME"], 5, "{player}");
    assert_eq!(player["trades"], 2, "{player}");
}

#[test]
fn the_same_update_twice_acts_once() {
    let rig = Rig::webhook("tg_dup");
    let user = 1002;
    rig.ask(user, "/start", 1);
    let buy = with_id(FakeTelegram::text_update(user, "/buy ACME 3"));
    assert_eq!(rig.post(&buy), 200);
    assert_eq!(rig.post(&buy), 200, "a repeat is accepted (and dropped)");
    let bought = rig.message(user, 2);
    assert_eq!(parse_fill(bought.text().unwrap()), Some((3, "ACME".to_owned())));
    // Redelivered again after it was handled.
    assert_eq!(rig.post(&buy), 200);
    // The same for a button press.
    let quote = rig.ask(user, "/quote ACME", 3);
    let tap = with_id(press(user, &quote, &button(&quote, "Buy 1")));
    assert_eq!(rig.post(&tap), 200);
    assert_eq!(rig.post(&tap), 200);
    let bought = rig.message(user, 4);
    assert_eq!(parse_fill(bought.text().unwrap()), Some((1, "ACME".to_owned())));
    rig.assert_no_more_than(user, 4);
    let (status, player) = rig.admin_player(user);
    assert_eq!(status, 200);
    assert_eq!(player["trades"], 2, "{player}");
    assert_eq!(player["holdings"]["ACME"], 4, "{player}");
}

#[test]
fn a_hundred_concurrent_presses_of_one_buy_button_trade_once() {
    let rig = Rig::webhook("tg_presses");
    let user = 1003;
    rig.ask(user, "/start", 1);
    let quote = rig.ask(user, "/quote ACME", 2);
    let data = button(&quote, "Buy 10");
    let presses: Vec<Value> = (0..100).map(|_| with_id(press(user, &quote, &data))).collect();
    let ids: Vec<String> = presses.iter().map(callback_id).collect();
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 100);

    let barrier = Arc::new(Barrier::new(presses.len()));
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = presses
            .iter()
            .map(|update| {
                let (barrier, client, base) = (Arc::clone(&barrier), rig.client.clone(), rig.server.base.clone());
                let body = serde_json::to_vec(update).unwrap();
                scope.spawn(move || {
                    barrier.wait();
                    post_webhook(&client, &base, body, Some(SECRET))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    let all_answered = rig.fake.wait_for(|calls| ids.iter().all(|id| answered(calls, id)), WAIT);
    let answers = rig.fake.calls_of("answerCallbackQuery").len();
    assert!(all_answered, "only {answers} of 100 presses answered");
    let bought = rig.message(user, 3);
    assert_eq!(parse_fill(bought.text().unwrap()), Some((10, "ACME".to_owned())));
    rig.assert_no_more_than(user, 3);
    let (status, player) = rig.admin_player(user);
    assert_eq!(status, 200);
    assert_eq!(player["trades"], 1, "{player}");
    assert_eq!(player["holdings"]["ACME"], 10, "{player}");
}

#[test]
fn a_player_named_like_html_is_escaped_everywhere() {
    let rig = Rig::webhook("tg_escape");
    let user = 1004;
    let evil_update = |text: &str| {
        let mut update = FakeTelegram::text_update(user, text);
        update["message"]["from"]["first_name"] = json!(EVIL);
        update["message"]["from"]["last_name"] = json!(EVIL);
        update["message"]["chat"]["first_name"] = json!(EVIL);
        update
    };
    assert_eq!(rig.post(&evil_update("/start")), 200);
    let start = rig.message(user, 1);
    assert_html(&start);
    assert!(start.text().unwrap().contains(EVIL_ESCAPED), "{:?}", start.text());
    // What the player sees is their name as written.
    assert!(start.result()["text"].as_str().unwrap().contains(&format!("{EVIL} {EVIL}")), "{}", start.result());

    // Player text echoed back in mistakes, typed and as button data.
    let typed = [
        "/buy <b>x</b> 1",
        "/sell ACME <script>",
        "/market <b>x</b>&<script>",
        "/quote &amp;<i>",
        "/<script>",
        "/buy ACME 1 @ <b>",
        "/chart <b> 1h",
        "/cancel <b>",
        "/alert <b> > 1",
        "/start <b>x</b>&<script>",
    ];
    for (i, text) in typed.iter().enumerate() {
        assert_eq!(rig.post(&evil_update(text)), 200);
        rig.message(user, i + 2);
    }
    // A long mistake still gets an answer Telegram takes (at most 4,096 characters).
    let long = rig.ask(user, &format!("/market {}", "<b>&".repeat(1_000)), typed.len() + 2);
    assert!(long.text().unwrap().starts_with("⚠️ No category"), "{:?}", long.text());
    let quote = rig.ask(user, "/quote ACME", typed.len() + 3);
    let mut tap = with_id(press(user, &quote, "/buy </b><script>alert(1)</script> 1"));
    tap["callback_query"]["from"]["first_name"] = json!(EVIL);
    assert_eq!(rig.post(&tap), 200);
    rig.message(user, typed.len() + 4);
    rig.assert_no_more_than(user, typed.len() + 4);

    // Telegram refused nothing (it answers 400 to malformed HTML).
    let to_user: Vec<Call> = rig.fake.calls().into_iter().filter(|c| c.chat_id() == Some(user)).collect();
    for call in &to_user {
        assert!(call.ok(), "refused: {} {}", call.params, call.response);
        if call.method == "sendMessage" {
            assert_html(call);
            assert!(!call.text().unwrap().contains("<script"), "raw tag: {:?}", call.text());
        }
    }
    assert!(rig.fake.texts_to(user).iter().any(|t| t.contains("&lt;script&gt;")));
}

#[test]
fn group_commands_addressed_to_the_bot_are_answered_in_the_group() {
    let rig = Rig::webhook("tg_group");
    let (user, group, supergroup) = (1005, -5001, -1_001_234_567_890);
    let say = |chat: i64, text: &str| {
        let update = FakeTelegram::chat_text_update(user, chat, text);
        assert_eq!(update["message"]["entities"].is_array(), text.starts_with('/'));
        assert_eq!(rig.post(&update), 200, "{text}");
    };
    say(group, "/top@OtherBot");
    say(group, "hello everyone");
    say(group, &format!("/start@{BOT_USERNAME}"));
    let start = rig.message(group, 1);
    assert!(start.text().unwrap().contains("Welcome"), "{start:?}");
    say(group, &format!("/top@{BOT_USERNAME}"));
    rig.message(group, 2);
    say(group, &format!("/quote@{} ACME", BOT_USERNAME.to_uppercase()));
    let quote = rig.message(group, 3);
    assert!(quote.text().unwrap().contains("ACME"));
    say(group, "/buy@OtherBot ACME 1");
    say(group, "/quote@stockbot_test_bot_not ACME");
    rig.assert_no_more_than(group, 3);

    // The quote's button, pressed in the group, trades for the presser; the
    // reply goes to the group.
    let tap = with_id(press(user, &quote, &button(&quote, "Buy 1")));
    assert_eq!(rig.post(&tap), 200);
    let bought = rig.message(group, 4);
    assert_eq!(parse_fill(bought.text().unwrap()), Some((1, "ACME".to_owned())));
    assert!(rig.fake.wait_for(|calls| answered(calls, &callback_id(&tap)), WAIT));

    say(supergroup, &format!("/top@{BOT_USERNAME}"));
    rig.message(supergroup, 1);
    rig.assert_no_more_than(group, 4);
    assert!(rig.fake.messages_to(user).is_empty(), "nothing goes to the private chat");
    for call in rig.fake.messages_to(group) {
        assert_html(&call);
    }
    let (_, player) = rig.admin_player(user);
    assert_eq!(player["trades"], 1, "{player}");
}

#[test]
fn rate_limits_and_blocked_chats_are_survived() {
    let rig = Rig::webhook("tg_limits");
    // 429 with retry_after 1: delivered once, after waiting.
    rig.fake.fail_next("sendMessage", 1, 1);
    let start = rig.ask(1006, "/start", 1);
    assert!(start.text().unwrap().contains("Welcome"));
    let sends: Vec<Call> =
        rig.fake.calls_of("sendMessage").into_iter().filter(|c| c.status == 429 || c.chat_id() == Some(1006)).collect();
    assert_eq!(sends.len(), 2, "one 429, one success: {sends:?}");
    assert_eq!(sends[0].status, 429);
    assert!(sends[1].ok());
    assert!(sends[1].at.duration_since(sends[0].at) >= Duration::from_millis(900), "retried before retry_after");
    rig.assert_no_more_than(1006, 1);

    // 403: the chat blocked the bot; others are still served.
    rig.fake.block_chat(1007);
    rig.say(1007, "/start");
    let refused = rig.fake.wait_for(|calls| calls.iter().any(|c| c.chat_id() == Some(1007) && c.status == 403), WAIT);
    assert!(refused, "no send to the blocked chat was tried");
    rig.fake.block_chat(-5002);
    assert_eq!(rig.post(&FakeTelegram::chat_text_update(1008, -5002, &format!("/start@{BOT_USERNAME}"))), 200);
    assert!(rig.fake.wait_for(|calls| calls.iter().any(|c| c.chat_id() == Some(-5002) && c.status == 403), WAIT));
    let other = rig.ask(1008, "/start", 1);
    assert!(other.text().unwrap().contains("Welcome back"), "{other:?}");
    rig.ask(1006, "/buy ACME 1", 2);
    // Unblocked and writing again: served again.
    rig.fake.unblock_chat(1007);
    let back = rig.ask(1007, "/portfolio", 1);
    assert!(back.text().unwrap().contains("Portfolio"), "{back:?}");
    let health = rig.client.get(format!("{}/healthz", rig.server.base)).send().unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

#[test]
fn chart_sends_a_png_photo() {
    let rig = Rig::webhook("tg_chart");
    let user = 1009;
    rig.ask(user, "/start", 1);
    let chart = rig.ask(user, "/chart ACME 1h", 2);
    assert_eq!(chart.method, "sendPhoto");
    assert_html(&chart);
    let png = chart.photo().expect("an uploaded photo");
    assert!(png.len() > 1_000, "{} bytes", png.len());
    assert_eq!(&png[..8], &PNG_SIGNATURE);
    assert_eq!(&png[12..16], b"IHDR");
    let mut reader = png::Decoder::new(png).read_info().expect("a PNG header");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).expect("PNG data");
    assert!(info.width >= 200 && info.height >= 100, "{}x{}", info.width, info.height);
    let caption = chart.text().unwrap();
    assert!(caption.contains("ACME") && caption.contains("1h"), "{caption}");
    // A chart's range buttons edit it in place (tests/reply_rules.rs); on a
    // message Telegram reports without its photo, a new picture is sent.
    assert_eq!(button(&chart, "1w"), "~/chart ACME 1w");
    let tap = with_id(press(user, &chart, "~/chart ACME 1w"));
    assert_eq!(rig.post(&tap), 200);
    let week = rig.message(user, 3);
    assert_eq!(week.method, "sendPhoto");
    assert!(week.photo().unwrap().starts_with(&PNG_SIGNATURE));
    assert!(week.text().unwrap().contains("1w"));
    assert!(rig.fake.wait_for(|calls| answered(calls, &callback_id(&tap)), WAIT));
    let unknown = rig.ask(user, "/chart NOPE 1h", 4);
    assert_eq!(unknown.method, "sendMessage");
    let bad_range = rig.ask(user, "/chart ACME 7y", 5);
    assert!(bad_range.text().unwrap().contains("Usage"), "{bad_range:?}");
}

#[test]
fn webhook_refuses_bad_input_and_ignores_what_it_does_not_handle() {
    let rig = Rig::webhook("tg_refuse");
    let user = 1010;
    let start = serde_json::to_vec(&with_id(FakeTelegram::text_update(user, "/start"))).unwrap();
    assert_eq!(rig.post_raw(start.clone(), None), 401);
    assert_eq!(rig.post_raw(start.clone(), Some("wrong")), 401);
    assert_eq!(rig.post_raw(start.clone(), Some(&SECRET[..SECRET.len() - 1])), 401);
    assert_eq!(rig.post_raw(start.clone(), Some(&format!("{SECRET}x"))), 401);
    assert_eq!(rig.post_raw(start.clone(), Some(&SECRET.to_uppercase())), 401);
    assert_eq!(rig.post_raw(start.clone(), Some("")), 401);
    rig.assert_no_more_than(user, 0);
    assert_eq!(rig.admin_player(user).0, 404, "a refused update created no player");
    // The refused update's id was not marked as seen: delivered right, it counts.
    assert_eq!(rig.post_raw(start, Some(SECRET)), 200);
    rig.message(user, 1);

    assert_eq!(rig.post_raw(b"{not json".to_vec(), Some(SECRET)), 400);
    assert_eq!(rig.post_raw(Vec::new(), Some(SECRET)), 400);
    assert_eq!(rig.post_raw(br#"{"update_id": "seven"}"#.to_vec(), Some(SECRET)), 400);
    assert_eq!(rig.post_raw(br#"[1, 2, 3]"#.to_vec(), Some(SECRET)), 400);
    assert_eq!(declared_length_status(&rig.server.base, 2 << 20), 413);

    let poll = json!({
        "poll": {
            "id": "5001", "question": "Up or down?", "options": [{"text": "up", "voter_count": 1}],
            "total_voter_count": 1, "is_closed": false, "is_anonymous": true, "type": "regular",
            "allows_multiple_answers": false,
        }
    });
    assert_eq!(rig.post(&poll), 200);
    assert_eq!(rig.post(&json!({"made_up_kind": {"x": [1, 2, {"y": null}]}})), 200);
    assert_eq!(rig.post(&json!({"message_reaction_count": {"whatever": true}})), 200);

    // An edited command never trades.
    let mut edited = FakeTelegram::text_update(user, "/buy ACME 1");
    edited["message"]["edit_date"] = json!(edited["message"]["date"]);
    let edited = json!({"edited_message": edited["message"]});
    assert_eq!(rig.post(&edited), 200);
    // A sticker gets no reply.
    let mut sticker = FakeTelegram::text_update(user, "");
    let message = sticker["message"].as_object_mut().unwrap();
    message.remove("text");
    message.insert(
        "sticker".into(),
        json!({
            "file_id": "CAACAgIAAxkBAAEfake", "file_unique_id": "AgADfake", "type": "regular",
            "width": 512, "height": 512, "is_animated": false, "is_video": false, "emoji": "📈",
        }),
    );
    assert_eq!(rig.post(&sticker), 200);
    // A photo whose caption looks like a command: not a command.
    let mut photo = FakeTelegram::text_update(user, "");
    let message = photo["message"].as_object_mut().unwrap();
    message.remove("text");
    message.insert(
        "photo".into(),
        json!([{"file_id": "AgACfake", "file_unique_id": "AQADfake", "width": 90, "height": 90}]),
    );
    message.insert("caption".into(), json!("/buy ACME 1"));
    assert_eq!(rig.post(&photo), 200);
    // Being added to / removed from a chat.
    let member =
        |status: &str| json!({"user": {"id": 123_456_789, "is_bot": true, "first_name": "StockBot"}, "status": status});
    let mut kicked = member("kicked");
    kicked["until_date"] = json!(0);
    let my_chat_member = json!({
        "my_chat_member": {
            "chat": {"id": user, "type": "private", "first_name": "Player1010"},
            "from": {"id": user, "is_bot": false, "first_name": "Player1010"},
            "date": 1_700_000_000,
            "old_chat_member": member("member"),
            "new_chat_member": kicked,
        }
    });
    assert_eq!(rig.post(&my_chat_member), 200);
    // Messages from bots and service messages get nothing either.
    let mut from_bot = FakeTelegram::text_update(user, "/buy ACME 1");
    from_bot["message"]["from"]["is_bot"] = json!(true);
    assert_eq!(rig.post(&from_bot), 200);

    let portfolio = rig.ask(user, "/portfolio", 2);
    assert!(portfolio.text().unwrap().contains("No holdings"), "{portfolio:?}");
    rig.assert_no_more_than(user, 2);
    let (status, player) = rig.admin_player(user);
    assert_eq!(status, 200);
    assert_eq!(player["trades"], 0, "{player}");
    assert!(rig.fake.calls().iter().all(|c| c.method != "sendMessage" || c.ok()));
}

#[test]
fn polling_handles_each_update_once_across_a_restart() {
    let fake = FakeTelegram::start();
    let dir = DataDir(common::fresh_data_dir("tg_poll"));
    let env = rig::polling_env(&fake, &dir);
    // A webhook left over from earlier: polling mode deletes it first.
    let set = reqwest::blocking::Client::new()
        .post(format!("{}/bot{}/setWebhook", fake.base_url, fake.token))
        .json(&json!({"url": "https://old.example.com/hook"}))
        .send()
        .unwrap();
    assert_eq!(set.status().as_u16(), 200);
    let users: Vec<i64> = (2001..=2005).collect();
    let mut ids = Vec::new();
    for user in &users {
        ids.push(fake.enqueue_update(FakeTelegram::text_update(*user, "/start")));
    }

    let server = Server::start(&env);
    assert!(rig::eventually(WAIT, || fake.webhook().is_none()), "deleteWebhook before polling");
    for user in &users {
        fake.wait_for_messages(*user, 1, WAIT);
    }
    for user in &users {
        ids.push(fake.enqueue_update(FakeTelegram::text_update(*user, "/buy ACME 2")));
    }
    for user in &users {
        let bought = fake.wait_for_messages(*user, 2, WAIT);
        assert_eq!(parse_fill(bought[1].text().unwrap()), Some((2, "ACME".to_owned())));
    }
    let confirmed = rig::eventually(WAIT, || fake.pending_updates() == 0);
    assert!(confirmed, "offset never confirmed: {} pending", fake.pending_updates());
    assert!(server.terminate().success());

    // Restart on the same data: only new updates are handled.
    for user in &users {
        ids.push(fake.enqueue_update(FakeTelegram::text_update(*user, "/portfolio")));
    }
    let server = Server::start(&env);
    for user in &users {
        let messages = fake.wait_for_messages(*user, 3, WAIT);
        assert!(messages[2].text().unwrap().contains("ACME: 2"), "{:?}", messages[2].text());
    }
    assert!(rig::eventually(WAIT, || fake.pending_updates() == 0));
    let client = server.client();
    for user in &users {
        let more = fake.wait_for(|calls| sent_to(calls, *user) > 3, Duration::from_millis(300));
        assert!(!more, "an update was handled twice: {:?}", fake.texts_to(*user));
        let (status, player) = server.admin(&client, &format!("/admin/players/{user}"));
        assert_eq!(status, 200);
        assert_eq!(player["trades"], 1, "{player}");
        assert_eq!(player["holdings"]["ACME"], 2, "{player}");
    }

    // One more update answers the long poll that confirms everything before it.
    let last = fake.enqueue_update(FakeTelegram::text_update(users[0], "/help"));
    fake.wait_for_messages(users[0], 4, WAIT);
    assert!(rig::eventually(WAIT, || fake.pending_updates() == 0));
    // Each update was handed out by getUpdates until an offset above it confirmed it.
    let polls = fake.calls_of("getUpdates");
    let mut offset_seen = 0;
    for poll in &polls {
        assert!(poll.ok(), "{poll:?}");
        let offset = poll.params["offset"].as_i64().unwrap_or(0);
        for update in poll.result().as_array().unwrap() {
            assert!(update["update_id"].as_i64().unwrap() >= offset);
        }
        offset_seen = offset_seen.max(offset);
    }
    // The poll that brought the last update confirmed all the others.
    assert!(offset_seen > ids.iter().copied().max().unwrap() && offset_seen >= last, "offsets: {offset_seen}");
    drop(server);
}
