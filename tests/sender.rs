//! The outgoing Bot API sender against the fake Bot API: wire format (HTML,
//! inline keyboards, multipart photos), Telegram's limits without
//! head-of-line blocking, 429 `retry_after`, blocked chats, bounded queue;
//! and the fake itself, read back through teloxide's own types.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actors::domain::asset::{AssetSpec, CategorySpec, ModelParams, Universe};
use actors::domain::event::Trade;
use actors::domain::ids::{AssetId, OrderId, PlayerId, Ticker, TradeId};
use actors::domain::order::Side;
use actors::ports::{Notice, Notifier};
use common::fake_telegram::{BOT_USERNAME, Call, FakeTelegram};
use rust_decimal_macros::dec;
use stockbot::telegram::reply::{Button, Reply};
use stockbot::telegram::sender::{
    Outgoing, RateLimits, SendError, SenderHandle, TelegramNotifier, make_bot, start_sender,
};
use teloxide_core::payloads::{GetUpdatesSetters, SetWebhookSetters};
use teloxide_core::requests::Requester;
use teloxide_core::types::{BotCommand, ChatId, LabeledPrice, UpdateKind};

const WAIT: Duration = Duration::from_secs(20);

/// A fake Bot API, a runtime, and a sender started on it.
struct Rig {
    sender: SenderHandle,
    blocked: Arc<Mutex<Vec<i64>>>,
    _runtime: tokio::runtime::Runtime,
    fake: FakeTelegram,
}

fn rig(limits: RateLimits, queue_max: usize) -> Rig {
    let fake = FakeTelegram::start();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let blocked = Arc::new(Mutex::new(Vec::new()));
    let on_blocked = {
        let blocked = Arc::clone(&blocked);
        Arc::new(move |chat_id| blocked.lock().unwrap().push(chat_id))
    };
    let bot = make_bot(&fake.token, Some(&fake.base_url)).unwrap();
    let sender = {
        let _context = runtime.enter();
        start_sender(bot, limits, queue_max, on_blocked)
    };
    Rig { sender, blocked, _runtime: runtime, fake }
}

fn limits(global_per_sec: u32, chat_per_sec: u32, group_per_min: u32) -> RateLimits {
    RateLimits { global_per_sec, chat_per_sec, group_per_min }
}

fn text(chat_id: i64, body: &str) -> Outgoing {
    Outgoing::Text { chat_id, reply: Reply::text(body) }
}

fn sent(rig: &Rig) -> u64 {
    rig.sender.metrics().sent.load(std::sync::atomic::Ordering::Relaxed)
}

fn metric(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(std::sync::atomic::Ordering::Relaxed)
}

/// Waits (polling) until `done` holds; panics after `WAIT`.
fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "condition not reached within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the sender has nothing queued or in flight.
fn wait_idle(rig: &Rig) {
    wait_until(|| metric(&rig.sender.metrics().queued) == 0);
}

fn gap(a: &Call, b: &Call) -> Duration {
    b.at.duration_since(a.at)
}

#[test]
fn text_goes_out_as_html_with_the_inline_keyboard() {
    let rig = rig(RateLimits::default(), 100);
    let reply = Reply::text("<b>ACME</b> — Acme &amp; Co")
        .with_row(vec![Button::new("Buy 1", "/buy ACME 1"), Button::new("Sell 1", "/sell ACME 1")])
        .with_row(vec![Button::new("↻ Refresh", "/quote ACME")]);
    rig.sender.send(Outgoing::Text { chat_id: 77, reply }).unwrap();
    let messages = rig.fake.wait_for_messages(77, 1, WAIT);
    let call = &messages[0];
    assert_eq!(call.params["parse_mode"], "HTML");
    assert_eq!(call.text(), Some("<b>ACME</b> — Acme &amp; Co"));
    assert_eq!(call.result()["text"], "ACME — Acme & Co", "the fake shows the text as Telegram would");
    assert_eq!(
        call.buttons(),
        vec![
            vec![("Buy 1".to_owned(), "/buy ACME 1".to_owned()), ("Sell 1".to_owned(), "/sell ACME 1".to_owned())],
            vec![("↻ Refresh".to_owned(), "/quote ACME".to_owned())],
        ]
    );
    rig.sender.send(text(77, "no buttons")).unwrap();
    let messages = rig.fake.wait_for_messages(77, 2, WAIT);
    assert!(messages[1].params.get("reply_markup").is_none());
    wait_idle(&rig);
    assert_eq!(sent(&rig), 2);
}

