//! [`CertificatePorts`] on the engine's clients ([`AzureClients`]): Key Vault certificates,
//! Graph `keyCredentials`, the assertion probe. Graph's refusals of a key itself are told
//! apart here, once, for the planner's `AddRefusalKind`:
//! - `CredentialInvalidLifetimeAsPerAppPolicy` (a tenant app management policy's
//!   `asymmetricKeyLifetime`, Graph resources/keycredentialconfiguration.md) → lifetime;
//! - `Directory_ResourceSizeExceeded` "The size of the object has exceeded its limit"
//!   (microsoftgraph/microsoft-graph-docs#21469, keyCredentials past Graph's object size) →
//!   key-credential limit;
//! - a refusal naming the issuer (`trustedCertificateAuthority` restrictions of the same
//!   policy) → untrusted issuer; any other 400 → `Other`, with Graph's words.
//!
//! The JWTs (proofs, assertions) are dated by the machine's clock, as MSAL and the SDKs date
//! them: Entra checks their ten minutes against real time, not against the run's `now`.

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::Utc;
use sha1::Digest;
use uuid::Uuid;

use super::ports::*;
use crate::azure::assertion::{self, is_key_not_replicated};
use crate::azure::certificates::{
    CertificatePolicy, CertificateVersion, ContentType, KeySpec, OperationStatus, SignAlgorithm,
};
use crate::azure::keycredentials::{KeyCredential, NewKeyCredential};
use crate::azure::{Error as AzureError, ErrorKind};
use crate::engine::azure_ports::AzureClients;
use crate::engine::ports::PortError;
use crate::planner::certificate::{
    AddRefusalKind, KeyCredentialInfo, PendingOperation, Thumbprint,
};
use crate::policy::{CertificateCredentialPolicy, VaultCertificateRef};
use crate::secret::SecretValue;

/// A certificate's SHA-1 thumbprint.
pub fn thumbprint_of(der: &[u8]) -> Thumbprint {
    Thumbprint(sha1::Sha1::digest(der).into())
}

/// Key Vault's `x5t` (base64url SHA-1) as a thumbprint.
fn thumbprint_from_x5t(x5t: &str) -> Result<Thumbprint, PortError> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(x5t.trim_end_matches('='))
        .ok()
        .and_then(|b| <[u8; 20]>::try_from(b).ok())
        .ok_or_else(|| {
            PortError::BadAnswer("a certificate's x5t is not a SHA-1 thumbprint".into())
        })?;
    Ok(Thumbprint(raw))
}

fn info(k: &KeyCredential) -> KeyCredentialInfo {
    KeyCredentialInfo {
        key_id: k.key_id,
        thumbprint: (!k.cer.is_empty()).then(|| thumbprint_of(&k.cer)),
        display_name: k.display_name.clone(),
        start: k.start,
        end: k.end,
    }
}

/// Graph's refusal of the key itself, if that is what `e` is.
fn key_refusal(e: &AzureError) -> Option<KeyRefused> {
    let code = e.code().unwrap_or_default();
    let message = e.message().unwrap_or_default();
    let says = |c: &str| code == c || message.contains(c);
    let kind = match e.kind() {
        ErrorKind::LifetimePolicy { .. } => AddRefusalKind::LifetimePolicy,
        ErrorKind::Rejected if says("Directory_ResourceSizeExceeded") => {
            AddRefusalKind::KeyCredentialLimit
        }
        ErrorKind::Rejected if message.to_ascii_lowercase().contains("issuer") => {
            AddRefusalKind::UntrustedIssuer
        }
        ErrorKind::Rejected => AddRefusalKind::Other,
        _ => return None,
    };
    let detail = format!("{code}: {message}");
    Some(KeyRefused {
        kind,
        detail: detail
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect(),
    })
}

fn policy_of(p: &CertificateCredentialPolicy) -> CertificatePolicy {
    CertificatePolicy {
        issuer: p.issuer.key_vault_name().to_string(),
        subject: p.subject.clone(),
        key: KeySpec::Rsa {
            bits: p.key_size.bits(),
        },
        exportable: p.exportable,
        reuse_key: false,
        content_type: ContentType::Pkcs12,
        validity_months: p.validity_months,
    }
}

impl AzureClients {
    async fn version(
        &self,
        at: &VaultCertificateRef,
        version: &str,
    ) -> Result<CertificateVersion, PortError> {
        Ok(self
            .certificates
            .get(&at.vault, &at.name, Some(version))
            .await?)
    }

    /// A proof of possession for `object_id`, signed by `signer`'s key in Key Vault.
    async fn proof(
        &self,
        object_id: Uuid,
        at: &VaultCertificateRef,
        signer: &str,
    ) -> Result<SecretValue, PortError> {
        let cert = self.version(at, signer).await?;
        let claims = assertion::proof_claims(object_id, Utc::now());
        Ok(assertion::sign_jwt(&self.certificates, &cert, SignAlgorithm::Rs256, &claims).await?)
    }

