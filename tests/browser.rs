//! The play page in a real browser: headless Chromium driven over WebDriver
//! (fantoccini → chromedriver) at a phone's 390×844 and a desktop's
//! 1280×800, against one real server. A receipt stays when its Portfolio
//! button is tapped, a view's Refresh replaces the view, nothing overflows
//! sideways on the phone, the chart loads, and the page opened as a Telegram
//! Mini App (signed initData in its hash) plays as that Telegram user.
//!
//! Needs `chromedriver` and `chromium` on the PATH (Debian: `apt-get install
//! chromium chromium-driver`; `.ci/run` installs them). With
//! `STOCKBOT_SCREENSHOTS=1` it refreshes `docs/screenshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::rig::{Rig, WAIT};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// A chromedriver child, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_driver() -> Driver {
    let chromium = Command::new("chromium").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(
        chromium.is_ok_and(|status| status.success()),
        "chromium is not installed: the browser tests need Debian's chromium and chromium-driver \
         (apt-get install chromium chromium-driver)"
    );
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "cannot start chromedriver ({error}): the browser tests need Debian's chromium and \
                 chromium-driver (apt-get install chromium chromium-driver)"
            )
        });
    Driver { child, url: format!("http://127.0.0.1:{port}") }
}

async fn connect(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--hide-scrollbars", "--force-device-scale-factor=1"]}),
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&driver.url).await {
            Ok(client) => return client,
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("chromedriver at {} did not start a session: {error}", driver.url),
        }
    }
}

