//! Typed settings, read once at start through an injectable lookup.
//!
//! [`SETTING_SPECS`] is the single list of every setting the binary reads: the README's
//! configuration table, `local.settings.sample.json` and the Bicep contract test are all checked
//! against it. [`Settings::from_lookup`] is the loader: it reads exactly those names (a test
//! records the lookups), parses each into a typed field and names the setting in every error.
//!
//! An empty value counts as unset: the Functions platform and `local.settings.json` commonly
//! carry settings as `""`, and a required setting that is empty is as missing as an absent one.

/// Who provides a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Set by the Functions platform itself; never in app settings.
    Platform,
    /// An app setting the deployment (Bicep) must set.
    AppSetting,
}

/// One setting the binary reads.
#[derive(Debug, Clone, Copy)]
pub struct SettingSpec {
    pub name: &'static str,
    /// `true`: the process stops at start, naming it, when it is missing.
    pub required: bool,
    pub source: Source,
    pub example: &'static str,
    pub meaning: &'static str,
}

pub const SETTING_SPECS: &[SettingSpec] = &[
    SettingSpec {
        name: "FUNCTIONS_CUSTOMHANDLER_PORT",
        required: true,
        source: Source::Platform,
        example: "34567",
        meaning: "Loopback port the Functions host forwards invocations to (set by the host).",
    },
    SettingSpec {
        name: "FUNCTIONS_APP_ROOT_PATH",
        required: false,
        source: Source::Platform,
        example: "/home/site/wwwroot",
        meaning: "The app root (set by the host); relative ROTATOR_POLICY_PATH is resolved against it.",
    },
    SettingSpec {
        name: "IDENTITY_ENDPOINT",
        required: false,
        source: Source::Platform,
        example: "http://localhost:4141/msi/token",
        meaning: "Managed identity token endpoint (set by App Service; read by azure_identity).",
    },
    SettingSpec {
        name: "IDENTITY_HEADER",
        required: false,
        source: Source::Platform,
        example: "(platform secret)",
        meaning: "Managed identity request header (set by App Service; read by azure_identity).",
    },
    SettingSpec {
        name: "AZURE_TENANT_ID",
        required: true,
        source: Source::AppSetting,
        example: "72f988bf-86f1-41af-91ab-2d7cd011db47",
        meaning: "Tenant of the enrolled applications; verification tokens are requested there.",
    },
    SettingSpec {
        name: "ROTATOR_POLICY_PATH",
        required: true,
        source: Source::AppSetting,
        example: "policy.json",
        meaning: "Enrolment policy file; relative paths are under the app root.",
    },
    SettingSpec {
        name: "AzureWebJobsStorage__accountName",
        required: true,
        source: Source::AppSetting,
        example: "stsecretrotator",
        meaning: "The app's own storage account (identity-based): leases, audit records, run outcomes.",
    },
    SettingSpec {
        name: "AzureWebJobsStorage__blobServiceUri",
        required: false,
        source: Source::AppSetting,
        example: "https://stsecretrotator.blob.core.windows.net",
        meaning: "Blob endpoint, when it is not https://{accountName}.blob.{cloud suffix}.",
    },
    SettingSpec {
        name: "ROTATOR_CONTAINER",
        required: false,
        source: Source::AppSetting,
        example: "secret-rotator",
        meaning: "Blob container for leases, audit records and run outcomes.",
    },
    SettingSpec {
        name: "AZURE_CLOUD",
        required: false,
        source: Source::AppSetting,
        example: "public",
        meaning: "public, usgovernment or china: picks every Azure endpoint.",
    },
    SettingSpec {
        name: "AZURE_CLIENT_ID",
        required: false,
        source: Source::AppSetting,
        example: "5e29463d-71da-4fe0-8e69-999b57db23b0",
        meaning: "Client id of a user-assigned managed identity; unset = system-assigned.",
    },
    SettingSpec {
        name: "ROTATOR_MAX_PARALLEL",
        required: false,
        source: Source::AppSetting,
        example: "8",
        meaning: "Credentials rotated at once (bounded also by Graph's write quota).",
    },
    SettingSpec {
        name: "ROTATOR_PASS_BUDGET_SECONDS",
        required: false,
        source: Source::AppSetting,
        example: "240",
        meaning: "Longest a timer pass works before leaving the rest for the next run.",
    },
    SettingSpec {
        name: "ROTATOR_ROTATE_WAIT_SECONDS",
        required: false,
        source: Source::AppSetting,
        example: "20",
        meaning: "How long an on-demand Rotate request waits before answering with a run id.",
    },
    SettingSpec {
        name: "ROTATOR_VERIFY_TIMEOUT_SECONDS",
        required: false,
        source: Source::AppSetting,
        example: "180",
        meaning: "How long a new secret may take to be accepted by Entra (replication delay).",
    },
    SettingSpec {
        name: "ROTATOR_RESOLVE",
        required: false,
        source: Source::AppSetting,
        example: "*.vault.azure.net=10.0.0.5:443",
        meaning: "Pin host names to addresses (HOST=IP:PORT, comma-separated; '*.' suffix allowed).",
    },
    SettingSpec {
        name: "ROTATOR_CA_FILE",
        required: false,
        source: Source::AppSetting,
        example: "/home/site/wwwroot/proxy-ca.pem",
        meaning: "Extra trusted CA certificates (PEM) for a TLS-inspecting proxy or an emulator.",
    },
    SettingSpec {
        name: "ROTATOR_NOTIFY_TEAMS_URL",
        required: false,
        source: Source::AppSetting,
        example: "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/teams-hook)",
        meaning: "Teams Workflows webhook for manual steps, failures and expiring unenrolled credentials (a secret: use a Key Vault reference).",
    },
    SettingSpec {
        name: "ROTATOR_NOTIFY_SLACK_URL",
        required: false,
        source: Source::AppSetting,
        example: "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/slack-hook)",
        meaning: "Slack-compatible incoming webhook (a secret: use a Key Vault reference).",
    },
    SettingSpec {
        name: "ROTATOR_NOTIFY_WEBHOOK_URL",
        required: false,
        source: Source::AppSetting,
        example: "https://ops.example.com/hooks/secret-rotator",
        meaning: "Generic JSON webhook receiving every notification.",
    },
    SettingSpec {
        name: "ROTATOR_WARN_UNENROLLED_DAYS",
        required: false,
        source: Source::AppSetting,
        example: "30",
        meaning: "Notify about credentials nobody rotates that expire within this many days (0-365; 0 turns the scan off).",
    },
    SettingSpec {
        name: "ROTATOR_REQUIRE_APP_ROLES",
        required: false,
        source: Source::AppSetting,
        example: "false",
        meaning: "true: App Service authentication is on, and SelfTest needs the app role Rotator.Probe or Rotator.Operator, every other HTTP function Rotator.Operator.",
    },
    SettingSpec {
        name: "ROTATOR_LOG",
        required: false,
        source: Source::AppSetting,
        example: "info",
        meaning: "Log filter (tracing EnvFilter syntax).",
    },
];

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cloud::Cloud;
use crate::secret::SecretValue;
use crate::transport::TransportConfig;

