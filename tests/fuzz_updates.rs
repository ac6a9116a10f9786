//! Fuzzing the Telegram front: over a million generated command strings
//! through the command parser and the reply renderer, and a quarter of a
//! million generated or mutated update documents through teloxide's `Update`
//! parsing and then, for a sample, through the real command path
//! (`Bot::handle_text` on a running engine) and through the whole update
//! handler to a fake Bot API. Zero panics, and every reply is non-empty,
//! well-formed Telegram HTML with every outside string escaped, short enough
//! for Telegram, with valid buttons.
//!
//! Deterministic: the seed is fixed (set `FUZZ_SEED` to explore others) and
//! printed, so a failure can be replayed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use actors::clock::ManualClock;
use actors::engine::{Engine, EngineDeps};
use actors::ports::NullNotifier;
use actors::ports::memory::MemoryStore;
use common::fake_telegram::{Call, FakeTelegram, NOT_MODIFIED};
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use stockbot::bot::{Bot, Speaker};
use stockbot::coord::local::LocalCoordinator;
use stockbot::telegram::command::{self, BotCommand, ParseError};
use stockbot::telegram::reply::{self, Button, Reply};
use stockbot::telegram::sender::{RateLimits, make_bot, start_sender};
use stockbot::telegram::update::{UpdateHandler, speaker_of};
use teloxide_core::types::{Update, UpdateKind};

const BOT: &str = "stockbot_test_bot";
/// Command strings through the parser.
const COMMANDS: usize = 1_000_000;
/// Update documents through `Update` parsing.
const UPDATES: usize = 250_000;
/// Parsed texts run through the real command path.
const DISPATCHED: usize = 20_000;
/// Charts are the one slow command (a PNG each): at most this many are drawn.
const CHARTS_MAX: usize = 60;
/// Parsed updates run through the whole update handler to the fake Bot API.
const HANDLED: usize = 4_000;
/// Players with accounts that most of the dispatched texts come from.
const PLAYER_POOL: i64 = 200;
const TEXT_UTF16_MAX: usize = 4096;
const CAPTION_UTF16_MAX: usize = 1024;

fn seed(salt: u64) -> u64 {
    // Printed so that a failure can be replayed with FUZZ_SEED.
    let seed = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x05ee_db07);
    println!("FUZZ_SEED={seed} (salt {salt})");
    seed ^ salt
}

// ---------------------------------------------------------------------------
// Generators.

const COMMAND_CORPUS: &[&str] = &[
    "/start",
    "/start ref_12345",
    "/help",
    "/market",
    "/market Tech",
    "/market tech energy",
    "/quote ACME",
    "/quote acme",
    "/buy ACME 10",
    "/buy acme 1,000",
    "/buy ACME 3 @ 12.50",
    "/buy ACME 3 @12.5",
    "/sell ACME 5",
    "/sell QBIT 1 @ $1,200",
    "/stop ACME 3 @ 9",
    "/orders",
    "/cancel 12",
    "/cancel #7",
    "/portfolio",
    "/p",
    "/history",
    "/history 3",
    "/chart ACME",
    "/chart ACME 1h",
    "/chart acme 1W",
    "/top",
    "/achievements",
    "/level",
    "/daily",
    "/alert ACME > 12",
    "/alert ACME<9.5",
    "/alerts",
    "/premium",
    "/buy@stockbot_test_bot ACME 1",
    "/top@StockBot_Test_Bot",
    "/top@OtherBot",
    "hello",
    "",
];

const COMMAND_NAMES: &[&str] = &[
    "start",
    "help",
    "market",
    "quote",
    "buy",
    "sell",
    "stop",
    "orders",
    "cancel",
    "portfolio",
    "p",
    "history",
    "chart",
    "top",
    "achievements",
    "level",
    "daily",
    "alert",
    "alerts",
    "premium",
    "BUY",
    "Sell",
    "frobnicate",
    "",
    "buy_",
    "b",
    "stArt",
];

