//! App Service / Function App configuration over ARM (`Microsoft.Web/sites`, api-version
//! [`API_VERSION`]): app settings (read, full replace, and a read-modify-write of one setting),
//! Key Vault reference status, reference refresh, and restart. Deployment slots are addressed
//! with `ArmResource::slot` (`/sites/{site}/slots/{slot}`).
//!
//! App settings are read with `POST .../config/appsettings/list` (the GET is not the read API:
//! values are secrets) and written with `PUT .../config/appsettings`, which replaces the whole
//! map: a key left out is deleted. Hence [`WebClient::set_one`], which always lists first.
//! Setting values are held in [`SettingValue`], whose `Debug` is redacted: any of them may be a
//! plain secret.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use reqwest::Method;
use serde::Deserialize;

use super::arm::{Arm, esc};
use super::common::{Failure, Idempotency, ServiceOptions, parse_json};
use super::error::{Error, ErrorKind, Service};
use crate::cloud::Cloud;
use crate::policy::model::ArmResource;

/// Microsoft.Web api-version for sites (contracts §7.1).
pub const API_VERSION: &str = "2024-11-01";

/// An App Service failure of `operation` on `site` as an [`Error`].
fn failed(f: &Failure, operation: &'static str, site: &ArmResource) -> Error {
    Error::from_failure(Service::AppService, operation, f).on(WebClient::describe(site))
}

fn bad(operation: &'static str) -> impl Fn(String) -> Error {
    move |m| Error::bad_answer(Service::AppService, operation, m)
}

const LIST: &str = "list app settings";
const PUT: &str = "write app settings";
const REFS: &str = "read Key Vault references";

/// One app setting's value. Redacted in `Debug`; `Display` is not implemented on purpose.
#[derive(Clone, PartialEq, Eq)]
pub struct SettingValue(String);

impl SettingValue {
    pub fn new(v: impl Into<String>) -> Self {
        Self(v.into())
    }
    /// The raw text. Call only to compare or to send it back to Azure.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// `@Microsoft.KeyVault(...)`: a reference, not a secret (safe to show).
    pub fn is_key_vault_reference(&self) -> bool {
        self.0.trim_start().starts_with("@Microsoft.KeyVault(")
    }
}

impl fmt::Debug for SettingValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_key_vault_reference() {
            // References name a vault and secret, never a value; showing them helps operators.
            write!(f, "SettingValue({:?})", self.0)
        } else {
            f.write_str("SettingValue([REDACTED])")
        }
    }
}

/// A site's app settings (the whole map, as ARM returns and takes it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppSettings(pub BTreeMap<String, SettingValue>);

impl AppSettings {
    pub fn get(&self, name: &str) -> Option<&SettingValue> {
        self.0.get(name)
    }
}

/// Outcome of [`WebClient::set_one`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    /// The setting had another value (or none) and was written.
    Written,
    /// It already held this value; nothing was written (no restart caused).
    Unchanged,
}

/// `ResolveStatus` of a Key Vault reference (contracts §6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveStatus {
    Resolved,
    Initialized,
    AccessToKeyVaultDenied,
    SecretNotFound,
    SecretVersionNotFound,
    VaultNotFound,
    /// Anything else Azure reports (`InvalidSyntax`, `MSINotEnabled`, `OtherReasons`, ...).
    Other(String),
}

impl ResolveStatus {
    fn parse(s: &str) -> Self {
        match s {
            "Resolved" => Self::Resolved,
            "Initialized" => Self::Initialized,
            "AccessToKeyVaultDenied" => Self::AccessToKeyVaultDenied,
            "SecretNotFound" => Self::SecretNotFound,
            "SecretVersionNotFound" => Self::SecretVersionNotFound,
            "VaultNotFound" => Self::VaultNotFound,
            other => Self::Other(other.to_string()),
        }
    }
}

/// The status of one setting's Key Vault reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceStatus {
    pub setting: String,
    pub status: ResolveStatus,
    pub reference: Option<String>,
    pub vault_name: Option<String>,
    pub secret_name: Option<String>,
    /// The version pinned in the reference (empty/None when versionless).
    pub secret_version: Option<String>,
    /// The version the app currently holds.
    pub active_version: Option<String>,
    pub details: Option<String>,
}

#[derive(Clone)]
pub struct WebClient {
    arm: Arm,
}

impl fmt::Debug for WebClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebClient").finish_non_exhaustive()
    }
}

