//! JWTs signed in Key Vault: the client assertion a certificate credential presents to the
//! token endpoint, the proof of possession Graph's `addKey` / `removeKey` want, and the token
//! probe that proves a certificate with a real client-assertion request.
//!
//! Formats:
//! - Client assertion (Microsoft identity platform, "Certificate credentials", entra-docs
//!   docs/identity-platform/certificate-credentials.md): header `alg` (RS256 or PS256), `typ`
//!   JWT, `x5t#S256` (base64url SHA-256 of the DER certificate); claims `aud` = the token
//!   endpoint, `iss` = `sub` = the client id, `jti` unique, `nbf`, `exp`, `iat`.
//! - Proof (microsoft-graph-docs-contrib api-reference/v1.0/api/application-addkey.md): `aud`
//!   `00000002-0000-0000-c000-000000000000`, `iss` the application's object id, `nbf`, and
//!   `exp` = `nbf` + 10 minutes.
//!
//! A signed JWT is a credential for its lifetime: it is held as a [`SecretValue`] and never
//! printed.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::Digest;
use uuid::Uuid;

use super::certificates::{CertificateVersion, CertificatesClient, SignAlgorithm};
use super::common::ServiceOptions;
use super::entra::post_token_form;
use super::error::Error;
use crate::cloud::Cloud;
use crate::secret::SecretValue;

/// The proof's audience (Azure AD Graph's application id), per application-addkey.md.
pub const PROOF_AUDIENCE: &str = "00000002-0000-0000-c000-000000000000";
/// Graph's longest proof lifetime; the assertion uses the same ten minutes (MSAL's default).
pub const LIFETIME_SECONDS: i64 = 600;
/// `client_assertion_type` (RFC 7523 section 2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// AADSTS codes of certificate credentials (entra-docs reference-error-codes.md).
pub mod codes {
    /// Signature validation failed: the key is not registered (or not replicated yet), expired,
    /// or did not sign this assertion.
    pub const ASSERTION_SIGNATURE: u64 = 700027;
    /// The assertion is outside its `nbf`..`exp` window.
    pub const ASSERTION_TIME: u64 = 700024;
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// `x5t#S256` of a DER certificate.
pub fn x5t_s256(cer: &[u8]) -> String {
    b64url(&sha2::Sha256::digest(cer))
}

/// The client assertion's claims for `client_id` at `authority`/`tenant`'s v2 token endpoint.
pub fn assertion_claims(
    authority: &str,
    tenant: &str,
    client_id: Uuid,
    now: DateTime<Utc>,
    jti: Uuid,
) -> Value {
    let t = now.timestamp();
    json!({
        "aud": format!("{authority}/{tenant}/oauth2/v2.0/token"),
        "iss": client_id, "sub": client_id, "jti": jti,
        "nbf": t, "iat": t, "exp": t + LIFETIME_SECONDS,
    })
}

/// The addKey/removeKey proof's claims for the application `object_id`.
pub fn proof_claims(object_id: Uuid, now: DateTime<Utc>) -> Value {
    let t = now.timestamp();
    json!({"aud": PROOF_AUDIENCE, "iss": object_id, "nbf": t, "exp": t + LIFETIME_SECONDS})
}

/// Signs `claims` as a compact JWS with `cert`'s key in Key Vault; the header names the
/// certificate by `x5t#S256` (and `x5t`, which older validators read).
pub async fn sign_jwt(
    kv: &CertificatesClient,
    cert: &CertificateVersion,
    alg: SignAlgorithm,
    claims: &Value,
) -> Result<SecretValue, Error> {
    let header = json!({"alg": alg.jws_name(), "typ": "JWT", "x5t": cert.x5t, "x5t#S256": x5t_s256(&cert.cer)});
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let digest: [u8; 32] = sha2::Sha256::digest(input.as_bytes()).into();
    let sig = kv.sign(&cert.key_id, alg, &digest).await?;
    Ok(SecretValue::new(format!("{input}.{}", b64url(&sig))))
}

/// The token probe for certificate credentials: one client-credentials request with a client
/// assertion; the token is discarded, the AADSTS code kept.
#[derive(Debug, Clone)]
pub struct AssertionProbe {
    options: ServiceOptions,
    authority: String,
}

impl AssertionProbe {
    pub fn new(cloud: Cloud, options: ServiceOptions) -> Self {
        Self {
            options,
            authority: cloud.authority_host().to_string(),
        }
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }

    pub async fn request_token(
        &self,
        tenant: &str,
        client_id: Uuid,
        assertion: &SecretValue,
        scope: &str,
    ) -> Result<(), Error> {
        let client_id = client_id.to_string();
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion.expose()),
            ("scope", scope),
        ];
        post_token_form(&self.options, &self.authority, tenant, &client_id, &form).await
    }
}

/// A just-added key looks unregistered until Entra has replicated it: AADSTS700027 with "key
/// was not found" is worth waiting for, every other refusal is not.
pub fn is_key_not_replicated(e: &Error) -> bool {
    e.aadsts() == Some(codes::ASSERTION_SIGNATURE)
        && e.message().is_some_and(|d| d.contains("key was not found"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::entra::parse_refusal;

    #[test]
    fn claims_follow_the_documented_formats() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let app = Uuid::nil();
        let a = assertion_claims(
            "https://login.microsoftonline.com",
            "t1",
            app,
            now,
            Uuid::nil(),
        );
        assert_eq!(
            a["aud"],
            "https://login.microsoftonline.com/t1/oauth2/v2.0/token"
        );
        assert_eq!(
            (a["iss"].clone(), a["sub"].clone()),
            (json!(app), json!(app))
        );
        assert_eq!(a["exp"].as_i64().unwrap() - a["nbf"].as_i64().unwrap(), 600);
        let p = proof_claims(app, now);
        assert_eq!(p["aud"], PROOF_AUDIENCE);
        assert_eq!(p["exp"].as_i64().unwrap() - p["nbf"].as_i64().unwrap(), 600);
        assert_eq!(
            x5t_s256(b"abc"),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
    }

    #[test]
    fn only_a_missing_key_counts_as_replication() {
        let body = |d: &str| {
            format!(
                r#"{{"error":"invalid_client","error_description":"{d}","error_codes":[700027]}}"#
            )
        };
        let missing = parse_refusal(
            401,
            &body(
                "AADSTS700027: Client assertion failed signature validation. [Reason - The key was not found.]",
            ),
            1,
        );
        assert!(is_key_not_replicated(&missing));
        let expired = parse_refusal(
            401,
            &body(
                "AADSTS700027: Client assertion contains an invalid signature. [Reason - The key used is expired.]",
            ),
            1,
        );
        assert!(!is_key_not_replicated(&expired));
    }
}