const TOKENS: &[&str] = &[
    "<script>",
    "</script>",
    "<b>",
    "</b>",
    "<a href=\"x\">",
    "&",
    "&amp;",
    "&lt;",
    "&#60;",
    "\"",
    "'",
    "'; DROP TABLE players;--",
    "%s%n%x",
    "{}",
    "{{",
    "${jndi:ldap://x}",
    "\0",
    "@",
    "@ ",
    "@@",
    "@12.5",
    "#",
    "#-1",
    "-1",
    "0",
    "00",
    "1",
    "10",
    "999999999999",
    "1000000000",
    "1000000001",
    "18446744073709551616",
    "4294967296",
    "99999999999999999999999999999999999999",
    "1e9",
    "1E-3",
    "NaN",
    "inf",
    "-inf",
    "0x10",
    "1_000",
    "1,000",
    "1,,0",
    "12.345",
    "12.",
    ".5",
    "0.01",
    "0.001",
    "1..2",
    "$",
    "$$1",
    "٣",
    "１０",
    "\u{202E}",
    "\u{200B}",
    "\u{FEFF}",
    "\u{0301}",
    "\u{00A0}",
    "\u{2003}",
    "\u{3000}",
    "🚀",
    "👨‍👩‍👧",
    "é",
    "İ",
    "ß",
    "\r\n",
    "\t",
    "\n",
    " ",
    "/",
    "//",
    "/buy",
    "/sell",
    "@stockbot_test_bot",
    "@STOCKBOT_TEST_BOT",
    "@OtherBot",
    "@stockbot_test_bot@x",
    ">",
    "<",
    "> 12",
    "< 0.01",
    ">>",
    "1h",
    "1d",
    "1w",
    "7y",
    "ACME",
    "acme",
    "QBIT",
    "ACMEACMEACME",
    "AC;ME",
    "Tech",
    "Space",
];

const NAMES: &[&str] = &[
    "<b>x</b>&<script>",
    "Ann",
    "",
    " ",
    "&amp;",
    "\"quoted\"",
    "</b></i></code>",
    "<a href=\"javascript:alert(1)\">x</a>",
    "Zoë 🚀",
    "\u{202E}evil",
    "名前",
    "👨‍👩‍👧‍👦👨‍👩‍👧‍👦👨‍👩‍👧‍👦",
    "\0nul",
];

/// A random character: mostly printable ASCII, sometimes anything.
fn random_char(rng: &mut StdRng) -> char {
    match rng.random_range(0..100) {
        0..50 => char::from(rng.random_range(0x20_u8..0x7f)),
        50..55 => char::from(rng.random_range(0_u8..0x20)),
        55..75 => char::from_u32(rng.random_range(0x80..0xD800)).unwrap_or('?'),
        75..85 => char::from_u32(rng.random_range(0x1_0000..0x11_0000)).unwrap_or('?'),
        _ => *['<', '>', '&', '"', '\'', '@', '/', ' ', '\u{FFFD}', '\u{FEFF}', '#', '$', ',', '.', '_']
            .choose(rng)
            .unwrap(),
    }
}

fn random_string(rng: &mut StdRng, len_max: usize) -> String {
    let len = rng.random_range(0..=len_max);
    (0..len).map(|_| random_char(rng)).collect()
}

fn token(rng: &mut StdRng) -> String {
    (*TOKENS.choose(rng).unwrap()).to_owned()
}

/// An argument for a structured command.
fn argument(rng: &mut StdRng) -> String {
    match rng.random_range(0..10) {
        0..=3 => token(rng),
        4 => rng.random_range(0..2_000_u64).to_string(),
        5 => format!("{}.{:02}", rng.random_range(0..10_000_u32), rng.random_range(0..100_u32)),
        6 => rng.random::<u64>().to_string(),
        7 => ["ACME", "QBIT", "SOLR", "BANK", "acme", "NOPE", "X"].choose(rng).unwrap().to_string(),
        8 => random_string(rng, 12),
        _ => format!("-{}", rng.random_range(0..1_000_u32)),
    }
}

/// `/name[@addressee] arg…` with plausible and implausible pieces.
fn structured_command(rng: &mut StdRng) -> String {
    let name =
        if rng.random_bool(0.9) { (*COMMAND_NAMES.choose(rng).unwrap()).to_owned() } else { random_string(rng, 8) };
    let addressee = match rng.random_range(0..10) {
        0 => "@stockbot_test_bot".to_owned(),
        1 => "@STOCKBOT_test_BOT".to_owned(),
        2 => "@OtherBot".to_owned(),
        3 => "@".to_owned(),
        4 => format!("@{}", random_string(rng, 6)),
        _ => String::new(),
    };
    let mut text = format!("/{name}{addressee}");
    for _ in 0..rng.random_range(0..6) {
        let separator = [" ", " ", " ", "  ", "\t", "\n", "\u{00A0}", ""].choose(rng).unwrap();
        text.push_str(separator);
        text.push_str(&argument(rng));
    }
    text
}

