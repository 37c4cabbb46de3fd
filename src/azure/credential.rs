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
//!
//! [`identity_from_jwt`] reads who a credential signs in as (`oid`, `roles`: a core
//! [`TokenIdentity`]) from one of its access tokens: the inventory decides from it whether every
//! application or only the owned ones can be listed.

use std::sync::Arc;

use azure_core::credentials::{Secret, TokenCredential};
use azure_identity::{
    ClientSecretCredential, ClientSecretCredentialOptions, DeveloperToolsCredential,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
};
use base64::Engine as _;

use super::common::ServiceOptions;
use super::error::{Error, ErrorKind, Service};
use crate::cloud::Cloud;
use crate::domain::TokenIdentity;
use crate::secret::SecretValue;

const BUILD: &str = "build";

fn missing(setting: &str) -> Error {
    Error::invalid_input(
        Service::Identity,
        BUILD,
        format!("setting {setting} is required for a service-principal credential"),
    )
}

fn build_failed(kind: &'static str) -> impl Fn(azure_core::Error) -> Error {
    move |e| {
        Error::new(ErrorKind::Credential, Service::Identity, BUILD)
            .on(format!("the {kind} credential"))
            .with_detail(e.to_string())
    }
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
    pub fn from_settings(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let non_empty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if let Some(secret) = non_empty("AZURE_CLIENT_SECRET") {
            return Ok(Self::ClientSecret {
                tenant_id: non_empty("AZURE_TENANT_ID")
                    .ok_or_else(|| missing("AZURE_TENANT_ID"))?,
                client_id: non_empty("AZURE_CLIENT_ID")
                    .ok_or_else(|| missing("AZURE_CLIENT_ID"))?,
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
///
/// One SDK credential object per scope ([`PerScope`]): the first tokens of different
/// resources are fetched together, each resource's still once.
pub fn build_credential(
    cloud: Cloud,
    choice: &CredentialChoice,
    options: &ServiceOptions,
) -> Result<Arc<dyn TokenCredential>, Error> {
    // Built once here so a bad setting is an error now, not at the first token request.
    let first = build_one(cloud, choice, options)?;
    let (choice, options) = (choice.clone(), options.clone());
    Ok(Arc::new(PerScope {
        spare: std::sync::Mutex::new(Some(first)),
        build: Box::new(move || build_one(cloud, &choice, &options)),
        by_scopes: Default::default(),
    }))
}

/// The SDK credential, one per scope. `azure_identity`'s token cache holds its write lock
/// while it fetches a missing token, whatever the scope (azure_identity 1.0, `cache.rs`,
/// `TokenCache::get_token`), so through one object a process's first Storage, Graph, ARM and
/// Key Vault tokens went out one after another. With an object (and so a cache) per scope
/// they go out together, and concurrent asks for one scope still fetch it once (they wait on
/// that scope's lock and find the token cached).
struct PerScope {
    /// The object built (and so checked) by [`build_credential`], for the first scope asked.
    spare: std::sync::Mutex<Option<Arc<dyn TokenCredential>>>,
    build: Box<dyn Fn() -> Result<Arc<dyn TokenCredential>, Error> + Send + Sync>,
    by_scopes: std::sync::Mutex<std::collections::HashMap<Vec<String>, Arc<dyn TokenCredential>>>,
}

impl std::fmt::Debug for PerScope {
    /// Never the settings: they may hold the client secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerScope").finish_non_exhaustive()
    }
}

impl PerScope {
    fn for_scopes(&self, scopes: &[&str]) -> azure_core::Result<Arc<dyn TokenCredential>> {
        let key: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let mut map = self.by_scopes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner()).take();
        let cred = match spare {
            Some(c) => c,
            None => (self.build)().map_err(|e| {
                azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    e.to_string(),
                )
            })?,
        };
        map.insert(key, cred.clone());
        Ok(cred)
    }
}

#[async_trait::async_trait]
impl TokenCredential for PerScope {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        self.for_scopes(scopes)?.get_token(scopes, options).await
    }
}

/// One SDK credential object of the chosen kind.
fn build_one(
    cloud: Cloud,
    choice: &CredentialChoice,
    options: &ServiceOptions,
) -> Result<Arc<dyn TokenCredential>, Error> {
    let mut client_options = options.sdk_client_options(cloud);
    // Token endpoints are retried by the SDK's own policy: our loop is not around these calls.
    client_options.retry = azure_core::http::RetryOptions::default();
    match choice {
        CredentialChoice::ManagedIdentity { client_id } => {
            let cred = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                client_options,
            }))
            .map_err(build_failed("managed identity"))?;
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
            .map_err(build_failed("client secret"))?;
            Ok(cred)
        }
        CredentialChoice::DeveloperTools => {
            // The CLI tools fetch their own tokens; there is no transport to share.
            let cred =
                DeveloperToolsCredential::new(None).map_err(build_failed("developer tools"))?;
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

/// Who a token says the caller is (`oid`, `roles`), read from the JWT's payload; the token
/// itself is never printed, and only these claims are read.
pub fn identity_from_jwt(jwt: &str) -> Result<TokenIdentity, String> {
    let payload = jwt
        .split('.')
        .nth(1)
        .ok_or("the access token is not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| "the access token's payload is not base64url".to_string())?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|_| "the access token's payload is not JSON".to_string())?;
    let object_id = claims
        .get("oid")
        .and_then(|v| v.as_str())
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
        .ok_or("the access token has no 'oid' claim")?;
    let roles = claims.get("roles").and_then(|r| r.as_array()).map(|a| {
        a.iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    });
    // A user's token has `scp` and no `roles`; an app token without roles has neither.
    let roles = match (roles, claims.get("scp")) {
        (Some(r), _) => Some(r),
        (None, Some(_)) => None,
        (None, None) => Some(Vec::new()),
    };
    Ok(TokenIdentity { object_id, roles })
}

#[cfg(test)]
mod token_identity_tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        let enc = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.sig",
            enc(br#"{"alg":"RS256"}"#),
            enc(claims.to_string().as_bytes())
        )
    }

    #[test]
    fn token_identity_reads_oid_and_roles() {
        let oid = "5a1f0c4e-2b7d-4c1e-9f3a-0d8e6b2c4a11";
        let t = identity_from_jwt(&jwt(
            serde_json::json!({"oid": oid, "roles": ["Application.ReadWrite.OwnedBy"]}),
        ))
        .unwrap();
        assert_eq!(t.object_id.to_string(), oid);
        assert!(!t.can_read_all_applications());
        let t = identity_from_jwt(&jwt(
            serde_json::json!({"oid": oid, "roles": ["Application.Read.All"]}),
        ))
        .unwrap();
        assert!(t.can_read_all_applications());
        let user =
            identity_from_jwt(&jwt(serde_json::json!({"oid": oid, "scp": "User.Read"}))).unwrap();
        assert_eq!(user.roles, None);
        assert!(user.can_read_all_applications());
        let bare = identity_from_jwt(&jwt(serde_json::json!({"oid": oid}))).unwrap();
        assert!(!bare.can_read_all_applications());
    }

    #[test]
    fn malformed_tokens_are_named_errors() {
        assert!(identity_from_jwt("opaque").is_err());
        assert!(identity_from_jwt("a.!!!.c").is_err());
        assert!(
            identity_from_jwt(&jwt(serde_json::json!({"sub": "x"})))
                .unwrap_err()
                .contains("oid")
        );
    }
}

