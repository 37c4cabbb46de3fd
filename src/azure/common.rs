//! Plumbing every hand-written Azure client shares: the options a client is built with
//! ([`ServiceOptions`], [`RetryPolicy`]), the bearer-token source, one send-with-retry loop, and
//! the parser for Azure's error bodies.
//!
//! Why one loop for all: Graph, ARM and the token probe must agree on what is worth retrying
//! (429, 5xx, a dropped connection), on honouring `Retry-After`, and on never repeating a write
//! whose outcome is unknown. The [`Failure`] this loop returns becomes an [`super::Error`] in
//! `super::error`, once; nothing here is public outside `crate::azure` except the options.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use reqwest::header::HeaderMap;

tokio::task_local! {
    /// Counts the 429 answers the requests of the enclosing task received (retried or not):
    /// the pass runner scopes one per credential to learn whether Azure is throttling it
    /// (`engine::parallelism`). Outside such a scope nothing is counted.
    pub static THROTTLED: Arc<AtomicU64>;
}

/// Records a 429 for the enclosing task's [`THROTTLED`] counter, if any.
pub(crate) fn note_throttled(status: u16) {
    if status == 429 {
        let _ = THROTTLED.try_with(|c| c.fetch_add(1, Ordering::Relaxed));
    }
}

/// How a client retries: attempts, exponential back-off from `base_delay` up to `max_delay`.
///
/// A server's `Retry-After` is honoured when it is no longer than `max_delay`; a longer one ends
/// the retries at once (the caller gets `Throttled` with the wait Azure asked for, and can defer
/// the work to the next run instead of holding a Functions invocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries, the first one included (1 = never retry).
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Back-off before try number `attempt + 1` (attempt is 1-based): `base * 2^(attempt-1)`,
    /// capped, with "equal jitter" (half fixed, half random) so parallel rotations that failed
    /// together do not retry together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let full = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let half = full / 2;
        let jitter = if half.is_zero() {
            Duration::ZERO
        } else {
            half.mul_f64(rand::random::<f64>())
        };
        half + jitter
    }

    /// The wait before the next try, or `None` when the server asked for more than we allow.
    pub(crate) fn wait(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        match retry_after {
            Some(ra) if ra > self.max_delay => None,
            Some(ra) => Some(ra),
            None => Some(self.backoff(attempt)),
        }
    }
}

/// What every hand-written client is built with besides the cloud and the credential.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// The shared client from [`crate::transport::TransportConfig::build`].
    pub http: reqwest::Client,
    pub retry: RetryPolicy,
    /// ARM's buckets as this process spends them, shared by every ARM client built with
    /// these options (or a clone of them).
    pub arm_pacer: Arc<super::pacer::ArmPacer>,
}

impl ServiceOptions {
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            retry: RetryPolicy::default(),
            arm_pacer: Arc::default(),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The same client as SDK client options: shared transport, and the SDK's own retry turned
    /// off because our modules wrap every SDK call in the same retry loop (one policy, one place).
    pub(crate) fn sdk_client_options(
        &self,
        cloud: crate::cloud::Cloud,
    ) -> azure_core::http::ClientOptions {
        azure_core::http::ClientOptions {
            transport: Some(azure_core::http::Transport::new(Arc::new(
                self.http.clone(),
            ))),
            retry: azure_core::http::RetryOptions::none(),
            cloud: Some(Arc::new(sdk_cloud(cloud))),
            ..Default::default()
        }
    }
}

/// The SDK's name for our cloud. Setting it explicitly keeps `AZURE_AUTHORITY_HOST` from the
/// process environment from silently redirecting token requests.
pub(crate) fn sdk_cloud(cloud: crate::cloud::Cloud) -> azure_core::cloud::CloudConfiguration {
    use azure_core::cloud::CloudConfiguration as C;
    match cloud {
        crate::cloud::Cloud::Public => C::AzurePublic,
        crate::cloud::Cloud::UsGovernment => C::AzureGovernment,
        crate::cloud::Cloud::China => C::AzureChina,
    }
}

/// A credential plus the one scope a client asks it for.
#[derive(Clone)]
pub(crate) struct Bearer {
    pub credential: Arc<dyn TokenCredential>,
    pub scope: String,
}

impl Bearer {
    pub(crate) fn new(credential: Arc<dyn TokenCredential>, scope: impl Into<String>) -> Self {
        Self {
            credential,
            scope: scope.into(),
        }
    }

    /// A token for the scope. The credential caches; asking per request is cheap.
    pub(crate) async fn token(&self) -> Result<String, String> {
        self.credential
            .get_token(&[self.scope.as_str()], None)
            .await
            .map(|t| t.token.secret().to_string())
            .map_err(|e| format!("could not get a token for {}: {e}", self.scope))
    }
}