    /// The merge-write, refused when a key the planner saw (and meant to keep) is gone.
    async fn merge(
        &self,
        object_id: Uuid,
        add: &[NewKeyCredential],
        remove: &[Uuid],
        keep: &[Uuid],
    ) -> Result<(), PortError> {
        let now = self.keycreds.list(object_id).await?;
        if let Some(gone) = keep
            .iter()
            .find(|k| !remove.contains(k) && now.iter().all(|n| n.key_id != **k))
        {
            return Err(PortError::Transient(format!(
                "key {gone} left the application since it was observed: observe again before writing keyCredentials"
            )));
        }
        let after = self.keycreds.merge_write(object_id, add, remove).await?;
        match keep
            .iter()
            .find(|k| !remove.contains(k) && after.iter().all(|a| a.key_id != **k))
        {
            Some(lost) => Err(PortError::Other(format!(
                "key {lost} is missing after the keyCredentials write"
            ))),
            None => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl CertificatePorts for AzureClients {
    async fn cert_versions(
        &self,
        at: &VaultCertificateRef,
    ) -> Result<Option<Vec<CertVersionInfo>>, PortError> {
        let items = match self.certificates.list_versions(&at.vault, &at.name).await {
            Err(e) if e.kind() == &ErrorKind::NotFound => return Ok(None),
            other => other?,
        };
        if items.is_empty() {
            return Ok(None);
        }
        items
            .into_iter()
            .map(|i| {
                Ok(CertVersionInfo {
                    thumbprint: thumbprint_from_x5t(&i.x5t)?,
                    version: i.version,
                    created: i.created,
                    not_before: i.not_before,
                    expires: i.expires,
                    enabled: i.enabled,
                    tags: i.tags,
                })
            })
            .collect::<Result<Vec<_>, PortError>>()
            .map(Some)
    }

    async fn cert_pending(
        &self,
        at: &VaultCertificateRef,
    ) -> Result<Option<PendingOperation>, PortError> {
        let op = match self.certificates.operation(&at.vault, &at.name).await {
            Err(e) if e.kind() == &ErrorKind::NotFound => return Ok(None),
            other => other?,
        };
        Ok(match op.status {
            OperationStatus::Completed => None,
            OperationStatus::InProgress => Some(PendingOperation::InProgress { requested: None }),
            OperationStatus::Failed { status, details } => Some(PendingOperation::Failed {
                detail: format!("{status}: {details}"),
            }),
        })
    }

    async fn cert_exportable(&self, at: &VaultCertificateRef) -> Result<bool, PortError> {
        Ok(self
            .certificates
            .policy(&at.vault, &at.name)
            .await?
            .exportable)
    }

    async fn cert_create(
        &self,
        policy: &CertificateCredentialPolicy,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), PortError> {
        let at = &policy.certificate;
        self.certificates
            .create_tagged(&at.vault, &at.name, Some(&policy_of(policy)), tags)
            .await?;
        Ok(())
    }

    async fn cert_update_tags(
        &self,
        at: &VaultCertificateRef,
        version: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, PortError> {
        Ok(self
            .certificates
            .update_tags(&at.vault, &at.name, version, tags)
            .await?)
    }

    async fn key_credentials(&self, object_id: Uuid) -> Result<Vec<KeyCredentialInfo>, PortError> {
        Ok(self
            .keycreds
            .list(object_id)
            .await?
            .iter()
            .map(info)
            .collect())
    }

    async fn add_key(
        &self,
        object_id: Uuid,
        key: KeyToAdd<'_>,
        via: KeyWriteVia<'_>,
    ) -> Result<KeyAdded, PortError> {
        let cert = self.version(key.certificate, key.version).await?;
        let new = NewKeyCredential {
            key_id: Uuid::new_v4(),
            display_name: key.display_name,
            cer: cert.cer,
        };
        let result = match via {
            KeyWriteVia::Proof {
                certificate,
                signer,
            } => {
                let proof = self.proof(object_id, certificate, signer).await?;
                self.keycreds
                    .add_key(object_id, &new, &proof)
                    .await
                    .map(|k| k.key_id)
            }
            KeyWriteVia::Merge { keep } => {
                return self
                    .merge(object_id, std::slice::from_ref(&new), &[], keep)
                    .await
                    .map(|()| KeyAdded::Added(new.key_id));
            }
        };
        match result {
            Ok(id) => Ok(KeyAdded::Added(id)),
            Err(e) => match key_refusal(&e) {
                Some(r) => Ok(KeyAdded::Refused(r)),
                None => Err(e.into()),
            },
        }
    }

    async fn remove_key(
        &self,
        object_id: Uuid,
        key_id: Uuid,
        via: KeyWriteVia<'_>,
    ) -> Result<(), PortError> {
        match via {
            KeyWriteVia::Proof {
                certificate,
                signer,
            } => {
                let proof = self.proof(object_id, certificate, signer).await?;
                self.keycreds.remove_key(object_id, key_id, &proof).await?;
                Ok(())
            }
            KeyWriteVia::Merge { keep } => {
                let present = self.keycreds.list(object_id).await?;
                if present.iter().all(|k| k.key_id != key_id) {
                    return Ok(());
                }
                self.merge(object_id, &[], &[key_id], keep).await
            }
        }
    }

    async fn assertion_token(
        &self,
        tenant: &str,
        client_id: Uuid,
        at: &VaultCertificateRef,
        version: &str,
    ) -> Result<AssertionAnswer, PortError> {
        let cert = self.version(at, version).await?;
        let claims = assertion::assertion_claims(
            self.assertion.authority(),
            tenant,
            client_id,
            Utc::now(),
            Uuid::new_v4(),
        );
        let jwt =
            assertion::sign_jwt(&self.certificates, &cert, SignAlgorithm::Rs256, &claims).await?;
        let scope = self.cloud.graph_scope();
        match self
            .assertion
            .request_token(tenant, client_id, &jwt, &scope)
            .await
        {
            Ok(()) => Ok(AssertionAnswer::Accepted),
            Err(e) if is_key_not_replicated(&e) => Ok(AssertionAnswer::NotReplicated),
            Err(e) => match e.aadsts() {
                Some(code) => Ok(AssertionAnswer::Refused { code }),
                None => Err(e.into()),
            },
        }
    }
}