/// A valid command, mutated a few times at the character level.
fn mutated_command(rng: &mut StdRng) -> String {
    let mut chars: Vec<char> = if rng.random_bool(0.7) {
        COMMAND_CORPUS.choose(rng).unwrap().chars().collect()
    } else {
        structured_command(rng).chars().collect()
    };
    for _ in 0..rng.random_range(1..=4) {
        let at = rng.random_range(0..=chars.len());
        match rng.random_range(0..9) {
            0 => chars.insert(at, random_char(rng)),
            1 => {
                let piece: Vec<char> = token(rng).chars().collect();
                chars.splice(at..at, piece);
            }
            2 if at < chars.len() => {
                let end = rng.random_range(at..=chars.len());
                chars.drain(at..end);
            }
            3 if at < chars.len() => chars[at] = random_char(rng),
            4 if at < chars.len() => {
                let end = rng.random_range(at..=chars.len().min(at + 8));
                let copy: Vec<char> = chars[at..end].to_vec();
                chars.splice(at..at, copy);
            }
            5 if chars.len() >= 2 => {
                let other = rng.random_range(0..chars.len());
                let at = at.min(chars.len() - 1);
                chars.swap(at, other);
            }
            6 => chars = chars.iter().flat_map(|c| c.to_uppercase()).collect(),
            7 => {
                let other: Vec<char> = COMMAND_CORPUS.choose(rng).unwrap().chars().collect();
                chars.extend([' ']);
                chars.extend(other);
            }
            _ => chars.truncate(at),
        }
    }
    chars.into_iter().collect()
}

/// Something very long: repeated commands, digits, tokens or one character.
fn huge_string(rng: &mut StdRng) -> String {
    let len = rng.random_range(4_000..120_000);
    let unit = match rng.random_range(0..5) {
        0 => "9".to_owned(),
        1 => "/buy ACME 10 ".to_owned(),
        2 => "<b>&".to_owned(),
        3 => "é🚀".to_owned(),
        _ => token(rng),
    };
    let prefix = ["/buy ACME ", "/market ", "/start ", "/", "", "/alert ACME > "].choose(rng).unwrap();
    let mut text = (*prefix).to_owned();
    while text.len() < len {
        text.push_str(&unit);
    }
    text
}

/// One command string from the mix of generators.
fn command_text(rng: &mut StdRng, index: usize) -> String {
    if index % 5_000 == 4_999 {
        return huge_string(rng);
    }
    match rng.random_range(0..100) {
        0..40 => mutated_command(rng),
        40..60 => structured_command(rng),
        60..70 => (*COMMAND_CORPUS.choose(rng).unwrap()).to_owned(),
        70..85 => random_string(rng, 40),
        85..93 => {
            let len = rng.random_range(0..48);
            let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let mut text = String::from_utf8_lossy(&bytes).into_owned();
            if rng.random_bool(0.5) {
                text.insert(0, '/');
            }
            text
        }
        _ => {
            let mut text = String::from("/");
            for _ in 0..rng.random_range(1..8) {
                text.push_str(&token(rng));
                if rng.random_bool(0.5) {
                    text.push(' ');
                }
            }
            text
        }
    }
}

fn random_user(rng: &mut StdRng) -> Value {
    let id: Value = match rng.random_range(0..20) {
        0 => json!(0),
        1 => json!(u64::MAX),
        2 => json!(i64::MAX),
        3 => json!(rng.random_range(1_u64..10_000_000_000_000)),
        _ => json!(rng.random_range(1..=PLAYER_POOL * 3)),
    };
    let first_name = if rng.random_bool(0.5) {
        (*NAMES.choose(rng).unwrap()).to_owned()
    } else if rng.random_bool(0.05) {
        "<b>".repeat(rng.random_range(10..400))
    } else {
        random_string(rng, 24)
    };
    let mut user = json!({"id": id, "is_bot": rng.random_bool(0.05), "first_name": first_name});
    if rng.random_bool(0.3) {
        user["last_name"] = json!(NAMES.choose(rng).unwrap());
    }
    if rng.random_bool(0.3) {
        user["username"] = json!(random_string(rng, 12));
    }
    if rng.random_bool(0.5) {
        user["language_code"] = json!(["en", "de", "", "zz-ZZ"].choose(rng).unwrap());
    }
    user
}

fn random_chat(rng: &mut StdRng, user: &Value) -> Value {
    match rng.random_range(0..4) {
        0 => json!({"id": -rng.random_range(1_i64..1_000_000), "type": "group", "title": random_string(rng, 20)}),
        1 => {
            json!({"id": -1_000_000_000_000 - rng.random_range(0_i64..1_000_000), "type": "supergroup", "title": "<b>"})
        }
        _ => json!({"id": user["id"], "type": "private", "first_name": user["first_name"]}),
    }
}

/// A real-shaped message carrying `text` (entities when it looks like a command).
fn message(rng: &mut StdRng, text: &str) -> Value {
    let user = random_user(rng);
    let chat = random_chat(rng, &user);
    let mut message = json!({
        "message_id": rng.random_range(1..1_000_000),
        "date": rng.random_range(0..2_000_000_000_u32),
        "chat": chat,
        "from": user,
        "text": text,
    });
    if text.starts_with('/') {
        let length = text.split_whitespace().next().map_or(0, |c| c.encode_utf16().count());
        let length = if rng.random_bool(0.1) { rng.random_range(0..1_000) } else { length };
        message["entities"] = json!([{"type": "bot_command", "offset": 0, "length": length}]);
    }
    if rng.random_bool(0.05) {
        let inner = json!({"message_id": 1, "date": 0, "chat": message["chat"], "text": "earlier"});
        message["reply_to_message"] = inner;
    }
    message
}

