//! Access tokens: HS256 JWTs signed with a key made at start, and their verification (signature,
//! audience, tenant, expiry against the emulated clock).
//!
//! Every token carries the claims the services authorize on: `aud`, `iss`, `iat`, `nbf`, `exp`,
//! `oid` (principal object id), `appid`/`azp` (client id), `tid`, `sub`, `idtyp`, and `roles`
//! (Graph app roles, only in Graph tokens).

use axum::http;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::util::{b64url, b64url_decode, hmac_sha256};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub oid: Uuid,
    pub sub: Uuid,
    pub appid: Uuid,
    pub azp: Uuid,
    pub tid: Uuid,
    #[serde(default)]
    pub idtyp: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Missing,
    Malformed,
    BadSignature,
    Expired { exp: i64 },
    NotYetValid,
    WrongAudience(String),
    WrongTenant,
}

pub fn sign(key: &[u8], claims: &Claims) -> String {
    let header = b64url(br#"{"typ":"JWT","alg":"HS256","kid":"emulator"}"#);
    let payload = b64url(&serde_json::to_vec(claims).unwrap_or_default());
    let input = format!("{header}.{payload}");
    let sig = b64url(&hmac_sha256(key, input.as_bytes()));
    format!("{input}.{sig}")
}

/// Normalises an audience for comparison (`https://management.azure.com/` == `...com`).
pub fn norm_aud(a: &str) -> String {
    a.trim_end_matches('/').to_ascii_lowercase()
}

/// The claims of a token this emulator signed, whatever its audience, tenant or lifetime: who
/// holds it (the request log's caller) is known even when a service will refuse it.
pub fn decode(key: &[u8], token: &str) -> Result<Claims, TokenError> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(TokenError::Malformed);
    }
    let sig = b64url_decode(parts[2]).ok_or(TokenError::Malformed)?;
    let expect = hmac_sha256(key, format!("{}.{}", parts[0], parts[1]).as_bytes());
    // Constant-time compare is not needed in an emulator, but cheap.
    if sig.len() != expect.len()
        || sig
            .iter()
            .zip(expect.iter())
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            != 0
    {
        return Err(TokenError::BadSignature);
    }
    let payload = b64url_decode(parts[1]).ok_or(TokenError::Malformed)?;
    serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)
}

pub fn verify(
    key: &[u8],
    token: &str,
    audiences: &[&str],
    tenant: Uuid,
    now: DateTime<Utc>,
) -> Result<Claims, TokenError> {
    let claims = decode(key, token)?;
    if claims.tid != tenant {
        return Err(TokenError::WrongTenant);
    }
    let a = norm_aud(&claims.aud);
    if !audiences.iter().any(|x| norm_aud(x) == a) {
        return Err(TokenError::WrongAudience(claims.aud.clone()));
    }
    // Checked on the wall clock, like `entra::mint` stamps them (see there).
    let _ = now;
    let t = Utc::now().timestamp();
    if t >= claims.exp {
        return Err(TokenError::Expired { exp: claims.exp });
    }
    if t + 300 < claims.nbf {
        return Err(TokenError::NotYetValid);
    }
    Ok(claims)
}

/// Extracts the bearer token; `None` when there is no Authorization header at all.
pub fn bearer(headers: &http::HeaderMap) -> Option<Result<String, TokenError>> {
    let h = headers.get(http::header::AUTHORIZATION)?;
    let s = match h.to_str() {
        Ok(s) => s.trim(),
        Err(_) => return Some(Err(TokenError::Malformed)),
    };
    let (scheme, rest) = s.split_once(' ').unwrap_or((s, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || rest.trim().is_empty() {
        return Some(Err(TokenError::Malformed));
    }
    Some(Ok(rest.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        let id = Uuid::new_v4();
        Claims {
            aud: "https://vault.azure.net".into(),
            iss: "x".into(),
            iat: 0,
            nbf: 0,
            exp,
            oid: id,
            sub: id,
            appid: id,
            azp: id,
            tid: Uuid::nil(),
            idtyp: "app".into(),
            roles: vec![],
        }
    }

    #[test]
    fn round_trip_and_failures() {
        let key = b"k";
        let now = Utc::now();
        let t = sign(key, &claims(now.timestamp() + 60));
        assert!(verify(key, &t, &["https://vault.azure.net/"], Uuid::nil(), now).is_ok());
        assert_eq!(
            verify(b"other", &t, &["https://vault.azure.net"], Uuid::nil(), now).unwrap_err(),
            TokenError::BadSignature
        );
        assert!(matches!(
            verify(key, &t, &["https://graph.microsoft.com"], Uuid::nil(), now),
            Err(TokenError::WrongAudience(_))
        ));
        // Expiry is on the wall clock: an emulated `now` days ahead does not expire it...
        assert!(
            verify(
                key,
                &t,
                &["https://vault.azure.net"],
                Uuid::nil(),
                now + chrono::Duration::days(8)
            )
            .is_ok()
        );
        // ...a token whose `exp` has passed on the wall clock is refused.
        let old = sign(key, &claims(now.timestamp() - 1));
        assert!(matches!(
            verify(key, &old, &["https://vault.azure.net"], Uuid::nil(), now),
            Err(TokenError::Expired { .. })
        ));
        assert_eq!(
            verify(key, "a.b", &["x"], Uuid::nil(), now).unwrap_err(),
            TokenError::Malformed
        );
    }
}
