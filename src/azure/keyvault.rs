//! Key Vault secrets through the official `azure_security_keyvault_secrets` crate: the latest
//! version (value, version, tags, dates), one version, set a new version, update one version's
//! tags and attributes, list versions.
//!
//! The SDK's `SecretClient` runs on the shared transport with its own retry turned off; every
//! call here goes through [`with_retry`], the same policy as the hand-written clients, so
//! throttling and server errors behave alike everywhere. One `SecretClient` is kept per vault:
//! it caches the vault's authentication challenge, so only its first request pays the 401
//! round trip.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::RequestContent;
use azure_core::time::OffsetDateTime;
use azure_security_keyvault_secrets::models::{
    Secret, SecretAttributes, SecretClientGetSecretOptions,
    SecretClientListSecretPropertiesVersionsOptions, SecretClientUpdateSecretPropertiesOptions,
    SecretProperties, SetSecretParameters, UpdateSecretPropertiesParameters,
};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;

use super::common::{Failure, RetryPolicy, ServiceOptions};
use super::error::{Error, Service};
use crate::cloud::Cloud;
use crate::policy::model::VaultSecretRef;
use crate::secret::SecretValue;

/// A version's metadata (no value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionProperties {
    /// 32 hex characters.
    pub version: String,
    pub tags: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub enabled: Option<bool>,
    pub created: Option<DateTime<Utc>>,
    pub updated: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
}

/// A soft-deleted secret (`GET /deletedsecrets/{name}`): recoverable until it is purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletedInfo {
    pub deleted: Option<DateTime<Utc>>,
    pub scheduled_purge: Option<DateTime<Utc>>,
}

/// A version with its value.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretVersion {
    pub value: SecretValue,
    pub properties: VersionProperties,
}

/// What to change on one version. `tags` is the full new tag set (Key Vault replaces it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionUpdate {
    pub tags: Option<BTreeMap<String, String>>,
    pub enabled: Option<bool>,
    pub expires: Option<DateTime<Utc>>,
}

pub struct KeyVaultClient {
    cloud: Cloud,
    credential: Arc<dyn TokenCredential>,
    options: ServiceOptions,
    clients: Mutex<HashMap<String, Arc<SecretClient>>>,
}

impl std::fmt::Debug for KeyVaultClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVaultClient")
            .field("cloud", &self.cloud)
            .finish_non_exhaustive()
    }
}

