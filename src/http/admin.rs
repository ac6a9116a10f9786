//! The admin API: `GET /admin/players/{player}` and `GET /admin/audit`,
//! behind `Authorization: Bearer $STOCKBOT_ADMIN_TOKEN` (404 when no token is
//! configured, 401 on a wrong one).

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use actors::domain::ids::PlayerId;
use serde::Serialize;

use super::AppState;
use super::api::ErrorBody;
use crate::bot::local_player_id;

/// Checks the bearer token in constant time.
fn authorize(state: &AppState, request: &HttpRequest) -> Result<(), HttpResponse> {
    let Some(expected) = state.admin_token.as_deref() else {
        return Err(HttpResponse::NotFound().finish());
    };
    let given = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(HttpResponse::Unauthorized().json(ErrorBody::new("wrong or missing bearer token")))
    }
}

/// Compares without an early exit, so timing says nothing about the secret.
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for (index, byte) in a.iter().enumerate() {
        difference |= usize::from(byte ^ b.get(index % b.len().max(1)).copied().unwrap_or(0));
    }
    difference == 0
}

/// `123` (a Telegram user id) or `local:NAME`.
fn parse_player(text: &str) -> Option<PlayerId> {
    if let Some(name) = text.strip_prefix("local:") {
        return (!name.trim().is_empty()).then(|| local_player_id(name));
    }
    text.parse::<i64>().ok().filter(|id| *id > 0).map(PlayerId)
}

#[derive(Debug, Serialize)]
struct PlayerBody {
    cash: String,
    holdings: BTreeMap<String, u64>,
    trades: u64,
    xp: u64,
    level: u32,
    achievements: Vec<String>,
    entitlements: Vec<String>,
}

/// One player's state.
pub async fn player(state: web::Data<AppState>, request: HttpRequest, path: web::Path<String>) -> HttpResponse {
    if let Err(response) = authorize(&state, &request) {
        return response;
    }
    let Some(player) = parse_player(&path) else {
        return HttpResponse::NotFound().json(ErrorBody::new("no such player"));
    };
    let engine = state.bot.engine();
    let ledger = match engine.ledger(player).await {
        Ok(Some(ledger)) => ledger,
        Ok(None) => return HttpResponse::NotFound().json(ErrorBody::new("no such player")),
        Err(_) => return HttpResponse::ServiceUnavailable().json(ErrorBody::new("temporarily unavailable")),
    };
    let universe = engine.universe();
    let holdings = ledger
        .account
        .positions
        .iter()
        .filter(|p| p.qty > 0)
        .filter_map(|p| universe.ticker(p.asset).map(|t| (t.to_string(), p.qty)))
        .collect();
    HttpResponse::Ok().json(PlayerBody {
        cash: format!("{:.2}", ledger.account.cash),
        holdings,
        trades: ledger.account.trades,
        xp: ledger.account.profile.xp,
        level: engine.game_rules().progression.level_for_xp(ledger.account.profile.xp),
        achievements: ledger.account.profile.achievements.iter().map(ToString::to_string).collect(),
        entitlements: ledger
            .account
            .profile
            .entitlements
            .iter()
            .map(|e| match e {
                actors::domain::alert::Entitlement::Premium => "premium".to_owned(),
            })
            .collect(),
    })
}

/// The conservation check against the store.
pub async fn audit(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    if let Err(response) = authorize(&state, &request) {
        return response;
    }
    let tickers: Vec<String> = state.bot.engine().universe().assets().iter().map(|a| a.ticker.to_string()).collect();
    match state.store.audit(Arc::new(tickers)).await {
        Ok(audit) => HttpResponse::Ok().json(serde_json::json!({
            "ok": audit.ok,
            "cash_total": format!("{:.2}", audit.cash_total),
            "shares": audit.shares,
            "events": audit.events,
        })),
        Err(error) => HttpResponse::ServiceUnavailable().json(ErrorBody::new(&error.to_string())),
    }
}