impl WebClient {
    pub fn new(
        cloud: Cloud,
        credential: Arc<dyn TokenCredential>,
        options: ServiceOptions,
    ) -> Self {
        Self {
            arm: Arm::new(cloud, credential, options),
        }
    }

    fn site_path(site: &ArmResource) -> String {
        let base = Arm::resource_id(site, "Microsoft.Web/sites");
        match &site.slot {
            Some(slot) => format!("{base}/slots/{}", esc(slot)),
            None => base,
        }
    }

    fn describe(site: &ArmResource) -> String {
        match &site.slot {
            Some(s) => format!("site {}/{} slot {s}", site.resource_group, site.name),
            None => format!("site {}/{}", site.resource_group, site.name),
        }
    }

    pub async fn list_app_settings(&self, site: &ArmResource) -> Result<AppSettings, Error> {
        let path = format!("{}/config/appsettings/list", Self::site_path(site));
        let reply = self
            .arm
            .call(
                Method::POST,
                &path,
                API_VERSION,
                None,
                Idempotency::Idempotent,
            )
            .await
            .map_err(|f| failed(&f, LIST, site))?;
        parse_app_settings(&reply.body).map_err(bad(LIST))
    }

    /// Replaces the whole map (keys not in `settings` are deleted; the app restarts).
    pub async fn put_app_settings(
        &self,
        site: &ArmResource,
        settings: &AppSettings,
    ) -> Result<(), Error> {
        let path = format!("{}/config/appsettings", Self::site_path(site));
        let props: serde_json::Map<String, serde_json::Value> = settings
            .0
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.0.clone())))
            .collect();
        let body = serde_json::json!({ "properties": props });
        let reply = self
            .arm
            .call(
                Method::PUT,
                &path,
                API_VERSION,
                Some(&body),
                Idempotency::Idempotent,
            )
            .await
            .map_err(|f| failed(&f, PUT, site))?;
        // The answer echoes the map; check it parses so a broken answer is not taken for success.
        parse_app_settings(&reply.body)
            .map(|_| ())
            .map_err(bad(PUT))
    }

    /// Sets one setting, keeping every other one: list, change one key, put the whole map, and
    /// list again to confirm the write (the read-back).
    ///
    /// ARM has no ETag here, so a concurrent writer between our list and put can be lost:
    /// callers serialise writes per site (the engine holds a lease per target resource, see
    /// `engine::executor`) and call this right after taking it, so the list is fresh. The
    /// read-back must show exactly the map written: this setting with its new value and every
    /// other one as listed before; anything else is a [`ErrorKind::BadAnswer`] naming the
    /// settings that differ (never their values).
    pub async fn set_one(
        &self,
        site: &ArmResource,
        name: &str,
        value: SettingValue,
    ) -> Result<SetOutcome, Error> {
        let before = self.list_app_settings(site).await?;
        if before.get(name) == Some(&value) {
            return Ok(SetOutcome::Unchanged);
        }
        let mut written = before;
        written.0.insert(name.to_string(), value);
        self.put_app_settings(site, &written).await?;
        let after = self.list_app_settings(site).await?;
        let differ = differences(&written, &after);
        if differ.is_empty() {
            return Ok(SetOutcome::Written);
        }
        Err(Error::bad_answer(
            Service::AppService,
            "set an app setting",
            format!(
                "{name} was written, but the settings read back differ from what was written: {}",
                differ.join(", ")
            ),
        )
        .on(Self::describe(site)))
    }

    /// Status of every Key Vault reference among the app settings.
    pub async fn reference_statuses(
        &self,
        site: &ArmResource,
    ) -> Result<Vec<ReferenceStatus>, Error> {
        let path = format!(
            "{}/config/configreferences/appsettings",
            Self::site_path(site)
        );
        let reply = self
            .arm
            .call(
                Method::GET,
                &path,
                API_VERSION,
                None,
                Idempotency::Idempotent,
            )
            .await
            .map_err(|f| failed(&f, REFS, site))?;
        parse_reference_list(&reply.body).map_err(bad(REFS))
    }

    /// Status of one setting's reference; `None` when the site exists but has no reference by
    /// that name (a missing site is `NotFound`).
    pub async fn reference_status(
        &self,
        site: &ArmResource,
        setting: &str,
    ) -> Result<Option<ReferenceStatus>, Error> {
        let path = format!(
            "{}/config/configreferences/appsettings/{}",
            Self::site_path(site),
            esc(setting)
        );
        match self
            .arm
            .call(
                Method::GET,
                &path,
                API_VERSION,
                None,
                Idempotency::Idempotent,
            )
            .await
        {
            Ok(reply) => parse_reference(&reply.body).map(Some).map_err(bad(REFS)),
            Err(f) => match failed(&f, REFS, site) {
                // The 404 for "no such reference" and for "no such site" is the same code
                // (ResourceNotFound); the list call tells them apart: it succeeds only when
                // the site exists.
                e if e.kind() == &ErrorKind::NotFound => {
                    self.reference_statuses(site).await?;
                    Ok(None)
                }
                e => Err(e),
            },
        }
    }

    /// Makes the site re-read every Key Vault reference now instead of within 24 h
    /// (`POST .../config/configreferences/appsettings/refresh`, documented in the Key Vault
    /// references article though absent from the REST spec; contracts §6.2).
    pub async fn refresh_references(&self, site: &ArmResource) -> Result<(), Error> {
        let path = format!(
            "{}/config/configreferences/appsettings/refresh",
            Self::site_path(site)
        );
        self.arm
            .call(
                Method::POST,
                &path,
                API_VERSION,
                None,
                Idempotency::Idempotent,
            )
            .await
            .map(|_| ())
            .map_err(|f| failed(&f, "refresh Key Vault references", site))
    }

    /// Restarts the site (after a plain-value change, so the new value is read).
    pub async fn restart(&self, site: &ArmResource) -> Result<(), Error> {
        let path = format!("{}/restart", Self::site_path(site));
        self.arm
            .call(
                Method::POST,
                &path,
                API_VERSION,
                None,
                Idempotency::Idempotent,
            )
            .await
            .map(|_| ())
            .map_err(|f| failed(&f, "restart", site))
    }
}

