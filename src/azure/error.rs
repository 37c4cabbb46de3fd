//! The one error every Azure client returns: [`Error`], a small closed [`ErrorKind`] with the
//! [`Service`] and the operation attached, and Azure's status, code and message where it gave
//! them. A [`Failure`] of the request loop is classified here, once ([`Error::from_failure`]).
//!
//! In the spirit of azure-sdk-for-rust's `typespec::error::Error` (sdk/typespec/src/error/mod.rs:
//! one error type whose `ErrorKind` is coarse — `HttpResponse { status, error_code }`, `Io`,
//! `Credential`, `DataConversion`… — with context attached instead of one enum per client): the
//! kinds here are what callers branch on, plus the few refusals the rotator really tells apart
//! (an AADSTS code, a lifetime policy, a disabled secret, a held lease, a change Azure will only
//! take from a person). Everything else is context for the message.
//!
//! What an error may carry: Azure's `message` is untrusted text; it is clipped to 600 characters
//! (Entra's description to its first line) and only ever shown as text. A secret value never
//! reaches an error: no constructor takes one, and request bodies are never quoted.

use std::fmt;
use std::time::Duration;

use uuid::Uuid;

use super::common::{ErrorBody, Failure};

/// Which Azure service (or part of the rotator's own Azure plumbing) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Graph,
    /// The token endpoint (`login.microsoftonline.com`): the secret and assertion probes.
    Entra,
    KeyVault,
    /// Microsoft.Web sites (app settings, Key Vault references).
    AppService,
    /// Microsoft.Web API connections (Logic Apps).
    ApiConnection,
    /// Microsoft.Automation variables.
    Automation,
    /// The rotator's own blob container.
    Storage,
    /// The rotator's own credential (managed identity, service principal, developer tools).
    Identity,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Graph => "Graph",
            Service::Entra => "Entra",
            Service::KeyVault => "Key Vault",
            Service::AppService => "App Service",
            Service::ApiConnection => "API connection",
            Service::Automation => "Automation",
            Service::Storage => "Storage",
            Service::Identity => "the rotator's credential",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What went wrong, as callers tell it apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// 404: the resource (or the object the operation names) does not exist.
    NotFound,
    /// 401 or 403: the rotator may not do this.
    AccessDenied,
    /// 429 after the retries the policy allows (`retry_after`: what Azure asked for).
    Throttled { retry_after: Option<Duration> },
    /// 5xx, 408, no answer, a dropped connection: worth another try later.
    Transient,
    /// Azure answered something the rotator cannot read.
    BadAnswer,
    /// No token: the rotator's credential could not produce one (or be built).
    Credential,
    /// Any other 4xx: the request itself was refused (status and code on the [`Error`]).
    Rejected,
    /// The request was not sent: an argument or setting cannot be right.
    InvalidInput,
    /// Entra refused a token request with this AADSTS code (secret wrong, not yet replicated,
    /// expired; app or tenant unknown).
    TokenRefused { aadsts: u64 },
    /// Graph refused a credential lifetime: the tenant's app management policy caps it
    /// (`CredentialInvalidLifetimeAsPerAppPolicy`); the policy id when Graph names it.
    LifetimePolicy { policy_id: Option<String> },
    /// Graph addKey/removeKey: the proof of possession was not signed by a valid key.
    ProofRefused,
    /// Key Vault: the version asked for is disabled (`SecretDisabled`).
    SecretDisabled,
    /// Storage: another run holds the lease.
    Busy,
    /// Storage: our lease ended (expired or broken) while we thought we held it.
    LeaseLost,
    /// Azure will not take the change as the rotator can make it (an API connection's full PUT
    /// would wipe parameters it cannot read back, say); the detail says what a person must do.
    /// Nothing was written.
    Blocked,
    /// Another writer changed a collection around our write (Graph `keyCredentials`).
    ConcurrentChange {
        appeared: Vec<Uuid>,
        disappeared: Vec<Uuid>,
    },
}

