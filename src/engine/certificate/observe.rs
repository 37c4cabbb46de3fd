//! [`observe_certificate`]: the certificate planner's `CertObservation` of one credential, read
//! from Azure (only reads): the application's `keyCredentials`, the certificate's versions with
//! their tags, pending operation and exportability, the consumers against the current version
//! (the newest version carrying rotation state), and for a conversion the replaced secret's
//! side. A consumer whose read fails is `Blocked` on its own, with the reason.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::ports::{AssertionAnswer, CertVersionInfo, CertificatePorts};
use super::tags;
use crate::engine::kvref::KeyVaultReference;
use crate::engine::ports::{AzurePorts, PortError};
use crate::planner::certificate::*;
use crate::planner::{ConsumerObservation, ConsumerSync, PasswordMarker};
use crate::policy::{
    CertificateConsumer, CertificateCredentialPolicy, Consumer, CredentialPolicy, Policy,
};

/// An observation plus what the executor needs to act on it.
#[derive(Debug, Clone)]
pub struct CertObserved {
    pub observation: CertObservation,
    /// The application's object id and client id (when it was read).
    pub object_id: Option<Uuid>,
    pub app_id: Option<Uuid>,
    /// Each completed version's raw tags (owner's included), for rewriting them.
    pub version_tags: BTreeMap<String, BTreeMap<String, String>>,
    /// The current version (newest with rotation state): id and thumbprint.
    pub current: Option<(CertVersionId, Thumbprint)>,
}

/// Everything the observer needs besides the credential.
pub struct Sources<'a> {
    pub azure: &'a dyn AzurePorts,
    pub certs: &'a dyn CertificatePorts,
    /// The whole policy: a conversion reads the replaced secret credential's entry.
    pub policy: &'a Policy,
    pub tenant: &'a str,
}

/// Reads one certificate credential. `probe`: also ask Entra whether the current version's
/// key is accepted (a client-assertion token request; status and the probe want it, a run
/// proves in its own steps). `Err` only when the certificate's tags are damaged (the message
/// names the tag) or Key Vault cannot be read.
pub async fn observe_certificate(
    src: &Sources<'_>,
    cert: &CertificateCredentialPolicy,
    probe: bool,
    now: DateTime<Utc>,
) -> Result<CertObserved, PortError> {
    let app = read_app(src, cert).await;
    let versions = src.certs.cert_versions(&cert.certificate).await?;
    let pending = src.certs.cert_pending(&cert.certificate).await?;
    let mut version_tags = BTreeMap::new();
    let mut add_refused = None;
    let vault = match versions {
        None if pending.is_none() => CertVaultState::Missing,
        versions => {
            let mut out = Vec::new();
            for v in versions.unwrap_or_default() {
                let (cv, refusal) = version_of(&v, cert, now)?;
                if let Some(r) = refusal {
                    add_refused = Some(r);
                }
                version_tags.insert(v.version.clone(), v.tags.clone());
                out.push(cv);
            }
            let exportable = if out.is_empty() {
                cert.exportable
            } else {
                src.certs.cert_exportable(&cert.certificate).await?
            };
            CertVaultState::Present(CertificateState {
                versions: out,
                pending,
                exportable,
            })
        }
    };
    let current = current_of(&vault);
    let current_accepted = match (&app, &current, probe) {
        (Ok(a), Some((v, _)), true) => accepted(src, cert, a.app_id, v).await,
        _ => None,
    };
    let consumers = read_consumers(src, cert, current.as_ref()).await;
    let conversion = match (&cert.replaces_secret, &app) {
        (Some(name), Ok(a)) => Some(read_conversion(src, cert, name, a).await),
        _ => None,
    };
    Ok(CertObserved {
        object_id: app.as_ref().ok().map(|a| a.object_id),
        app_id: app.as_ref().ok().map(|a| a.app_id),
        observation: CertObservation {
            app: app.map(|a| a.state),
            vault,
            current_accepted,
            consumers,
            add_refused,
            conversion,
        },
        version_tags,
        current,
    })
}

struct AppRead {
    object_id: Uuid,
    app_id: Uuid,
    passwords: Vec<crate::planner::PasswordInfo>,
    state: CertAppState,
}

async fn read_app(
    src: &Sources<'_>,
    cert: &CertificateCredentialPolicy,
) -> Result<AppRead, String> {
    let app = src
        .azure
        .get_app(&cert.application)
        .await
        .map_err(|e| e.to_string())?;
    let keys = src
        .certs
        .key_credentials(app.object_id)
        .await
        .map_err(|e| e.to_string())?;
    Ok(AppRead {
        object_id: app.object_id,
        app_id: app.app_id,
        passwords: app.passwords,
        state: CertAppState {
            object_id: app.object_id,
            app_id: app.app_id,
            keys,
        },
    })
}

