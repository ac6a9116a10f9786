//! The game through Telegram, black box: the real binary in webhook mode
//! against the fake Bot API, driven with real-shaped updates — the daily
//! bonus, the per-player rate limit, admin commands, Telegram Stars payments,
//! price alerts, a group's board across a supergroup migration — and the
//! graceful stop (updates taken are handled and their replies sent; the
//! webhook answers 503 meanwhile; polling confirms what it took).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use common::fake_telegram::{BOT_USERNAME, FakeTelegram};
use common::rig::{self, DataDir, Rig, SETTLE, WAIT, eventually, post_webhook};
use rust_decimal::Decimal;
use serde_json::json;

/// Everything unlocked: these tests are about the front, not level gating.
fn ungated() -> Vec<(&'static str, String)> {
    vec![("STOCKBOT__GAME__GATED", "false".to_owned())]
}

fn decimal(text: &str) -> Decimal {
    Decimal::from_str(&text.replace(',', "")).unwrap_or_else(|_| panic!("not a number: {text:?}"))
}

/// The word after `label` in `text`, as a number ("Bid 1,234.50 · …" → 1234.50).
fn number_after(text: &str, label: &str) -> Decimal {
    let rest = text.split(label).nth(1).unwrap_or_else(|| panic!("no {label:?} in {text:?}"));
    let word: String = rest.trim_start().chars().take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ',').collect();
    decimal(word.trim_end_matches('.'))
}

fn is_throttle(text: &str) -> bool {
    text.starts_with("🐢")
}

#[test]
fn the_daily_bonus_is_paid_once_a_day() {
    let rig = Rig::start("game_daily", &ungated());
    let user = 3_101;
    rig.ask(user, "/start", |t| t.contains("Welcome"));
    let before = decimal(&rig.cash(user));

    let first = rig.ask(user, "/daily", |t| t.starts_with("🎁") || t.contains("already claimed"));
    let first = first.text().unwrap().to_owned();
    assert!(first.starts_with("🎁 Daily bonus: +"), "{first}");
    let bonus = number_after(&first, "+");
    assert!(bonus > Decimal::ZERO, "{first}");
    assert_eq!(decimal(&rig.cash(user)), before + bonus);

    let second = rig.ask(user, "/daily", |t| t.starts_with("🎁") || t.contains("already claimed"));
    assert!(second.text().unwrap().contains("already claimed"), "{:?}", second.text());
    assert_eq!(decimal(&rig.cash(user)), before + bonus, "a second claim paid again");
    assert_eq!(rig.settled_count(user, |t| t.starts_with("🎁")), 1, "{:?}", rig.texts(user));

    // Payments are off without STOCKBOT_PREMIUM_PRICE_STARS: no invoice.
    let premium = rig.ask(user, "/premium", |t| t.starts_with("💎"));
    assert!(premium.text().unwrap().contains("not enabled"), "{:?}", premium.text());
    std::thread::sleep(SETTLE);
    assert!(rig.fake.calls_of("sendInvoice").is_empty());
}

#[test]
fn a_flooding_player_is_throttled_and_others_are_still_served() {
    let rig = Rig::start("game_flood", &ungated());
    let (flooder, other) = (3_201, 3_202);
    rig.ask(flooder, "/start", |t| t.contains("Welcome"));
    rig.ask(other, "/start", |t| t.contains("Welcome"));
    let flood_seconds = 2;
    let sent = std::thread::scope(|scope| {
        let flood = scope.spawn(|| {
            let client = rig.server.client();
            let (start, mut sent) = (Instant::now(), 0);
            while start.elapsed() < Duration::from_secs(flood_seconds) {
                // 100 messages a second.
                let due = start + Duration::from_millis(10 * sent);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                let status =
                    post_webhook(&client, &rig.server.base, &FakeTelegram::text_update(flooder, "/quote ACME"));
                assert_eq!(status, 200, "the webhook refused an update");
                sent += 1;
            }
            sent
        });
        // Meanwhile another player asks for their portfolio, four times a second.
        let mut latencies = Vec::new();
        while !flood.is_finished() {
            let asked = Instant::now();
            let reply = rig.ask(other, "/portfolio", |t| t.contains("Portfolio"));
            latencies.push(reply.at.saturating_duration_since(asked));
            std::thread::sleep(Duration::from_millis(250));
        }
        latencies.sort();
        println!("other player's /portfolio latencies: {latencies:?}");
        assert!(!latencies.is_empty());
        // Measured where Telegram sees the reply. The median is the claim
        // (~1 s); the worst case only has to stay far from a timeout.
        let median = latencies[latencies.len() / 2];
        assert!(median < Duration::from_secs(1), "median {median:?}: {latencies:?}");
        assert!(latencies.iter().all(|l| *l < Duration::from_secs(5)), "{latencies:?}");
        flood.join().unwrap()
    });
    assert!(sent >= 150, "only {sent} messages sent in {flood_seconds} s");

    std::thread::sleep(SETTLE);
    let texts = rig.texts(flooder);
    let quotes = texts.iter().filter(|t| t.contains("<b>ACME</b>")).count();
    let throttled = texts.iter().filter(|t| is_throttle(t)).count();
    println!("{sent} sent by the flooder: {quotes} quotes, {throttled} throttle replies");
    assert!(quotes >= 1, "{texts:?}");
    assert!(throttled >= 1, "no throttle reply: {texts:?}");
    // A throttled command does nothing; the polite reply comes once per window, not per message.
    assert!(quotes + throttled < usize::try_from(sent).unwrap() / 2, "{quotes} + {throttled} replies to {sent}");
    // The other player was never throttled.
    assert!(!rig.texts(other).iter().any(|t| is_throttle(t)));
}

