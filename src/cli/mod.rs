//! The operator's commands (`plan`, `rotate`, `report`, `diagnose`), as library code so tests
//! and `main.rs` share it. `main.rs` only parses arguments and maps results to exit codes.
//!
//! Where things live: [`Connection`] (this file) builds everything a command needs from the same
//! [`Settings`] the Functions host uses — the engine, a Graph client and an App Service client,
//! all on the settings' transport (so ROTATOR_RESOLVE / ROTATOR_CA_FILE redirect them to an
//! emulator) and on the operator's credential (a service principal from AZURE_CLIENT_SECRET, else
//! the managed identity when IDENTITY_ENDPOINT is set, else the developer's Azure CLI / azd
//! login). [`run`] holds `plan` and `rotate`, [`report`] the inventory, [`diagnose`] the AADSTS
//! error explainer. Output goes to any `Write` so tests can capture it; no command ever prints a
//! secret value (the engine's reports and Graph's lists carry none).

pub mod diagnose;
pub mod report;
pub mod run;

use std::path::PathBuf;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;

use crate::azure::ServiceOptions;
use crate::azure::credential::{CredentialChoice, build_credential};
use crate::azure::graph::{GraphClient, WriteLimiter};
use crate::azure::keycredentials::KeyCredentialsClient;
use crate::azure::web::WebClient;
use crate::cloud::Cloud;
use crate::compose::{Composed, EngineError, EngineParts, compose, load_policy};
use crate::engine::Engine;
use crate::policy::Policy;
use crate::settings::{Settings, SettingsError};

/// Everything a command can fail with before or instead of producing its report.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Azure(#[from] crate::azure::Error),
    #[error("inventory scan: {0}")]
    Inventory(crate::engine::ports::PortError),
    #[error("the policy has no credential named '{name}' (it has: {known})")]
    UnknownCredential { name: String, known: String },
    #[error(
        "no AADSTS error code in the text given; paste the whole error line, e.g. \"AADSTS7000222: The provided client secret keys for app '…' are expired\""
    )]
    NoAadstsCode,
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Loads settings from `env`, with `policy` (from `--policy FILE`) taking the place of
/// ROTATOR_POLICY_PATH. FUNCTIONS_CUSTOMHANDLER_PORT is not needed by any CLI command.
pub fn load_settings(
    env: &dyn Fn(&str) -> Option<String>,
    policy: Option<&PathBuf>,
) -> Result<Settings, SettingsError> {
    let policy = policy.map(|p| p.display().to_string());
    Settings::from_lookup(&|name| {
        if name == "ROTATOR_POLICY_PATH"
            && let Some(p) = &policy
        {
            return Some(p.clone());
        }
        env(name)
    })
}

/// The engine and the clients a command needs, built once from settings.
pub struct Connection {
    pub settings: Settings,
    pub cloud: Cloud,
    pub engine: Arc<Engine>,
    pub graph: GraphClient,
    pub web: WebClient,
    /// Graph keyCredentials, read by `diagnose` for the certificate codes (reads only: its own
    /// write limiter is never used).
    pub keys: KeyCredentialsClient,
    pub credential: Arc<dyn TokenCredential>,
}

impl Connection {
    /// Builds from settings; `env` is the lookup the credential choice reads (the process
    /// environment in `main`).
    pub fn open(
        settings: Settings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, CliError> {
        let policy = load_policy(&settings)?;
        let http = settings.transport.build().map_err(EngineError::Transport)?;
        let options = ServiceOptions::new(http);
        let choice = CredentialChoice::from_settings(env)?;
        let credential = build_credential(settings.cloud, &choice, &options)?;
        let keys = KeyCredentialsClient::new(
            settings.cloud,
            credential.clone(),
            options.clone(),
            Arc::new(WriteLimiter::default()),
        );
        let parts = EngineParts::from_settings(&settings, policy, credential.clone(), options)?;
        let Composed { engine, clients } = compose(parts)?;
        let graph = clients.graph.clone();
        let web = clients.web.clone();
        Ok(Self {
            cloud: settings.cloud,
            settings,
            engine,
            graph,
            web,
            keys,
            credential,
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.engine.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_flag_replaces_the_setting() {
        let env = |k: &str| match k {
            "AZURE_TENANT_ID" => Some("d10c2e35-390b-4343-9fb3-36524a35717c".to_string()),
            "ROTATOR_POLICY_PATH" => Some("from-env.json".to_string()),
            "AzureWebJobsStorage__accountName" => Some("strotator".to_string()),
            _ => None,
        };
        let s = load_settings(&env, None).unwrap();
        assert_eq!(s.policy_path, PathBuf::from("from-env.json"));
        let s = load_settings(&env, Some(&PathBuf::from("/tmp/p.json"))).unwrap();
        assert_eq!(s.policy_path, PathBuf::from("/tmp/p.json"));
        assert!(s.customhandler_port.is_none());
    }
}