/// One listed version as the planner sees it, and Graph's recorded refusal of its key when
/// that is recent enough to stand.
fn version_of(
    v: &CertVersionInfo,
    cert: &CertificateCredentialPolicy,
    now: DateTime<Utc>,
) -> Result<(CertVersion, Option<AddRefusal>), PortError> {
    let t = tags::parse(&v.tags, cert).map_err(|m| {
        PortError::BadAnswer(format!(
            "certificate {}/{} version {}: {m}; fix or remove the tag",
            cert.certificate.vault, cert.certificate.name, v.version
        ))
    })?;
    let id = CertVersionId(v.version.clone());
    let refusal = t
        .refused
        .filter(|(_, at, _)| now.signed_duration_since(*at) < tags::REFUSAL_RETRY)
        .map(|(kind, _, detail)| AddRefusal {
            version: id.clone(),
            kind,
            detail,
        });
    Ok((
        CertVersion {
            version: id,
            thumbprint: v.thumbprint,
            created: v.created,
            not_before: v.not_before,
            expires: v.expires,
            enabled: v.enabled,
            origin: t.origin,
            tags: t.state,
        },
        refusal,
    ))
}

/// The newest version carrying rotation state (as the planner picks it).
fn current_of(vault: &CertVaultState) -> Option<(CertVersionId, Thumbprint)> {
    let CertVaultState::Present(c) = vault else {
        return None;
    };
    c.versions
        .iter()
        .enumerate()
        .filter(|(_, v)| v.tags.is_some())
        .max_by_key(|(i, v)| (v.created, *i))
        .map(|(_, v)| (v.version.clone(), v.thumbprint))
}

/// Whether Entra gives a token for an assertion signed by version `v` (`None`: not known yet,
/// the key not replicated or the request failed).
pub(crate) async fn accepted(
    src: &Sources<'_>,
    cert: &CertificateCredentialPolicy,
    app_id: Uuid,
    v: &CertVersionId,
) -> Option<bool> {
    let tenant = cert.tenant_id.as_deref().unwrap_or(src.tenant);
    match src
        .certs
        .assertion_token(tenant, app_id, &cert.certificate, &v.0)
        .await
    {
        Ok(AssertionAnswer::Accepted) => Some(true),
        Ok(AssertionAnswer::Refused { .. }) => Some(false),
        Ok(AssertionAnswer::NotReplicated) | Err(_) => None,
    }
}

async fn read_consumers(
    src: &Sources<'_>,
    cert: &CertificateCredentialPolicy,
    current: Option<&(CertVersionId, Thumbprint)>,
) -> Vec<ConsumerObservation> {
    let reads = cert.consumers.iter().map(|c| async move {
        let sync = match current {
            None => ConsumerSync::NotObservable { healthy: None },
            Some(cur) => consumer_sync(src, cert, c, cur).await.unwrap_or_else(|e| {
                ConsumerSync::Blocked {
                    reason: format!(
                        "{} cannot be read ({e}); give the rotator Website Contributor on the site",
                        c.describe()
                    ),
                }
            }),
        };
        ConsumerObservation { id: c.id(), sync }
    });
    futures::future::join_all(reads).await
}

/// Whether a thumbprint setting already names `t` (`*` loads every certificate).
pub fn names_thumbprint(value: &str, t: Thumbprint) -> bool {
    let t = t.to_string();
    value
        .split(',')
        .map(str::trim)
        .any(|v| v == "*" || v.eq_ignore_ascii_case(&t))
}

async fn consumer_sync(
    src: &Sources<'_>,
    cert: &CertificateCredentialPolicy,
    c: &CertificateConsumer,
    (version, thumb): &(CertVersionId, Thumbprint),
) -> Result<ConsumerSync, PortError> {
    let out = |detail: String| ConsumerSync::OutOfSync { detail };
    Ok(match c {
        CertificateConsumer::NotifyOnly { .. } => ConsumerSync::NotObservable { healthy: None },
        CertificateConsumer::AppSettingThumbprint { site, setting } => {
            match src.azure.app_setting(site, setting).await? {
                Some(v) if names_thumbprint(v.expose(), *thumb) => ConsumerSync::InSync,
                Some(_) => out(format!("setting {setting} names another thumbprint")),
                None => out(format!("setting {setting} does not exist")),
            }
        }
        CertificateConsumer::AppSettingKeyVaultRef { site, setting } => {
            let Some(raw) = src.azure.app_setting(site, setting).await? else {
                return Ok(out(format!("setting {setting} does not exist")));
            };
            let r = KeyVaultReference::parse(raw.expose())
                .filter(|r| r.points_at(&cert.certificate.vault, &cert.certificate.name));
            match r.map(|r| r.version) {
                None => out(format!(
                    "setting {setting} is not a Key Vault reference to the certificate"
                )),
                Some(Some(v)) if v.eq_ignore_ascii_case(&version.0) => ConsumerSync::InSync,
                Some(Some(v)) => out(format!("pinned to version {v}")),
                Some(None) => versionless_sync(src, site, setting, version).await?,
            }
        }
    })
}

