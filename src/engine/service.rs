//! Builds the engine behind [`crate::handler::service::RotatorService`]: from the settings in
//! production ([`build`]), or from explicit parts in tests and dev mode ([`build_with`]) — the
//! same code either way, only the credential and the transport differ.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;

use crate::azure::ServiceOptions;
use crate::azure::credential::{CredentialChoice, build_credential};
use crate::azure::graph::WriteLimiter;
use crate::azure::storage::{StorageClient, blob_endpoint};
use crate::cloud::Cloud;
use crate::engine::azure_ports::{BlobStore, clients};
use crate::engine::executor::VerifyPolicy;
use crate::engine::ports::StorePorts;
use crate::engine::report::ResultCode;
use crate::engine::runner::{Engine, EngineOptions};
use crate::notify::{Notifications, Webhook};
use crate::policy::{Policy, PolicyErrors};
use crate::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Not a `source`: the message already lists every error, and printing the error chain
    /// (`{:#}`) would list them again.
    #[error("the policy is invalid; nothing will be rotated until it is fixed:\n{0}")]
    Policy(PolicyErrors),
    #[error("transport: {0}")]
    Transport(#[from] crate::transport::TransportError),
    #[error("credential: {0}")]
    Credential(#[from] crate::azure::credential::CredentialError),
    #[error("storage: {0}")]
    Storage(#[from] crate::azure::storage::StorageError),
}

impl From<PolicyErrors> for EngineError {
    fn from(e: PolicyErrors) -> Self {
        EngineError::Policy(e)
    }
}

impl EngineError {
    /// The probe's result code for an engine that could not start.
    pub fn result_code(&self) -> ResultCode {
        match self {
            EngineError::Policy(_) => ResultCode::PolicyInvalid,
            EngineError::Credential(_) => ResultCode::IdentityUnavailable,
            EngineError::Storage(_) => ResultCode::StorageAccess,
            EngineError::Transport(_) => ResultCode::Internal,
        }
    }
}

/// Everything an engine is made of, explicit.
pub struct EngineParts {
    pub policy: Policy,
    pub cloud: Cloud,
    pub tenant: String,
    pub credential: Arc<dyn TokenCredential>,
    pub options: ServiceOptions,
    /// The rotator's own blob endpoint and container.
    pub blob_endpoint: url::Url,
    pub container: String,
    pub webhooks: Vec<Webhook>,
    pub limiter: Arc<WriteLimiter>,
    pub max_parallel: usize,
    pub verify: VerifyPolicy,
    /// ROTATOR_WARN_UNENROLLED_DAYS: the pass's scan for expiring unenrolled credentials.
    pub warn_unenrolled_days: u32,
}

pub fn build_with(parts: EngineParts) -> Result<Arc<Engine>, EngineError> {
    let storage = StorageClient::new(
        parts.cloud,
        &parts.blob_endpoint,
        &parts.container,
        parts.credential.clone(),
        parts.options.clone(),
    )?;
    let store: Arc<dyn StorePorts> = Arc::new(BlobStore { client: storage });
    let notifier = Arc::new(Notifications::new(
        parts.webhooks,
        parts.options.http.clone(),
        Some(store.clone()),
    ));
    let azure = Arc::new(clients(
        parts.cloud,
        parts.credential,
        parts.options,
        parts.limiter,
    ));
    Ok(Arc::new(Engine {
        policy: Arc::new(parts.policy),
        azure,
        store,
        notifier,
        options: EngineOptions {
            cloud: parts.cloud,
            tenant: parts.tenant,
            max_parallel: parts.max_parallel,
            verify: parts.verify,
            warn_unenrolled_days: parts.warn_unenrolled_days,
            ..Default::default()
        },
        probes: Default::default(),
    }))
}

/// The engine as `serve` runs it: the managed identity (or, outside App Service, the
/// credential the environment names), the settings' transport, the policy file.
pub async fn build(
    settings: &Settings,
) -> Result<Arc<dyn crate::handler::service::RotatorService>, EngineError> {
    let policy = crate::policy::load(&settings.policy_path)?;
    policy.check_cloud(settings.cloud)?;
    let http = settings.transport.build()?;
    let options = ServiceOptions::new(http);
    let choice = if settings.identity_endpoint.is_some() {
        CredentialChoice::ManagedIdentity {
            client_id: settings.managed_identity_client_id.clone(),
        }
    } else {
        CredentialChoice::from_settings(|k| std::env::var(k).ok())?
    };
    let credential = build_credential(settings.cloud, &choice, &options)?;
    let endpoint = blob_endpoint(
        settings.cloud,
        &settings.storage_account,
        settings.blob_service_uri.as_ref().map(|u| u.as_str()),
    )?;
    let engine = build_with(EngineParts {
        policy,
        cloud: settings.cloud,
        tenant: settings.tenant_id.clone(),
        credential,
        options,
        blob_endpoint: endpoint,
        container: settings.container.clone(),
        webhooks: settings.webhooks.clone(),
        limiter: WriteLimiter::shared_default(),
        max_parallel: settings.max_parallel,
        verify: VerifyPolicy {
            timeout: settings.verify_timeout,
            ..Default::default()
        },
        warn_unenrolled_days: settings.warn_unenrolled_days,
    })?;
    Ok(engine)
}
