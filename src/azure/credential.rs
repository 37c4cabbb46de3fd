//! The rotator's own credential, chosen by settings and always built on the shared transport.
//!
//! - In Azure Functions: the managed identity (system-assigned, or user-assigned when
//!   `AZURE_CLIENT_ID` is set). `azure_identity` reads `IDENTITY_ENDPOINT`/`IDENTITY_HEADER`
//!   from the process environment itself.
//! - A service principal (tenant, client id, secret): tests against the emulator, and operators
//!   running the CLI as a service principal.
//! - The developer's tools (Azure CLI, then Azure Developer CLI) on an operator's laptop.
//!
//! The cloud is set explicitly on every credential so `AZURE_AUTHORITY_HOST` in the environment
//! cannot redirect token requests.

use std::sync::Arc;

use azure_core::credentials::{Secret, TokenCredential};
use azure_identity::{
    ClientSecretCredential, ClientSecretCredentialOptions, DeveloperToolsCredential,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
};

use super::common::ServiceOptions;
use crate::cloud::Cloud;
use crate::secret::SecretValue;

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("could not build the {kind} credential: {message}")]
    Build { kind: &'static str, message: String },
    #[error("setting {0} is required for a service-principal credential")]
    MissingSetting(&'static str),
}

/// Which credential to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialChoice {
    /// `client_id`: a user-assigned identity's client id; `None` = system-assigned.
    ManagedIdentity {
        client_id: Option<String>,
    },
    ClientSecret {
        tenant_id: String,
        client_id: String,
        secret: SecretValue,
    },
    DeveloperTools,
}

impl CredentialChoice {
    /// Picks from settings (`get` is the injectable lookup):
    /// `AZURE_CLIENT_SECRET` set → service principal (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`
    /// required); else `IDENTITY_ENDPOINT` set (App Service / Functions) → managed identity with
    /// `AZURE_CLIENT_ID` as the user-assigned identity if set; else developer tools.
    pub fn from_settings(get: impl Fn(&str) -> Option<String>) -> Result<Self, CredentialError> {
        let non_empty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if let Some(secret) = non_empty("AZURE_CLIENT_SECRET") {
            return Ok(Self::ClientSecret {
                tenant_id: non_empty("AZURE_TENANT_ID")
                    .ok_or(CredentialError::MissingSetting("AZURE_TENANT_ID"))?,
                client_id: non_empty("AZURE_CLIENT_ID")
                    .ok_or(CredentialError::MissingSetting("AZURE_CLIENT_ID"))?,
                secret: SecretValue::new(secret),
            });
        }
        if non_empty("IDENTITY_ENDPOINT").is_some() {
            return Ok(Self::ManagedIdentity {
                client_id: non_empty("AZURE_CLIENT_ID"),
            });
        }
        Ok(Self::DeveloperTools)
    }
}

/// Builds the credential. Token requests go through `options.http` (the shared transport).
pub fn build_credential(
    cloud: Cloud,
    choice: &CredentialChoice,
    options: &ServiceOptions,
) -> Result<Arc<dyn TokenCredential>, CredentialError> {
    let mut client_options = options.sdk_client_options(cloud);
    // Token endpoints are retried by the SDK's own policy: our loop is not around these calls.
    client_options.retry = azure_core::http::RetryOptions::default();
    match choice {
        CredentialChoice::ManagedIdentity { client_id } => {
            let cred = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                client_options,
            }))
            .map_err(|e| CredentialError::Build {
                kind: "managed identity",
                message: e.to_string(),
            })?;
            Ok(cred)
        }
        CredentialChoice::ClientSecret {
            tenant_id,
            client_id,
            secret,
        } => {
            let cred = ClientSecretCredential::new(
                tenant_id,
                client_id.clone(),
                Secret::new(secret.expose().to_string()),
                Some(ClientSecretCredentialOptions { client_options }),
            )
            .map_err(|e| CredentialError::Build {
                kind: "client secret",
                message: e.to_string(),
            })?;
            Ok(cred)
        }
        CredentialChoice::DeveloperTools => {
            // The CLI tools fetch their own tokens; there is no transport to share.
            let cred = DeveloperToolsCredential::new(None).map_err(|e| CredentialError::Build {
                kind: "developer tools",
                message: e.to_string(),
            })?;
            Ok(cred)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn choice_follows_settings() {
        assert_eq!(
            CredentialChoice::from_settings(lookup(&[("IDENTITY_ENDPOINT", "http://x")])).unwrap(),
            CredentialChoice::ManagedIdentity { client_id: None }
        );
        assert_eq!(
            CredentialChoice::from_settings(lookup(&[
                ("IDENTITY_ENDPOINT", "http://x"),
                ("AZURE_CLIENT_ID", "c1")
            ]))
            .unwrap(),
            CredentialChoice::ManagedIdentity {
                client_id: Some("c1".into())
            }
        );
        assert_eq!(
            CredentialChoice::from_settings(lookup(&[])).unwrap(),
            CredentialChoice::DeveloperTools
        );
        let sp = CredentialChoice::from_settings(lookup(&[
            ("AZURE_CLIENT_SECRET", "s3cret-text"),
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
        ]))
        .unwrap();
        assert!(matches!(sp, CredentialChoice::ClientSecret { .. }));
        assert!(!format!("{sp:?}").contains("s3cret-text"));
        let err =
            CredentialChoice::from_settings(lookup(&[("AZURE_CLIENT_SECRET", "s")])).unwrap_err();
        assert!(err.to_string().contains("AZURE_TENANT_ID"));
    }
}