/// A real-shaped update of one of many kinds, carrying `text` where it can.
fn update_template(rng: &mut StdRng, text: &str) -> Value {
    let update_id = rng.random_range(0..i64::from(i32::MAX));
    let body = match rng.random_range(0..20) {
        0..=8 => json!({"message": message(rng, text)}),
        9..=12 => {
            let on = message(rng, "…");
            let mut query = json!({
                "id": format!("{}", rng.random::<u64>()),
                "from": random_user(rng),
                "chat_instance": "-123",
                "data": text,
            });
            match rng.random_range(0..4) {
                0 => query["inline_message_id"] = json!("AgAAAfake"),
                1 => query["message"] = json!({"message_id": 5, "date": 0, "chat": on["chat"]}),
                _ => query["message"] = on,
            }
            json!({"callback_query": query})
        }
        13 => json!({"edited_message": message(rng, text)}),
        14 => {
            let mut post = message(rng, text);
            post.as_object_mut().unwrap().remove("from");
            post["chat"] = json!({"id": -1_000_000_000_001_i64, "type": "channel", "title": "News"});
            json!({"channel_post": post})
        }
        15 => {
            let mut sticker = message(rng, text);
            let fields = sticker.as_object_mut().unwrap();
            fields.remove("text");
            fields.insert(
                "sticker".into(),
                json!({"file_id": "CAAC", "file_unique_id": "AgAD", "type": "regular", "width": 512,
                       "height": 512, "is_animated": false, "is_video": false}),
            );
            json!({"message": sticker})
        }
        16 => {
            let user = random_user(rng);
            let member = |status: &str| json!({"user": {"id": 1, "is_bot": true, "first_name": "B"}, "status": status});
            json!({"my_chat_member": {
                "chat": random_chat(rng, &user), "from": user, "date": 0,
                "old_chat_member": member("left"), "new_chat_member": member("member"),
            }})
        }
        17 => json!({"poll": {
            "id": "1", "question": text, "options": [{"text": "a", "voter_count": 0}], "total_voter_count": 0,
            "is_closed": false, "is_anonymous": true, "type": "regular", "allows_multiple_answers": false,
        }}),
        18 => json!({"pre_checkout_query": {
            "id": "p", "from": random_user(rng), "currency": "XTR", "total_amount": 100, "invoice_payload": text,
        }}),
        _ => {
            let mut unknown = Map::new();
            unknown.insert(random_string(rng, 10), json!({"text": text}));
            Value::Object(unknown)
        }
    };
    let mut update = body;
    update["update_id"] = json!(update_id);
    update
}

/// Any JSON value, up to `depth` deep.
fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    let leaf = depth == 0 || rng.random_bool(0.5);
    match rng.random_range(0..if leaf { 7 } else { 9 }) {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 => json!(rng.random::<i64>()),
        3 => json!(rng.random::<u64>()),
        4 => json!(rng.random::<f64>() * 1e300),
        5 => json!(random_string(rng, 16)),
        6 => json!(token(rng)),
        7 => Value::Array((0..rng.random_range(0..4)).map(|_| random_value(rng, depth - 1)).collect()),
        _ => {
            let keys = ["message", "text", "from", "chat", "id", "update_id", "data", "callback_query", "date"];
            let map: Map<String, Value> = (0..rng.random_range(0..4))
                .map(|_| ((*keys.choose(rng).unwrap()).to_owned(), random_value(rng, depth - 1)))
                .collect();
            Value::Object(map)
        }
    }
}

/// A random place inside `value` to change: replace, delete, or add a key.
fn mutate_value(rng: &mut StdRng, value: &mut Value, depth_left: u32) {
    if depth_left > 0 && rng.random_bool(0.75) {
        let child = match value {
            Value::Object(map) if !map.is_empty() => {
                let key = map.keys().nth(rng.random_range(0..map.len())).cloned().unwrap();
                map.get_mut(&key)
            }
            Value::Array(items) if !items.is_empty() => {
                let at = rng.random_range(0..items.len());
                items.get_mut(at)
            }
            _ => None,
        };
        if let Some(child) = child {
            if child.is_object() || child.is_array() {
                mutate_value(rng, child, depth_left - 1);
            } else {
                *child = random_value(rng, 2);
            }
            return;
        }
    }
    match value {
        Value::Object(map) if !map.is_empty() && rng.random_bool(0.5) => {
            let key = map.keys().nth(rng.random_range(0..map.len())).cloned().unwrap();
            if rng.random_bool(0.5) {
                map.remove(&key);
            } else {
                map.insert(key, random_value(rng, 3));
            }
        }
        Value::Object(map) => {
            map.insert(random_string(rng, 8), random_value(rng, 3));
        }
        other => *other = random_value(rng, 3),
    }
}