/// Longest timer pass we accept: the pass must end well inside host.json's `functionTimeout`
/// (00:10:00), leaving room for the lease release and the response.
pub const MAX_PASS_BUDGET_SECONDS: u64 = 480;
/// Longest an HTTP Rotate request may wait: Azure's front end drops HTTP-triggered requests that
/// take longer than 230 s to answer, so we answer with a run id well before that.
pub const MAX_ROTATE_WAIT_SECONDS: u64 = 200;

/// A setting that is missing or cannot be used. Every variant names the setting.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("required setting {name} is missing or empty ({meaning})")]
    Missing {
        name: &'static str,
        meaning: &'static str,
    },
    #[error("setting {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Every setting the binary reads, typed. Built once at start by [`Settings::from_lookup`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// `FUNCTIONS_CUSTOMHANDLER_PORT`; only `serve` needs it (see [`Settings::require_port`]).
    pub customhandler_port: Option<u16>,
    pub app_root: Option<PathBuf>,
    pub identity_endpoint: Option<url::Url>,
    /// The platform's managed-identity header value: a secret, so never printed.
    pub identity_header: Option<SecretValue>,
    pub tenant_id: String,
    /// Absolute when `FUNCTIONS_APP_ROOT_PATH` is set and the setting was relative.
    pub policy_path: PathBuf,
    pub storage_account: String,
    pub blob_service_uri: Option<url::Url>,
    pub container: String,
    pub cloud: Cloud,
    pub managed_identity_client_id: Option<String>,
    pub max_parallel: usize,
    pub pass_budget: Duration,
    pub rotate_wait: Duration,
    pub verify_timeout: Duration,
    pub transport: TransportConfig,
    /// Validated `tracing_subscriber::EnvFilter` directive string.
    pub log_filter: String,
    /// Where notifications go besides the logs (URLs are secrets: they embed signatures).
    pub webhooks: Vec<crate::notify::Webhook>,
    /// Days before expiry an unenrolled credential is notified about; 0: never.
    pub warn_unenrolled_days: u32,
    /// Whether HTTP functions check the caller's app role (App Service authentication is on).
    pub require_app_roles: bool,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Settings, SettingsError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads every setting through `lookup` (tests inject a map). Returns the first problem, in
    /// the order below.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        let env = Env { lookup };
        let customhandler_port = customhandler_port(&env)?;
        let app_root = env.get("FUNCTIONS_APP_ROOT_PATH").map(PathBuf::from);
        let identity_endpoint = env
            .get("IDENTITY_ENDPOINT")
            .map(|v| {
                url::Url::parse(&v)
                    .map_err(|e| invalid("IDENTITY_ENDPOINT", format!("'{v}' is not a URL: {e}")))
            })
            .transpose()?;
        // Never echo this one: it authenticates token requests to the identity endpoint.
        let identity_header = env.get("IDENTITY_HEADER").map(SecretValue::new);
        let tenant_id = tenant_id(&env)?;
        let policy_raw = env.required("ROTATOR_POLICY_PATH")?;
        let policy_path = resolve_under(app_root.as_deref(), Path::new(&policy_raw));
        let storage_account = storage_account(&env)?;
        let blob_service_uri = blob_service_uri(&env)?;
        let container = container(&env)?;
        let cloud = match env.get("AZURE_CLOUD") {
            None => Cloud::default(),
            Some(v) => v.parse::<Cloud>().map_err(|e| invalid("AZURE_CLOUD", e))?,
        };
        let managed_identity_client_id = managed_identity_client_id(&env)?;
        let max_parallel = env.number("ROTATOR_MAX_PARALLEL", 8, 1, 64)? as usize;
        let pass_budget = env.seconds(
            "ROTATOR_PASS_BUDGET_SECONDS",
            240,
            1,
            MAX_PASS_BUDGET_SECONDS,
        )?;
        let rotate_wait = env.seconds(
            "ROTATOR_ROTATE_WAIT_SECONDS",
            20,
            0,
            MAX_ROTATE_WAIT_SECONDS,
        )?;
        let verify_timeout = env.seconds("ROTATOR_VERIFY_TIMEOUT_SECONDS", 180, 1, 3600)?;
        let warn_unenrolled_days = env.number("ROTATOR_WARN_UNENROLLED_DAYS", 30, 0, 365)? as u32;
        let require_app_roles = require_app_roles(&env)?;
        let transport = transport(&env, app_root.as_deref())?;
        let log_filter = log_filter(&env)?;
        let webhooks = webhooks(&env)?;
        Ok(Settings {
            customhandler_port,
            app_root,
            identity_endpoint,
            identity_header,
            tenant_id,
            policy_path,
            storage_account,
            blob_service_uri,
            container,
            cloud,
            managed_identity_client_id,
            max_parallel,
            pass_budget,
            rotate_wait,
            verify_timeout,
            transport,
            log_filter,
            webhooks,
            warn_unenrolled_days,
            require_app_roles,
        })
    }

    /// The port `serve` listens on; missing is an error naming the setting.
    pub fn require_port(&self) -> Result<u16, SettingsError> {
        self.customhandler_port.ok_or(SettingsError::Missing {
            name: "FUNCTIONS_CUSTOMHANDLER_PORT",
            meaning: spec("FUNCTIONS_CUSTOMHANDLER_PORT")
                .map(|s| s.meaning)
                .unwrap_or(""),
        })
    }

    /// The blob endpoint: the explicit setting, or the cloud's default for the account.
    pub fn blob_endpoint(&self) -> String {
        match &self.blob_service_uri {
            Some(u) => u.as_str().trim_end_matches('/').to_string(),
            None => self.cloud.blob_url(&self.storage_account),
        }
    }
}

