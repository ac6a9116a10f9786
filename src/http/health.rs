//! `/healthz` (the process answers) and `/readyz` (store reachable, engine
//! running and flushing).

use actix_web::{HttpResponse, web};

use super::AppState;

/// The process is alive.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// Ready to take players: the store answers and the engine is flushing.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let store_ok = state.store.ping().await.is_ok();
    let engine = state.bot.engine();
    let engine_ok = engine.quotes().await.is_ok() && engine.store_healthy();
    if store_ok && engine_ok {
        HttpResponse::Ok().content_type("text/plain").body("ready")
    } else {
        let why = if store_ok { "engine not ready" } else { "store unreachable" };
        HttpResponse::ServiceUnavailable().content_type("text/plain").body(why)
    }
}
