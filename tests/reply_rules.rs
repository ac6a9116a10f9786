//! The reply rules end to end, through the real server and the fake Bot API:
//! receipts stay, views edit in place (text and chart), every reply fits one
//! phone screen and every error offers its next step; and the Mini App's
//! `initData` sign-in (valid → that Telegram user, anything else → 401).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use common::fake_telegram::{Call, FakeTelegram};
use common::rig::{Rig, SETTLE, WAIT, sent, with_id};
use serde_json::{Value, json};

/// The first message to `chat` after `after` whose text (or caption) matches.
fn reply_after(rig: &Rig, chat: i64, after: usize, wanted: impl Fn(&Call) -> bool) -> Call {
    let mut hit = None;
    rig.fake.wait_for(
        |calls| {
            hit = sent(calls, chat).into_iter().skip(after).find(|c| wanted(c)).cloned();
            hit.is_some()
        },
        WAIT,
    );
    hit.unwrap_or_else(|| panic!("no such message to {chat}; got {:?}", rig.texts(chat)))
}

fn shows(call: &Call, needle: &str) -> bool {
    call.text().or_else(|| call.result()["caption"].as_str()).is_some_and(|text| text.contains(needle))
}

/// A press of the button labelled `label` on `on`, as Telegram sends it
/// (the tapped message with its text or photo and keyboard).
fn press(user: i64, on: &Call, label: &str) -> Value {
    let data = on
        .buttons()
        .into_iter()
        .flatten()
        .find(|(text, _)| text == label)
        .map(|(_, data)| data)
        .unwrap_or_else(|| panic!("no button {label:?} in {:?}", on.buttons()));
    let mut update = FakeTelegram::callback_update(user, on.chat_id().unwrap(), on.message_id().unwrap(), &data);
    let message = &mut update["callback_query"]["message"];
    let result = on.result();
    if result["photo"].is_array() {
        message.as_object_mut().unwrap().remove("text");
        message["photo"] = result["photo"].clone();
        message["caption"] = result["caption"].clone();
    } else if let Some(text) = result["text"].as_str() {
        message["text"] = json!(text);
    }
    message["reply_markup"] = on.params["reply_markup"].clone();
    with_id(update)
}

fn edits_of(rig: &Rig, method: &str, message_id: i64) -> Vec<Call> {
    rig.fake.calls_of(method).into_iter().filter(|c| c.params["message_id"] == message_id).collect()
}

#[test]
fn a_portfolio_tap_under_a_receipt_sends_a_new_message_and_leaves_the_receipt() {
    let rig = Rig::start("rules-receipt", &[]);
    let user = 71_001;
    rig.ask(user, "/start", |t| t.contains("Welcome"));
    let receipt = rig.ask(user, "/buy ACME 2", |t| t.contains("Bought"));
    let after = rig.count(user);
    assert_eq!(rig.post(&press(user, &receipt, "Portfolio")), 200);
    let portfolio = reply_after(&rig, user, after, |c| shows(c, "Portfolio"));
    assert_ne!(portfolio.message_id(), receipt.message_id(), "the portfolio is a new message");
    std::thread::sleep(SETTLE);
    let id = receipt.message_id().unwrap();
    assert!(edits_of(&rig, "editMessageText", id).is_empty(), "the receipt was overwritten");
    assert!(edits_of(&rig, "editMessageMedia", id).is_empty(), "the receipt was overwritten");
}

#[test]
fn a_top_tab_tap_edits_the_tapped_message() {
    let rig = Rig::start("rules-top", &[]);
    let user = 71_002;
    rig.ask(user, "/start", |t| t.contains("Welcome"));
    let board = rig.ask(user, "/top", |t| t.contains("Top"));
    let after = rig.count(user);
    assert_eq!(rig.post(&press(user, &board, "Return %")), 200);
    let id = board.message_id().unwrap();
    let edited = rig.fake.wait_for(
        |calls| {
            calls.iter().any(|c| {
                c.method == "editMessageText"
                    && c.ok()
                    && c.params["message_id"] == id
                    && c.text().is_some_and(|t| t.contains("return"))
            })
        },
        WAIT,
    );
    assert!(edited, "the tab did not edit the board: {:?}", rig.fake.calls_of("editMessageText"));
    std::thread::sleep(SETTLE);
    assert_eq!(rig.count(user), after, "a tab tap sent a new message: {:?}", rig.texts(user));
}