/// The settings as read: an empty value counts as unset (see the module docs).
struct Env<'l> {
    lookup: &'l dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    fn get(&self, name: &'static str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, SettingsError> {
        self.get(name).ok_or_else(|| SettingsError::Missing {
            name,
            meaning: spec(name).map(|s| s.meaning).unwrap_or(""),
        })
    }

    /// A whole number in `min..=max`, `default` when unset.
    fn number(
        &self,
        name: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, SettingsError> {
        let Some(v) = self.get(name) else {
            return Ok(default);
        };
        let n: u64 = v.parse().map_err(|_| {
            invalid(
                name,
                format!("'{v}' is not a whole number (expected {min}-{max})"),
            )
        })?;
        if !(min..=max).contains(&n) {
            return Err(invalid(
                name,
                format!("{n} is outside the allowed range {min}-{max}"),
            ));
        }
        Ok(n)
    }

    /// [`Self::number`] of seconds.
    fn seconds(
        &self,
        name: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<Duration, SettingsError> {
        self.number(name, default, min, max)
            .map(Duration::from_secs)
    }
}

fn customhandler_port(env: &Env) -> Result<Option<u16>, SettingsError> {
    env.get("FUNCTIONS_CUSTOMHANDLER_PORT")
        .map(|v| match v.parse::<u16>() {
            Ok(p) if p != 0 => Ok(p),
            _ => Err(invalid(
                "FUNCTIONS_CUSTOMHANDLER_PORT",
                format!("'{v}' is not a TCP port (1-65535)"),
            )),
        })
        .transpose()
}

fn tenant_id(env: &Env) -> Result<String, SettingsError> {
    let tenant_id = env.required("AZURE_TENANT_ID")?;
    if !is_tenant(&tenant_id) {
        return Err(invalid(
            "AZURE_TENANT_ID",
            format!("'{tenant_id}' is neither a GUID nor a domain name"),
        ));
    }
    Ok(tenant_id)
}

fn storage_account(env: &Env) -> Result<String, SettingsError> {
    let storage_account = env.required("AzureWebJobsStorage__accountName")?;
    if !is_storage_account(&storage_account) {
        return Err(invalid(
            "AzureWebJobsStorage__accountName",
            format!(
                "'{storage_account}' is not a storage account name (3-24 lowercase letters and digits)"
            ),
        ));
    }
    Ok(storage_account)
}

fn blob_service_uri(env: &Env) -> Result<Option<url::Url>, SettingsError> {
    env.get("AzureWebJobsStorage__blobServiceUri")
        .map(|v| match url::Url::parse(&v) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => Ok(u),
            Ok(_) => Err(invalid(
                "AzureWebJobsStorage__blobServiceUri",
                format!("'{v}' is not an http(s) URL"),
            )),
            Err(e) => Err(invalid(
                "AzureWebJobsStorage__blobServiceUri",
                format!("'{v}' is not a URL: {e}"),
            )),
        })
        .transpose()
}

