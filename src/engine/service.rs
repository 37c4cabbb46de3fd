//! The boundary between the HTTP functions and the rotation engine: the engine's, since the
//! handler (above it) calls it and the engine implements it (here, one use case per request);
//! tests implement fakes.
//! `now` is always the host's `UtcNow` for the invocation (`Metadata.sys`, or `Metadata.$sys` when
//! a caller sent a `sys`; see the handler module), so the host (or a test playing it) decides
//! what time it is and a caller cannot.

use chrono::{DateTime, Utc};

use crate::engine::context::{Engine, run_id};

use crate::engine::report::{
    CredentialReport, PassReport, PlanReport, SelfTestReport, StatusReport,
};

/// Why the engine could not even start a request (the caller's fault or ours).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request names a credential the policy does not enrol.
    #[error("no credential named '{0}' is enrolled")]
    UnknownCredential(String),
    /// Any failure that is not the caller's fault.
    #[error("{0}")]
    Internal(String),
}

#[async_trait::async_trait]
pub trait RotatorService: Send + Sync + 'static {
    /// One pass over every enrolled credential, stopping new work after `budget`.
    async fn rotation_pass(&self, now: DateTime<Utc>, budget: std::time::Duration) -> PassReport;
    /// Rotate (or resume) one credential now. `force` starts a rotation even when none is due.
    async fn rotate_one(
        &self,
        credential: &str,
        force: bool,
        now: DateTime<Utc>,
    ) -> Result<CredentialReport, ServiceError>;
    /// The probe: each credential's Key Vault value gets a token; the rotator's own access works.
    async fn self_test(&self, now: DateTime<Utc>) -> SelfTestReport;
    async fn status(&self, now: DateTime<Utc>) -> StatusReport;
    /// Dry run: what a pass would do now and why; changes nothing.
    async fn plan(&self, now: DateTime<Utc>) -> PlanReport;
}

/// The engine answers each request with its use case ([`crate::engine::usecase`]).
#[async_trait::async_trait]
impl RotatorService for Engine {
    async fn rotation_pass(&self, now: DateTime<Utc>, budget: std::time::Duration) -> PassReport {
        self.pass(now, budget).await
    }

    async fn rotate_one(
        &self,
        credential: &str,
        force: bool,
        now: DateTime<Utc>,
    ) -> Result<CredentialReport, ServiceError> {
        if let Some(cert) = self.certificate(credential) {
            return Ok(self.run_certificate(cert, now, None, &run_id(now)).await);
        }
        let cred = self
            .credential(credential)
            .ok_or_else(|| ServiceError::UnknownCredential(credential.to_string()))?;
        if let Some(report) = self.replaced_by_certificate(cred).await {
            return Ok(report);
        }
        Ok(self
            .run_credential(cred, now, force, None, &run_id(now))
            .await)
    }

    async fn self_test(&self, now: DateTime<Utc>) -> SelfTestReport {
        self.self_test_report(now).await
    }

    async fn status(&self, now: DateTime<Utc>) -> StatusReport {
        self.status_report(now).await
    }

    async fn plan(&self, now: DateTime<Utc>) -> PlanReport {
        self.plan_report(now).await
    }
}
