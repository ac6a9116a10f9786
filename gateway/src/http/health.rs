//! `/healthz` (the process answers) and `/readyz` (this instance takes
//! players now: 503 with `standby` on an engine that stands by).

use actix_web::{HttpResponse, web};

use super::AppState;

/// The process is alive.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// Ready to take players, or why not.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let readiness = state.backend.readiness().await;
    let mut response = if readiness.ready { HttpResponse::Ok() } else { HttpResponse::ServiceUnavailable() };
    response.content_type("text/plain").body(readiness.detail)
}