fn container(env: &Env) -> Result<String, SettingsError> {
    let container = env
        .get("ROTATOR_CONTAINER")
        .unwrap_or_else(|| "secret-rotator".into());
    if !is_container_name(&container) {
        return Err(invalid(
            "ROTATOR_CONTAINER",
            format!(
                "'{container}' is not a blob container name (3-63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit)"
            ),
        ));
    }
    Ok(container)
}

fn managed_identity_client_id(env: &Env) -> Result<Option<String>, SettingsError> {
    env.get("AZURE_CLIENT_ID")
        .map(|v| {
            uuid::Uuid::parse_str(&v).map(|_| v.clone()).map_err(|_| {
                invalid(
                    "AZURE_CLIENT_ID",
                    format!("'{v}' is not a GUID (the managed identity's client id)"),
                )
            })
        })
        .transpose()
}

fn require_app_roles(env: &Env) -> Result<bool, SettingsError> {
    match env.get("ROTATOR_REQUIRE_APP_ROLES") {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(invalid(
            "ROTATOR_REQUIRE_APP_ROLES",
            format!("'{v}' is neither true nor false"),
        )),
    }
}

/// `ROTATOR_RESOLVE` and `ROTATOR_CA_FILE` (relative to the app root).
fn transport(env: &Env, app_root: Option<&Path>) -> Result<TransportConfig, SettingsError> {
    let mut transport = TransportConfig::default();
    if let Some(list) = env.get("ROTATOR_RESOLVE") {
        transport.overrides = TransportConfig::parse_overrides(&list)
            .map_err(|e| invalid("ROTATOR_RESOLVE", e.to_string()))?;
    }
    if let Some(path) = env.get("ROTATOR_CA_FILE") {
        let path = resolve_under(app_root, Path::new(&path));
        let pem = std::fs::read(&path).map_err(|e| {
            invalid(
                "ROTATOR_CA_FILE",
                format!("cannot read '{}': {e}", path.display()),
            )
        })?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(invalid(
                "ROTATOR_CA_FILE",
                format!("'{}' holds no PEM certificate", path.display()),
            ));
        }
        transport.extra_ca_pem = Some(pem);
    }
    Ok(transport)
}

