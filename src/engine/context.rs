//! [`Engine`]: what every use case shares — the policy, the ports, the options and the probe's
//! memo — and the small helpers they all need (the step executor's context, the tenant of a
//! credential, the run id, a clock that keeps flowing). The use cases themselves live in
//! [`crate::engine::usecase`]; the engine is built only by `crate::compose`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::cloud::Cloud;
use crate::engine::executor::{ExecContext, VerifyPolicy};
use crate::engine::ports::{AzurePorts, Notifier, StorePorts};
use crate::engine::usecase::self_test::ProbeMemo;
use crate::policy::{CredentialPolicy, Policy};

#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub cloud: Cloud,
    /// Tenant for verification token requests when the policy names none.
    pub tenant: String,
    pub max_parallel: usize,
    /// Upper bound on steps for one credential in one run (a safety net against a livelock).
    pub max_steps_per_credential: usize,
    pub verify: VerifyPolicy,
    /// Warn about credentials nobody rotates that expire within this many days (the timer
    /// pass's scan); 0 turns the scan off.
    pub warn_unenrolled_days: u32,
    /// Rows in `Status`'s inventory of unenrolled credentials.
    pub status_inventory_limit: usize,
    /// How long `Status` may scan the tenant before answering with what it has read.
    pub status_scan_budget: Duration,
    /// Applications per Graph page in the scans.
    pub scan_page_size: u32,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            cloud: Cloud::Public,
            tenant: String::new(),
            max_parallel: 4,
            max_steps_per_credential: 32,
            verify: VerifyPolicy::default(),
            warn_unenrolled_days: 30,
            status_inventory_limit: 200,
            status_scan_budget: Duration::from_secs(60),
            scan_page_size: 999,
        }
    }
}

pub struct Engine {
    pub policy: Arc<Policy>,
    pub azure: Arc<dyn AzurePorts>,
    /// What the certificate path needs from Azure (the same clients as `azure`).
    pub certs: Arc<dyn crate::engine::certificate::CertificatePorts>,
    pub store: Arc<dyn StorePorts>,
    pub notifier: Arc<dyn Notifier>,
    pub options: EngineOptions,
    /// The probe's last token answer per credential ([`ProbeMemo`]).
    pub probes: ProbeMemo,
}

impl Engine {
    pub(crate) fn exec_ctx(&self) -> ExecContext<'_> {
        ExecContext {
            azure: self.azure.as_ref(),
            notifier: self.notifier.as_ref(),
            store: self.store.as_ref(),
            cloud: self.options.cloud,
            tenant: &self.options.tenant,
            verify: self.options.verify,
            added: Default::default(),
            accepted: Default::default(),
            converting: self
                .policy
                .certificates
                .iter()
                .filter_map(|c| c.replaces_secret.as_deref())
                .collect(),
        }
    }

    /// The tenant a credential's token requests go to: its own, or the engine's.
    pub(crate) fn tenant_for<'a>(&'a self, cred: &'a CredentialPolicy) -> &'a str {
        cred.tenant_id.as_deref().unwrap_or(&self.options.tenant)
    }

    /// The enrolled credential of that name.
    pub(crate) fn credential(&self, name: &str) -> Option<&CredentialPolicy> {
        self.policy.credentials.iter().find(|c| c.name == name)
    }
}

/// A `now` that keeps flowing from the host's timestamp.
#[derive(Clone, Copy)]
pub(crate) struct Clock {
    base: DateTime<Utc>,
    started: Instant,
}

impl Clock {
    pub(crate) fn new(base: DateTime<Utc>) -> Self {
        Self {
            base,
            started: Instant::now(),
        }
    }
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.base + chrono::Duration::from_std(self.started.elapsed()).unwrap_or_default()
    }
}

/// A run's id: its start, sortable, and a random suffix for runs started in the same second.
pub(crate) fn run_id(now: DateTime<Utc>) -> String {
    format!(
        "{}-{}",
        now.format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}