/// A 2xx answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Why a request did not get a 2xx answer (after the retries the policy allows).
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// Azure answered with a non-2xx status.
    Status {
        status: u16,
        body: String,
        retry_after: Option<Duration>,
        attempts: u32,
    },
    /// No answer: connection refused or reset, timeout, TLS failure.
    Transport { message: String, attempts: u32 },
    /// The credential could not produce a token.
    Credential(String),
    /// Not sent: the client-side pacer would have held it longer than `super::pacer::MAX_WAIT`.
    Paced { wait: Duration },
}

/// Statuses worth another try: the request was throttled, timed out, or hit a broken server.
fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// `Retry-After` in seconds (the form every Azure service here uses); HTTP dates are ignored.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// Whether a write may be sent again when its first try's outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Reads, full-replace PUTs, PATCHes that set a value: repeating them is harmless.
    Idempotent,
    /// addPassword and the like: a repeat could act twice. Retried only when the request
    /// certainly did not take effect (429, or the connection was never made).
    NotIdempotent,
}

/// Sends a request built by `make` (called once per try), with a fresh bearer token per try
/// when `bearer` is given, retrying per `policy`.
pub(crate) async fn send(
    policy: &RetryPolicy,
    idempotency: Idempotency,
    bearer: Option<&Bearer>,
    make: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Reply, Failure> {
    send_paced(policy, idempotency, bearer, None, make).await
}

/// A request's place in the ARM pacer's buckets: its path and method.
pub(crate) struct Paced<'a> {
    pub pacer: &'a super::pacer::ArmPacer,
    pub path: &'a str,
    pub method: &'a reqwest::Method,
}

/// What one try's answer said of its ARM bucket: status (0: no answer), headers, `Retry-After`.
fn answer_of(tried: &Try) -> (u16, Option<&HeaderMap>, Option<Duration>) {
    match tried {
        Try::Done(reply) => (200, Some(&reply.headers), None),
        Try::Final(Failure::Status {
            status,
            retry_after,
            ..
        })
        | Try::Retryable {
            failure:
                Failure::Status {
                    status,
                    retry_after,
                    ..
                },
            ..
        } => (*status, None, *retry_after),
        _ => (0, None, None),
    }
}

/// [`send`], each try first waiting for its token from `paced`'s pacer (when given) and
/// telling it the answer.
pub(crate) async fn send_paced(
    policy: &RetryPolicy,
    idempotency: Idempotency,
    bearer: Option<&Bearer>,
    paced: Option<Paced<'_>>,
    make: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Reply, Failure> {
    let max = policy.max_attempts.max(1);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let mut req = make();
        if let Some(b) = bearer {
            let token = b.token().await.map_err(Failure::Credential)?;
            req = req.bearer_auth(token);
        }
        let ticket = match &paced {
            Some(p) => Some(
                p.pacer
                    .acquire(p.path, p.method, super::pacer::MAX_WAIT)
                    .await
                    .map_err(|e| Failure::Paced { wait: e.wait })?,
            ),
            None => None,
        };
        let tried = try_once(req, idempotency, attempt).await;
        if let Some(ticket) = ticket {
            let (status, headers, retry_after) = answer_of(&tried);
            ticket.answered(status, headers, retry_after);
        }
        let (failure, wait_hint) = match tried {
            Try::Done(reply) => return Ok(reply),
            Try::Final(failure) => return Err(failure),
            Try::Retryable { failure, wait_hint } => (failure, wait_hint),
        };
        if attempt >= max {
            return Err(failure);
        }
        match policy.wait(attempt, wait_hint) {
            Some(w) => tokio::time::sleep(w).await,
            None => return Err(failure),
        }
    }
}

/// What one try of [`send`] came to.
enum Try {
    Done(Reply),
    /// Not to be repeated (a refusal, or a write whose outcome is unknown).
    Final(Failure),
    /// Worth another try, after `wait_hint` when the server named one.
    Retryable {
        failure: Failure,
        wait_hint: Option<Duration>,
    },
}