fn log_filter(env: &Env) -> Result<String, SettingsError> {
    let log_filter = env.get("ROTATOR_LOG").unwrap_or_else(|| "info".into());
    tracing_subscriber::EnvFilter::try_new(&log_filter).map_err(|e| {
        invalid(
            "ROTATOR_LOG",
            format!("'{log_filter}' is not a log filter: {e}"),
        )
    })?;
    Ok(log_filter)
}

/// The notification webhooks, https only (http on loopback).
fn webhooks(env: &Env) -> Result<Vec<crate::notify::Webhook>, SettingsError> {
    let mut webhooks = Vec::new();
    for (name, kind) in [
        (
            "ROTATOR_NOTIFY_TEAMS_URL",
            crate::notify::WebhookKind::Teams,
        ),
        (
            "ROTATOR_NOTIFY_SLACK_URL",
            crate::notify::WebhookKind::Slack,
        ),
        (
            "ROTATOR_NOTIFY_WEBHOOK_URL",
            crate::notify::WebhookKind::Generic,
        ),
    ] {
        let Some(v) = env.get(name) else { continue };
        // Never echo the value: it carries the webhook's signature.
        match url::Url::parse(&v) {
            Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && is_loopback(&u)) => webhooks
                .push(crate::notify::Webhook {
                    kind,
                    url: SecretValue::new(v),
                }),
            _ => {
                return Err(invalid(
                    name,
                    "is not an https URL (a webhook URL carries its signature, and the \
                     message names applications; http is accepted only on loopback)"
                        .to_string(),
                ));
            }
        }
    }
    Ok(webhooks)
}