#[cfg(test)]
mod per_scope_tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use azure_core::credentials::{AccessToken, TokenRequestOptions};
    use tokio::sync::{Barrier, Mutex};

    /// Like `azure_identity`'s credentials: one lock held across a fetch, whatever the scope.
    /// A fetch returns only once `meet` fetches are in flight at the same time.
    #[derive(Debug)]
    struct OneLock {
        cache: Mutex<()>,
        meet: Arc<Barrier>,
    }

    #[async_trait::async_trait]
    impl TokenCredential for OneLock {
        async fn get_token(
            &self,
            scopes: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            let _held = self.cache.lock().await;
            self.meet.wait().await;
            Ok(AccessToken::new(
                Secret::new(format!("token for {}", scopes.join(" "))),
                azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
            ))
        }
    }

    fn per_scope(meet: usize) -> (PerScope, Arc<AtomicUsize>) {
        let built = Arc::new(AtomicUsize::new(0));
        let counter = built.clone();
        let meet = Arc::new(Barrier::new(meet));
        let build = move || -> Result<Arc<dyn TokenCredential>, Error> {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(Arc::new(OneLock {
                cache: Mutex::new(()),
                meet: meet.clone(),
            }))
        };
        let creds = PerScope {
            spare: std::sync::Mutex::new(None),
            build: Box::new(build),
            by_scopes: Default::default(),
        };
        (creds, built)
    }

    #[tokio::test]
    async fn different_scopes_are_fetched_together_and_one_scope_by_one_object() {
        // Three resources' first tokens must all be in flight at once; through one object
        // (one lock) the second would wait for the first, which waits for the third: stuck.
        let (creds, built) = per_scope(3);
        let ask = |scope: &'static str| {
            let creds = &creds;
            async move { creds.get_token(&[scope], None).await }
        };
        let together = futures::future::join3(
            ask("https://graph.microsoft.com/.default"),
            ask("https://vault.azure.net/.default"),
            ask("https://management.azure.com/.default"),
        );
        let (g, k, a) = tokio::time::timeout(Duration::from_secs(10), together)
            .await
            .expect("the three scopes' fetches did not run together");
        for (t, scope) in [(g, "graph"), (k, "vault"), (a, "management")] {
            assert!(t.expect("token").token.secret().contains(scope));
        }
        assert_eq!(built.load(Ordering::SeqCst), 3, "one object per scope");
        let (creds, built) = per_scope(1);
        for _ in 0..3 {
            creds
                .get_token(&["https://vault.azure.net/.default"], None)
                .await
                .expect("token");
        }
        assert_eq!(
            built.load(Ordering::SeqCst),
            1,
            "the same scope, the same object"
        );
    }

    #[test]
    fn its_debug_shows_no_setting() {
        let choice = CredentialChoice::ClientSecret {
            tenant_id: "t".into(),
            client_id: "c".into(),
            secret: SecretValue::new("s3cret-text".to_string()),
        };
        let options = ServiceOptions::new(reqwest::Client::new());
        let cred = build_credential(Cloud::Public, &choice, &options).expect("builds");
        assert!(!format!("{cred:?}").contains("s3cret-text"));
    }
}
