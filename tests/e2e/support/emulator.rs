//! Test helper: the in-process Azure emulator plus everything a client needs to talk to it —
//! a transport that sends the real Azure host names to it and trusts only its CA, a fast retry
//! policy, and a client-secret credential of a scenario application.
//!
//! Include it with `#[path = "support/emulator.rs"] mod emulator;` (or `mod support;` with a
//! `support/mod.rs` that declares it).

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_emulator::{Emulator, EmulatorConfig, Scenario};
use secret_rotator::azure::credential::{CredentialChoice, build_credential};
use secret_rotator::azure::{RetryPolicy, ServiceOptions};
use secret_rotator::cloud::Cloud;
use secret_rotator::secret::SecretValue;
use secret_rotator::transport::{HostOverride, TransportConfig};

/// Production's retry policy (its attempts and its back-off's shape) on a faster clock: back-off
/// in milliseconds, so tests of retry paths never sleep for long; Retry-After up to 3 s is
/// honoured.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_secs(3),
        ..RetryPolicy::default()
    }
}

pub struct TestEmulator {
    pub emulator: Emulator,
}

impl TestEmulator {
    /// Starts the emulator on free loopback ports with `scenario` (JSON, camelCase).
    pub async fn start(scenario: serde_json::Value) -> Self {
        let scenario: Scenario =
            serde_json::from_value(scenario).expect("test scenario matches the scenario format");
        let emulator = azure_emulator::start(EmulatorConfig {
            scenario,
            ..Default::default()
        })
        .await
        .expect("emulator starts");
        Self { emulator }
    }

    /// Host overrides for every emulated Azure host, plus `extra` (e.g. Azurite's host).
    pub fn transport_config(&self, extra: &[(String, std::net::SocketAddr)]) -> TransportConfig {
        let overrides = self
            .emulator
            .host_overrides()
            .into_iter()
            .chain(extra.iter().cloned())
            .map(|(pattern, addr)| HostOverride { pattern, addr })
            .collect();
        TransportConfig {
            overrides,
            extra_ca_pem: Some(self.emulator.ca_pem().as_bytes().to_vec()),
            timeout: Some(Duration::from_secs(20)),
        }
    }

    pub fn http(&self) -> reqwest::Client {
        self.transport_config(&[])
            .build()
            .expect("transport builds")
    }

    pub fn options(&self) -> ServiceOptions {
        ServiceOptions::new(self.http()).with_retry(fast_retry())
    }

    /// A credential for a scenario application, built exactly as production builds one.
    pub fn app_credential(&self, app_display_name: &str, secret: &str) -> Arc<dyn TokenCredential> {
        self.app_credential_with(app_display_name, secret, &self.options())
    }

    pub fn app_credential_with(
        &self,
        app_display_name: &str,
        secret: &str,
        options: &ServiceOptions,
    ) -> Arc<dyn TokenCredential> {
        let app_id = self
            .emulator
            .control()
            .app_id_by_name(app_display_name)
            .unwrap_or_else(|| panic!("scenario has an application named {app_display_name}"));
        build_credential(
            Cloud::Public,
            &CredentialChoice::ClientSecret {
                tenant_id: self.emulator.tenant_id().to_string(),
                client_id: app_id.to_string(),
                secret: SecretValue::new(secret),
            },
            options,
        )
        .expect("credential builds")
    }

    pub fn tenant(&self) -> String {
        self.emulator.tenant_id().to_string()
    }
}
