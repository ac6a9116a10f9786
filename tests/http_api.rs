//! The HTTP contract, black box: bad input gets 401/400/413/404 and nothing
//! is processed; the market and admin endpoints answer in the documented shapes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use common::{ADMIN_TOKEN, Server};

#[test]
fn bad_input_is_refused_and_nothing_processed() {
    let dir = common::fresh_data_dir("http");
    let server = Server::start(&[("STOCKBOT_DATA_DIR", dir.display().to_string())]);
    let client = server.client();
    let base = &server.base;
    let status = |response: reqwest::blocking::Response| response.status().as_u16();

    // Admin: wrong or missing token.
    assert_eq!(status(client.get(format!("{base}/admin/audit")).bearer_auth("wrong").send().unwrap()), 401);
    assert_eq!(status(client.get(format!("{base}/admin/audit")).send().unwrap()), 401);
    assert_eq!(status(client.get(format!("{base}/admin/players/42")).bearer_auth(ADMIN_TOKEN).send().unwrap()), 404);
    // Play: malformed JSON, wrong shape, empty player, huge body.
    let post = |body: Vec<u8>| {
        client.post(format!("{base}/api/play")).header("content-type", "application/json").body(body).send().unwrap()
    };
    assert_eq!(status(post(b"{not json".to_vec())), 400);
    assert_eq!(status(post(br#"{"player": 3, "text": "/start"}"#.to_vec())), 400);
    assert_eq!(status(post(br#"{"player": "", "text": "/start"}"#.to_vec())), 400);
    // A 10 MB body is refused from its declared length, before it is read.
    assert_eq!(declared_length_status(base, 10 * 1024 * 1024), 413);
    // Webhook: without a configured secret every update is refused.
    let update = br#"{"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"}, "from": {"id": 5, "is_bot": false, "first_name": "A"}, "text": "/start"}}"#;
    let webhook = client
        .post(format!("{base}/telegram/webhook"))
        .header("X-Telegram-Bot-Api-Secret-Token", "guess")
        .body(update.to_vec())
        .send()
        .unwrap();
    assert_eq!(status(webhook), 401);
    // Unknown routes.
    assert_eq!(status(client.get(format!("{base}/nope")).send().unwrap()), 404);
    assert_eq!(status(client.delete(format!("{base}/api/market")).send().unwrap()), 404);

    // Nothing above created a player or an event.
    let (code, audit) = server.admin(&client, "/admin/audit");
    assert_eq!(code, 200);
    assert_eq!(audit["events"], 0, "no event from refused input: {audit}");
    assert_eq!(audit["ok"], true);

    // The documented shapes.
    let market: serde_json::Value = client.get(format!("{base}/api/market")).send().unwrap().json().unwrap();
    let assets = market["assets"].as_array().unwrap();
    assert!(assets.len() >= 30);
    for asset in assets {
        for key in ["ticker", "name", "category", "price"] {
            assert!(asset[key].is_string(), "{key} in {asset}");
        }
        assert!(asset["halted"].is_boolean());
    }
    let replies = server.play(&client, "<b>x</b>&<script>", "/start").unwrap();
    assert!(replies[0].contains("&lt;b&gt;x&lt;/b&gt;&amp;&lt;script&gt;"), "name escaped: {}", replies[0]);
    let replies = server.play(&client, "ann", "/buy ACME 10").unwrap();
    assert!(replies[0].contains("/start"), "no account yet: {}", replies[0]);
    server.play(&client, "ann", "/start").unwrap();
    let replies = server.play(&client, "ann", "/buy acme 10").unwrap();
    assert!(replies[0].starts_with("🟢 Bought 10 ACME"), "{}", replies[0]);
    for bad in
        ["/buy ACME 0", "/buy ACME -5", "/buy NOPE 1", "/buy ACME 123456789012345678901234567890", "/sell ACME 11"]
    {
        let replies = server.play(&client, "ann", bad).unwrap();
        assert!(!replies[0].contains("Bought") && !replies[0].contains("Sold"), "{bad} → {}", replies[0]);
        assert!(replies[0].starts_with('⚠'), "{bad} → {}", replies[0]);
    }
    let (code, player) = server.admin(&client, "/admin/players/local:ann");
    assert_eq!(code, 200);
    assert_eq!(player["holdings"]["ACME"], 10);
    assert_eq!(player["trades"], 1);
    assert!(player["cash"].as_str().unwrap().parse::<f64>().unwrap() < 10_000.0);
    let metrics = client.get(format!("{base}/metrics")).send().unwrap().text().unwrap();
    assert!(metrics.contains("stockbot_trades_total 1"), "{metrics}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Sends only the head of a POST declaring `length` bytes and reads the status.
fn declared_length_status(base: &str, length: usize) -> u16 {
    use std::io::{Read, Write};
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let head = format!(
        "POST /api/play HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut response = [0_u8; 64];
    let read = stream.read(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response[..read]);
    text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

#[test]
fn live_prices_stream_as_server_sent_events() {
    use std::io::Read;
    let dir = common::fresh_data_dir("sse");
    let server = Server::start(&[
        ("STOCKBOT_DATA_DIR", dir.display().to_string()),
        ("STOCKBOT__ENGINE__TICK_INTERVAL_MS", "100".to_owned()),
    ]);
    let mut response = server.client().get(format!("{}/api/stream", server.base)).send().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut received = Vec::new();
    let mut chunk = [0_u8; 4096];
    while !String::from_utf8_lossy(&received).contains("\n\n") {
        let read = response.read(&mut chunk).unwrap();
        assert!(read > 0, "stream ended early");
        received.extend_from_slice(&chunk[..read]);
    }
    let text = String::from_utf8_lossy(&received);
    let data = text.lines().find_map(|line| line.strip_prefix("data: ")).unwrap();
    let prices: serde_json::Value = serde_json::from_str(data).unwrap();
    assert!(text.starts_with("event: prices"), "{text}");
    assert!(prices["assets"].as_array().unwrap().len() >= 30, "{prices}");
    assert!(prices["assets"][0]["price"].is_string());
    let _ = std::fs::remove_dir_all(dir);
}