/// Sends one try and sorts its outcome by what may be repeated.
async fn try_once(req: reqwest::RequestBuilder, idempotency: Idempotency, attempt: u32) -> Try {
    let resp = match req.send().await {
        Ok(resp) => resp,
        Err(e) => {
            let failure = Failure::Transport {
                message: transport_message(&e),
                attempts: attempt,
            };
            // A refused connection never reached the server: even a write may be repeated.
            let retry = idempotency == Idempotency::Idempotent || e.is_connect();
            return sort(failure, retry, None);
        }
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = match resp.bytes().await {
        Ok(b) => b.to_vec(),
        Err(e) => {
            let failure = Failure::Transport {
                message: format!("reading the answer failed: {e}"),
                attempts: attempt,
            };
            // The server acted; only idempotent calls may be repeated.
            return sort(failure, idempotency == Idempotency::Idempotent, None);
        }
    };
    if (200..300).contains(&status) {
        return Try::Done(Reply { headers, body });
    }
    note_throttled(status);
    let ra = retry_after(&headers);
    let retry = match idempotency {
        Idempotency::Idempotent => retryable_status(status),
        Idempotency::NotIdempotent => status == 429,
    };
    let failure = Failure::Status {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        retry_after: ra,
        attempts: attempt,
    };
    sort(failure, retry, ra)
}

fn sort(failure: Failure, retry: bool, wait_hint: Option<Duration>) -> Try {
    if retry {
        Try::Retryable { failure, wait_hint }
    } else {
        Try::Final(failure)
    }
}

/// A transport error's text with its cause chain (reqwest's top line alone says little).
pub(crate) fn transport_message(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        format!("timed out: {e}")
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// The code and message of an Azure error body, whichever of the shapes it came in:
/// `{"error":{"code","message","innererror":{"code"}}}` (Graph, ARM, Key Vault),
/// `{"Code","Message"}` (Microsoft.Web legacy), `{"error":"x","error_description":"..."}` (Entra).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    pub code: Option<String>,
    pub inner_code: Option<String>,
    pub message: Option<String>,
}

impl ErrorBody {
    pub(crate) fn parse(body: &str) -> Self {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
            return Self::default();
        };
        let get = |o: &serde_json::Value, keys: &[&str]| -> Option<String> {
            keys.iter()
                .find_map(|k| o.get(*k))
                .and_then(|x| x.as_str())
                .map(str::to_string)
        };
        match v.get("error") {
            Some(e @ serde_json::Value::Object(_)) => {
                let inner = ["innererror", "innerError", "InnerError"]
                    .iter()
                    .find_map(|k| e.get(*k));
                Self {
                    code: get(e, &["code", "Code"]),
                    inner_code: inner.and_then(|i| get(i, &["code", "Code"])),
                    message: get(e, &["message", "Message"]).map(|m| clip(&m)),
                }
            }
            Some(serde_json::Value::String(code)) => Self {
                code: Some(code.clone()),
                inner_code: None,
                message: get(&v, &["error_description"]).map(|m| clip(&m)),
            },
            _ => Self {
                code: get(&v, &["Code", "code"]),
                inner_code: None,
                message: get(&v, &["Message", "message"]).map(|m| clip(&m)),
            },
        }
    }

    /// The most specific code: the inner one when Azure gives it (`ForbiddenByRbac`).
    pub(crate) fn specific_code(&self) -> Option<String> {
        self.inner_code.clone().or_else(|| self.code.clone())
    }
}

/// Azure messages can be long (KV's RBAC text); keep errors readable.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 600;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Parses a JSON answer into `T`, naming what was being read on failure (never the body: it
/// may hold a secret).
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    what: &str,
    body: &[u8],
) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(400),
        };
        for _ in 0..50 {
            let d1 = p.backoff(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d5 = p.backoff(5);
            assert!(d5 >= Duration::from_millis(200) && d5 <= Duration::from_millis(400));
        }
    }

    #[test]
    fn retry_after_longer_than_the_cap_stops_retrying() {
        let p = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_secs(2),
        };
        assert_eq!(p.wait(1, Some(Duration::from_secs(5))), None);
        assert_eq!(
            p.wait(1, Some(Duration::from_secs(1))),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn error_bodies_of_every_shape() {
        let kv = ErrorBody::parse(
            r#"{"error":{"code":"Forbidden","message":"nope","innererror":{"code":"ForbiddenByRbac"}}}"#,
        );
        assert_eq!(kv.specific_code().as_deref(), Some("ForbiddenByRbac"));
        assert_eq!(kv.code.as_deref(), Some("Forbidden"));
        let web = ErrorBody::parse(r#"{"Code":"BadRequest","Message":"bad"}"#);
        assert_eq!(web.specific_code().as_deref(), Some("BadRequest"));
        assert_eq!(web.message.as_deref(), Some("bad"));
        let entra = ErrorBody::parse(r#"{"error":"invalid_client","error_description":"AADSTS1"}"#);
        assert_eq!(entra.code.as_deref(), Some("invalid_client"));
        assert_eq!(ErrorBody::parse("<html>").specific_code(), None);
        assert_eq!(ErrorBody::parse(r#"{"error":42}"#).code, None);
        assert_eq!(ErrorBody::parse(r#"{"error":{"code":7}}"#).code, None);
    }
}