async fn versionless_sync(
    src: &Sources<'_>,
    site: &crate::policy::ArmResource,
    setting: &str,
    version: &CertVersionId,
) -> Result<ConsumerSync, PortError> {
    Ok(match src.azure.reference_status(site, setting).await? {
        Some(s) if s.active_version.as_deref() == Some(version.0.as_str()) => ConsumerSync::InSync,
        Some(s) if s.active_version.is_none() && s.status == "Resolved" => {
            ConsumerSync::NotObservable {
                healthy: Some(true),
            }
        }
        Some(s) => ConsumerSync::OutOfSync {
            detail: format!(
                "App Service reports {} with version {}",
                s.status,
                s.active_version.as_deref().unwrap_or("none")
            ),
        },
        None => ConsumerSync::OutOfSync {
            detail: "App Service reports no status for the reference".into(),
        },
    })
}

/// The replaced secret's side: its passwords on the application (the ones its Key Vault tags
/// name, and the rotator's for it) and whether each of its consumers has moved off it.
async fn read_conversion(
    src: &Sources<'_>,
    cert: &CertificateCredentialPolicy,
    secret_name: &str,
    app: &AppRead,
) -> ConversionObservation {
    let Some(secret) = src
        .policy
        .credentials
        .iter()
        .find(|c| c.name == secret_name)
    else {
        return ConversionObservation {
            secret_consumers: vec![],
            secret_passwords: vec![],
        };
    };
    let latest = src.azure.vault_latest(&secret.key_vault).await;
    let tagged: Vec<Uuid> = match &latest {
        Ok(Some(s)) => crate::engine::tags::parse(&s.tags, secret)
            .ok()
            .flatten()
            .map(|t| std::iter::once(t.key_id).chain(t.previous_key_id).collect())
            .unwrap_or_default(),
        _ => vec![],
    };
    let passwords: Vec<&crate::planner::PasswordInfo> = app
        .passwords
        .iter()
        .filter(|p| {
            tagged.contains(&p.key_id)
                || p.display_name
                    .as_deref()
                    .is_some_and(|n| PasswordMarker::is_for(n, secret_name))
        })
        .collect();
    // What a setting still holding the secret looks like: the value in Key Vault, or the
    // first characters Graph shows of any of the secret's passwords (a consumer left on the
    // previous one counts as not moved).
    let held = SecretShape {
        value: latest.ok().flatten().map(|s| s.value),
        hints: passwords.iter().filter_map(|p| p.hint.clone()).collect(),
    };
    let moves = secret
        .consumers
        .iter()
        .map(|c| secret_consumer_move(src, cert, secret, c, &held));
    ConversionObservation {
        secret_consumers: futures::future::join_all(moves).await,
        secret_passwords: passwords.iter().map(|p| p.key_id).collect(),
    }
}

/// The replaced secret as a setting would hold it.
struct SecretShape {
    value: Option<crate::secret::SecretValue>,
    hints: Vec<String>,
}

impl SecretShape {
    fn held_by(&self, v: &crate::secret::SecretValue) -> bool {
        self.value.as_ref().is_some_and(|s| s == v)
            || self
                .hints
                .iter()
                .any(|h| !h.is_empty() && v.expose().starts_with(h.as_str()))
    }
}

async fn secret_consumer_move(
    src: &Sources<'_>,
    cert: &CertificateCredentialPolicy,
    secret: &CredentialPolicy,
    c: &Consumer,
    shape: &SecretShape,
) -> SecretConsumerMove {
    let kv = &secret.key_vault;
    let (site, setting) = match c {
        Consumer::AppSettingKeyVaultRef { site, setting }
        | Consumer::AppSettingValue { site, setting } => (site, setting),
        other => {
            return SecretConsumerMove::Unknown {
                reason: format!(
                    "{} cannot be read back; remove it from {}'s consumers once it uses certificate {}",
                    other.describe(),
                    secret.name,
                    cert.name
                ),
            };
        }
    };
    let held = match src.azure.app_setting(site, setting).await {
        Err(e) => {
            return SecretConsumerMove::Unknown {
                reason: e.to_string(),
            };
        }
        Ok(None) => return SecretConsumerMove::Moved,
        Ok(Some(v)) => v,
    };
    let on_secret = match c {
        Consumer::AppSettingKeyVaultRef { .. } => KeyVaultReference::parse(held.expose())
            .is_some_and(|r| r.points_at(&kv.vault, &kv.secret)),
        _ => shape.held_by(&held),
    };
    if on_secret {
        SecretConsumerMove::StillOnSecret {
            detail: format!("setting {setting} still holds the secret"),
        }
    } else {
        SecretConsumerMove::Moved
    }
}