// ---- answer parsing ----

/// The settings whose value (or presence) differs between two maps, by name only.
pub fn differences(expected: &AppSettings, actual: &AppSettings) -> Vec<String> {
    let mut names: Vec<&String> = expected.0.keys().chain(actual.0.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| expected.0.get(*n) != actual.0.get(*n))
        .map(
            |n| match (expected.0.contains_key(n), actual.0.contains_key(n)) {
                (true, false) => format!("{n} is missing"),
                (false, true) => format!("{n} appeared"),
                _ => format!("{n} holds another value"),
            },
        )
        .collect()
}

pub(crate) fn parse_app_settings(body: &[u8]) -> Result<AppSettings, String> {
    #[derive(Deserialize)]
    struct Envelope {
        properties: Option<serde_json::Map<String, serde_json::Value>>,
    }
    let env: Envelope = parse_json("app settings", body)?;
    let props = env
        .properties
        .ok_or("app settings: field 'properties' is missing")?;
    let mut out = BTreeMap::new();
    for (k, v) in props {
        let v = match v {
            serde_json::Value::String(s) => s,
            // ARM returns null for a setting whose value is empty on some stacks.
            serde_json::Value::Null => String::new(),
            _ => return Err(format!("app settings: 'properties.{k}' is not a string")),
        };
        out.insert(k, SettingValue(v));
    }
    Ok(AppSettings(out))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRefProps {
    reference: Option<String>,
    status: Option<String>,
    vault_name: Option<String>,
    secret_name: Option<String>,
    secret_version: Option<String>,
    active_version: Option<String>,
    details: Option<String>,
}

#[derive(Deserialize)]
struct RawRef {
    id: Option<String>,
    name: Option<String>,
    properties: Option<RawRefProps>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|v| !v.is_empty())
}

fn reference_from(raw: RawRef) -> Result<ReferenceStatus, String> {
    let setting = raw
        .name
        .or_else(|| {
            raw.id
                .as_deref()
                .and_then(|id| id.rsplit('/').next())
                .map(str::to_string)
        })
        .filter(|s| !s.is_empty())
        .ok_or("field 'name' (or 'id') is missing")?;
    let p = raw.properties.ok_or("field 'properties' is missing")?;
    let status = p.status.ok_or("field 'properties.status' is missing")?;
    Ok(ReferenceStatus {
        setting,
        status: ResolveStatus::parse(&status),
        reference: non_empty(p.reference),
        vault_name: non_empty(p.vault_name),
        secret_name: non_empty(p.secret_name),
        secret_version: non_empty(p.secret_version),
        active_version: non_empty(p.active_version),
        details: non_empty(p.details),
    })
}