#[test]
fn photo_is_uploaded_as_multipart_with_the_png_bytes() {
    let rig = rig(RateLimits::default(), 100);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    // Bytes that would trip a careless multipart parser: CRLFs, dashes, NULs.
    png.extend((0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    png.extend_from_slice(b"\r\n--not-the-boundary\r\n\0\0");
    let caption = Reply::text("<b>ACME</b> 1d").with_row(vec![Button::new("1h", "/chart ACME 1h")]);
    rig.sender.send(Outgoing::Photo { chat_id: 5, png: png.clone(), caption }).unwrap();
    let messages = rig.fake.wait_for_messages(5, 1, WAIT);
    let call = &messages[0];
    assert_eq!(call.method, "sendPhoto");
    assert_eq!(call.photo(), Some(png.as_slice()));
    assert_eq!(call.text(), Some("<b>ACME</b> 1d"));
    assert_eq!(call.params["parse_mode"], "HTML");
    assert_eq!(call.buttons(), vec![vec![("1h".to_owned(), "/chart ACME 1h".to_owned())]]);
}

#[test]
fn unchanged_edit_counts_as_sent() {
    let rig = rig(limits(30, 10, 20), 100);
    let reply = Reply::text("Portfolio: 1,000.00").with_row(vec![Button::new("↻", "/portfolio")]);
    rig.sender.send(Outgoing::Text { chat_id: 9, reply: reply.clone() }).unwrap();
    let message_id = rig.fake.wait_for_messages(9, 1, WAIT)[0].message_id().unwrap();
    let message_id = i32::try_from(message_id).unwrap();
    // Same text and keyboard: Telegram says "message is not modified".
    rig.sender.send(Outgoing::Edit { chat_id: 9, message_id, reply: reply.clone() }).unwrap();
    let changed = Reply::text("Portfolio: 990.00").with_row(vec![Button::new("↻", "/portfolio")]);
    rig.sender.send(Outgoing::Edit { chat_id: 9, message_id, reply: changed }).unwrap();
    assert!(rig.fake.wait_for(|calls| calls.iter().filter(|c| c.method == "editMessageText").count() == 2, WAIT));
    wait_idle(&rig);
    let edits = rig.fake.calls_of("editMessageText");
    assert_eq!(edits[0].status, 400);
    assert!(edits[0].response["description"].as_str().unwrap().contains("message is not modified"));
    assert!(edits[1].ok());
    assert_eq!(sent(&rig), 3);
    assert_eq!(metric(&rig.sender.metrics().failed), 0);
}

#[test]
fn private_chat_gets_at_most_one_message_per_second_in_order() {
    let rig = rig(limits(1_000, 1, 20), 100);
    for i in 0..4 {
        rig.sender.send(text(11, &format!("m{i}"))).unwrap();
    }
    let messages = rig.fake.wait_for_messages(11, 4, WAIT);
    let texts: Vec<_> = messages.iter().map(|c| c.text().unwrap().to_owned()).collect();
    assert_eq!(texts, ["m0", "m1", "m2", "m3"]);
    for pair in messages.windows(2) {
        // Sends are ≥ 1 s apart; arrival jitter on loopback is far below 100 ms.
        assert!(gap(&pair[0], &pair[1]) >= Duration::from_millis(900), "gap {:?}", gap(&pair[0], &pair[1]));
    }
}

#[test]
fn a_waiting_chat_does_not_hold_up_other_chats() {
    // The group may get one message a minute: its second waits ~60 s.
    let rig = rig(limits(1_000, 1, 1), 1_000);
    rig.sender.send(text(-500, "group 1")).unwrap();
    rig.sender.send(text(-500, "group 2")).unwrap();
    for chat in 1..=20 {
        rig.sender.send(text(chat, "hello")).unwrap();
    }
    assert!(rig.fake.wait_for(|calls| (1..=20).all(|chat| calls.iter().any(|c| c.chat_id() == Some(chat))), WAIT));
    assert_eq!(rig.fake.texts_to(-500), ["group 1"]);
    // Answers reach the sender just after the fake records the calls.
    wait_until(|| metric(&rig.sender.metrics().sent) == 21);
    assert_eq!(metric(&rig.sender.metrics().queued), 1, "only the group's second message waits");
    assert_eq!(rig.fake.texts_to(-500), ["group 1"]);
}

#[test]
fn global_limit_spreads_a_burst_over_seconds() {
    let rig = rig(limits(5, 1, 20), 1_000);
    let started = Instant::now();
    for chat in 1..=12 {
        rig.sender.send(text(chat, "burst")).unwrap();
    }
    assert!(rig.fake.wait_for(|calls| calls.iter().filter(|c| c.ok()).count() == 12, WAIT));
    // 5 + 5 + 2: the last window opens 2 s after the first sends.
    assert!(started.elapsed() >= Duration::from_millis(1_900), "took {:?}", started.elapsed());
    let calls = rig.fake.calls();
    let first = calls.first().unwrap().at;
    let in_first_second = calls.iter().filter(|c| c.at.duration_since(first) < Duration::from_millis(900)).count();
    assert!(in_first_second <= 5, "{in_first_second} sends in the first second");
}

#[test]
fn retry_after_is_waited_out_and_the_message_delivered_once() {
    let rig = rig(RateLimits::default(), 100);
    rig.fake.fail_next("sendMessage", 1, 1);
    rig.sender.send(text(21, "after the flood")).unwrap();
    let delivered = rig.fake.wait_for_messages(21, 1, WAIT);
    wait_idle(&rig);
    let attempts = rig.fake.calls_of("sendMessage");
    assert_eq!(attempts.len(), 2, "one 429, one success");
    assert_eq!(attempts[0].status, 429);
    assert!(
        gap(&attempts[0], &attempts[1]) >= Duration::from_secs(1),
        "retried after {:?}",
        gap(&attempts[0], &attempts[1])
    );
    assert_eq!(delivered.len(), 1);
    assert_eq!(metric(&rig.sender.metrics().retried_429), 1);
    assert_eq!(sent(&rig), 1);
}

#[test]
fn blocked_chat_is_reported_once_and_its_messages_dropped() {
    let rig = rig(RateLimits::default(), 100);
    rig.fake.block_chat(31);
    for i in 0..3 {
        rig.sender.send(text(31, &format!("m{i}"))).unwrap();
    }
    rig.sender.send(text(32, "unaffected")).unwrap();
    rig.fake.wait_for_messages(32, 1, WAIT);
    wait_idle(&rig);
    // `on_blocked` runs just after the queue is dropped.
    wait_until(|| !rig.blocked.lock().unwrap().is_empty());
    assert_eq!(*rig.blocked.lock().unwrap(), [31]);
    assert_eq!(rig.fake.calls_of("sendMessage").iter().filter(|c| c.chat_id() == Some(31)).count(), 1);
    assert_eq!(rig.sender.send(text(31, "later")), Err(SendError::Blocked));
    assert_eq!(metric(&rig.sender.metrics().blocked), 1);
    assert_eq!(metric(&rig.sender.metrics().failed), 3);
    // The user unblocks the bot and writes again: the reply goes out.
    rig.fake.unblock_chat(31);
    rig.sender.send_reply(text(31, "welcome back")).unwrap();
    assert_eq!(rig.fake.wait_for_messages(31, 1, WAIT)[0].text(), Some("welcome back"));
    assert_eq!(rig.blocked.lock().unwrap().len(), 1);
}

#[test]
fn full_queue_refuses_at_once() {
    let rig = rig(RateLimits::default(), 3);
    for _ in 0..3 {
        rig.sender.send(text(41, "x")).unwrap();
    }
    let started = Instant::now();
    assert_eq!(rig.sender.send(text(42, "y")), Err(SendError::Full));
    assert_eq!(
        rig.sender.send(Outgoing::AnswerCallback { callback_query_id: "q".into(), text: None }),
        Err(SendError::Full)
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    // Room comes back as messages go out.
    assert!(rig.fake.wait_for(|calls| calls.iter().filter(|c| c.ok()).count() >= 1, WAIT));
    wait_until(|| rig.sender.send(text(42, "y")).is_ok());
}

#[test]
fn callback_answers_overtake_queued_messages() {
    let rig = rig(limits(30, 1, 20), 100);
    for i in 0..3 {
        rig.sender.send(text(51, &format!("m{i}"))).unwrap();
    }
    rig.sender.send(Outgoing::AnswerCallback { callback_query_id: "cbq1".into(), text: Some("Done".into()) }).unwrap();
    assert!(rig.fake.wait_for(|calls| calls.iter().filter(|c| c.method == "sendMessage").count() >= 2, WAIT));
    let calls = rig.fake.calls();
    let position = |pred: &dyn Fn(&Call) -> bool| calls.iter().position(pred).unwrap();
    let answer = position(&|c| c.method == "answerCallbackQuery");
    let second_message = position(&|c| c.text() == Some("m1"));
    assert!(answer < second_message, "the answer waited behind the chat's queue");
    assert_eq!(calls[answer].params["callback_query_id"], "cbq1");
    assert_eq!(calls[answer].params["text"], "Done");
}

#[test]
fn malformed_html_is_refused_and_not_retried() {
    let rig = rig(RateLimits::default(), 100);
    rig.sender.send(text(61, "1 < 2 <br> oops")).unwrap();
    assert!(rig.fake.wait_for(|calls| !calls.is_empty(), WAIT));
    wait_idle(&rig);
    let calls = rig.fake.calls_of("sendMessage");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].status, 400);
    assert!(calls[0].response["description"].as_str().unwrap().starts_with("Bad Request: can't parse entities"));
    assert_eq!(metric(&rig.sender.metrics().failed), 1);
}

fn universe() -> Arc<Universe> {
    let category = CategorySpec { name: "Tech".into(), vol_daily: 0.01, jump_rate_daily: 0.1, jump_sigma: 0.01 };
    let asset = AssetSpec {
        ticker: Ticker::parse("ACME").unwrap(),
        name: "Acme".into(),
        category: "Tech".into(),
        initial_price: dec!(50),
        model: ModelParams::default(),
    };
    Arc::new(Universe::new(vec![category], vec![asset]).unwrap())
}

#[test]
fn notifier_tells_telegram_players_about_fills_in_their_private_chat() {
    let rig = rig(RateLimits::default(), 100);
    let notifier = TelegramNotifier::new(rig.sender.clone(), universe());
    let fill = |player| Trade {
        id: TradeId(1),
        order: Some(OrderId(12)),
        player: PlayerId(player),
        asset: AssetId(0),
        side: Side::Sell,
        qty: 3,
        price: dec!(51.5),
        fee: dec!(0.15),
    };
    // A local (play page) player has no Telegram chat.
    notifier.notify(PlayerId(-7), Notice::OrderFilled(fill(-7)));
    notifier.notify(PlayerId(71), Notice::OrderFilled(fill(71)));
    let messages = rig.fake.wait_for_messages(71, 1, WAIT);
    assert_eq!(messages[0].text(), Some("🔔 Order #12 filled — sold 3 ACME at 51.50 avg, fee 0.15"));
    wait_idle(&rig);
    assert_eq!(rig.fake.calls().len(), 1);
}

/// The fake's answers are what teloxide expects from Telegram.
#[test]
fn fake_speaks_the_wire_format_teloxide_reads() {
    let fake = FakeTelegram::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let bot = make_bot(&fake.token, Some(&fake.base_url)).unwrap();
    runtime.block_on(async {
        let me = bot.get_me().await.unwrap();
        assert_eq!(me.username(), BOT_USERNAME);

        bot.set_my_commands([BotCommand::new("buy", "Buy shares")]).await.unwrap();
        assert_eq!(fake.commands().unwrap()[0]["command"], "buy");

        let mut url = bot.api_url();
        url.set_path("/telegram/webhook");
        bot.set_webhook(url).secret_token("s3cret").await.unwrap();
        assert_eq!(fake.webhook().unwrap()["secret_token"], "s3cret");
        assert!(bot.get_updates().await.is_err(), "getUpdates conflicts with an active webhook");
        bot.delete_webhook().await.unwrap();

        let first = fake.enqueue_update(FakeTelegram::text_update(1_001, "/buy ACME 3"));
        let second = fake.enqueue_update(FakeTelegram::callback_update(1_001, 1_001, 5, "/quote ACME"));
        fake.enqueue_update(FakeTelegram::pre_checkout_update(1_001, "premium", 100));
        let updates = bot.get_updates().timeout(1).await.unwrap();
        assert_eq!(updates.len(), 3);
        assert_eq!(updates[0].id.0, u32::try_from(first).unwrap());
        match &updates[0].kind {
            UpdateKind::Message(message) => {
                assert_eq!(message.text(), Some("/buy ACME 3"));
                assert_eq!(message.chat.id, ChatId(1_001));
                assert_eq!(message.from.as_ref().unwrap().id.0, 1_001);
            }
            other => panic!("expected a message, got {other:?}"),
        }
        match &updates[1].kind {
            UpdateKind::CallbackQuery(query) => assert_eq!(query.data.as_deref(), Some("/quote ACME")),
            other => panic!("expected a callback query, got {other:?}"),
        }
        let pre_checkout = match &updates[2].kind {
            UpdateKind::PreCheckoutQuery(query) => query.id.clone(),
            other => panic!("expected a pre-checkout query, got {other:?}"),
        };
        // Confirming via offset drops what came before it.
        let offset = i32::try_from(second).unwrap() + 1;
        let rest = bot.get_updates().offset(offset).timeout(1).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(fake.pending_updates(), 1);

        // A long poll returns as soon as an update arrives.
        let last = rest[0].id.0;
        let started = Instant::now();
        let poll = bot.get_updates().offset(i32::try_from(last).unwrap() + 1).timeout(10);
        let (polled, ()) = tokio::join!(poll.into_future(), async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            fake.enqueue_update(FakeTelegram::text_update(1_002, "/start"));
        });
        assert_eq!(polled.unwrap().len(), 1);
        assert!(started.elapsed() < Duration::from_secs(8));

        let message = bot.send_message(ChatId(1_001), "hi").await.unwrap();
        assert_eq!(message.text(), Some("hi"));
        let invoice = bot
            .send_invoice(ChatId(1_001), "Premium", "Lower fees", "premium", "XTR", [LabeledPrice::new("Premium", 100)])
            .await
            .unwrap();
        assert_eq!(invoice.invoice().unwrap().total_amount, 100);
        assert!(invoice.id.0 > message.id.0);
        bot.answer_pre_checkout_query(pre_checkout, true).await.unwrap();
        assert!(bot.send_message(ChatId(-42), "").await.is_err(), "empty text is refused");
    });
    assert!(fake.calls().iter().all(|c| c.at <= Instant::now()));
    assert_eq!(fake.calls_of("answerPreCheckoutQuery").len(), 1);
}

/// `getUpdates` answers 401 for a wrong token, like Telegram.
#[test]
fn fake_refuses_a_wrong_token() {
    let fake = FakeTelegram::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let bot = make_bot("999:wrong", Some(&fake.base_url)).unwrap();
    let result = runtime.block_on(async { bot.get_me().await });
    assert!(result.is_err());
    assert_eq!(fake.calls()[0].status, 401);
}