/// A loopback host (the local demo's receiver): plain http never leaves the machine.
fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The spec entry for `name`.
pub fn spec(name: &str) -> Option<&'static SettingSpec> {
    SETTING_SPECS.iter().find(|s| s.name == name)
}

fn invalid(name: &'static str, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        name,
        reason: reason.into(),
    }
}

fn resolve_under(root: Option<&Path>, p: &Path) -> PathBuf {
    match root {
        Some(root) if p.is_relative() => root.join(p),
        _ => p.to_path_buf(),
    }
}

fn is_tenant(s: &str) -> bool {
    if uuid::Uuid::parse_str(s).is_ok() {
        return true;
    }
    // A verified domain such as contoso.onmicrosoft.com.
    s.contains('.')
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_storage_account(s: &str) -> bool {
    (3..=24).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

fn is_container_name(s: &str) -> bool {
    (3..=63).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::{BTreeSet, HashMap};

    fn base() -> HashMap<&'static str, String> {
        HashMap::from([
            (
                "AZURE_TENANT_ID",
                "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            ),
            ("ROTATOR_POLICY_PATH", "policy.json".into()),
            ("AzureWebJobsStorage__accountName", "stsecretrotator".into()),
        ])
    }

    fn load(map: &HashMap<&'static str, String>) -> Result<Settings, SettingsError> {
        Settings::from_lookup(&|n| map.get(n).cloned())
    }

    #[test]
    fn defaults_apply_when_only_required_settings_are_set() {
        let s = load(&base()).unwrap();
        assert_eq!(s.customhandler_port, None);
        assert_eq!(s.container, "secret-rotator");
        assert_eq!(s.cloud, Cloud::Public);
        assert_eq!(s.max_parallel, 8);
        assert_eq!(s.pass_budget, Duration::from_secs(240));
        assert_eq!(s.rotate_wait, Duration::from_secs(20));
        assert_eq!(s.verify_timeout, Duration::from_secs(180));
        assert_eq!(s.warn_unenrolled_days, 30);
        assert_eq!(s.policy_path, PathBuf::from("policy.json"));
        assert_eq!(
            s.blob_endpoint(),
            "https://stsecretrotator.blob.core.windows.net"
        );
        assert!(s.require_port().is_err());
    }

    /// Was: `http://` webhooks were accepted, sending the signed URL and the messages in clear.
    #[test]
    fn webhooks_are_https_except_on_loopback() {
        for (url, ok) in [
            ("https://prod.westeurope.logic.azure.com/workflows/x", true),
            ("http://hooks.example.com/services/T/B/sig", false),
            ("ftp://hooks.example.com/x", false),
            ("http://127.0.0.1:8080/hook", true),
            ("http://localhost/hook", true),
            ("http://[::1]:9/hook", true),
        ] {
            let mut map = base();
            map.insert("ROTATOR_NOTIFY_SLACK_URL", url.into());
            match load(&map) {
                Ok(s) => assert!(ok && s.webhooks.len() == 1, "{url} accepted"),
                Err(e) => {
                    assert!(!ok, "{url}: {e}");
                    let text = e.to_string();
                    assert!(
                        text.contains("not an https URL") && !text.contains("/B/sig"),
                        "{text}"
                    );
                }
            }
        }
    }

    #[test]
    fn app_roles_setting_is_true_or_false() {
        let mut map = base();
        assert!(!load(&map).unwrap().require_app_roles);
        map.insert("ROTATOR_REQUIRE_APP_ROLES", "True".into());
        assert!(load(&map).unwrap().require_app_roles);
        map.insert("ROTATOR_REQUIRE_APP_ROLES", "yes".into());
        assert!(load(&map).is_err());
    }

    #[test]
    fn every_spec_is_read_and_nothing_else() {
        let seen = RefCell::new(BTreeSet::new());
        let map = base();
        Settings::from_lookup(&|n| {
            seen.borrow_mut().insert(n.to_string());
            map.get(n).cloned()
        })
        .unwrap();
        let specs: BTreeSet<String> = SETTING_SPECS.iter().map(|s| s.name.to_string()).collect();
        assert_eq!(*seen.borrow(), specs);
    }

    #[test]
    fn each_missing_required_setting_is_named() {
        for spec in SETTING_SPECS.iter().filter(|s| s.required) {
            if spec.name == "FUNCTIONS_CUSTOMHANDLER_PORT" {
                continue; // required by `serve` only, checked by require_port
            }
            let mut map = base();
            map.insert(spec.name, "  ".into()); // empty counts as missing
            let err = load(&map).unwrap_err().to_string();
            assert!(err.contains(spec.name), "{err}");
            assert!(err.contains("missing"), "{err}");
        }
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "eighty"),
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "0"),
            ("AZURE_TENANT_ID", "not a tenant"),
            ("AzureWebJobsStorage__accountName", "Bad_Name"),
            ("AzureWebJobsStorage__blobServiceUri", "ftp://x"),
            ("ROTATOR_CONTAINER", "Has--Caps"),
            ("AZURE_CLOUD", "mars"),
            ("AZURE_CLIENT_ID", "not-a-guid"),
            ("ROTATOR_MAX_PARALLEL", "0"),
            ("ROTATOR_PASS_BUDGET_SECONDS", "900"),
            ("ROTATOR_PASS_BUDGET_SECONDS", "4m"),
            ("ROTATOR_ROTATE_WAIT_SECONDS", "600"),
            ("ROTATOR_VERIFY_TIMEOUT_SECONDS", "-1"),
            ("ROTATOR_WARN_UNENROLLED_DAYS", "366"),
            ("ROTATOR_WARN_UNENROLLED_DAYS", "a month"),
            ("ROTATOR_RESOLVE", "graph.microsoft.com"),
            ("ROTATOR_CA_FILE", "/nonexistent/ca.pem"),
            ("ROTATOR_LOG", "info,[[["),
            ("IDENTITY_ENDPOINT", "not a url"),
        ];
        for (name, value) in cases {
            let mut map = base();
            map.insert(name, value.into());
            let err = load(&map).expect_err(name).to_string();
            assert!(err.contains(name), "{name}={value}: {err}");
        }
    }

    #[test]
    fn identity_header_is_never_echoed() {
        let mut map = base();
        map.insert("IDENTITY_HEADER", "platform-secret-header-value".into());
        let s = load(&map).unwrap();
        assert!(!format!("{s:?}").contains("platform-secret-header-value"));
    }

    #[test]
    fn relative_paths_resolve_against_the_app_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ca.pem"),
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let mut map = base();
        map.insert("FUNCTIONS_APP_ROOT_PATH", dir.path().display().to_string());
        map.insert("ROTATOR_CA_FILE", "ca.pem".into());
        map.insert("FUNCTIONS_CUSTOMHANDLER_PORT", "34567".into());
        map.insert(
            "ROTATOR_RESOLVE",
            "*.vault.azure.net=127.0.0.1:8443,login.microsoftonline.com=127.0.0.1:8443".into(),
        );
        map.insert("AZURE_CLOUD", "usgovernment".into());
        let s = load(&map).unwrap();
        assert_eq!(s.policy_path, dir.path().join("policy.json"));
        assert_eq!(s.require_port().unwrap(), 34567);
        assert_eq!(s.transport.overrides.len(), 2);
        assert!(s.transport.extra_ca_pem.is_some());
        assert_eq!(s.cloud, Cloud::UsGovernment);

        map.insert("ROTATOR_POLICY_PATH", "/etc/rotator/policy.json".into());
        assert_eq!(
            load(&map).unwrap().policy_path,
            PathBuf::from("/etc/rotator/policy.json")
        );
    }
}
