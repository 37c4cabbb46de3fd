//! The engine's ports ([`AzurePorts`], [`StorePorts`]) implemented by the real clients in
//! [`crate::azure`], and the one [`crate::azure::Error`] mapped onto [`PortError`] — once, here.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::azure::automation::AutomationClient;
use crate::azure::connections::{ConnectionHealth, ConnectionsClient};
use crate::azure::entra::TokenProbe;
use crate::azure::graph::{AppPager, GraphClient, RemoveOutcome};
use crate::azure::keyvault::{KeyVaultClient, VersionUpdate};
use crate::azure::storage::{Lease, StorageClient};
use crate::azure::web::{SettingValue, WebClient};
use crate::azure::{Error as AzureError, ErrorKind, Service};
use crate::cloud::Cloud;
use crate::domain::{ListedApp, TokenIdentity};
use crate::engine::ports::*;
use crate::planner::{AppState, PasswordInfo};
use crate::policy::{AppRef, ArmResource, VaultSecretRef};
use crate::secret::SecretValue;

/// The one mapping from an Azure error onto what the engine reasons about. The text is the
/// error's own (service, operation, status, code, Azure's clipped message), except for the
/// refusals whose payload the engine reads: Entra's AADSTS code and description, and the manual
/// step of a blocked change.
impl From<AzureError> for PortError {
    fn from(e: AzureError) -> Self {
        let text = e.to_string();
        match e.kind() {
            ErrorKind::NotFound => PortError::NotFound(text),
            ErrorKind::AccessDenied | ErrorKind::Credential => PortError::AccessDenied(text),
            ErrorKind::Throttled { .. } => PortError::Throttled(text),
            ErrorKind::Transient | ErrorKind::LeaseLost => PortError::Transient(text),
            ErrorKind::BadAnswer => PortError::BadAnswer(text),
            ErrorKind::TokenRefused { aadsts } => PortError::Refused {
                code: *aadsts,
                message: e.message().unwrap_or_default().to_string(),
            },
            ErrorKind::LifetimePolicy { .. } => PortError::LifetimeRefused(text),
            ErrorKind::SecretDisabled => PortError::Disabled(text),
            ErrorKind::Busy => PortError::Busy(text),
            ErrorKind::Blocked => PortError::Blocked(e.detail().map_or(text, str::to_string)),
            ErrorKind::Rejected if e.service() == Service::Graph => tenant_refusal(
                e.code().unwrap_or_default(),
                e.message().unwrap_or_default(),
            )
            .unwrap_or(PortError::Other(text)),
            ErrorKind::Rejected => PortError::Other(text),
            ErrorKind::InvalidInput
            | ErrorKind::ProofRefused
            | ErrorKind::ConcurrentChange { .. } => PortError::Other(text),
        }
    }
}

/// addPassword refusals only a person can lift: the tenant app management policy blocking
/// password addition, and the two-password cap of apps open to personal Microsoft accounts.
/// Graph may put the code in `error.code` or at the start of the message.
fn tenant_refusal(code: &str, message: &str) -> Option<PortError> {
    let is = |c: &str| code == c || message.contains(c);
    if is("CredentialTypeNotAllowedAsPerAppPolicy") {
        return Some(PortError::Blocked(format!(
            "the tenant's app management policy blocks adding passwords ({message}). Fix: exempt \
             the rotator's identity from the policy (excludeActors), or move the application to \
             a certificate or a federated credential"
        )));
    }
    if is("TooManyPasswordCredentials") {
        return Some(PortError::Blocked(format!(
            "the application allows personal Microsoft accounts and so takes at most two \
             passwords ({message}). Fix: remove the password that is not in Key Vault once \
             nothing uses it (or set removeUnmanagedExpired when it has expired)"
        )));
    }
    None
}

/// Every Azure client the engine uses.
pub struct AzureClients {
    pub cloud: Cloud,
    /// The rotator's own credential, for [`AzurePorts::warm_tokens`].
    pub credential: Arc<dyn azure_core::credentials::TokenCredential>,
    pub graph: GraphClient,
    pub probe: TokenProbe,
    pub keyvault: KeyVaultClient,
    pub web: WebClient,
    pub connections: ConnectionsClient,
    pub automation: AutomationClient,
    /// Key Vault certificates and their keys' `sign` (the certificate path).
    pub certificates: crate::azure::certificates::CertificatesClient,
    pub keycreds: crate::azure::keycredentials::KeyCredentialsClient,
    pub assertion: crate::azure::assertion::AssertionProbe,
}

#[async_trait::async_trait]
impl AzurePorts for AzureClients {
    async fn get_app(&self, app: &AppRef) -> Result<AppState, PortError> {
        Ok(self.graph.get_application(app).await?)
    }

    async fn caller_identity(&self) -> Result<TokenIdentity, PortError> {
        Ok(self.graph.caller_identity().await?)
    }