impl ErrorKind {
    fn phrase(&self) -> String {
        match self {
            ErrorKind::NotFound => "not found".into(),
            ErrorKind::AccessDenied => "access denied".into(),
            ErrorKind::Throttled { retry_after } => match retry_after {
                Some(d) => format!("throttled (Retry-After {}s)", d.as_secs()),
                None => "throttled".into(),
            },
            ErrorKind::Transient => "unavailable".into(),
            ErrorKind::BadAnswer => "the answer could not be read".into(),
            ErrorKind::Credential => "no token".into(),
            ErrorKind::Rejected => "refused".into(),
            ErrorKind::InvalidInput => "not sent".into(),
            ErrorKind::TokenRefused { aadsts } => format!("refused: AADSTS{aadsts}"),
            ErrorKind::LifetimePolicy { policy_id } => format!(
                "the lifetime exceeds the app management policy '{}'",
                policy_id.as_deref().unwrap_or("(not named)")
            ),
            ErrorKind::ProofRefused => "the proof of possession was refused".into(),
            ErrorKind::SecretDisabled => "the version is disabled".into(),
            ErrorKind::Busy => "leased by another run".into(),
            ErrorKind::LeaseLost => "the lease was lost".into(),
            ErrorKind::Blocked => "needs a person".into(),
            ErrorKind::ConcurrentChange {
                appeared,
                disappeared,
            } => {
                format!("changed concurrently: appeared {appeared:?}, disappeared {disappeared:?}")
            }
        }
    }
}

/// One failed Azure operation. See the module header for what it may carry. Boxed, as
/// typespec's error keeps its context behind a pointer: a `Result` of it stays one word wide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(Box<Context>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Context {
    kind: ErrorKind,
    service: Service,
    operation: &'static str,
    target: Option<String>,
    status: Option<u16>,
    code: Option<String>,
    message: Option<String>,
    detail: Option<String>,
    attempts: u32,
}

impl Error {
    /// An error of `kind` from `operation` on `service`, with nothing else known yet.
    pub fn new(kind: ErrorKind, service: Service, operation: &'static str) -> Self {
        Self(Box::new(Context {
            kind,
            service,
            operation,
            target: None,
            status: None,
            code: None,
            message: None,
            detail: None,
            attempts: 0,
        }))
    }

    /// What the operation acted on (`application with object id …`, `vault/secret`).
    pub fn on(mut self, target: impl Into<String>) -> Self {
        self.0.target = Some(target.into());
        self
    }

    /// The rotator's own explanation (a parse failure, a transport cause, what to do). Never
    /// a secret value.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.0.detail = Some(detail.into());
        self
    }

    /// Azure's code and message (the message is clipped: it is untrusted text).
    pub fn with_azure(
        mut self,
        status: Option<u16>,
        code: Option<String>,
        message: Option<String>,
    ) -> Self {
        self.0.status = status;
        self.0.code = code;
        self.0.message = message.map(|m| super::common::clip(&m));
        self
    }

    /// `BadAnswer` with the parse failure as the detail.
    pub fn bad_answer(
        service: Service,
        operation: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(ErrorKind::BadAnswer, service, operation).with_detail(detail)
    }

    /// `InvalidInput`: the request was not sent.
    pub fn invalid_input(
        service: Service,
        operation: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(ErrorKind::InvalidInput, service, operation).with_detail(detail)
    }

    /// Classifies what the request loop returned: the one place a status becomes a kind.
    pub(crate) fn from_failure(service: Service, operation: &'static str, f: &Failure) -> Self {
        match f {
            Failure::Credential(m) => {
                Self::new(ErrorKind::Credential, service, operation).with_detail(m.clone())
            }
            Failure::Transport { message, attempts } => {
                Self::new(ErrorKind::Transient, service, operation)
                    .with_detail(format!("no answer: {message}"))
                    .after(*attempts)
            }
            Failure::Paced { wait } => Self::new(
                ErrorKind::Throttled {
                    retry_after: Some(*wait),
                },
                service,
                operation,
            )
            .with_detail(format!(
                "not sent: the process's ARM request budget for this subscription is spent for \
                 the next {} s (Azure Resource Manager's documented token buckets, or a 429's \
                 Retry-After)",
                wait.as_secs()
            )),
            Failure::Status {
                status,
                body,
                retry_after,
                attempts,
            } => {
                let body = ErrorBody::parse(body);
                let code = body.specific_code();
                let kind = kind_of(
                    service,
                    *status,
                    code.as_deref(),
                    body.message.as_deref(),
                    *retry_after,
                );
                Self::new(kind, service, operation)
                    .with_azure(Some(*status), code, body.message)
                    .after(*attempts)
            }
        }
    }

    /// An Entra token endpoint refusal (`error`, `error_description` first line, AADSTS code).
    pub(crate) fn token_refused(aadsts: u64, error: Option<String>, description: String) -> Self {
        Self::new(
            ErrorKind::TokenRefused { aadsts },
            Service::Entra,
            "token request",
        )
        .with_azure(None, error, Some(description))
    }

    /// Graph's addKey/removeKey answer 401 `Authentication_MissingOrMalformed` when the proof
    /// (not the bearer token) is bad; the key-credential client reads that code so on its calls
    /// (`azure::keycredentials`), as its own error enum did before this type.
    pub(crate) fn proof_refusal(mut self) -> Self {
        if self.0.kind == ErrorKind::AccessDenied
            && self.0.code.as_deref() == Some("Authentication_MissingOrMalformed")
        {
            self.0.kind = ErrorKind::ProofRefused;
        }
        self
    }

    /// Sets how many tries were made (the request loop's count).
    pub(crate) fn after(mut self, attempts: u32) -> Self {
        self.0.attempts = attempts;
        self
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }

    pub fn service(&self) -> Service {
        self.0.service
    }

    pub fn operation(&self) -> &'static str {
        self.0.operation
    }

    pub fn target(&self) -> Option<&str> {
        self.0.target.as_deref()
    }

    /// Azure's HTTP status, when it answered.
    pub fn status(&self) -> Option<u16> {
        self.0.status
    }

    /// Azure's most specific error code (the inner one when given: `ForbiddenByRbac`).
    pub fn code(&self) -> Option<&str> {
        self.0.code.as_deref()
    }

    /// Azure's message (untrusted, clipped).
    pub fn message(&self) -> Option<&str> {
        self.0.message.as_deref()
    }

    pub fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }

    pub fn attempts(&self) -> u32 {
        self.0.attempts
    }

    /// The AADSTS code of an Entra refusal.
    pub fn aadsts(&self) -> Option<u64> {
        match self.0.kind {
            ErrorKind::TokenRefused { aadsts } => Some(aadsts),
            _ => None,
        }
    }

    /// Worth waiting for: a new secret not yet replicated looks exactly like a wrong one
    /// (AADSTS7000215).
    pub fn is_replication_delay(&self) -> bool {
        self.aadsts() == Some(super::entra::codes::INVALID_SECRET)
    }

    pub fn is_not_found(&self) -> bool {
        self.0.kind == ErrorKind::NotFound
    }

    pub fn is_access_denied(&self) -> bool {
        self.0.kind == ErrorKind::AccessDenied
    }
}

