//! Builds the planner's [`Observation`] of one credential from Azure.
//!
//! Only reads. What cannot be read back (write-only connection parameters, encrypted
//! variables, people) is reported as `NotObservable`, and the planner falls back on the
//! rotator's own tags.

use crate::engine::kvref::KeyVaultReference;
use crate::engine::ports::{AzurePorts, PortError, VaultSecret};
use crate::engine::tags;
use crate::planner::{
    AppState, ConsumerObservation, ConsumerSync, KeyIdentity, Observation, VaultState, VaultVersion,
};
use crate::policy::{Consumer, CredentialPolicy};

/// An observation plus what the executor needs to act on it (the value itself never goes to
/// the planner).
#[derive(Debug, Clone)]
pub struct Observed {
    pub observation: Observation,
    pub app: Option<AppState>,
    pub secret: Option<VaultSecret>,
}

/// Errors that end the observation: the run for this credential fails and is retried later.
/// A missing or invisible application is not one of them: the planner blocks on it.
pub async fn observe(
    azure: &dyn AzurePorts,
    cred: &CredentialPolicy,
    tenant: &str,
    probe_value: bool,
) -> Result<Observed, PortError> {
    let app = match azure.get_app(&cred.application).await {
        Ok(a) => Ok(a),
        Err(PortError::NotFound(m)) => Err(format!(
            "the application is not found or not visible to the rotator ({m}); \
             is the rotator's identity an owner of it?"
        )),
        Err(PortError::AccessDenied(m)) => Err(format!(
            "Graph refused access to the application ({m}); the rotator's identity must own it \
             and hold Application.ReadWrite.OwnedBy"
        )),
        Err(e) => return Err(e),
    };
    let secret = azure.vault_latest(&cred.key_vault).await?;

    let (vault, current_value_accepted, consumers) = match (&secret, &app) {
        (None, _) => (VaultState::Missing, None, Vec::new()),
        (Some(s), app) => {
            let identity = identify(s, app.as_ref().ok());
            let tags = match tags::parse(&s.tags) {
                Ok(t) => t,
                Err(msg) => {
                    return Err(PortError::BadAnswer(format!(
                        "Key Vault secret {}/{} version {}: {msg}",
                        cred.key_vault.vault, cred.key_vault.secret, s.version
                    )));
                }
            };
            let accepted = if probe_value || matches!(identity, KeyIdentity::Unknown { .. }) {
                match &app {
                    Ok(a) => match azure.request_token(tenant, a.app_id, &s.value).await {
                        Ok(()) => Some(true),
                        Err(PortError::Refused { .. }) => Some(false),
                        Err(e) => return Err(e),
                    },
                    Err(_) => None,
                }
            } else {
                None
            };
            let mut consumers = Vec::with_capacity(cred.consumers.len());
            for c in &cred.consumers {
                consumers.push(ConsumerObservation {
                    id: c.id(),
                    sync: observe_consumer(azure, cred, c, s).await?,
                });
            }
            (
                VaultState::Current(VaultVersion {
                    version: s.version.clone(),
                    created: s.created,
                    identity,
                    tags,
                }),
                accepted,
                consumers,
            )
        }
    };
    Ok(Observed {
        observation: Observation {
            app: app.clone(),
            vault,
            current_value_accepted,
            consumers,
        },
        app: app.ok(),
        secret,
    })
}

/// Which password the stored value is: the tags say, Graph's hint confirms.
fn identify(s: &VaultSecret, app: Option<&AppState>) -> KeyIdentity {
    let hint = s.value.hint();
    let Some(app) = app else {
        return KeyIdentity::Unknown {
            reason: "the application cannot be read".into(),
        };
    };
    let tagged = s
        .tags
        .get(tags::KEY_ID)
        .and_then(|k| uuid::Uuid::parse_str(k).ok());
    if let Some(k) = tagged {
        return match app.passwords.iter().find(|p| p.key_id == k) {
            // The password is gone: still the tagged one; the planner sees it missing.
            None => KeyIdentity::Tagged(k),
            Some(p) if p.hint.as_deref().is_none_or(|h| h == hint) => KeyIdentity::Tagged(k),
            Some(_) => KeyIdentity::Unknown {
                reason: format!(
                    "the tags name password {k}, but its hint does not match the stored value"
                ),
            },
        };
    }
    let matches: Vec<_> = app
        .passwords
        .iter()
        .filter(|p| p.hint.as_deref() == Some(hint.as_str()))
        .collect();
    match matches.as_slice() {
        [one] => KeyIdentity::InferredFromHint(one.key_id),
        [] => KeyIdentity::Unknown {
            reason: "no password of the application has the stored value's hint".into(),
        },
        many => KeyIdentity::Unknown {
            reason: format!(
                "{} passwords share the stored value's hint; cannot tell which is in use",
                many.len()
            ),
        },
    }
}

async fn observe_consumer(
    azure: &dyn AzurePorts,
    cred: &CredentialPolicy,
    consumer: &Consumer,
    current: &VaultSecret,
) -> Result<ConsumerSync, PortError> {
    let kv = &cred.key_vault;
    Ok(match consumer {
        Consumer::AppSettingKeyVaultRef { site, setting } => {
            let Some(raw) = azure.app_setting(site, setting).await? else {
                return Ok(ConsumerSync::OutOfSync {
                    detail: format!("setting {setting} does not exist"),
                });
            };
            let Some(r) = KeyVaultReference::parse(raw.expose()) else {
                return Ok(ConsumerSync::OutOfSync {
                    detail: format!("setting {setting} is not a Key Vault reference"),
                });
            };
            if !r.points_at(&kv.vault, &kv.secret) {
                return Ok(ConsumerSync::OutOfSync {
                    detail: format!(
                        "setting {setting} references {}/{}, not {}/{}",
                        r.vault, r.secret, kv.vault, kv.secret
                    ),
                });
            }
            match r.version {
                Some(v) if v == current.version => ConsumerSync::InSync,
                Some(v) => ConsumerSync::OutOfSync {
                    detail: format!("pinned to version {v}"),
                },
                None => match azure.reference_status(site, setting).await? {
                    Some(st) if st.active_version.as_deref() == Some(current.version.as_str()) => {
                        ConsumerSync::InSync
                    }
                    Some(st) => ConsumerSync::OutOfSync {
                        detail: format!(
                            "App Service reports {} with version {}",
                            st.status,
                            st.active_version.as_deref().unwrap_or("none")
                        ),
                    },
                    None => ConsumerSync::OutOfSync {
                        detail: "App Service reports no status for the reference".into(),
                    },
                },
            }
        }
        Consumer::AppSettingValue { site, setting } => {
            match azure.app_setting(site, setting).await? {
                Some(v) if v == current.value => ConsumerSync::InSync,
                Some(_) => ConsumerSync::OutOfSync {
                    detail: format!("setting {setting} holds another value"),
                },
                None => ConsumerSync::OutOfSync {
                    detail: format!("setting {setting} does not exist"),
                },
            }
        }
        Consumer::ApiConnection { connection, .. } => {
            let st = azure.connection_status(connection).await?;
            ConsumerSync::NotObservable {
                healthy: Some(st.connected),
            }
        }
        Consumer::AutomationVariable { account, variable } => {
            match azure.automation_variable(account, variable).await? {
                Some(_) => ConsumerSync::NotObservable { healthy: None },
                None => ConsumerSync::OutOfSync {
                    detail: format!("variable {variable} does not exist"),
                },
            }
        }
        Consumer::NotifyOnly { .. } => ConsumerSync::NotObservable { healthy: None },
    })
}