impl KeyVaultClient {
    pub fn new(
        cloud: Cloud,
        credential: Arc<dyn TokenCredential>,
        options: ServiceOptions,
    ) -> Self {
        Self {
            cloud,
            credential,
            options,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, vault: &str) -> Result<Arc<SecretClient>, Error> {
        let valid = (3..=24).contains(&vault.len())
            && vault.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !valid {
            return Err(Error::invalid_input(
                Service::KeyVault,
                "build a client",
                "a vault name is 3-24 letters, digits and dashes",
            )
            .on(format!("vault '{vault}'")));
        }
        let mut map = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(vault) {
            return Ok(c.clone());
        }
        let c = SecretClient::new(
            &self.cloud.vault_url(vault),
            self.credential.clone(),
            Some(SecretClientOptions {
                client_options: self.options.sdk_client_options(self.cloud),
                ..Default::default()
            }),
        )
        .map_err(|e| {
            Error::invalid_input(Service::KeyVault, "build a client", e.to_string())
                .on(format!("vault '{vault}'"))
        })?;
        let c = Arc::new(c);
        map.insert(vault.to_string(), c.clone());
        Ok(c)
    }

    fn describe(s: &VaultSecretRef) -> String {
        format!("secret {} in vault {}", s.secret, s.vault)
    }

    /// The latest version; `Ok(None)` when the secret does not exist (or is deleted).
    pub async fn get_latest(&self, s: &VaultSecretRef) -> Result<Option<SecretVersion>, Error> {
        let client = self.client(&s.vault)?;
        let result = with_retry(&self.options.retry, || async {
            client.get_secret(&s.secret, None).await?.into_model()
        })
        .await;
        match found(result, s, GET)? {
            Some(secret) => secret_version(secret)
                .map(Some)
                .map_err(|m| Error::bad_answer(Service::KeyVault, GET, m)),
            None => Ok(None),
        }
    }

    /// The deleted (soft-deleted, recoverable) secret of that name: when it was deleted and when
    /// Key Vault purges it. `Ok(None)` when there is none.
    pub async fn get_deleted(&self, s: &VaultSecretRef) -> Result<Option<DeletedInfo>, Error> {
        let client = self.client(&s.vault)?;
        let result = with_retry(&self.options.retry, || async {
            client
                .get_deleted_secret(&s.secret, None)
                .await?
                .into_model()
        })
        .await;
        Ok(
            found(result, s, "get deleted secret")?.map(|d| DeletedInfo {
                deleted: to_chrono(d.deleted_date),
                scheduled_purge: to_chrono(d.scheduled_purge_date),
            }),
        )
    }

    /// One version, by its id.
    pub async fn get_version(
        &self,
        s: &VaultSecretRef,
        version: &str,
    ) -> Result<SecretVersion, Error> {
        let client = self.client(&s.vault)?;
        let secret = with_retry(&self.options.retry, || async {
            let opts = SecretClientGetSecretOptions {
                secret_version: Some(version.to_string()),
                ..Default::default()
            };
            client.get_secret(&s.secret, Some(opts)).await?.into_model()
        })
        .await
        .map_err(|f| {
            Error::from_failure(Service::KeyVault, GET, &f)
                .on(format!("{} version {version}", Self::describe(s)))
        })?;
        secret_version(secret).map_err(|m| Error::bad_answer(Service::KeyVault, GET, m))
    }

    /// Stores a new version (content type `text/plain`, optional expiry) and returns its
    /// metadata. Repeating it after an unknown outcome only adds an identical version.
    pub async fn set(
        &self,
        s: &VaultSecretRef,
        value: &SecretValue,
        tags: &BTreeMap<String, String>,
        expires: Option<DateTime<Utc>>,
    ) -> Result<VersionProperties, Error> {
        let client = self.client(&s.vault)?;
        let expires = expires
            .map(to_offset)
            .transpose()
            .map_err(|m| Error::invalid_input(Service::KeyVault, SET, m))?;
        let secret = with_retry(&self.options.retry, || async {
            let params = SetSecretParameters {
                value: Some(value.expose().to_string()),
                content_type: Some("text/plain".to_string()),
                tags: Some(tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
                secret_attributes: Some(SecretAttributes {
                    enabled: Some(true),
                    expires,
                    ..Default::default()
                }),
            };
            let body: RequestContent<SetSecretParameters> = params.try_into()?;
            client.set_secret(&s.secret, body, None).await?.into_model()
        })
        .await
        .map_err(|f| Error::from_failure(Service::KeyVault, SET, &f).on(Self::describe(s)))?;
        properties_of(
            secret.id.as_deref(),
            secret.tags,
            secret.content_type,
            secret.attributes,
        )
        .map_err(|m| Error::bad_answer(Service::KeyVault, SET, m))
    }

    /// Changes tags (full set) and/or attributes of one version.
    pub async fn update_version(
        &self,
        s: &VaultSecretRef,
        version: &str,
        update: &VersionUpdate,
    ) -> Result<VersionProperties, Error> {
        if version.is_empty() {
            return Err(Error::invalid_input(
                Service::KeyVault,
                UPDATE,
                "update_version needs an explicit version",
            )
            .on(Self::describe(s)));
        }
        let client = self.client(&s.vault)?;
        let expires = update
            .expires
            .map(to_offset)
            .transpose()
            .map_err(|m| Error::invalid_input(Service::KeyVault, UPDATE, m))?;
        let secret = with_retry(&self.options.retry, || async {
            let attrs = (update.enabled.is_some() || expires.is_some()).then(|| SecretAttributes {
                enabled: update.enabled,
                expires,
                ..Default::default()
            });
            let params = UpdateSecretPropertiesParameters {
                tags: update
                    .tags
                    .as_ref()
                    .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
                secret_attributes: attrs,
                ..Default::default()
            };
            let body: RequestContent<UpdateSecretPropertiesParameters> = params.try_into()?;
            let opts = SecretClientUpdateSecretPropertiesOptions {
                secret_version: Some(version.to_string()),
                ..Default::default()
            };
            client
                .update_secret_properties(&s.secret, body, Some(opts))
                .await?
                .into_model()
        })
        .await
        .map_err(|f| {
            Error::from_failure(Service::KeyVault, UPDATE, &f)
                .on(format!("{} version {version}", Self::describe(s)))
        })?;
        properties_of(
            secret.id.as_deref(),
            secret.tags,
            secret.content_type,
            secret.attributes,
        )
        .map_err(|m| Error::bad_answer(Service::KeyVault, UPDATE, m))
    }

    /// Every version's metadata, oldest first (Key Vault documents no order, so we sort by
    /// `created`, then by version id for a stable order). A missing secret → `NotFound`.
    pub async fn list_versions(&self, s: &VaultSecretRef) -> Result<Vec<VersionProperties>, Error> {
        let client = self.client(&s.vault)?;
        let items: Vec<SecretProperties> = with_retry(&self.options.retry, || async {
            let opts = SecretClientListSecretPropertiesVersionsOptions {
                maxresults: Some(25),
                ..Default::default()
            };
            client
                .list_secret_properties_versions(&s.secret, Some(opts))?
                .try_collect()
                .await
        })
        .await
        .map_err(|f| Error::from_failure(Service::KeyVault, LIST, &f).on(Self::describe(s)))?;
        let mut out = items
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                properties_of(p.id.as_deref(), p.tags, p.content_type, p.attributes)
                    .map_err(|e| format!("version list item {i}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| Error::bad_answer(Service::KeyVault, LIST, m))?;
        out.sort_by(|a, b| {
            a.created
                .cmp(&b.created)
                .then_with(|| a.version.cmp(&b.version))
        });
        Ok(out)
    }
}

/// Runs an SDK call under our retry policy, turning its error into a [`Failure`].
pub(crate) async fn with_retry<T, F, Fut>(policy: &RetryPolicy, f: F) -> Result<T, Failure>
where
    F: Fn() -> Fut,
    Fut: Future<Output = azure_core::Result<T>>,
{
    let max = policy.max_attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let err = match f().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let (failure, retry) = sdk_failure(&err, attempt);
        if !retry || attempt >= max {
            return Err(failure);
        }
        let hint = match &failure {
            Failure::Status { retry_after, .. } => *retry_after,
            _ => None,
        };
        match policy.wait(attempt, hint) {
            Some(w) => tokio::time::sleep(w).await,
            None => return Err(failure),
        }
    }
}

/// An SDK error as our [`Failure`], and whether it is worth another try.
fn sdk_failure(e: &azure_core::Error, attempts: u32) -> (Failure, bool) {
    use azure_core::error::ErrorKind;
    match e.kind() {
        ErrorKind::HttpResponse {
            status,
            raw_response,
            error_code,
        } => {
            let status = u16::from(*status);
            super::common::note_throttled(status);
            let (body, retry_after) = match raw_response {
                Some(r) => {
                    let body = String::from_utf8_lossy(r.body().as_ref()).into_owned();
                    let ra = r
                        .headers()
                        .get_optional_str(&azure_core::http::headers::RETRY_AFTER)
                        .and_then(|v| v.trim().parse::<f64>().ok())
                        .filter(|s| s.is_finite() && *s >= 0.0)
                        .map(Duration::from_secs_f64);
                    (body, ra)
                }
                None => (
                    serde_json::json!({"error": {"code": error_code, "message": e.to_string()}})
                        .to_string(),
                    None,
                ),
            };
            let retry = matches!(status, 408 | 429 | 500 | 502 | 503 | 504);
            (
                Failure::Status {
                    status,
                    body,
                    retry_after,
                    attempts,
                },
                retry,
            )
        }
        ErrorKind::Credential => (Failure::Credential(e.to_string()), false),
        ErrorKind::Connection | ErrorKind::Io => (
            Failure::Transport {
                message: e.to_string(),
                attempts,
            },
            true,
        ),
        // DataConversion (an unreadable answer) and Other: not helped by retrying.
        _ => (
            Failure::Status {
                status: 0,
                body: String::new(),
                retry_after: None,
                attempts,
            },
            false,
        ),
    }
}

/// A read's answer with "not found" as `None` (a missing secret is a state, not an error).
fn found<T>(
    result: Result<T, Failure>,
    s: &VaultSecretRef,
    operation: &'static str,
) -> Result<Option<T>, Error> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(f) => match Error::from_failure(Service::KeyVault, operation, &f) {
            e if e.is_not_found() => Ok(None),
            e => Err(e.on(KeyVaultClient::describe(s))),
        },
    }
}

const GET: &str = "get secret";
const SET: &str = "set secret";
const UPDATE: &str = "update secret version";
const LIST: &str = "list secret versions";

fn to_offset(t: DateTime<Utc>) -> Result<OffsetDateTime, String> {
    OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|e| format!("time {t} out of range: {e}"))
}