pub(crate) fn parse_reference(body: &[u8]) -> Result<ReferenceStatus, String> {
    let raw: RawRef = parse_json("Key Vault reference", body)?;
    reference_from(raw).map_err(|e| format!("Key Vault reference: {e}"))
}

pub(crate) fn parse_reference_list(body: &[u8]) -> Result<Vec<ReferenceStatus>, String> {
    #[derive(Deserialize)]
    struct List {
        value: Option<Vec<RawRef>>,
    }
    let l: List = parse_json("Key Vault reference list", body)?;
    l.value
        .ok_or("Key Vault reference list: field 'value' is missing")?
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            reference_from(r).map_err(|e| format!("Key Vault reference list value[{i}]: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_settings_never_values() {
        let map = |pairs: &[(&str, &str)]| {
            AppSettings(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), SettingValue::new(*v)))
                    .collect(),
            )
        };
        let written = map(&[("A", "secret-a"), ("B", "b"), ("C", "c")]);
        assert!(differences(&written, &written.clone()).is_empty());
        let after = map(&[("A", "old-secret"), ("B", "b"), ("D", "d")]);
        let d = differences(&written, &after);
        assert_eq!(
            d,
            ["A holds another value", "C is missing", "D appeared"],
            "{d:?}"
        );
        assert!(!d.iter().any(|s| s.contains("secret")));
    }

    #[test]
    fn app_settings_parse_and_hide_values() {
        let s = parse_app_settings(
            br#"{"id":"x","name":"appsettings","properties":{"A":"plain-secret","B":"@Microsoft.KeyVault(VaultName=kv;SecretName=s)","C":null}}"#,
        )
        .unwrap();
        assert_eq!(s.get("A").unwrap().expose(), "plain-secret");
        assert_eq!(s.get("C").unwrap().expose(), "");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("plain-secret"), "{dbg}");
        assert!(dbg.contains("VaultName=kv"));
        assert!(
            parse_app_settings(b"{}")
                .unwrap_err()
                .contains("properties")
        );
        assert!(
            parse_app_settings(br#"{"properties":{"A":1}}"#)
                .unwrap_err()
                .contains("properties.A")
        );
        assert!(parse_app_settings(br#"{"properties":[]}"#).is_err());
        assert!(parse_app_settings(b"nope").is_err());
    }

    #[test]
    fn slots_have_their_own_path() {
        let mut site = ArmResource {
            subscription: "s".into(),
            resource_group: "rg".into(),
            name: "app".into(),
            slot: None,
        };
        assert_eq!(
            WebClient::site_path(&site),
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app"
        );
        site.slot = Some("staging".into());
        assert_eq!(
            WebClient::site_path(&site),
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/slots/staging"
        );
    }

    #[test]
    fn references_parse() {
        let one = br#"{"id":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/a/config/configreferences/appsettings/SECRET","properties":{"reference":"@Microsoft.KeyVault(VaultName=kv;SecretName=s)","status":"Resolved","vaultName":"kv","secretName":"s","secretVersion":"","activeVersion":"4387e9f3d6e14c459867679a90fd0f79","details":""}}"#;
        let r = parse_reference(one).unwrap();
        assert_eq!(r.setting, "SECRET");
        assert_eq!(r.status, ResolveStatus::Resolved);
        assert_eq!(r.secret_version, None);
        assert_eq!(
            r.active_version.as_deref(),
            Some("4387e9f3d6e14c459867679a90fd0f79")
        );
        let denied = br#"{"value":[{"name":"X","properties":{"status":"AccessToKeyVaultDenied"}}],"nextLink":null}"#;
        let l = parse_reference_list(denied).unwrap();
        assert_eq!(l[0].status, ResolveStatus::AccessToKeyVaultDenied);
        assert!(
            parse_reference(br#"{"name":"X","properties":{}}"#)
                .unwrap_err()
                .contains("status")
        );
        assert!(
            parse_reference(br#"{"properties":{"status":"Resolved"}}"#)
                .unwrap_err()
                .contains("name")
        );
        assert!(
            parse_reference_list(br#"{"value":[{"name":"X","properties":{"status":5}}]}"#).is_err()
        );
        assert!(
            parse_reference_list(br#"{}"#)
                .unwrap_err()
                .contains("value")
        );
    }
}
