//! The official Rust `ManagedIdentityCredential` (App Service form) against the emulator's MI
//! endpoint, then Key Vault with that credential. Its own test binary with a single test,
//! because the credential reads IDENTITY_ENDPOINT / IDENTITY_HEADER from the process
//! environment, which must be set before any other thread runs.

// The shared harness; this binary uses only part of it.
#[allow(dead_code)]
#[path = "api/support.rs"]
mod common;

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, Transport};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use common::*;

#[test]
fn official_managed_identity_credential_works_unchanged() {
    // A current-thread runtime: no worker threads exist while the environment is changed.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let h = rt.block_on(start());
    // SAFETY: this test binary has exactly one test and the current-thread runtime spawned no
    // other threads, so nothing reads the environment concurrently.
    unsafe {
        std::env::set_var("IDENTITY_ENDPOINT", h.emu.msi_endpoint());
        std::env::set_var("IDENTITY_HEADER", h.emu.identity_header("site-mi").unwrap());
    }
    rt.block_on(async {
        let opts = ClientOptions {
            transport: Some(Transport::new(Arc::new(h.c.clone()))),
            ..Default::default()
        };
        let cred = azure_identity::ManagedIdentityCredential::new(Some(
            azure_identity::ManagedIdentityCredentialOptions {
                client_options: opts.clone(),
                ..Default::default()
            },
        ))
        .unwrap();
        let tok = cred
            .get_token(&["https://vault.azure.net/.default"], None)
            .await
            .unwrap();
        assert!(tok.token.secret().split('.').count() == 3);
        let client = SecretClient::new(
            "https://kv1.vault.azure.net",
            cred,
            Some(SecretClientOptions {
                client_options: opts,
                ..Default::default()
            }),
        )
        .unwrap();
        let s = client
            .get_secret("payments-secret", None)
            .await
            .unwrap()
            .into_model()
            .unwrap();
        assert_eq!(s.value.as_deref(), Some("pay-secret-1"));
        // site-mi is only Secrets User: the SDK surfaces the 403.
        let params = azure_security_keyvault_secrets::models::SetSecretParameters {
            value: Some("x".into()),
            ..Default::default()
        };
        let err = client
            .set_secret("payments-secret", params.try_into().unwrap(), None)
            .await
            .unwrap_err();
        assert!(
            format!("{err:?}").contains("403") || format!("{err:?}").contains("Forbidden"),
            "{err:?}"
        );
    });
}