fn to_chrono(t: Option<OffsetDateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.unix_timestamp(), 0))
}

/// `https://{vault}.vault.azure.net/secrets/{name}/{version}` → `{version}`.
pub(crate) fn version_from_id(id: Option<&str>) -> Result<String, String> {
    let id = id.ok_or("field 'id' is missing")?;
    let url = url::Url::parse(id).map_err(|_| format!("field 'id' is not a URL: '{id}'"))?;
    let segs: Vec<&str> = url.path_segments().map(|s| s.collect()).unwrap_or_default();
    match segs.as_slice() {
        ["secrets", _name, version] if !version.is_empty() => Ok(version.to_string()),
        _ => Err(format!("field 'id' does not name a secret version: '{id}'")),
    }
}

fn properties_of(
    id: Option<&str>,
    tags: Option<HashMap<String, String>>,
    content_type: Option<String>,
    attributes: Option<SecretAttributes>,
) -> Result<VersionProperties, String> {
    let attrs = attributes.unwrap_or_default();
    Ok(VersionProperties {
        version: version_from_id(id)?,
        tags: tags.unwrap_or_default().into_iter().collect(),
        content_type,
        enabled: attrs.enabled,
        created: to_chrono(attrs.created),
        updated: to_chrono(attrs.updated),
        expires: to_chrono(attrs.expires),
    })
}