fn mutate_bytes(rng: &mut StdRng, bytes: &mut Vec<u8>) {
    for _ in 0..rng.random_range(1..4) {
        let at = rng.random_range(0..=bytes.len());
        match rng.random_range(0..5) {
            0 if at < bytes.len() => bytes[at] = rng.random(),
            1 => bytes.insert(at, *b"{}[]\",:\\0e-".choose(rng).unwrap()),
            2 if at < bytes.len() => {
                let end = rng.random_range(at..=bytes.len().min(at + 16));
                bytes.drain(at..end);
            }
            3 => bytes.truncate(at),
            _ if at < bytes.len() => {
                let end = rng.random_range(at..=bytes.len().min(at + 32));
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            _ => {}
        }
    }
}

/// One update document (bytes) from the mix.
fn update_document(rng: &mut StdRng, index: usize) -> Vec<u8> {
    if index % 25_000 == 24_999 {
        let depth = rng.random_range(100..20_000);
        let mut deep = "[".repeat(depth).into_bytes();
        if rng.random_bool(0.5) {
            deep = format!("{{\"update_id\": 1, \"message\": {}", "{\"a\":".repeat(depth)).into_bytes();
        }
        return deep;
    }
    let text = command_text(rng, index);
    match rng.random_range(0..100) {
        0..45 => serde_json::to_vec(&update_template(rng, &text)).unwrap(),
        45..80 => {
            let mut update = update_template(rng, &text);
            for _ in 0..rng.random_range(1..4) {
                mutate_value(rng, &mut update, 5);
            }
            serde_json::to_vec(&update).unwrap()
        }
        80..92 => {
            let mut bytes = serde_json::to_vec(&update_template(rng, &text)).unwrap();
            mutate_bytes(rng, &mut bytes);
            bytes
        }
        92..97 => serde_json::to_vec(&random_value(rng, 5)).unwrap(),
        _ => (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
    }
}

// ---------------------------------------------------------------------------
// Checks.

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

/// Telegram's HTML subset, strictly: known tags, properly nested, and every
/// `&` one of the entities `escape` writes. Returns the text as shown.
fn parse_html(text: &str) -> Result<String, String> {
    let mut shown = String::new();
    let mut open: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(['<', '>', '&']) {
        shown.push_str(&rest[..at]);
        let tail = &rest[at..];
        if tail.starts_with('>') {
            return Err(format!("bare '>' in {:?}", short(text)));
        }
        if tail.starts_with('&') {
            let entity = ["&lt;", "&gt;", "&amp;", "&quot;"].into_iter().find(|e| tail.starts_with(e));
            let Some(entity) = entity else { return Err(format!("bare '&' in {:?}", short(text))) };
            shown.push_str(match entity {
                "&lt;" => "<",
                "&gt;" => ">",
                "&amp;" => "&",
                _ => "\"",
            });
            rest = &tail[entity.len()..];
            continue;
        }
        let end = tail.find('>').ok_or_else(|| format!("unclosed tag in {:?}", short(text)))?;
        let inner = &tail[1..end];
        if let Some(name) = inner.strip_prefix('/') {
            if open.pop().as_deref() != Some(name.trim()) {
                return Err(format!("unexpected end tag in {:?}", short(text)));
            }
        } else {
            let name = inner.split([' ', '\t', '\n', '/']).next().unwrap_or_default();
            if !ALLOWED_TAGS.contains(&name) {
                return Err(format!("tag {name:?} in {:?}", short(text)));
            }
            open.push(name.to_owned());
        }
        rest = &tail[end + 1..];
    }
    shown.push_str(rest);
    if let Some(name) = open.pop() {
        return Err(format!("unclosed <{name}> in {:?}", short(text)));
    }
    Ok(shown)
}

/// The start of a long text, for failure messages.
fn short(text: &str) -> String {
    let head: String = text.chars().take(120).collect();
    if head.len() < text.len() { format!("{head}… ({} bytes)", text.len()) } else { head }
}

/// A reply as Telegram would take it.
fn check_reply(reply: &Reply, context: &str) {
    let context = &short(context);
    assert!(!reply.text.trim().is_empty(), "empty reply to {context:?}");
    let shown = parse_html(&reply.text).unwrap_or_else(|problem| panic!("{} (reply to {context:?})", short(&problem)));
    assert!(!shown.trim().is_empty(), "reply shows nothing: {context:?}");
    assert!(!reply.text.to_ascii_lowercase().contains("<script"), "raw <script in reply to {context:?}");
    let limit = if reply.photo.is_some() { CAPTION_UTF16_MAX } else { TEXT_UTF16_MAX };
    assert!(shown.encode_utf16().count() <= limit, "reply too long for Telegram ({context:?})");
    for button in reply.buttons.iter().flatten() {
        assert!(!button.text.trim().is_empty(), "button without text in reply to {context:?}");
        assert!(!button.data.is_empty() && button.data.len() <= reply::CALLBACK_DATA_LEN_MAX, "{button:?}");
    }
    if let Some(photo) = &reply.photo {
        assert!(photo.png.starts_with(&[0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n']), "not a PNG");
    }
}

/// The first word after an optional leading emoji.
fn first_word(text: &str) -> &str {
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or_default();
    if first.chars().next().is_some_and(|c| !c.is_ascii()) { words.next().unwrap_or_default() } else { first }
}

/// Properties of one parse beyond "it returned".
fn check_parse(text: &str, parsed: &Result<BotCommand, ParseError>) {
    let seen: String = text.chars().take(command::TEXT_LEN_MAX).collect();
    let seen = seen.trim();
    let Some(rest) = seen.strip_prefix('/') else {
        assert_eq!(parsed, &Err(ParseError::NotForUs), "not a command: {:?}", short(text));
        return;
    };
    let head = rest.split_whitespace().next().unwrap_or_default();
    if let Some((_, addressee)) = head.split_once('@')
        && !addressee.eq_ignore_ascii_case(BOT)
    {
        assert_eq!(parsed, &Err(ParseError::NotForUs), "for another bot: {:?}", short(text));
    }
    match parsed {
        Ok(BotCommand::Trade { ticker, qty, limit, .. }) => {
            assert!(qty.get() >= 1 && qty.get() <= actors::domain::ids::QTY_MAX);
            assert!(!ticker.as_str().is_empty() && ticker.as_str().bytes().all(|b| b.is_ascii_alphanumeric()));
            assert!(limit.is_none_or(|p| p.get() > rust_decimal::Decimal::ZERO));
        }
        Ok(BotCommand::Stop { qty, price, .. }) => {
            assert!(qty.get() >= 1);
            assert!(price.get() > rust_decimal::Decimal::ZERO);
        }
        Ok(BotCommand::Start { referral: Some(referral) }) => assert!(referral.chars().count() <= 64),
        Ok(BotCommand::History { page }) => assert!(*page >= 1),
        Err(ParseError::Unknown { command }) => assert!(command.chars().count() <= 32),
        _ => {}
    }
    if let Err(error) = parsed {
        match reply::parse_error(error) {
            Some(reply) => {
                check_reply(&reply, text);
                assert!(!matches!(first_word(&reply.text), "Bought" | "Sold"), "{:?}", short(text));
            }
            None => assert_eq!(error, &ParseError::NotForUs),
        }
    }
}

// ---------------------------------------------------------------------------
// Tests.

#[test]
fn a_million_command_strings_parse_without_panic() {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed(1));
    let (mut commands, mut errors, mut not_for_us) = (0_usize, 0_usize, 0_usize);
    for index in 0..COMMANDS {
        let text = command_text(&mut rng, index);
        let parsed = command::parse(&text, Some(BOT));
        check_parse(&text, &parsed);
        if index % 16 == 0 {
            // Without a known username, and twice: same answer.
            let _ = command::parse(&text, None);
            assert_eq!(command::parse(&text, Some(BOT)), parsed, "{:?}", short(&text));
        }
        match parsed {
            Ok(_) => commands += 1,
            Err(ParseError::NotForUs) => not_for_us += 1,
            Err(_) => errors += 1,
        }
    }
    println!(
        "{COMMANDS} strings in {:?}: {commands} commands, {errors} explained mistakes, {not_for_us} not for us",
        started.elapsed()
    );
    // The generators reach every outcome, in quantity.
    assert!(commands > COMMANDS / 20 && errors > COMMANDS / 10 && not_for_us > COMMANDS / 20);
}

#[test]
fn escaping_and_buttons_hold_for_any_text() {
    let mut rng = StdRng::seed_from_u64(seed(2));
    for index in 0..200_000 {
        let text = if index % 2 == 0 { random_string(&mut rng, 80) } else { command_text(&mut rng, index) };
        let escaped = reply::escape(&text);
        let shown = parse_html(&escaped).unwrap_or_else(|problem| panic!("{problem}"));
        assert_eq!(shown, text, "escape is undone exactly by Telegram");
        // Button data is cut to Telegram's 64 bytes, on a character boundary.
        let button = Button::new(text.clone(), format!("/market {text}"));
        assert!(button.data.len() <= reply::CALLBACK_DATA_LEN_MAX);
        assert!(format!("/market {text}").starts_with(&button.data));
    }
}

#[actix::test]
async fn updates_parse_and_dispatch_without_panic() {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed(3));

    // Parse: every document, through teloxide's types.
    let mut parsed_ok = 0_usize;
    let mut kinds: HashSet<&'static str> = HashSet::new();
    let mut sample: Vec<(Speaker, String)> = Vec::new();
    for index in 0..UPDATES {
        let bytes = update_document(&mut rng, index);
        let Ok(update) = serde_json::from_slice::<Update>(&bytes) else { continue };
        parsed_ok += 1;
        let (user, text) = match &update.kind {
            UpdateKind::Message(message) => {
                kinds.insert("message");
                (message.from.clone(), message.text().map(str::to_owned))
            }
            UpdateKind::CallbackQuery(query) => {
                kinds.insert("callback_query");
                (Some(query.from.clone()), query.data.clone())
            }
            UpdateKind::Error(_) => {
                kinds.insert("unknown");
                (None, None)
            }
            _ => {
                kinds.insert("other");
                (None, None)
            }
        };
        let (Some(user), Some(text)) = (user, text) else { continue };
        let mut speaker = speaker_of(&user);
        assert!(speaker.name.chars().count() <= 64, "{:?}", speaker.name);
        if sample.len() < DISPATCHED && rng.random_bool(0.3) {
            // Most players come from a pool with accounts, so commands act.
            if rng.random_bool(0.9) {
                speaker.player = actors::domain::ids::PlayerId(1 + speaker.player.0.rem_euclid(PLAYER_POOL));
            }
            sample.push((speaker, text));
        }
    }
    let parsed_in = started.elapsed();
    assert!(parsed_ok > UPDATES / 3, "too few documents parsed: {parsed_ok}");
    assert_eq!(kinds.len(), 4, "every kind reached: {kinds:?}");
    assert_eq!(sample.len(), DISPATCHED, "enough texts to dispatch");

    // Dispatch: the sample through the real command path on a running engine.
    let settings = stockbot::config::Settings::load_from(None).unwrap();
    let store = MemoryStore::new();
    let deps = EngineDeps {
        store: Arc::new(store.clone()),
        clock: Arc::new(ManualClock::new(1_700_000_000_000)),
        notifier: Arc::new(NullNotifier),
        autonomous_ticker: false,
    };
    let engine = Engine::start(&settings.engine, deps).await.unwrap();
    let bot = unthrottled_bot(&engine, store);
    for player in 1..=PLAYER_POOL {
        let speaker = Speaker { player: actors::domain::ids::PlayerId(player), chat: None, name: format!("p{player}") };
        let replies = bot.handle_text(&speaker, "/start").await;
        assert!(replies[0].text.contains("Welcome"));
    }
    let mut charts = 0;
    let sample: Vec<(Speaker, String)> = sample
        .into_iter()
        .filter(|(_, text)| {
            let chart = matches!(command::parse(text, Some(BOT)), Ok(BotCommand::Chart { .. }));
            charts += usize::from(chart);
            !chart || charts <= CHARTS_MAX
        })
        .collect();
    let bot = &bot;
    let outcomes: Vec<(usize, usize)> = futures_util::stream::iter(sample)
        .map(|(speaker, text)| async move {
            let parsed = command::parse(&text, Some(BOT));
            let replies = bot.handle_text(&speaker, &text).await;
            match &parsed {
                Err(ParseError::NotForUs) if speaker.chat.is_none() && !text.trim_start().starts_with('/') => {
                    assert_eq!(replies.len(), 1, "plain text gets the menu: {:?} → {replies:?}", short(&text));
                }
                Err(ParseError::NotForUs) => assert!(replies.is_empty(), "{:?} → {replies:?}", short(&text)),
                _ => assert_eq!(replies.len(), 1, "{:?} → {replies:?}", short(&text)),
            }
            let mut trades = 0;
            for reply in &replies {
                check_reply(reply, &text);
                if matches!(first_word(&reply.text), "Bought" | "Sold") {
                    assert!(matches!(parsed, Ok(BotCommand::Trade { .. })), "{:?} → {}", short(&text), reply.text);
                    trades += 1;
                }
            }
            (replies.len(), trades)
        })
        .buffer_unordered(64)
        .collect()
        .await;
    engine.shutdown().await.unwrap();
    let replies: usize = outcomes.iter().map(|(replies, _)| replies).sum();
    let trades: usize = outcomes.iter().map(|(_, trades)| trades).sum();
    println!(
        "{UPDATES} documents ({parsed_ok} parsed) in {parsed_in:?}; {} texts dispatched, {replies} replies, \
         {trades} trades, {} charts, in {:?} overall",
        outcomes.len(),
        charts.min(CHARTS_MAX),
        started.elapsed()
    );
    assert!(trades > 0, "some dispatched commands traded");
}

/// Whether the fake Bot API took a call the way a correct sender makes it:
/// messages and edits accepted (an unchanged edit is fine), callback answers
/// refused only for an id the fuzzer emptied.
fn taken(call: &Call) -> bool {
    match call.method.as_str() {
        "editMessageText" => call.ok() || call.response["description"] == NOT_MODIFIED,
        "answerCallbackQuery" => call.ok() || call.params["callback_query_id"].as_str().is_none_or(str::is_empty),
        _ => call.ok(),
    }
}

#[actix::test]
async fn updates_run_through_the_handler_to_the_bot_api() {
    let mut rng = StdRng::seed_from_u64(seed(4));
    let fake = FakeTelegram::start();
    let settings = stockbot::config::Settings::load_from(None).unwrap();
    let store = MemoryStore::new();
    let deps = EngineDeps {
        store: Arc::new(store.clone()),
        clock: Arc::new(ManualClock::new(1_700_000_000_000)),
        notifier: Arc::new(NullNotifier),
        autonomous_ticker: false,
    };
    let engine = Engine::start(&settings.engine, deps).await.unwrap();
    let bot = unthrottled_bot(&engine, store);
    let limits = RateLimits { global_per_sec: 100_000, chat_per_sec: 100_000, group_per_min: 1_000_000 };
    let api = make_bot(&fake.token, Some(&fake.base_url)).unwrap();
    let sender = start_sender(api, limits, 100_000, Arc::new(|_| {}));
    let handler = UpdateHandler::new(bot.clone(), Arc::new(LocalCoordinator::new()));
    for player in 1..=PLAYER_POOL {
        let speaker = Speaker { player: actors::domain::ids::PlayerId(player), chat: None, name: format!("p{player}") };
        bot.handle_text(&speaker, "/start").await;
    }

    let (mut handled, mut charts) = (0, 0);
    let mut index = 0;
    while handled < HANDLED {
        index += 1;
        let bytes = update_document(&mut rng, index);
        let Ok(update) = serde_json::from_slice::<Update>(&bytes) else { continue };
        let text = match &update.kind {
            UpdateKind::Message(message) => message.text().map(str::to_owned),
            UpdateKind::CallbackQuery(query) => query.data.clone(),
            _ => None,
        };
        if let Some(text) = &text
            && matches!(command::parse(text, Some(BOT)), Ok(BotCommand::Chart { .. }))
        {
            charts += 1;
            if charts > CHARTS_MAX / 4 {
                continue;
            }
        }
        handler.handle(update, &sender).await;
        handled += 1;
    }
    // Everything queued reaches the fake (or is given up) before the checks.
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while sender.metrics().queued.load(std::sync::atomic::Ordering::Relaxed) > 0 {
        assert!(Instant::now() < deadline, "the sender did not drain");
        actix::clock::sleep(std::time::Duration::from_millis(20)).await;
    }
    engine.shutdown().await.unwrap();
    let calls = fake.calls();
    let refused: Vec<String> = calls
        .iter()
        .filter(|call| !taken(call))
        .take(5)
        .map(|call| format!("{} {} → {}", call.method, short(&call.params.to_string()), call.response))
        .collect();
    assert!(refused.is_empty(), "the Bot API refused:\n{}", refused.join("\n"));
    let count = |method: &str| calls.iter().filter(|c| c.method == method).count();
    println!(
        "{handled} updates handled: {} sendMessage, {} sendPhoto, {} editMessageText, {} answerCallbackQuery",
        count("sendMessage"),
        count("sendPhoto"),
        count("editMessageText"),
        count("answerCallbackQuery")
    );
    assert!(count("sendMessage") > HANDLED / 10 && count("answerCallbackQuery") > HANDLED / 20);
    for call in calls.iter().filter(|c| c.method == "sendMessage") {
        assert!(!call.text().unwrap_or_default().to_ascii_lowercase().contains("<script"));
    }
}

/// The bot without rate limits: these tests count one reply per command
/// (limits are tested elsewhere).
fn unthrottled_bot(engine: &Engine, store: impl actors::ports::Store) -> Bot {
    let unlimited = stockbot::bot::GameOptions {
        player_commands_per_window: u32::MAX,
        chat_commands_per_window: u32::MAX,
        ..stockbot::bot::GameOptions::default()
    };
    Bot::new(engine.clone(), Arc::new(store), Some(BOT.to_owned()))
        .with_game(Arc::new(stockbot::coord::local::LocalCoordinator::new()), unlimited)
}
