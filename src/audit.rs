//! `stockbot audit`: the conservation check of the configured store, run by
//! a process of its own (beside a live server, or on a stopped one). On
//! PostgreSQL it reads what is checkpointed and writes nothing; its memory
//! does not grow with the log, so `/usr/bin/time -v stockbot audit` measures
//! what an audit costs.

use std::sync::Arc;
use std::time::Instant;

use actors::ports::{Audit, Store};

use crate::config::Settings;
use crate::store::embedded::EmbeddedStore;
use crate::store::postgres::PostgresStore;

/// Runs the audit and returns its report: the `/admin/audit` JSON, then
/// `audit_ms=N` (run time) on a line of its own.
///
/// # Errors
/// An invalid universe, or a store that cannot be opened or read.
pub async fn run(settings: &Settings) -> Result<String, Box<dyn std::error::Error>> {
    let tickers: Arc<Vec<String>> =
        Arc::new(settings.engine.universe()?.assets().iter().map(|spec| spec.ticker.as_str().to_owned()).collect());
    let started = Instant::now();
    let audit = match settings.database_url.as_ref().map(|u| u.expose().to_owned()).filter(|u| !u.is_empty()) {
        Some(url) => PostgresStore::connect_reader(&url).await?.audit_checkpointed(tickers).await?,
        None => EmbeddedStore::open(&settings.data_dir).await?.audit(tickers).await?,
    };
    Ok(format!("{}\naudit_ms={}", render(&audit), started.elapsed().as_millis()))
}

/// The audit as `GET /admin/audit` answers it.
#[must_use]
pub fn render(audit: &Audit) -> String {
    serde_json::json!({
        "ok": audit.ok,
        "cash_total": format!("{:.2}", audit.cash_total),
        "shares": audit.shares,
        "events": audit.events,
    })
    .to_string()
}