/// Waits until `script` (a JS expression) is truthy; returns its value. An
/// expression that throws (an element not there yet) counts as not yet.
async fn until(client: &Client, what: &str, script: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = client
            .execute(&format!("try {{ return ({script}); }} catch (e) {{ return false; }}"), vec![])
            .await
            .unwrap();
        if !(value.is_null() || value == json!(false) || value == json!(0) || value == json!("")) {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn bots(client: &Client) -> usize {
    let value = client.execute("return document.querySelectorAll('.bot').length;", vec![]).await.unwrap();
    usize::try_from(value.as_u64().unwrap()).unwrap()
}

/// Clicks the button labelled `label` in the last bot message that has one.
async fn tap(client: &Client, label: &str) {
    let script =
        "const all = [...document.querySelectorAll('.bot button')].filter(b => b.textContent === arguments[0]);
                  const b = all[all.length - 1]; if (!b) return false; b.click(); return true;";
    let clicked = client.execute(script, vec![json!(label)]).await.unwrap();
    assert_eq!(clicked, json!(true), "no button {label:?}");
}

async fn say(client: &Client, text: &str) {
    let input = client.find(Locator::Css("#text")).await.unwrap();
    input.send_keys(&format!("{text}\u{E007}")).await.unwrap();
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let dir = if std::env::var("STOCKBOT_SCREENSHOTS").as_deref() == Ok("1") {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots")
    } else {
        std::env::temp_dir().join("stockbot_screenshots")
    };
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

/// Sets the viewport (not the window) to `width`×`height`.
async fn viewport(client: &Client, width: u32, height: u32) {
    client.set_window_size(width, height).await.unwrap();
    let inner = client.execute("return [window.innerWidth, window.innerHeight];", vec![]).await.unwrap();
    let (w, h) = (inner[0].as_u64().unwrap(), inner[1].as_u64().unwrap());
    let (dw, dh) = (u64::from(width) - w, u64::from(height) - h);
    if dw > 0 || dh > 0 {
        client.set_window_size(width + u32::try_from(dw).unwrap(), height + u32::try_from(dh).unwrap()).await.unwrap();
    }
}

#[test]
fn the_play_page_works_on_a_phone_and_a_desktop_and_as_a_mini_app() {
    let driver = start_driver();
    let rig = Rig::start("browser", &[("TELEGRAM_WEBAPP_URL", "https://play.example.test/".to_owned())]);
    let token = rig.fake.env().into_iter().find(|(k, _)| *k == "TELEGRAM_BOT_TOKEN").unwrap().1;
    let base = rig.server.base.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let client = connect(&driver).await;

        // A phone.
        viewport(&client, 390, 844).await;
        client.goto(&base).await.unwrap();
        until(
            &client,
            "the welcome",
            "[...document.querySelectorAll('.bot')].some(b => b.textContent.includes('Welcome'))",
        )
        .await;
        say(&client, "/buy ACME 3").await;
        until(
            &client,
            "the fill",
            "[...document.querySelectorAll('.bot')].some(b => b.textContent.includes('Bought 3 ACME'))",
        )
        .await;
        // Portfolio under the receipt: a new message; the receipt stays.
        let before = bots(&client).await;
        tap(&client, "Portfolio").await;
        until(&client, "the portfolio", &format!("document.querySelectorAll('.bot').length > {before}")).await;
        until(
            &client,
            "the portfolio text",
            "document.querySelector('.bot:last-child').textContent.includes('Portfolio')",
        )
        .await;
        let receipt = "[...document.querySelectorAll('.bot')].some(b => b.textContent.includes('Bought 3 ACME'))";
        assert_eq!(client.execute(&format!("return {receipt};"), vec![]).await.unwrap(), json!(true));
        // Refresh on the portfolio view replaces it in place.
        let count = bots(&client).await;
        let mark = "const b = document.querySelector('#log > .bot:last-child'); b.dataset.marked = '1';
                    const s = document.createElement('i'); s.className = 'sentinel'; b.appendChild(s);";
        client.execute(mark, vec![]).await.unwrap();
        tap(&client, "↻ Refresh").await;
        until(&client, "the refreshed view", "document.querySelector('.sentinel') === null").await;
        assert_eq!(bots(&client).await, count, "a view's refresh added a message");
        let same = "const b = document.querySelector('#log > .bot:last-child');
                    return b.dataset.marked === '1' && b.textContent.includes('Portfolio');";
        assert_eq!(client.execute(same, vec![]).await.unwrap(), json!(true), "the view was not replaced in place");
        // Nothing sideways on a phone.
        let overflow =
            client.execute("return document.documentElement.scrollWidth - window.innerWidth;", vec![]).await.unwrap();
        assert!(overflow.as_i64().unwrap() <= 0, "the page scrolls sideways on a phone by {overflow}px");
        say(&client, "/chart ACME").await;
        until(
            &client,
            "the chart",
            "[...document.querySelectorAll('.bot img')].some(i => i.complete && i.naturalWidth > 0)",
        )
        .await;
        screenshot(&client, "phone.png").await;

        // A desktop: the price list sits beside the chat.
        viewport(&client, 1280, 800).await;
        say(&client, "/market").await;
        until(&client, "the market", "document.querySelector('.bot:last-child').textContent.includes('Market')").await;
        until(&client, "the price list", "document.querySelectorAll('#prices div').length > 0").await;
        let aside = client
            .execute(
                "const r = document.getElementById('prices').getBoundingClientRect(); return [r.width, r.height];",
                vec![],
            )
            .await
            .unwrap();
        assert!(aside[0].as_f64().unwrap() >= 200.0 && aside[1].as_f64().unwrap() >= 400.0, "prices aside: {aside}");
        screenshot(&client, "desktop.png").await;

        // Opened from Telegram: the signed initData in the hash plays as that user.
        let user = 72_001;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let user_json = format!(r#"{{"id":{user},"first_name":"Mini"}}"#);
        let init_data = gateway::webapp::sign(&token, &[("user", &user_json), ("auth_date", &now.to_string())]);
        let hash: String = url_encode(&init_data);
        client.goto(&format!("{base}/?miniapp#tgWebAppData={hash}")).await.unwrap();
        until(
            &client,
            "the Mini App welcome",
            "[...document.querySelectorAll('.bot')].some(b => b.textContent.includes('Mini'))",
        )
        .await;
        let header = client.execute("return getComputedStyle(document.querySelector('header')).display;", vec![]).await;
        assert_eq!(header.unwrap(), json!("none"), "the local name field shows inside Telegram");
        client.close().await.unwrap();
    });
    drop(runtime);
    assert!(rig.player(72_001)["cash"].is_string(), "the Mini App user has an account");
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