/// The kind of a non-2xx answer: the status, refined by the few codes the rotator acts on.
fn kind_of(
    service: Service,
    status: u16,
    code: Option<&str>,
    message: Option<&str>,
    retry_after: Option<Duration>,
) -> ErrorKind {
    let says = |c: &str| code == Some(c) || message.is_some_and(|m| m.contains(c));
    match status {
        429 => ErrorKind::Throttled { retry_after },
        404 => ErrorKind::NotFound,
        // Key Vault answers 403 SecretDisabled for a disabled version (Key Vault REST docs,
        // "Get Secret": "Forbidden" with inner code SecretDisabled).
        403 if service == Service::KeyVault && code == Some("SecretDisabled") => {
            ErrorKind::SecretDisabled
        }
        401 | 403 => ErrorKind::AccessDenied,
        s if s >= 500 || s == 408 => ErrorKind::Transient,
        // Graph puts CredentialInvalidLifetimeAsPerAppPolicy in `error.code` or at the start
        // of the message (addPassword and addKey alike).
        _ if service == Service::Graph && says(LIFETIME_CODE) => ErrorKind::LifetimePolicy {
            policy_id: message.and_then(policy_id),
        },
        _ => ErrorKind::Rejected,
    }
}

const LIFETIME_CODE: &str = "CredentialInvalidLifetimeAsPerAppPolicy";

/// `... assigned policy '{id}'.` → the policy id.
fn policy_id(message: &str) -> Option<String> {
    let rest = &message[message.rfind("policy '")? + "policy '".len()..];
    rest.split('\'')
        .next()
        .filter(|id| !id.is_empty())
        .map(str::to_string)
}

impl fmt::Display for Error {
    /// `{service} {operation}[ on {target}]: {kind}[ (HTTP {status}, {code})][: {message}]
    /// [ ({detail})][ after {n} attempts]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0.service, self.0.operation)?;
        if let Some(t) = &self.0.target {
            write!(f, " on {t}")?;
        }
        write!(f, ": {}", self.0.kind.phrase())?;
        match (self.0.status, &self.0.code) {
            (Some(s), Some(c)) => write!(f, " (HTTP {s}, {c})")?,
            (Some(s), None) => write!(f, " (HTTP {s})")?,
            (None, Some(c)) => write!(f, " ({c})")?,
            (None, None) => {}
        }
        if let Some(m) = &self.0.message {
            write!(f, ": {m}")?;
        }
        if let Some(d) = &self.0.detail {
            write!(f, ": {d}")?;
        }
        if self.0.attempts > 1 {
            write!(f, " (after {} attempts)", self.0.attempts)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, body: &str) -> Failure {
        Failure::Status {
            status,
            body: body.into(),
            retry_after: None,
            attempts: 1,
        }
    }

