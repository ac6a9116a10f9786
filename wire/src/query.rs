//! Reads a gateway forwards to the active engine (`/api/market`,
//! `/api/chart`, the admin API) and the engine's answer, which the gateway
//! returns as it is — so every role answers an endpoint byte for byte alike.

use serde::{Deserialize, Serialize};

/// What a gateway asks the active engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "query", rename_all = "snake_case")]
pub enum Query {
    /// `GET /api/market`.
    Market,
    /// `GET /api/chart?ticker=…&range=…`.
    Chart { ticker: String, range: Option<String> },
    /// `GET /admin/players/{player}` (the gateway checked the admin token).
    Player { player: String },
    /// `GET /admin/audit` (the gateway checked the admin token).
    Audit,
    /// Who the active engine is (`GET /admin/engine`).
    Engine,
}

/// An HTTP answer, computed by the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    #[serde(with = "crate::base64_bytes")]
    pub body: Vec<u8>,
    /// `Cache-Control`, where the answer may be cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
}

impl Answer {
    /// A JSON answer.
    #[must_use]
    pub fn json(status: u16, body: &impl Serialize) -> Self {
        Self {
            status,
            content_type: "application/json".to_owned(),
            body: serde_json::to_vec(body).unwrap_or_default(),
            cache_control: None,
        }
    }

    /// `{"error": message}` with `status`.
    #[must_use]
    pub fn error(status: u16, message: &str) -> Self {
        Self::json(status, &serde_json::json!({ "error": message }))
    }
}

/// Which engine answers, as `GET /admin/engine` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStatus {
    /// `active`, `standby` or `gateway`.
    pub role: String,
    /// The lease epoch of the active engine (0 before any was elected).
    pub epoch: u64,
    /// The active engine's instance name (on a gateway: the last one seen).
    pub instance: String,
}
