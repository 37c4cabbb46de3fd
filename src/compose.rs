//! The composition root: [`compose`] builds every engine — `serve` ([`build`]), the CLI, dev
//! mode (which runs `serve`), the tests and the bench — from [`EngineParts`], so they all run
//! the production wiring (the same Graph write limiter, clients, store and notifier) and differ
//! only in the parts: the credential, the transport and the clocks. It is the app layer (it
//! reads [`Settings`] and wires [`crate::notify`]), so the engine below it knows neither.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;

use crate::azure::ServiceOptions;
use crate::azure::credential::{CredentialChoice, build_credential};
use crate::azure::graph::WriteLimiter;
use crate::azure::storage::{StorageClient, blob_endpoint};
use crate::cloud::Cloud;
use crate::engine::azure_ports::{AzureClients, BlobStore, clients};
use crate::engine::executor::VerifyPolicy;
use crate::engine::ports::StorePorts;
use crate::engine::report::ResultCode;
use crate::engine::{Engine, EngineOptions};
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
    /// The rotator's credential could not be built, or its storage could not be opened.
    #[error(transparent)]
    Azure(#[from] crate::azure::Error),
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
            EngineError::Azure(e) => match e.service() {
                crate::azure::Service::Identity => ResultCode::IdentityUnavailable,
                crate::azure::Service::Storage => ResultCode::StorageAccess,
                _ => ResultCode::Internal,
            },
            EngineError::Transport(_) => ResultCode::Internal,
        }
    }
}

/// Everything an engine is made of that may differ between deployments, explicit. Production
/// fills it from the settings ([`EngineParts::from_settings`]); a test or the bench fills it
/// the same way and changes only what it must: the credential (an application instead of the
/// managed identity), the transport inside `options` (the emulator's names and CA) and the
/// clocks (`options.retry` and `verify` waits). What is not here — the Graph write limiter,
/// the clients, the store, the notifier — every engine gets the same way, in [`compose`].
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
    pub max_parallel: usize,
    pub verify: VerifyPolicy,
    /// ROTATOR_WARN_UNENROLLED_DAYS: the pass's scan for expiring unenrolled credentials.
    pub warn_unenrolled_days: u32,
}

impl EngineParts {
    /// The parts `serve` and the CLI build from the settings, around `policy`, `credential`
    /// and `options` (the settings' transport and the production retry policy).
    pub fn from_settings(
        settings: &Settings,
        policy: Policy,
        credential: Arc<dyn TokenCredential>,
        options: ServiceOptions,
    ) -> Result<Self, EngineError> {
        let blob_endpoint = blob_endpoint(
            settings.cloud,
            &settings.storage_account,
            settings.blob_service_uri.as_ref().map(|u| u.as_str()),
        )?;
        Ok(Self {
            policy,
            cloud: settings.cloud,
            tenant: settings.tenant_id.clone(),
            credential,
            options,
            blob_endpoint,
            container: settings.container.clone(),
            webhooks: settings.webhooks.clone(),
            max_parallel: settings.max_parallel,
            verify: VerifyPolicy {
                timeout: settings.verify_timeout,
                ..Default::default()
            },
            warn_unenrolled_days: settings.warn_unenrolled_days,
        })
    }
}

/// An engine and the clients it runs on. The CLI's own Graph and App Service calls use these
/// clients, so they share the engine's Graph write limiter: one quota per identity and
/// tenant, one limiter per composition.
pub struct Composed {
    pub engine: Arc<Engine>,
    pub clients: Arc<AzureClients>,
}

/// The composition root: the one place an engine is built, for `serve`, the CLI, dev mode
/// (which runs `serve`), every test and the bench.
pub fn compose(parts: EngineParts) -> Result<Composed, EngineError> {
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
    let clients = Arc::new(clients(
        parts.cloud,
        parts.credential,
        parts.options,
        Arc::new(WriteLimiter::default()),
    ));
    let engine = Arc::new(Engine {
        policy: Arc::new(parts.policy),
        azure: clients.clone(),
        certs: clients.clone(),
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
    });
    Ok(Composed { engine, clients })
}

/// [`compose`], for callers that need the engine only.
pub fn build_with(parts: EngineParts) -> Result<Arc<Engine>, EngineError> {
    compose(parts).map(|c| c.engine)
}

/// The policy as the settings name it, checked against the settings' cloud.
pub fn load_policy(settings: &Settings) -> Result<Policy, EngineError> {
    let policy = crate::policy::load(&settings.policy_path)?;
    policy.check_cloud(settings.cloud)?;
    Ok(policy)
}

/// The engine as `serve` runs it: the managed identity (or, outside App Service, the
/// credential the environment names), the settings' transport, the policy file.
pub async fn build(
    settings: &Settings,
) -> Result<Arc<dyn crate::engine::service::RotatorService>, EngineError> {
    let policy = load_policy(settings)?;
    let options = ServiceOptions::new(settings.transport.build()?);
    let choice = if settings.identity_endpoint.is_some() {
        CredentialChoice::ManagedIdentity {
            client_id: settings.managed_identity_client_id.clone(),
        }
    } else {
        CredentialChoice::from_settings(|k| std::env::var(k).ok())?
    };
    let credential = build_credential(settings.cloud, &choice, &options)?;
    let engine = build_with(EngineParts::from_settings(
        settings, policy, credential, options,
    )?)?;
    Ok(engine)
}