fn secret_version(s: Secret) -> Result<SecretVersion, String> {
    let value = s.value.ok_or("field 'value' is missing")?;
    Ok(SecretVersion {
        value: SecretValue::new(value),
        properties: properties_of(s.id.as_deref(), s.tags, s.content_type, s.attributes)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_ids() {
        assert_eq!(
            version_from_id(Some(
                "https://kv.vault.azure.net/secrets/s/4387e9f3d6e14c459867679a90fd0f79"
            ))
            .unwrap(),
            "4387e9f3d6e14c459867679a90fd0f79"
        );
        assert!(version_from_id(Some("https://kv.vault.azure.net/secrets/s")).is_err());
        assert!(version_from_id(Some("not a url")).is_err());
        assert!(version_from_id(None).unwrap_err().contains("'id'"));
    }

    #[test]
    fn sdk_bundles_convert_and_a_missing_value_is_an_error() {
        let bundle: Secret = serde_json::from_str(
            r#"{"value":"v1","id":"https://kv.vault.azure.net/secrets/s/abc","attributes":{"enabled":true,"created":1736906401,"exp":1752544800},"tags":{"a":"b"}}"#,
        )
        .unwrap();
        let v = secret_version(bundle).unwrap();
        assert_eq!(v.value.expose(), "v1");
        assert_eq!(v.properties.version, "abc");
        assert_eq!(v.properties.created.unwrap().timestamp(), 1736906401);
        assert_eq!(v.properties.expires.unwrap().timestamp(), 1752544800);
        assert_eq!(v.properties.tags["a"], "b");
        let no_value: Secret =
            serde_json::from_str(r#"{"id":"https://kv.vault.azure.net/secrets/s/abc"}"#).unwrap();
        assert!(secret_version(no_value).unwrap_err().contains("value"));
        // Wrong types are refused by the SDK's model before we see them.
        assert!(
            serde_json::from_str::<Secret>(r#"{"attributes":{"created":"yesterday"}}"#).is_err()
        );
    }
}