#[test]
fn a_chart_range_tap_edits_the_chart_in_place() {
    let rig = Rig::start("rules-chart", &[]);
    let user = 71_003;
    rig.ask(user, "/start", |t| t.contains("Welcome"));
    let after = rig.count(user);
    rig.say(user, "/chart ACME");
    let chart = reply_after(&rig, user, after, |c| c.method == "sendPhoto");
    let after = rig.count(user);
    assert_eq!(rig.post(&press(user, &chart, "1h")), 200);
    let id = chart.message_id().unwrap();
    let edited = rig.fake.wait_for(
        |calls| calls.iter().any(|c| c.method == "editMessageMedia" && c.ok() && c.params["message_id"] == id),
        WAIT,
    );
    assert!(edited, "the range tap did not edit the chart: {:?}", rig.fake.calls_of("editMessageMedia"));
    let edit = edits_of(&rig, "editMessageMedia", id).remove(0);
    assert!(edit.params["media"]["caption"].as_str().unwrap().contains("1h"), "{:?}", edit.params);
    std::thread::sleep(SETTLE);
    assert_eq!(rig.count(user), after, "a range tap sent a new message");
}

/// Every reply to a sample of the whole command path, bad input included,
/// for a player with holdings, orders and alerts.
#[test]
fn every_reply_fits_one_screen_and_every_error_offers_a_next_step() {
    let unthrottled = [
        ("STOCKBOT__LIMITS__PLAYER_COMMANDS_PER_WINDOW", "100000".to_owned()),
        ("STOCKBOT__LIMITS__CHAT_COMMANDS_PER_WINDOW", "100000".to_owned()),
    ];
    let rig = Rig::start("rules-fit", &unthrottled);
    let play = |text: &str| -> Vec<Value> {
        let response = rig
            .client
            .post(format!("{}/api/play", rig.server.base))
            .json(&json!({"player": "fit", "text": text}))
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{text}");
        response.json::<Value>().unwrap()["replies"].as_array().unwrap().clone()
    };
    let market = rig.client.get(format!("{}/api/market", rig.server.base)).send().unwrap().json::<Value>().unwrap();
    let tickers: Vec<String> =
        market["assets"].as_array().unwrap().iter().map(|a| a["ticker"].as_str().unwrap().to_owned()).collect();
    let mut texts: Vec<String> =
        ["/portfolio", "/start", "/daily", "/daily", "/level", "/achievements"].map(str::to_owned).to_vec();
    // Holdings in every asset, resting orders and alerts: the longest lists.
    texts.extend(tickers.iter().map(|t| format!("/buy {t} 1")));
    texts.extend(tickers.iter().take(20).map(|t| format!("/buy {t} 1 @ 0.01")));
    texts.extend(tickers.iter().take(12).map(|t| format!("/alert {t} > 100000")));
    texts.extend(
        [
            "/help",
            "/market",
            "/market tech",
            "/market nope",
            "/quote ACME",
            "/quote NOPE",
            "/orders",
            "/portfolio",
            "/history",
            "/history 2",
            "/history 99",
            "/chart ACME",
            "/chart ACME 1w",
            "/top",
            "/top return",
            "/top gainers",
            "/alerts",
            "/news",
            "/premium",
            "/timezone +5:30",
            "/timezone +99",
            "/bankrupt",
            "/cancel 999999",
            "/unalert 999999",
            "/buy",
            "/buy ACME",
            "/buy ACME -3",
            "/buy ACME 1e9",
            "/buy ACME 999999999999",
            "/buy ACME 100000",
            "/sell ACME 1000",
            "/sell NOPE 1",
            "/stop ACME 1 @ 99999",
            "/stop ACME 1 @ 0.01",
            "/buy ACME 1 @ -1",
            "/alert ACME > 0.0001",
            "/admin halt ACME",
            "/frobnicate",
            "/",
            "hello there",
            "<b>not html</b>",
            "/start r123",
            "/sell ACME 1",
        ]
        .map(str::to_owned),
    );
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for text in &texts {
        for reply in play(text) {
            let body = reply["text"].as_str().unwrap();
            let lines = body.lines().count();
            assert!(lines <= 20 && body.chars().count() <= 4096, "{text:?}: {lines} lines\n{body}");
            let kind = reply["kind"].as_str().unwrap().to_owned();
            let buttons = reply["buttons"].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap()).count();
            if kind == "error" || kind == "menu" {
                assert!(buttons > 0, "{text:?}: an {kind} without a next step: {body}");
            }
            *kinds.entry(kind).or_default() += 1;
        }
    }
    for kind in ["receipt", "view", "error", "menu"] {
        assert!(kinds.contains_key(kind), "the sample never produced a {kind}: {kinds:?}");
    }
}