#[test]
fn only_admins_may_grant_cash() {
    let (admin, player, intruder) = (3_301, 3_302, 3_303);
    let mut env = ungated();
    env.push(("STOCKBOT_ADMINS", admin.to_string()));
    let rig = Rig::start("game_admin", &env);
    for user in [admin, player, intruder] {
        rig.ask(user, "/start", |t| t.contains("Welcome"));
    }
    let before = decimal(&rig.cash(player));

    let answered = |t: &str| t.starts_with("⛔") || t.starts_with("🛠") || t.starts_with("⚠️");
    let refused = rig.ask(intruder, &format!("/admin grant {player} 1000"), answered);
    assert!(refused.text().unwrap().starts_with("⛔"), "{:?}", refused.text());
    assert_eq!(decimal(&rig.cash(player)), before, "a non-admin's grant paid");
    assert_eq!(decimal(&rig.cash(intruder)), before, "the intruder gained something");

    let granted = rig.ask(admin, &format!("/admin grant {player} 1000"), answered);
    assert!(granted.text().unwrap().starts_with("🛠 Granted"), "{:?}", granted.text());
    assert_eq!(decimal(&rig.cash(player)), before + Decimal::from(1_000));
}

#[test]
fn premium_is_bought_with_stars_and_granted_once_per_charge() {
    let stars = 50;
    let mut env = ungated();
    env.push(("STOCKBOT_PREMIUM_PRICE_STARS", stars.to_string()));
    let rig = Rig::start("game_stars", &env);
    let user = 3_401;
    rig.ask(user, "/start", |t| t.contains("Welcome"));
    assert_eq!(rig.player(user)["entitlements"], json!([]));

    // /premium: what it gives, then an invoice in Stars.
    let after = rig.count(user);
    rig.say(user, "/premium");
    let text = rig.wait_text(user, after, |t| t.starts_with("💎"));
    assert!(text.text().unwrap().contains("💎"), "{:?}", text.text());
    assert!(rig.fake.wait_for(|calls| calls.iter().any(|c| c.method == "sendInvoice"), WAIT));
    let invoices = rig.fake.calls_of("sendInvoice");
    assert_eq!(invoices.len(), 1);
    let invoice = &invoices[0];
    assert!(invoice.ok(), "{:?}", invoice.response);
    assert_eq!(invoice.chat_id(), Some(user));
    assert_eq!(invoice.params["currency"], "XTR");
    assert_eq!(invoice.params["prices"].as_array().unwrap().len(), 1);
    assert_eq!(invoice.params["prices"][0]["amount"], stars);
    assert!(invoice.params["provider_token"].as_str().is_none_or(str::is_empty));
    // The invoice comes after the text it belongs to.
    let calls = rig.fake.calls();
    let order: Vec<&str> = common::rig::sent(&calls, user).iter().map(|c| c.method.as_str()).collect();
    assert_eq!(order.last(), Some(&"sendInvoice"), "{order:?}");
    let payload = invoice.params["payload"].as_str().unwrap().to_owned();

    // Checkout: ours at the right price is accepted at once; anything else refused with a reason.
    let answer_to = |update: serde_json::Value| {
        let id = update["pre_checkout_query"]["id"].as_str().unwrap().to_owned();
        assert_eq!(rig.post(&update), 200);
        let answered = |calls: &[common::fake_telegram::Call]| {
            calls
                .iter()
                .find(|c| c.method == "answerPreCheckoutQuery" && c.params["pre_checkout_query_id"] == id)
                .cloned()
        };
        let mut answer = None;
        rig.fake.wait_for(
            |calls| {
                answer = answered(calls);
                answer.is_some()
            },
            WAIT,
        );
        answer.unwrap_or_else(|| panic!("pre-checkout query {id} not answered"))
    };
    let accepted = answer_to(FakeTelegram::pre_checkout_update(user, &payload, stars));
    assert!(accepted.ok(), "{:?}", accepted.response);
    assert_eq!(accepted.params["ok"], true, "{:?}", accepted.params);
    for (bad_payload, amount) in [("something-else", stars), (payload.as_str(), stars - 1)] {
        let refused = answer_to(FakeTelegram::pre_checkout_update(user, bad_payload, amount));
        assert!(refused.ok(), "{:?}", refused.response);
        assert_eq!(refused.params["ok"], false, "{:?}", refused.params);
        assert!(!refused.params["error_message"].as_str().unwrap_or_default().is_empty());
    }
    assert_eq!(rig.player(user)["entitlements"], json!([]), "a checkout alone granted premium");

    // The payment, delivered twice (two update ids, one charge): granted once, thanked once.
    let after = rig.count(user);
    let payment = FakeTelegram::successful_payment_update(user, &payload, stars, "stxCHARGE-0001");
    assert_eq!(rig.post(&payment), 200);
    let thanks = rig.wait_text(user, after, |t| t.contains("Thank you") || t.contains("thank you"));
    assert!(thanks.text().unwrap().contains("Premium"), "{:?}", thanks.text());
    assert_eq!(rig.post(&payment), 200);
    let thanked = rig.settled_count(user, |t| t.to_lowercase().contains("thank you"));
    assert_eq!(thanked, 1, "{:?}", rig.texts(user));

    // With premium, /premium says so and sends no second invoice.
    let has = rig.ask(user, "/premium", |t| t.starts_with("💎"));
    assert!(has.text().unwrap().contains("You have premium"), "{:?}", has.text());
    std::thread::sleep(SETTLE);
    assert_eq!(rig.fake.calls_of("sendInvoice").len(), 1);
    // The admin API shows the entitlement (once).
    assert_eq!(rig.player(user)["entitlements"], json!(["premium"]), "{}", rig.player(user));
}