    #[test]
    fn statuses_become_kinds() {
        let f = |s| {
            Error::from_failure(
                Service::Graph,
                "op",
                &status(s, r#"{"error":{"code":"X","message":"m"}}"#),
            )
        };
        assert_eq!(f(404).kind(), &ErrorKind::NotFound);
        assert_eq!(f(403).kind(), &ErrorKind::AccessDenied);
        assert_eq!(f(401).kind(), &ErrorKind::AccessDenied);
        assert_eq!(f(429).kind(), &ErrorKind::Throttled { retry_after: None });
        assert_eq!(f(503).kind(), &ErrorKind::Transient);
        assert_eq!(f(408).kind(), &ErrorKind::Transient);
        assert_eq!(f(400).kind(), &ErrorKind::Rejected);
        assert_eq!(f(400).status(), Some(400));
        assert_eq!(f(400).code(), Some("X"));
    }

    #[test]
    fn key_vault_secret_disabled_is_its_own_kind() {
        let body = r#"{"error":{"code":"Forbidden","message":"Operation get is not allowed on a disabled secret.","innererror":{"code":"SecretDisabled"}}}"#;
        let kv = Error::from_failure(Service::KeyVault, "get secret", &status(403, body));
        assert_eq!(kv.kind(), &ErrorKind::SecretDisabled);
        // Only Key Vault says it; the same code elsewhere is plain access denied.
        let other = Error::from_failure(Service::Graph, "x", &status(403, body));
        assert_eq!(other.kind(), &ErrorKind::AccessDenied);
    }

    #[test]
    fn lifetime_policy_names_the_policy_wherever_graph_puts_the_code() {
        let in_code = r#"{"error":{"code":"CredentialInvalidLifetimeAsPerAppPolicy","message":"Credential lifetime exceeds the max value allowed as per assigned policy 'abc-123'."}}"#;
        let e = Error::from_failure(Service::Graph, "addPassword", &status(400, in_code));
        assert_eq!(
            e.kind(),
            &ErrorKind::LifetimePolicy {
                policy_id: Some("abc-123".into())
            }
        );
        let in_message = r#"{"error":{"code":"Request_BadRequest","message":"CredentialInvalidLifetimeAsPerAppPolicy: too long"}}"#;
        let e = Error::from_failure(Service::Graph, "addPassword", &status(400, in_message));
        assert_eq!(e.kind(), &ErrorKind::LifetimePolicy { policy_id: None });
        assert!(e.to_string().contains("'(not named)'"), "{e}");
    }

    #[test]
    fn a_graph_403_reads_with_service_operation_code_and_message() {
        let body = r#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation."}}"#;
        let e = Error::from_failure(Service::Graph, "addPassword", &status(403, body))
            .on("application with object id 1");
        assert_eq!(
            e.to_string(),
            "Graph addPassword on application with object id 1: access denied (HTTP 403, \
             Authorization_RequestDenied): Insufficient privileges to complete the operation."
        );
    }

    #[test]
    fn an_entra_refusal_reads_with_its_aadsts_code() {
        let e = Error::token_refused(
            7000215,
            Some("invalid_client".into()),
            "AADSTS7000215: Invalid client secret provided.".into(),
        );
        assert!(e.is_replication_delay());
        assert_eq!(
            e.to_string(),
            "Entra token request: refused: AADSTS7000215 (invalid_client): AADSTS7000215: \
             Invalid client secret provided."
        );
    }

    #[test]
    fn transport_failures_and_credentials() {
        let t = Error::from_failure(
            Service::KeyVault,
            "get secret",
            &Failure::Transport {
                message: "connection reset".into(),
                attempts: 3,
            },
        );
        assert_eq!(t.kind(), &ErrorKind::Transient);
        assert!(
            t.to_string()
                .ends_with("no answer: connection reset (after 3 attempts)"),
            "{t}"
        );
        let c = Error::from_failure(Service::Graph, "x", &Failure::Credential("expired".into()));
        assert_eq!(c.kind(), &ErrorKind::Credential);
    }

    #[test]
    fn a_result_of_it_stays_one_word_wide() {
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
        assert_eq!(
            std::mem::size_of::<Result<(), Error>>(),
            std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn long_azure_messages_are_clipped() {
        let long = "x".repeat(5000);
        let e = Error::new(ErrorKind::Rejected, Service::Graph, "x").with_azure(
            Some(400),
            None,
            Some(long),
        );
        assert!(e.message().unwrap().chars().count() <= 601);
    }
}
