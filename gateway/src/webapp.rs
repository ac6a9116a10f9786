//! Telegram Mini App `initData`: checks it by Telegram's rule (secret =
//! HMAC-SHA256(key "WebAppData", bot token); hash = hex HMAC-SHA256(secret,
//! data-check-string); `auth_date` not older than the configured age) and
//! names the Telegram user it proves.

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Longest `initData` read, in bytes (Telegram's are well under 4 KiB).
pub const INIT_DATA_BYTES_MAX: usize = 8_192;
/// Longest display name kept from `initData`, in characters.
pub const NAME_CHARS_MAX: usize = 64;
/// How far in the future an `auth_date` may lie (clock skew), in seconds.
pub const AUTH_DATE_SKEW_S_MAX: u64 = 300;

/// What checks Mini App requests: the bot's token and the oldest
/// `auth_date` accepted.
#[derive(Clone)]
pub struct WebAppAuth {
    secret: [u8; 32],
    max_age_s: u64,
}

impl std::fmt::Debug for WebAppAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebAppAuth").field("max_age_s", &self.max_age_s).finish_non_exhaustive()
    }
}

/// The Telegram user a valid `initData` speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebAppUser {
    pub id: i64,
    pub name: String,
}

/// Why `initData` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitDataError {
    #[error("initData is not a query string")]
    Malformed,
    #[error("initData has no hash")]
    NoHash,
    #[error("initData's hash does not match")]
    BadHash,
    #[error("initData has no valid auth_date")]
    NoAuthDate,
    #[error("initData is too old")]
    Stale,
    #[error("initData names no user")]
    NoUser,
}

#[derive(Deserialize)]
struct User {
    id: i64,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: Option<String>,
}

impl WebAppAuth {
    /// Checks `initData` of the bot with `bot_token`, accepting an
    /// `auth_date` up to `max_age_s` old.
    #[must_use]
    pub fn new(bot_token: &str, max_age_s: u64) -> Self {
        Self { secret: hmac(b"WebAppData", bot_token.as_bytes()), max_age_s }
    }

    /// The user `init_data` proves, at unix time `now_s`.
    ///
    /// # Errors
    /// Malformed, unsigned, tampered, stale or user-less `initData`.
    pub fn verify(&self, init_data: &str, now_s: u64) -> Result<WebAppUser, InitDataError> {
        if init_data.len() > INIT_DATA_BYTES_MAX {
            return Err(InitDataError::Malformed);
        }
        let mut fields: Vec<(String, String)> =
            serde_urlencoded::from_str(init_data).map_err(|_| InitDataError::Malformed)?;
        let at = fields.iter().position(|(key, _)| key == "hash").ok_or(InitDataError::NoHash)?;
        let (_, hash) = fields.swap_remove(at);
        if fields.iter().any(|(key, _)| key == "hash") {
            return Err(InitDataError::BadHash);
        }
        fields.sort();
        let check: Vec<String> = fields.iter().map(|(key, value)| format!("{key}={value}")).collect();
        let expected = hex::decode(hash.trim()).map_err(|_| InitDataError::BadHash)?;
        let mut mac = HmacSha256::new_from_slice(&self.secret).map_err(|_| InitDataError::BadHash)?;
        mac.update(check.join("\n").as_bytes());
        // Constant-time comparison.
        mac.verify_slice(&expected).map_err(|_| InitDataError::BadHash)?;
        let field = |name: &str| fields.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
        let auth_date: u64 = field("auth_date").and_then(|date| date.parse().ok()).ok_or(InitDataError::NoAuthDate)?;
        if auth_date.saturating_add(self.max_age_s) < now_s || auth_date > now_s.saturating_add(AUTH_DATE_SKEW_S_MAX) {
            return Err(InitDataError::Stale);
        }
        let user: User = field("user").and_then(|user| serde_json::from_str(user).ok()).ok_or(InitDataError::NoUser)?;
        if user.id <= 0 {
            return Err(InitDataError::NoUser);
        }
        let mut name = user.first_name;
        if let Some(last) = user.last_name.filter(|last| !last.is_empty()) {
            name.push(' ');
            name.push_str(&last);
        }
        Ok(WebAppUser { id: user.id, name: name.chars().filter(|c| !c.is_control()).take(NAME_CHARS_MAX).collect() })
    }
}

/// Signs `init_data` fields as Telegram does (for tests and tools that
/// stand in for a Telegram client): the query string with its `hash`.
#[must_use]
pub fn sign(bot_token: &str, fields: &[(&str, &str)]) -> String {
    let mut sorted: Vec<(&str, &str)> = fields.to_vec();
    sorted.sort_unstable();
    let check: Vec<String> = sorted.iter().map(|(key, value)| format!("{key}={value}")).collect();
    let secret = hmac(b"WebAppData", bot_token.as_bytes());
    let hash = hex::encode(hmac(&secret, check.join("\n").as_bytes()));
    let mut pairs: Vec<(&str, &str)> = fields.to_vec();
    pairs.push(("hash", &hash));
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut out = [0_u8; 32];
    if let Ok(mut mac) = HmacSha256::new_from_slice(key) {
        mac.update(message);
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const TOKEN: &str = "123456:TEST-token";
    const NOW_S: u64 = 1_800_000_000;
    const USER: &str = r#"{"id":4242,"first_name":"Ada","last_name":"L"}"#;

    fn signed(auth_date: &str) -> String {
        sign(TOKEN, &[("query_id", "AAH"), ("user", USER), ("auth_date", auth_date)])
    }

    #[test]
    fn valid_init_data_names_its_user() {
        let auth = WebAppAuth::new(TOKEN, 86_400);
        let user = auth.verify(&signed(&(NOW_S - 60).to_string()), NOW_S).unwrap();
        assert_eq!(user, WebAppUser { id: 4242, name: "Ada L".into() });
    }

    #[test]
    fn a_vector_computed_outside_rust_checks_out() {
        // Python: hmac.new(hmac.new(b"WebAppData", b"1:x", sha256).digest(),
        //                  b'auth_date=1\nuser={"id":1}', sha256).hexdigest()
        let hash = "7d32ac85493345939432c5352b4d0f6e24ca8f4beadf27b49232dcebd7e1db7f";
        let data = format!("user=%7B%22id%22%3A1%7D&auth_date=1&hash={hash}");
        let auth = WebAppAuth::new("1:x", 60);
        assert_eq!(auth.verify(&data, 1).unwrap().id, 1);
        assert_eq!(auth.verify(&data.replace("hash=7d", "hash=7e"), 1), Err(InitDataError::BadHash));
    }

    #[test]
    fn tampered_stale_unsigned_or_foreign_init_data_is_refused() {
        let auth = WebAppAuth::new(TOKEN, 86_400);
        let good = signed(&(NOW_S - 60).to_string());
        let tampered = good.replace("4242", "4243");
        assert_eq!(auth.verify(&tampered, NOW_S), Err(InitDataError::BadHash));
        assert_eq!(auth.verify(&signed(&(NOW_S - 86_401).to_string()), NOW_S), Err(InitDataError::Stale));
        assert_eq!(auth.verify("user=x&auth_date=1", NOW_S), Err(InitDataError::NoHash));
        assert_eq!(WebAppAuth::new("other:token", 86_400).verify(&good, NOW_S), Err(InitDataError::BadHash));
        assert_eq!(auth.verify(&format!("{good}&hash=00"), NOW_S), Err(InitDataError::BadHash));
    }
}