/// Sets an alert just past the mid in `direction` (">" or "<"); returns its id.
fn alert_near_the_mid(rig: &Rig, user: i64, direction: &str) -> u64 {
    let step = Decimal::new(3, 2);
    for _ in 0..20 {
        let quote = rig.ask(user, "/quote ACME", |t| t.contains("<b>ACME</b>"));
        let text = quote.text().unwrap();
        let mid = (number_after(text, "Bid") + number_after(text, "Ask")) / Decimal::TWO;
        let price = if direction == ">" { mid + step } else { mid - step }.round_dp(2);
        // Not a fired alert's notice ("🔔 Alert #N: ACME rose…"): the answer to this command.
        let answer = |t: &str| t.contains(" set: ") || t.starts_with("⚠️");
        let reply = rig.ask(user, &format!("/alert ACME {direction} {price}"), answer);
        let reply = reply.text().unwrap();
        if let Some((head, _)) = reply.split_once(" set: ") {
            return head.trim_start_matches("🔔 Alert #").parse().unwrap();
        }
        // The price moved past it meanwhile ("already there"): try again.
        assert!(reply.contains("already there"), "{reply}");
    }
    panic!("no alert could be set near the mid");
}

#[test]
fn a_crossed_alert_notifies_exactly_once() {
    let mut env = ungated();
    // Fast market minutes: the price wanders past a close alert within seconds.
    env.push(("STOCKBOT__ENGINE__TICK_INTERVAL_MS", "20".to_owned()));
    let rig = Rig::start("game_alert", &env);
    let user = 3_501;
    rig.ask(user, "/start", |t| t.contains("Welcome"));
    let above = alert_near_the_mid(&rig, user, ">");
    let below = alert_near_the_mid(&rig, user, "<");
    assert_ne!(above, below);

    let fired_text = |id: u64| format!("🔔 Alert #{id}: ACME");
    let count = |texts: &[String], id: u64| texts.iter().filter(|t| t.starts_with(&fired_text(id))).count();
    let any_fired = rig.fake.wait_for(
        |calls| {
            let texts: Vec<String> =
                common::rig::sent(calls, user).iter().filter_map(|c| c.text().map(str::to_owned)).collect();
            count(&texts, above) + count(&texts, below) > 0
        },
        WAIT,
    );
    assert!(any_fired, "neither alert fired: {:?}", rig.texts(user));
    // Let the price keep moving: an alert fires once, never again.
    std::thread::sleep(Duration::from_secs(3));
    let texts = rig.texts(user);
    let (fired_above, fired_below) = (count(&texts, above), count(&texts, below));
    assert!(fired_above <= 1 && fired_below <= 1, "an alert fired twice: {texts:?}");
    assert!(fired_above + fired_below >= 1);
    // A fired alert is gone from /alerts.
    let list = rig.ask(user, "/alerts", |t| t.contains("alerts") || t.contains("No alerts"));
    let list = list.text().unwrap();
    for (id, fired) in [(above, fired_above), (below, fired_below)] {
        if fired == 1 {
            assert!(!list.contains(&format!("#{id} ")), "fired alert #{id} still listed: {list}");
        }
    }
}