const BOT_TOKEN: &str = "123456:TEST-TOKEN";

fn tma_play(rig: &Rig, init_data: Option<&str>, text: &str) -> (u16, Value) {
    let mut request =
        rig.client.post(format!("{}/api/play", rig.server.base)).json(&json!({"player": "spoof", "text": text}));
    if let Some(init_data) = init_data {
        request = request.header("Authorization", format!("tma {init_data}"));
    }
    let response = request.send().unwrap();
    (response.status().as_u16(), response.json().unwrap_or(Value::Null))
}

#[test]
fn mini_app_init_data_plays_as_that_telegram_user_and_bad_init_data_is_refused() {
    // The fake's default token is what the server signs with.
    let rig = Rig::start("rules-miniapp", &[("TELEGRAM_WEBAPP_URL", "https://play.example.test/".to_owned())]);
    let token = rig.fake.env().into_iter().find(|(k, _)| *k == "TELEGRAM_BOT_TOKEN").map(|(_, v)| v).unwrap();
    assert_ne!(token, BOT_TOKEN);
    let user = 71_004;
    let welcome = rig.ask(user, "/start", |t| t.contains("Welcome"));
    let web_app = welcome.params["reply_markup"]["inline_keyboard"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().clone())
        .find_map(|button| button["web_app"]["url"].as_str().map(str::to_owned));
    assert_eq!(web_app.as_deref(), Some("https://play.example.test/"), "{:?}", welcome.params);
    let menu = |calls: &[Call]| calls.iter().any(|c| c.method == "setChatMenuButton" && c.ok());
    assert!(rig.fake.wait_for(menu, WAIT), "no setChatMenuButton");
    assert_eq!(rig.fake.menu_button().unwrap()["web_app"]["url"], "https://play.example.test/");

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let user_json = format!(r#"{{"id":{user},"first_name":"Mini","username":"mini"}}"#);
    let signed = |token: &str, auth_date: u64| {
        gateway::webapp::sign(
            token,
            &[("query_id", "AAHq"), ("user", &user_json), ("auth_date", &auth_date.to_string())],
        )
    };
    let good = signed(&token, now - 5);
    let (status, body) = tma_play(&rig, Some(&good), "/buy ACME 3");
    assert_eq!(status, 200, "{body}");
    assert!(body["replies"][0]["text"].as_str().unwrap().contains("Bought 3 ACME"), "{body}");
    // The same account as in chat.
    assert_eq!(rig.player(user)["holdings"]["ACME"], 3);

    let refused = [
        ("tampered", good.replace(&format!("%22id%22%3A{user}"), "%22id%22%3A71005")),
        ("signed with another token", signed(BOT_TOKEN, now - 5)),
        ("stale", signed(&token, now - 86_400 - 120)),
        ("unsigned", good.split("&hash=").next().unwrap().to_owned()),
        ("empty", String::new()),
    ];
    for (what, init_data) in refused {
        let (status, body) = tma_play(&rig, Some(&init_data), "/buy ACME 1");
        assert_eq!(status, 401, "{what}: {body}");
    }
    assert_eq!(rig.player(user)["holdings"]["ACME"], 3, "a refused request traded");
    let (status, _) = rig.server.admin(&rig.client, "/admin/players/71005");
    assert_eq!(status, 404, "the tampered id got an account");
}
