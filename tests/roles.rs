//! Starting a role with what it cannot run on: a clear error naming what is
//! missing, a non-zero exit, never a panic or a process that hangs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::process::{Command, Output};

use common::cluster::free_port;

/// Runs `stockbot serve` with `env` on a fresh data dir; returns its output.
fn serve(env: &[(&str, String)]) -> Output {
    let dir = common::fresh_data_dir("roles");
    let mut command = Command::new(env!("CARGO_BIN_EXE_stockbot"));
    command
        .arg("serve")
        .env("STOCKBOT_BIND", "127.0.0.1:0")
        .env("STOCKBOT_DATA_DIR", &dir)
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("NATS_URL")
        .env_remove("TELEGRAM_BOT_TOKEN");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run stockbot");
    let _ = std::fs::remove_dir_all(dir);
    output
}

fn refused(output: &Output, wanted: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "it must not run: {stderr}");
    assert!(!stderr.contains("panicked"), "a clear error, not a panic: {stderr}");
    assert!(stderr.contains(wanted), "the error names {wanted:?}: {stderr}");
}

#[test]
fn split_roles_need_nats() {
    for role in ["gateway", "engine"] {
        let output = serve(&[("STOCKBOT_ROLE", role.to_owned())]);
        refused(&output, "NATS_URL");
    }
}

#[test]
fn an_engine_needs_postgres() {
    let output = serve(&[("STOCKBOT_ROLE", "engine".to_owned()), ("NATS_URL", "nats://127.0.0.1:4222".to_owned())]);
    refused(&output, "embedded store cannot be shared");
}

#[test]
fn unreachable_nats_at_start_is_an_error() {
    let output = serve(&[
        ("STOCKBOT_ROLE", "gateway".to_owned()),
        ("NATS_URL", format!("nats://127.0.0.1:{}", free_port())),
        ("STOCKBOT__CLUSTER__NATS_CONNECT_WAIT_MS", "500".to_owned()),
    ]);
    refused(&output, "unreachable");
}

#[test]
fn an_unknown_role_is_an_error() {
    let output = serve(&[("STOCKBOT_ROLE", "leader".to_owned())]);
    refused(&output, "STOCKBOT_ROLE");
}