    async fn warm_tokens(&self, arm: bool) {
        let cloud = self.cloud;
        // Key Vault's scope as its challenge names it (`resource="https://vault.azure.net"`
        // plus `/.default`, azure_security_keyvault_secrets' `KeyVaultAuthorizer`), so the
        // token is in the cache when the challenge's answer asks for it.
        let mut scopes = vec![cloud.graph_scope(), cloud.keyvault_scope()];
        if arm {
            scopes.push(cloud.arm_scope());
        }
        let fetches = scopes.iter().map(|s| async move {
            let scope = [s.as_str()];
            self.credential.get_token(&scope, None).await
        });
        for (scope, got) in scopes.iter().zip(futures::future::join_all(fetches).await) {
            if let Err(e) = got {
                tracing::debug!("no token for {scope} ahead of the pass: {e}");
            }
        }
    }

    fn list(&self, listing: Listing, page_size: u32) -> Box<dyn ListingPager> {
        Box::new(GraphPager(match listing {
            Listing::AllApplications => self.graph.list_applications(None, page_size),
            Listing::OwnedBy(id) => self.graph.owned_applications(id),
            Listing::OwnedByMe => self.graph.my_owned_applications(),
            Listing::ServicePrincipals => self.graph.list_service_principals(page_size),
        }))
    }

    async fn add_password(
        &self,
        object_id: Uuid,
        display_name: &str,
        end: DateTime<Utc>,
    ) -> Result<(PasswordInfo, SecretValue), PortError> {
        Ok(self
            .graph
            .add_password(object_id, display_name, end)
            .await?)
    }

    async fn remove_password(&self, object_id: Uuid, key_id: Uuid) -> Result<(), PortError> {
        match self.graph.remove_password(object_id, key_id).await? {
            RemoveOutcome::Removed => Ok(()),
            RemoveOutcome::AlreadyGone => Err(PortError::NotFound(format!(
                "password {key_id} is no longer on the application"
            ))),
        }
    }

    async fn request_token(
        &self,
        tenant: &str,
        client_id: Uuid,
        secret: &SecretValue,
    ) -> Result<(), PortError> {
        Ok(self
            .probe
            .request_token(
                tenant,
                &client_id.to_string(),
                secret,
                &self.cloud.graph_scope(),
            )
            .await?)
    }

    async fn vault_latest(&self, at: &VaultSecretRef) -> Result<Option<VaultSecret>, PortError> {
        let latest = match self.keyvault.get_latest(at).await {
            Err(e) if e.kind() == &ErrorKind::SecretDisabled => {
                return Err(PortError::Disabled(format!(
                    "the latest version of Key Vault secret {}/{} is disabled ({}): enable it \
                     (az keyvault secret set-attributes --vault-name {} --name {} --enabled true) \
                     or store a new version",
                    at.vault,
                    at.secret,
                    e.message().unwrap_or("SecretDisabled"),
                    at.vault,
                    at.secret
                )));
            }
            other => other?,
        };
        Ok(latest.map(|s| VaultSecret {
            version: s.properties.version,
            value: s.value,
            tags: s.properties.tags,
            created: s.properties.created,
            expires: s.properties.expires,
        }))
    }

    async fn vault_versions(
        &self,
        at: &VaultSecretRef,
    ) -> Result<Vec<crate::planner::VersionRecord>, PortError> {
        let versions = self.keyvault.list_versions(at).await?;
        Ok(versions
            .into_iter()
            .map(|v| crate::planner::VersionRecord {
                key_id: crate::engine::tags::key_id(&v.tags),
                created: v.created,
            })
            .collect())
    }

