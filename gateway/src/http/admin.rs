//! The admin API: `GET /admin/players/{player}`, `GET /admin/audit` and
//! `GET /admin/engine`, behind `Authorization: Bearer $STOCKBOT_ADMIN_TOKEN`
//! (404 when no token is configured, 401 on a wrong one). The answers come
//! from the (active) engine.

use actix_web::{HttpRequest, HttpResponse, web};
use wire::Query;

use super::api::ErrorBody;
use super::{AppState, respond};

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

/// One player's state (`123` = a Telegram user id, `local:NAME` = a local player).
pub async fn player(state: web::Data<AppState>, request: HttpRequest, path: web::Path<String>) -> HttpResponse {
    if let Err(response) = authorize(&state, &request) {
        return response;
    }
    respond(state.backend.query(Query::Player { player: path.into_inner() }).await)
}

/// The conservation check against the store.
pub async fn audit(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    if let Err(response) = authorize(&state, &request) {
        return response;
    }
    respond(state.backend.query(Query::Audit).await)
}

/// Which engine is active: `{"role", "epoch", "instance"}`.
pub async fn engine(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    if let Err(response) = authorize(&state, &request) {
        return response;
    }
    respond(state.backend.query(Query::Engine).await)
}
