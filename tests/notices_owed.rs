//! A notice committed but not yet out when its engine died still reaches
//! the player. Real binaries (two engines, a gateway, NATS, PostgreSQL, the
//! fake Bot API): a player sets price alerts on a fast-ticking market, NATS
//! is killed, an alert fires (durable in the log, its notice cannot be
//! published), the active engine is killed, NATS comes back, and the engine
//! that takes over publishes what the lease says was not out. In the end
//! every alert fired in the log was told to the player. (At least once: a
//! NATS killed before it synced its consumers' acknowledgements delivers
//! some outbox messages again — replies too — which is not this test's
//! concern.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::fake_telegram::FakeTelegram;
use common::rig::{eventually, next_update_id, post_webhook};
use rust_decimal::Decimal;
use serde_json::{Value, json};

const PLAYER: i64 = 7_300_000;
/// Anything that must happen is given this long.
const WAIT: Duration = Duration::from_secs(90);

/// One number the query returns from the cluster's database.
fn query_i64(database_url: &str, query: &str) -> i64 {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.query_one(query, &[]).await.unwrap().get::<_, i64>(0)
    })
}

/// Says `text` through the gateway; the player's first new message that matches `wanted`.
fn ask(cluster: &Cluster, client: &reqwest::blocking::Client, text: &str, wanted: impl Fn(&str) -> bool) -> String {
    let before = cluster.fake.texts_to(PLAYER).len();
    let mut update = FakeTelegram::text_update(PLAYER, text);
    update["update_id"] = json!(next_update_id());
    assert_eq!(post_webhook(client, &cluster.gateway_bases()[0], &update), 200, "{text}");
    let mut found = None;
    assert!(
        eventually(WAIT, || {
            found = cluster.fake.texts_to(PLAYER).into_iter().skip(before).find(|reply| wanted(reply));
            found.is_some()
        }),
        "no answer to {text}"
    );
    found.unwrap()
}

/// An alert in `direction` ('>' or '<') as close to the price as the market allows.
fn set_alert(cluster: &Cluster, client: &reqwest::blocking::Client, direction: char) {
    let step = if direction == '>' { Decimal::new(1, 2) } else { Decimal::new(-1, 2) };
    for k in 1..=50 {
        let market: Value =
            client.get(format!("{}/api/market", cluster.gateway_bases()[0])).send().unwrap().json().unwrap();
        let acme = market["assets"].as_array().unwrap().iter().find(|asset| asset["ticker"] == "ACME").unwrap();
        let price: Decimal = acme["price"].as_str().unwrap().parse().unwrap();
        let level = (price + step * Decimal::from(k)).round_dp(2);
        let reply = ask(cluster, client, &format!("/alert ACME {direction} {level}"), |reply| {
            reply.contains("set: I'll tell you") || reply.contains("already there") || reply.contains("most allowed")
        });
        if !reply.contains("already there") {
            return;
        }
    }
    panic!("no alert {direction} could be set");
}

/// Distinct alert notices the player got (each names its alert).
fn alerts_told(cluster: &Cluster) -> usize {
    let told: std::collections::BTreeSet<String> =
        cluster.fake.texts_to(PLAYER).into_iter().filter(|text| text.contains("crossing your alert")).collect();
    told.len()
}

#[test]
fn notices_owed_by_a_dead_engine_are_published_by_the_next() {
    let mut cluster = Cluster::start_with(2, 1, vec![("STOCKBOT__ENGINE__TICK_INTERVAL_MS", "100".to_owned())]);
    let client = reqwest::blocking::Client::new();
    ask(&cluster, &client, "/start", |_| true);
    let db = cluster.database_url.clone();
    assert!(
        eventually(WAIT, || query_i64(&db, "SELECT COALESCE(MAX(notices_through), 0) FROM engine_lease") > 0),
        "the lease says how far notices are out"
    );

    // Alerts fire while NATS is down: durable in the log, owed to the player.
    let owed = "SELECT COUNT(*) FROM events e, engine_lease l \
                WHERE e.kind = 'AlertFired' AND e.seq > COALESCE(l.notices_through, 0)";
    let fired_count =
        || usize::try_from(query_i64(&db, "SELECT COUNT(*) FROM events WHERE kind = 'AlertFired'")).unwrap();
    let mut owing = false;
    for _attempt in 0..20 {
        set_alert(&cluster, &client, '>');
        set_alert(&cluster, &client, '<');
        cluster.nats.kill();
        // Owed: fired after the lease's mark, and not told (one that got out
        // just before NATS died is told; the lease had not stored it yet).
        if eventually(Duration::from_secs(10), || query_i64(&db, owed) > 0) && alerts_told(&cluster) < fired_count() {
            owing = true;
            break;
        }
        // No alert crossed in time, or it got out first: again.
        cluster.nats.restart();
    }
    assert!(owing, "no alert fired and stayed untold while NATS was down");

    // The engine that owes it dies; the next one takes over once NATS is back.
    let client_probe = reqwest::blocking::Client::new();
    for index in cluster.active_engines(&client_probe) {
        cluster.kill_engine(index);
    }
    cluster.nats.restart();
    cluster.wait_active(WAIT);
    assert!(
        eventually(WAIT, || alerts_told(&cluster) >= fired_count()),
        "every alert fired was told: {} told, log {:?}",
        alerts_told(&cluster),
        cluster.fake.texts_to(PLAYER)
    );
}
