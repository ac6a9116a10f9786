//! `stockbot loadgen --target … --bot-api-bind …` against a running
//! `stockbot serve`: the load generator opens every player's account before
//! the measured run, plays the Bot API the server replies to, counts only
//! trades a reply confirmed, and finds no reply that nobody waited for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::process::Command;

use common::Server;
use common::cluster::free_port;
use common::rig::DataDir;

const SECRET: &str = "loadgen-secret";

/// The value after `label` on the report's line that starts with it.
fn figure(report: &str, label: &str) -> u64 {
    let line = report.lines().find(|line| line.starts_with(label)).unwrap_or_else(|| panic!("{label}:\n{report}"));
    let digits: String = line[label.len()..].trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| panic!("{label}:\n{report}"))
}

#[test]
fn loadgen_drives_a_server_and_counts_only_confirmed_trades() {
    let bot_api = format!("127.0.0.1:{}", free_port());
    let dir = DataDir(common::fresh_data_dir("loadgen-target"));
    let env = [
        ("TELEGRAM_BOT_TOKEN", "1:load".to_owned()),
        ("TELEGRAM_API_URL", format!("http://{bot_api}")),
        ("TELEGRAM_MODE", "webhook".to_owned()),
        ("TELEGRAM_WEBHOOK_SECRET", SECRET.to_owned()),
        ("STOCKBOT_DATA_DIR", dir.0.display().to_string()),
        ("TELEGRAM_RATE_GLOBAL_PER_SEC", "100000".to_owned()),
        ("TELEGRAM_RATE_CHAT_PER_SEC", "1000".to_owned()),
        ("STOCKBOT__LIMITS__PLAYER_COMMANDS_PER_WINDOW", "1000000".to_owned()),
        ("STOCKBOT__LIMITS__CHAT_COMMANDS_PER_WINDOW", "1000000".to_owned()),
        ("STOCKBOT__GAME__GATED", "false".to_owned()),
    ];
    let server = Server::start(&env);
    let output = Command::new(env!("CARGO_BIN_EXE_stockbot"))
        .args(["loadgen", "--target", &server.base, "--bot-api-bind", &bot_api])
        .args(["--seconds", "2", "--players", "25", "--timeline"])
        .env("TELEGRAM_WEBHOOK_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .output()
        .expect("run the load generator");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}\n{}", String::from_utf8_lossy(&output.stderr));

    assert_eq!(figure(&report, "accounts opened before the run:"), 25, "{report}");
    assert!(!report.contains("never answered"), "{report}");
    let confirmed = figure(&report, "confirmed trades:");
    assert!(confirmed > 0, "{report}");
    assert_eq!(figure(&report, "rejected (player mistakes):"), 0, "{report}");
    // Every reply found its player: the openings, each confirmed trade, and
    // at most one trade per player still in flight when the run ended.
    let calls_line = report.lines().find(|line| line.starts_with("Bot API calls received:")).unwrap_or_default();
    assert!(calls_line.ends_with("of them for nobody waiting: 0"), "{report}");
    let calls = figure(&report, "Bot API calls received:");
    assert!((25 + confirmed..=25 + confirmed + 25).contains(&calls), "{report}");
    let per_second: u64 = report
        .lines()
        .filter_map(|line| line.strip_prefix("second "))
        .map(|line| line.split(": ").nth(1).and_then(|rest| rest.split(' ').next()).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(per_second, confirmed, "the timeline counts every confirmed trade once: {report}");
    assert!(report.lines().last().unwrap().starts_with("trades_per_sec="), "{report}");
    server.kill();
}