    async fn vault_deleted(&self, at: &VaultSecretRef) -> Result<Option<DeletedSecret>, PortError> {
        match self.keyvault.get_deleted(at).await {
            Ok(d) => Ok(d.map(|d| DeletedSecret {
                deleted: d.deleted,
                scheduled_purge: d.scheduled_purge,
            })),
            // Without the right to read deleted secrets the rotator cannot tell: "missing".
            Err(e) if e.is_access_denied() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn vault_set(
        &self,
        at: &VaultSecretRef,
        value: &SecretValue,
        tags: &BTreeMap<String, String>,
        expires: Option<DateTime<Utc>>,
    ) -> Result<VaultSecret, PortError> {
        let p = self.keyvault.set(at, value, tags, expires).await?;
        Ok(VaultSecret {
            version: p.version,
            value: value.clone(),
            tags: p.tags,
            created: p.created,
            expires: p.expires,
        })
    }

    async fn vault_update_tags(
        &self,
        at: &VaultSecretRef,
        version: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, PortError> {
        let update = VersionUpdate {
            tags: Some(tags.clone()),
            ..Default::default()
        };
        Ok(self
            .keyvault
            .update_version(at, version, &update)
            .await?
            .tags)
    }

    async fn app_setting(
        &self,
        site: &ArmResource,
        name: &str,
    ) -> Result<Option<SecretValue>, PortError> {
        let settings = self.web.list_app_settings(site).await?;
        Ok(settings.get(name).map(|v| SecretValue::new(v.expose())))
    }

    async fn set_app_setting(
        &self,
        site: &ArmResource,
        name: &str,
        value: &SecretValue,
    ) -> Result<(), PortError> {
        self.web
            .set_one(site, name, SettingValue::new(value.expose()))
            .await?;
        Ok(())
    }

    async fn reference_status(
        &self,
        site: &ArmResource,
        name: &str,
    ) -> Result<Option<ReferenceStatus>, PortError> {
        Ok(self
            .web
            .reference_status(site, name)
            .await?
            .map(|s| ReferenceStatus {
                status: format!("{:?}", s.status),
                reference: s.reference,
                active_version: s.active_version,
                details: s.details,
            }))
    }

    async fn refresh_references(&self, site: &ArmResource) -> Result<(), PortError> {
        Ok(self.web.refresh_references(site).await?)
    }

    async fn connection_status(&self, conn: &ArmResource) -> Result<ConnectionStatus, PortError> {
        Ok(status_of(self.connections.get(conn).await?.health))
    }

    async fn set_connection_parameter(
        &self,
        conn: &ArmResource,
        parameter: &str,
        value: &SecretValue,
    ) -> Result<ConnectionStatus, PortError> {
        let info = self
            .connections
            .replace_secret_parameter(conn, parameter, value)
            .await?;
        Ok(status_of(info.health))
    }

    async fn automation_variable(
        &self,
        account: &ArmResource,
        name: &str,
    ) -> Result<Option<bool>, PortError> {
        Ok(self
            .automation
            .get_variable(account, name)
            .await?
            .map(|v| v.is_encrypted))
    }

    async fn set_automation_variable(
        &self,
        account: &ArmResource,
        name: &str,
        value: &SecretValue,
    ) -> Result<SetVariableOutcome, PortError> {
        Ok(self
            .automation
            .set_value(account, name, value, "Client secret kept by secret-rotator")
            .await?)
    }

    async fn update_automation_variable(
        &self,
        account: &ArmResource,
        name: &str,
        value: &SecretValue,
    ) -> Result<(), PortError> {
        Ok(self.automation.update_value(account, name, value).await?)
    }
}

/// A Graph listing behind [`ListingPager`].
struct GraphPager(AppPager);

#[async_trait::async_trait]
impl ListingPager for GraphPager {
    async fn next_page(&mut self) -> Result<Option<Vec<ListedApp>>, PortError> {
        Ok(self.0.next_listing().await?)
    }
}

/// The rotator's own blob container.
pub struct BlobStore {
    pub client: StorageClient,
}

struct HeldLease(Option<Lease>);

#[async_trait::async_trait]
impl LeaseGuard for HeldLease {
    async fn release(mut self: Box<Self>) {
        if let Some(l) = self.0.take()
            && let Err(e) = l.release().await
        {
            tracing::warn!("could not release a lease (it lapses by itself): {e}");
        }
    }
}

#[async_trait::async_trait]
impl StorePorts for BlobStore {
    async fn lease(&self, name: &str) -> Result<Box<dyn LeaseGuard>, PortError> {
        let lease = self.client.acquire_lease(name).await?;
        Ok(Box::new(HeldLease(Some(lease))))
    }

    async fn put_json(&self, path: &str, body: &serde_json::Value) -> Result<(), PortError> {
        let bytes = serde_json::to_vec_pretty(body).map_err(|e| PortError::Other(e.to_string()))?;
        Ok(self.client.put_json(path, &bytes).await?)
    }

    async fn get_json(&self, path: &str) -> Result<Option<serde_json::Value>, PortError> {
        match self.client.get_json(path).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| PortError::BadAnswer(format!("{path} is not JSON: {e}"))),
        }
    }
}

/// Builds the clients from one credential and one set of options.
pub fn clients(
    cloud: Cloud,
    credential: Arc<dyn azure_core::credentials::TokenCredential>,
    options: crate::azure::ServiceOptions,
    limiter: Arc<crate::azure::graph::WriteLimiter>,
) -> AzureClients {
    AzureClients {
        cloud,
        credential: credential.clone(),
        graph: GraphClient::new(cloud, credential.clone(), options.clone(), limiter.clone()),
        certificates: crate::azure::certificates::CertificatesClient::new(
            cloud,
            credential.clone(),
            options.clone(),
        ),
        keycreds: crate::azure::keycredentials::KeyCredentialsClient::new(
            cloud,
            credential.clone(),
            options.clone(),
            limiter,
        ),
        assertion: crate::azure::assertion::AssertionProbe::new(cloud, options.clone()),
        probe: TokenProbe::new(cloud, options.clone()),
        keyvault: KeyVaultClient::new(cloud, credential.clone(), options.clone()),
        web: WebClient::new(cloud, credential.clone(), options.clone()),
        connections: ConnectionsClient::new(cloud, credential.clone(), options.clone()),
        automation: AutomationClient::new(cloud, credential, options),
    }
}

fn status_of(health: ConnectionHealth) -> ConnectionStatus {
    match health {
        ConnectionHealth::Connected => ConnectionStatus {
            connected: true,
            message: None,
        },
        ConnectionHealth::Error { status, message } => ConnectionStatus {
            connected: false,
            message: Some(match message {
                Some(m) => format!("{status}: {m}"),
                None => status,
            }),
        },
        ConnectionHealth::Unknown => ConnectionStatus {
            connected: false,
            message: Some("the connection reports no status".into()),
        },
    }
}
