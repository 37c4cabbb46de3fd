//! The token probe: does Entra accept this client secret? Used to verify a new secret before
//! consumers get it, and to confirm the value in Key Vault is live.
//!
//! It posts the client-credentials form to `{authority}/{tenant}/oauth2/v2.0/token` directly
//! with reqwest rather than through `azure_identity`, because the SDK flattens the answer into
//! a message and the rotator needs the AADSTS code: 7000215 right after addPassword means
//! "not replicated yet, try again", while 7000222 (expired), 700016 (unknown app) and 90002
//! (unknown tenant) will never heal by waiting. The token itself is discarded.

use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::common::{Failure, Idempotency, ServiceOptions};
use super::error::{Error, ErrorKind, Service};
use crate::cloud::Cloud;
use crate::secret::SecretValue;

/// AADSTS codes the rotator acts on.
pub mod codes {
    /// The secret is wrong, or (right after addPassword) not replicated yet.
    pub const INVALID_SECRET: u64 = 7000215;
    /// The secret has expired.
    pub const EXPIRED_SECRET: u64 = 7000222;
    /// No application with that client id in the tenant.
    pub const UNKNOWN_APP: u64 = 700016;
    /// No such tenant.
    pub const UNKNOWN_TENANT: u64 = 90002;
    /// The scope is not valid.
    pub const BAD_SCOPE: u64 = 70011;
}

/// A successful verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Token requests made, the successful one included.
    pub attempts: u32,
}

#[derive(Debug, Clone)]
pub struct TokenProbe {
    options: ServiceOptions,
    authority: String,
}

impl TokenProbe {
    pub fn new(cloud: Cloud, options: ServiceOptions) -> Self {
        Self {
            options,
            authority: cloud.authority_host().to_string(),
        }
    }