#[test]
fn a_group_keeps_its_board_when_it_becomes_a_supergroup() {
    let rig = Rig::start("game_migrate", &ungated());
    let (group, supergroup) = (-4_601, -1_001_234_564_601);
    let (alice, bob) = (3_601, 3_602);
    for user in [alice, bob] {
        rig.ask(user, "/start", |t| t.contains("Welcome"));
        // Playing in the group puts the player on its board.
        rig.ask_in(user, group, &format!("/portfolio@{BOT_USERNAME}"), |t| t.contains("Portfolio"));
    }
    let is_top = |t: &str| t.starts_with("🏆 <b>Top");
    let board = rig.ask_in(alice, group, &format!("/top@{BOT_USERNAME}"), is_top);
    let board = board.text().unwrap().to_owned();
    assert!(board.contains("Player3601") && board.contains("Player3602"), "{board}");

    // Telegram sends both service messages; the board moves once.
    assert_eq!(rig.post(&FakeTelegram::migrate_to_update(alice, group, supergroup)), 200);
    assert_eq!(rig.post(&FakeTelegram::migrate_from_update(alice, supergroup, group)), 200);
    let moved = eventually(WAIT, || {
        let top = rig.ask_in(bob, supergroup, &format!("/top@{BOT_USERNAME}"), is_top);
        let top = top.text().unwrap();
        top.contains("Player3601") && top.contains("Player3602") && top.contains("this group")
    });
    assert!(moved, "the board did not follow the group: {:?}", rig.texts(supergroup));
    // Service messages get no reply.
    assert!(rig.texts(group).iter().all(|t| !t.contains("migrat")));
}

#[test]
fn a_stop_answers_what_was_taken_and_refuses_the_rest() {
    // Two messages a second per chat: six replies take ~3 s to go out.
    let rig = Rig::start("game_stop", &[("TELEGRAM_RATE_CHAT_PER_SEC", "2".to_owned())]);
    let user = 3_701;
    for n in 0..6 {
        rig.say(user, if n == 0 { "/start" } else { "/help" });
    }
    let pid = rig.server.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // While it drains, the webhook refuses new updates with 503 (Telegram retries them later).
    // (One posted before the signal took effect may still be taken — and
    // then it is answered; a server already gone takes nothing either.)
    let late = FakeTelegram::text_update(user, "/market");
    let mut taken_late = 0;
    let refused_in_time = eventually(WAIT, || {
        let status = post_webhook(&rig.client, &rig.server.base, &late);
        assert!(matches!(status, 0 | 200 | 503), "status {status}");
        taken_late += usize::from(status == 200);
        status != 200
    });
    assert!(refused_in_time, "the webhook kept taking updates after SIGTERM");

    let Rig { mut server, fake, dir, .. } = rig;
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // Every update taken before the stop is answered; the one refused is not.
    let texts = fake.texts_to(user);
    assert_eq!(texts.iter().filter(|t| t.contains("Welcome")).count(), 1, "{texts:?}");
    assert_eq!(texts.iter().filter(|t| t.contains("<b>Commands</b>")).count(), 5, "{texts:?}");
    assert_eq!(texts.iter().filter(|t| t.contains("Market")).count(), taken_late, "{texts:?}");
    drop((fake, dir));
}

#[test]
fn a_polling_stop_leaves_nothing_to_redo() {
    let fake = FakeTelegram::start();
    let dir = DataDir(common::fresh_data_dir("game_poll_stop"));
    let env = rig::polling_env(&fake, &dir);
    let server = common::Server::start(&env);
    let users: Vec<i64> = (3_801..=3_805).collect();
    for user in &users {
        fake.enqueue_update(FakeTelegram::text_update(*user, "/start"));
    }
    for user in &users {
        fake.wait_for_messages(*user, 1, WAIT);
    }
    // Stopped right after the replies: no later poll has confirmed the
    // updates yet, so the stop must.
    assert!(server.terminate().success());
    assert_eq!(fake.pending_updates(), 0, "updates handled but left unconfirmed at the stop");

    // A restart gets nothing twice.
    let server = common::Server::start(&env);
    fake.enqueue_update(FakeTelegram::text_update(users[0], "/help"));
    fake.wait_for_messages(users[0], 2, WAIT);
    std::thread::sleep(SETTLE);
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for user in &users {
        counts.insert(*user, fake.texts_to(*user).len());
    }
    assert_eq!(counts[&users[0]], 2, "{:?}", fake.texts_to(users[0]));
    assert!(users[1..].iter().all(|u| counts[u] == 1), "{counts:?}");
    drop(server);
}