    /// One client-credentials token request (with the client's retry policy for throttling and
    /// server errors, never for an AADSTS refusal).
    pub async fn request_token(
        &self,
        tenant: &str,
        client_id: &str,
        secret: &SecretValue,
        scope: &str,
    ) -> Result<(), Error> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret.expose()),
            ("scope", scope),
        ];
        post_token_form(&self.options, &self.authority, tenant, client_id, &form).await
    }

    /// Requests tokens until one succeeds, retrying only AADSTS7000215 (replication delay)
    /// with exponential back-off (the client's base delay, doubling, capped at its max delay)
    /// until `timeout` has passed. Every other refusal returns at once.
    pub async fn verify_with_retry(
        &self,
        tenant: &str,
        client_id: &str,
        secret: &SecretValue,
        scope: &str,
        timeout: Duration,
    ) -> Result<Verified, Error> {
        let deadline = Instant::now() + timeout;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match self.request_token(tenant, client_id, secret, scope).await {
                Ok(()) => return Ok(Verified { attempts }),
                Err(e) if e.is_replication_delay() => {
                    let wait = self.options.retry.backoff(attempts);
                    if Instant::now() + wait >= deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// What every token request is called in errors.
const OP: &str = "token request";

/// Posts a client-credentials `form` to the tenant's token endpoint (with the client's retry
/// policy for throttling and server errors, never for an AADSTS refusal) and reads the answer;
/// the token itself is discarded. Shared by the secret and the assertion probes.
pub(crate) async fn post_token_form(
    options: &ServiceOptions,
    authority: &str,
    tenant: &str,
    client_id: &str,
    form: &[(&str, &str)],
) -> Result<(), Error> {
    let whom = || format!("client {client_id} in tenant {tenant}");
    if tenant.is_empty() || tenant.contains(['/', '?', '#']) {
        return Err(Error::invalid_input(
            Service::Entra,
            OP,
            format!("tenant '{tenant}' is not a tenant id or domain"),
        ));
    }
    let url = format!("{authority}/{tenant}/oauth2/v2.0/token");
    let result = super::common::send(&options.retry, Idempotency::Idempotent, None, || {
        options.http.post(&url).form(form)
    })
    .await;
    match result {
        Ok(reply) => parse_success(&reply.body).map_err(|e| e.on(whom())),
        Err(Failure::Status {
            status,
            body,
            attempts,
            ..
        }) => Err(parse_refusal(status, &body, attempts).on(whom())),
        Err(f) => Err(Error::from_failure(Service::Entra, OP, &f).on(whom())),
    }
}

pub(crate) fn parse_success(body: &[u8]) -> Result<(), Error> {
    #[derive(Deserialize)]
    struct Ok_ {
        access_token: Option<String>,
    }
    let bad = |m| Error::bad_answer(Service::Entra, OP, m);
    let ok: Ok_ = super::common::parse_json("token answer", body).map_err(bad)?;
    match ok.access_token {
        Some(t) if !t.is_empty() => Ok(()),
        _ => Err(bad(
            "token answer: field 'access_token' is missing or empty".into(),
        )),
    }
}

pub(crate) fn parse_refusal(status: u16, body: &str, attempts: u32) -> Error {
    #[derive(Deserialize)]
    struct Refusal {
        error: Option<String>,
        error_description: Option<String>,
        error_codes: Option<Vec<u64>>,
    }
    if status == 429 {
        return Error::new(
            ErrorKind::Throttled { retry_after: None },
            Service::Entra,
            OP,
        )
        .with_azure(Some(status), None, None)
        .after(attempts);
    }
    let parsed: Option<Refusal> = serde_json::from_str(body).ok();
    let code = parsed
        .as_ref()
        .and_then(|r| r.error_codes.as_ref())
        .and_then(|c| c.first().copied())
        .or_else(|| {
            // Older answers carry the code only in the description ("AADSTS7000215: ...").
            parsed
                .as_ref()
                .and_then(|r| r.error_description.as_deref())
                .and_then(code_from_description)
        });
    match (parsed, code) {
        (Some(r), Some(code)) => Error::token_refused(
            code,
            Some(r.error.unwrap_or_else(|| "(none)".into())),
            first_line(r.error_description.as_deref().unwrap_or("")),
        ),
        _ if status >= 500 => Error::new(ErrorKind::Transient, Service::Entra, OP)
            .with_azure(Some(status), None, None)
            .after(attempts),
        _ => Error::bad_answer(
            Service::Entra,
            OP,
            "no 'error_codes' and no AADSTS code in 'error_description'",
        )
        .with_azure(Some(status), None, None),
    }
}

fn code_from_description(d: &str) -> Option<u64> {
    let rest = d.strip_prefix("AADSTS")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn first_line(s: &str) -> String {
    s.split(['\r', '\n']).next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_the_aadsts_code() {
        let body = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x\r\nCorrelation ID: y","error_codes":[7000215]}"#;
        let e = parse_refusal(401, body, 1);
        assert!(e.is_replication_delay());
        assert_eq!(e.kind(), &ErrorKind::TokenRefused { aadsts: 7000215 });
        assert_eq!(e.code(), Some("invalid_client"));
        assert_eq!(
            e.message(),
            Some("AADSTS7000215: Invalid client secret provided.")
        );
        let old = r#"{"error":"unauthorized_client","error_description":"AADSTS700016: Application not found"}"#;
        assert_eq!(parse_refusal(400, old, 1).aadsts(), Some(700016));
        let throttled = parse_refusal(429, "", 3);
        assert_eq!(
            throttled.kind(),
            &ErrorKind::Throttled { retry_after: None }
        );
        assert_eq!(throttled.attempts(), 3);
        assert_eq!(
            parse_refusal(400, "<html>", 1).kind(),
            &ErrorKind::BadAnswer
        );
        assert_eq!(parse_refusal(503, "", 1).kind(), &ErrorKind::Transient);
        assert_eq!(
            parse_refusal(400, r#"{"error_codes":"x"}"#, 1).kind(),
            &ErrorKind::BadAnswer
        );
    }

    #[tokio::test]
    async fn a_malformed_tenant_is_refused_before_sending() {
        let probe = TokenProbe::new(Cloud::Public, ServiceOptions::new(reqwest::Client::new()));
        let r = probe
            .request_token("a/b", "c", &SecretValue::new("s"), "x/.default")
            .await;
        let e = r.unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::InvalidInput);
        assert!(e.to_string().contains("a/b"), "{e}");
    }

    #[test]
    fn success_needs_an_access_token() {
        assert!(
            parse_success(br#"{"token_type":"Bearer","expires_in":3599,"access_token":"e"}"#)
                .is_ok()
        );
        assert!(parse_success(br#"{"token_type":"Bearer"}"#).is_err());
        assert!(parse_success(br#"{"access_token":5}"#).is_err());
        assert!(parse_success(b"").is_err());
    }

    #[test]
    fn display_never_contains_the_secret() {
        let secret = SecretValue::new("Abc8Q~TopSecretValue");
        // Even if Entra echoed something odd, our errors are built from its fields only.
        let e = parse_refusal(
            401,
            r#"{"error":"invalid_client","error_description":"AADSTS7000222: expired","error_codes":[7000222]}"#,
            1,
        );
        let shown = format!("{e} {e:?} {secret} {secret:?}");
        assert!(!shown.contains("TopSecretValue"), "{shown}");
    }
}
