//! The Azure clients against the in-process emulator (Graph, Entra, Key Vault, ARM) and a
//! private Azurite (Blob storage), each over HTTPS with the real Azure host names redirected at
//! the transport. Every call has a success and its typed errors; throttling and faults come
//! from the emulator's fault rules.

use crate::support::azurite;
use crate::support::emulator;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use azure_emulator::{FaultAction, FaultRule};
use chrono::Utc;
use secret_rotator::azure::automation::AutomationClient;
use secret_rotator::azure::connections::{ConnectionHealth, ConnectionsClient};
use secret_rotator::azure::entra::TokenProbe;
use secret_rotator::azure::graph::{GraphClient, RemoveOutcome, WriteLimiter};
use secret_rotator::azure::keyvault::{KeyVaultClient, VersionUpdate};
use secret_rotator::azure::storage::{StorageClient, blob_endpoint};
use secret_rotator::azure::web::{ResolveStatus, SetOutcome, SettingValue, WebClient};
use secret_rotator::azure::{Error, ErrorKind, RetryPolicy, Service, ServiceOptions};
use secret_rotator::cloud::Cloud;
use secret_rotator::domain::SetVariableOutcome;
use secret_rotator::engine::ports::PortError;
use secret_rotator::policy::model::{AppRef, ArmResource, VaultSecretRef};
use secret_rotator::secret::SecretValue;
use serde_json::json;
use uuid::Uuid;

use emulator::TestEmulator;

/// The error of a call that must fail (its success is the test's failure).
fn err<T: std::fmt::Debug>(r: Result<T, Error>) -> Error {
    r.expect_err("the call must fail")
}

/// The kind of a call's error.
fn kind<T: std::fmt::Debug>(r: Result<T, Error>) -> ErrorKind {
    err(r).kind().clone()
}

const SUB: &str = "5b3c1f1e-0a4d-4c39-9d6e-2f51e0c7a001";
const TENANT: &str = "7c1e2d3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
const PAYMENTS_APP: &str = "11111111-2222-3333-4444-555555555555";
const ROTATOR_SP: &str = "0b2e0000-1111-4222-8333-944445555666";
const ROTATOR_SECRET: &str = "Rot8Q~rotator-secret-0123456789";
const PAYMENTS_SECRET: &str = "Pay8Q~payments-secret-0123456789";
const EXPIRED_SECRET: &str = "Exp8Q~expired-secret-0123456789";
const READER_SECRET: &str = "Rea8Q~reader-secret-0123456789";

fn scenario() -> serde_json::Value {
    let far = "2099-01-01T00:00:00Z";
    json!({
        "subscriptionId": SUB,
        "tenantId": TENANT,
        "applications": [
            {"displayName": "rotator", "servicePrincipalId": ROTATOR_SP, "graphAppRoles": ["Application.ReadWrite.OwnedBy"],
             "passwordCredentials": [{"secretText": ROTATOR_SECRET, "endDateTime": far}]},
            {"displayName": "reader", "graphAppRoles": ["Application.Read.All"],
             "passwordCredentials": [{"secretText": READER_SECRET, "endDateTime": far}]},
            {"displayName": "payments-api", "appId": PAYMENTS_APP, "owners": ["rotator"],
             "passwordCredentials": [
                {"secretText": PAYMENTS_SECRET, "displayName": "initial", "endDateTime": far},
                {"secretText": EXPIRED_SECRET, "displayName": "old", "startDateTime": "2020-01-01T00:00:00Z", "endDateTime": "2021-01-01T00:00:00Z"}
             ]},
            {"displayName": "billing-api", "owners": ["rotator"]},
            {"displayName": "not-mine"}
        ],
        "managedIdentities": [{"name": "func-a-mi"}],
        "vaults": [
            {"name": "kv-apps", "resourceGroup": "rg-sec", "secrets": [
                {"name": "payments-secret", "versions": [
                    {"value": "first-value", "tags": {"n": "1"}},
                    {"value": PAYMENTS_SECRET, "tags": {"n": "2"}, "contentType": "text/plain"}
                ]}
            ]},
            {"name": "kv-locked", "resourceGroup": "rg-sec", "secrets": [
                {"name": "s", "versions": [{"value": "v"}]}
            ]}
        ],
        "roleAssignments": [
            {"principal": "rotator", "role": "Key Vault Secrets Officer",
             "scope": "/subscriptions/{sub}/resourceGroups/rg-sec/providers/Microsoft.KeyVault/vaults/kv-apps"},
            {"principal": "func-a-mi", "role": "Key Vault Secrets User",
             "scope": "/subscriptions/{sub}/resourceGroups/rg-sec/providers/Microsoft.KeyVault/vaults/kv-apps"},
            {"principal": "rotator", "role": "Website Contributor",
             "scope": "/subscriptions/{sub}/resourceGroups/rg-apps/providers/Microsoft.Web/sites/func-a"},
            {"principal": "rotator", "role": "Logic App Contributor",
             "scope": "/subscriptions/{sub}/resourceGroups/rg-apps/providers/Microsoft.Web/connections/kv-conn"},
            {"principal": "rotator", "role": "Logic App Contributor",
             "scope": "/subscriptions/{sub}/resourceGroups/rg-conn"},
            {"principal": "rotator", "role": "Website Contributor",
             "scope": "/subscriptions/{sub}/resourceGroups/rg-other"},
            {"principal": "rotator", "role": "Automation Contributor",
             "scope": "/subscriptions/{sub}/resourceGroups/rg-apps/providers/Microsoft.Automation/automationAccounts/aa-ops"}
        ],
        "sites": [
            {"resourceGroup": "rg-apps", "name": "func-a", "identity": "func-a-mi", "appSettings": {
                "FUNCTIONS_EXTENSION_VERSION": "~4",
                "PLAIN_SECRET": "old-plain-value",
                "PAYMENTS_SECRET": "@Microsoft.KeyVault(VaultName=kv-apps;SecretName=payments-secret)"
            }},
            {"resourceGroup": "rg-apps", "name": "func-b", "appSettings": {"X": "y"}}
        ],
        "connections": [
            {"resourceGroup": "rg-apps", "name": "kv-conn", "parameterValues": {
                "token:clientId": PAYMENTS_APP,
                "token:clientSecret": PAYMENTS_SECRET,
                "token:TenantId": TENANT,
                "token:grantType": "client_credentials"
            }}
        ],
        "automationAccounts": [
            {"resourceGroup": "rg-apps", "name": "aa-ops", "variables": [
                {"name": "PaymentsSecret", "value": "\"old\"", "isEncrypted": true}
            ]}
        ]
    })
}

async fn start() -> TestEmulator {
    TestEmulator::start(scenario()).await
}

fn graph(emu: &TestEmulator, options: ServiceOptions) -> GraphClient {
    let cred = emu.app_credential("rotator", ROTATOR_SECRET);
    GraphClient::new(
        Cloud::Public,
        cred,
        options,
        std::sync::Arc::new(WriteLimiter::default()),
    )
}

fn arm(name: &str) -> ArmResource {
    ArmResource {
        subscription: SUB.into(),
        resource_group: "rg-apps".into(),
        name: name.into(),
        slot: None,
    }
}

fn fault(service: &str, operation: &str, action: FaultAction, nth: Option<u64>) -> FaultRule {
    FaultRule {
        service: service.into(),
        operation: Some(operation.into()),
        nth,
        times: None,
        probability: None,
        seed: None,
        action,
    }
}

fn status_action(status: u16, retry_after: Option<u64>) -> FaultAction {
    FaultAction::Status {
        status,
        retry_after,
    }
}

fn count(emu: &TestEmulator, service: &str, operation: &str) -> usize {
    emu.emulator
        .control()
        .requests()
        .iter()
        .filter(|r| r.service == service && r.operation.as_deref() == Some(operation))
        .count()
}

// ---------------- Graph ----------------

#[tokio::test]
async fn graph_reads_adds_and_removes_passwords() {
    let emu = start().await;
    let g = graph(&emu, emu.options());
    let app_id = emu
        .emulator
        .control()
        .app_id_by_name("payments-api")
        .unwrap();

    let by_app_id = g.get_application(&AppRef::AppId(app_id)).await.unwrap();
    assert_eq!(by_app_id.display_name, "payments-api");
    assert_eq!(by_app_id.passwords.len(), 2);
    let by_object = g
        .get_application(&AppRef::ObjectId(by_app_id.object_id))
        .await
        .unwrap();
    assert_eq!(by_object, by_app_id);

    let end = Utc::now() + chrono::Duration::days(90);
    let (info, secret) = g
        .add_password(
            by_app_id.object_id,
            "secret-rotator:payments:2026-11-22",
            end,
        )
        .await
        .unwrap();
    assert_eq!(
        info.display_name.as_deref(),
        Some("secret-rotator:payments:2026-11-22")
    );
    assert_eq!(info.hint.as_deref(), Some(secret.hint().as_str()));
    assert_eq!(
        emu.emulator
            .control()
            .check_client_secret(app_id, secret.expose()),
        Ok(())
    );

    assert_eq!(
        g.remove_password(by_app_id.object_id, info.key_id)
            .await
            .unwrap(),
        RemoveOutcome::Removed
    );
    assert_eq!(
        g.remove_password(by_app_id.object_id, info.key_id)
            .await
            .unwrap(),
        RemoveOutcome::AlreadyGone,
        "a keyId already gone is reported as such"
    );
    let after = g.get_application(&AppRef::AppId(app_id)).await.unwrap();
    assert!(after.passwords.iter().all(|p| p.key_id != info.key_id));
}

#[tokio::test]
async fn graph_typed_errors() {
    let emu = start().await;
    let g = graph(&emu, emu.options());
    let not_mine = emu.emulator.control().app_id_by_name("not-mine").unwrap();
    let e = err(g.get_application(&AppRef::AppId(not_mine)).await);
    assert_eq!(
        (e.kind(), e.status(), e.code(), e.service()),
        (
            &ErrorKind::AccessDenied,
            Some(403),
            Some("Authorization_RequestDenied"),
            Service::Graph
        )
    );
    // It reads as the old per-client error did (service, operation, what it acted on, status,
    // Azure's code and message), as the client returns it and as the engine's port carries it.
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!(
            "Graph get application on application with appId {not_mine}: access denied \
             (HTTP 403, Authorization_RequestDenied): "
        )),
        "{shown}"
    );
    assert!(shown.len() > 120, "Azure's message is kept: {shown}");
    match PortError::from(e) {
        PortError::AccessDenied(text) => assert_eq!(text, shown),
        other => panic!("expected AccessDenied, got {other:?}"),
    }
    let e = err(g.get_application(&AppRef::AppId(Uuid::new_v4())).await);
    assert_eq!(e.kind(), &ErrorKind::NotFound);
    assert!(e.target().unwrap().contains("appId"), "{e}");
    let unknown_object = Uuid::new_v4();
    assert_eq!(
        kind(g.remove_password(unknown_object, Uuid::new_v4()).await),
        ErrorKind::NotFound
    );
    // A credential whose secret is wrong cannot get a Graph token at all.
    let bad = GraphClient::new(
        Cloud::Public,
        emu.app_credential("rotator", "wrong-secret"),
        emu.options(),
        std::sync::Arc::new(WriteLimiter::default()),
    );
    assert_eq!(
        kind(bad.get_application(&AppRef::AppId(not_mine)).await),
        ErrorKind::Credential
    );
}

#[tokio::test]
async fn graph_lifetime_policy_is_its_own_error() {
    let mut s = scenario();
    s["maxPasswordLifetimeDays"] = json!(90);
    let emu = TestEmulator::start(s).await;
    let g = graph(&emu, emu.options());
    let app = g
        .get_application(&AppRef::AppId(
            emu.emulator
                .control()
                .app_id_by_name("payments-api")
                .unwrap(),
        ))
        .await
        .unwrap();
    let too_long = Utc::now() + chrono::Duration::days(200);
    assert_eq!(
        kind(g.add_password(app.object_id, "x", too_long).await),
        ErrorKind::LifetimePolicy {
            policy_id: Some("00000000-0000-0000-0000-000000000000".into())
        }
    );
    assert!(
        g.add_password(app.object_id, "x", Utc::now() + chrono::Duration::days(60))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn graph_429_then_success_honours_retry_after() {
    let emu = start().await;
    let g = graph(&emu, emu.options());
    let app_id = emu
        .emulator
        .control()
        .app_id_by_name("payments-api")
        .unwrap();
    emu.emulator.control().add_fault(fault(
        "graph",
        "getApplication",
        status_action(429, Some(1)),
        Some(1),
    ));
    let t0 = Instant::now();
    let app = g.get_application(&AppRef::AppId(app_id)).await.unwrap();
    assert_eq!(app.display_name, "payments-api");
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        t0.elapsed()
    );
    assert_eq!(count(&emu, "graph", "getApplication"), 2);
}

#[tokio::test]
async fn graph_retry_after_beyond_the_cap_returns_throttled_at_once() {
    let emu = start().await;
    let opts = ServiceOptions::new(emu.http()).with_retry(RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(500),
    });
    let g = graph(&emu, opts);
    let app_id = emu
        .emulator
        .control()
        .app_id_by_name("payments-api")
        .unwrap();
    emu.emulator.control().add_fault(fault(
        "graph",
        "getApplication",
        status_action(429, Some(30)),
        None,
    ));
    let e = err(g.get_application(&AppRef::AppId(app_id)).await);
    assert_eq!(
        (e.kind(), e.attempts()),
        (
            &ErrorKind::Throttled {
                retry_after: Some(Duration::from_secs(30))
            },
            1
        ),
        "Throttled after one attempt"
    );
}

#[tokio::test]
async fn graph_server_errors_are_retried_then_transient_and_writes_are_not_repeated() {
    let emu = start().await;
    let g = graph(&emu, emu.options());
    let app_id = emu
        .emulator
        .control()
        .app_id_by_name("payments-api")
        .unwrap();
    let app = g.get_application(&AppRef::AppId(app_id)).await.unwrap();
    emu.emulator.control().add_fault(fault(
        "graph",
        "getApplication",
        status_action(503, None),
        None,
    ));
    assert_eq!(
        kind(g.get_application(&AppRef::AppId(app_id)).await),
        ErrorKind::Transient
    );
    assert_eq!(
        count(&emu, "graph", "getApplication"),
        1 + emulator::fast_retry().max_attempts as usize,
        "retried up to max_attempts"
    );
    emu.emulator.control().clear_faults();

    // addPassword whose outcome is unknown (committed, then 500) is not sent again: the
    // executor finds the orphan by its marker instead of getting two new passwords.
    let commit_then_fail = FaultAction::CommitThenFail { status: 500 };
    emu.emulator
        .control()
        .add_fault(fault("graph", "addPassword", commit_then_fail, Some(1)));
    let before = emu.emulator.control().passwords(app_id).len();
    let r = g
        .add_password(
            app.object_id,
            "secret-rotator:x",
            Utc::now() + chrono::Duration::days(30),
        )
        .await;
    assert_eq!(kind(r), ErrorKind::Transient);
    assert_eq!(count(&emu, "graph", "addPassword"), 1);
    assert_eq!(emu.emulator.control().passwords(app_id).len(), before + 1);
}

#[tokio::test]
async fn graph_dropped_connection_is_retried() {
    let emu = start().await;
    let g = graph(&emu, emu.options());
    let app_id = Uuid::parse_str(PAYMENTS_APP).unwrap();
    g.get_application(&AppRef::AppId(app_id)).await.unwrap();
    emu.emulator.control().add_fault(fault(
        "graph",
        "getApplication",
        FaultAction::Reset,
        Some(1),
    ));
    assert!(g.get_application(&AppRef::AppId(app_id)).await.is_ok());
    emu.emulator
        .control()
        .add_fault(fault("graph", "getApplication", FaultAction::Reset, None));
    assert_eq!(
        kind(g.get_application(&AppRef::AppId(app_id)).await),
        ErrorKind::Transient
    );
}

#[tokio::test]
async fn graph_lists_owned_and_all_applications_page_by_page() {
    let emu = start().await;
    let g = graph(&emu, emu.options());
    let rotator_app = emu.emulator.control().app_id_by_name("rotator").unwrap();
    let reader = GraphClient::new(
        Cloud::Public,
        emu.app_credential("reader", READER_SECRET),
        emu.options(),
        std::sync::Arc::new(WriteLimiter::default()),
    );
    let sp_id = Uuid::parse_str(ROTATOR_SP).unwrap();
    let mut owned = g.owned_applications(sp_id);
    let mut names = Vec::new();
    while let Some(page) = owned.next_page().await.unwrap() {
        names.extend(page.into_iter().map(|a| a.display_name));
    }
    names.sort();
    assert_eq!(names, vec!["billing-api", "payments-api"]);

    let mut all = reader.list_applications(None, 2);
    let (mut pages, mut total) = (0, 0);
    while let Some(page) = all.next_page().await.unwrap() {
        assert!(page.len() <= 2);
        pages += 1;
        total += page.len();
    }
    assert_eq!(total, 5);
    assert!(pages >= 3, "5 apps at 2 per page take 3 pages, got {pages}");

    let filter = format!("appId eq '{rotator_app}'");
    let mut one = reader.list_applications(Some(&filter), 100);
    let page = one.next_page().await.unwrap().unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].display_name, "rotator");
}

// ---------------- Entra token probe ----------------

#[tokio::test]
async fn token_probe_reports_aadsts_codes() {
    let emu = start().await;
    let probe = TokenProbe::new(Cloud::Public, emu.options());
    let tenant = emu.tenant();
    let payments = emu
        .emulator
        .control()
        .app_id_by_name("payments-api")
        .unwrap()
        .to_string();
    let scope = Cloud::Public.graph_scope();
    probe
        .request_token(
            &tenant,
            &payments,
            &SecretValue::new(PAYMENTS_SECRET),
            &scope,
        )
        .await
        .unwrap();

    let code_of = |r: Result<(), Error>| err(r).aadsts().expect("an AADSTS refusal");
    let wrong = SecretValue::new("Wrong8Q~not-the-secret-at-all");
    let r = probe
        .request_token(&tenant, &payments, &wrong, &scope)
        .await;
    let shown = format!("{:?} {}", r, r.as_ref().unwrap_err());
    assert!(!shown.contains("not-the-secret-at-all"), "{shown}");
    // It reads as the old per-client error did (service, operation, client and tenant, the
    // AADSTS code, Entra's description), as the probe returns it and as the port carries it.
    let e = r.clone().unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "Entra token request on client {payments} in tenant {tenant}: refused: AADSTS7000215 \
             (invalid_client): AADSTS7000215: "
        )),
        "{e}"
    );
    match PortError::from(e) {
        PortError::Refused { code, message } => {
            assert_eq!(code, 7000215);
            assert!(message.starts_with("AADSTS7000215: "), "{message}");
            assert!(!message.contains("not-the-secret-at-all"));
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert_eq!(code_of(r), 7000215);
    assert_eq!(
        code_of(
            probe
                .request_token(
                    &tenant,
                    &payments,
                    &SecretValue::new(EXPIRED_SECRET),
                    &scope
                )
                .await
        ),
        7000222
    );
    assert_eq!(
        code_of(
            probe
                .request_token(&tenant, &Uuid::new_v4().to_string(), &wrong, &scope)
                .await
        ),
        700016
    );
    assert_eq!(
        code_of(
            probe
                .request_token(&Uuid::new_v4().to_string(), &payments, &wrong, &scope)
                .await
        ),
        90002
    );
}

#[tokio::test]
async fn token_probe_server_errors_are_transient() {
    let emu = start().await;
    let probe = TokenProbe::new(Cloud::Public, emu.options());
    emu.emulator
        .control()
        .add_fault(fault("entra", "token", status_action(503, None), None));
    let r = probe
        .request_token(
            &emu.tenant(),
            PAYMENTS_APP,
            &SecretValue::new(PAYMENTS_SECRET),
            &Cloud::Public.graph_scope(),
        )
        .await;
    assert_eq!(kind(r), ErrorKind::Transient);
    assert_eq!(
        count(&emu, "entra", "token"),
        emulator::fast_retry().max_attempts as usize
    );
}

#[tokio::test]
async fn verify_with_retry_waits_out_replication_only() {
    let emu = start().await;
    let c = emu.emulator.control();
    let g = graph(&emu, emu.options());
    let probe = TokenProbe::new(Cloud::Public, emu.options());
    let tenant = emu.tenant();
    let app_id = c.app_id_by_name("payments-api").unwrap();
    let object_id = g
        .get_application(&AppRef::AppId(app_id))
        .await
        .unwrap()
        .object_id;
    let scope = Cloud::Public.graph_scope();

    c.set_replication_delay(3600);
    let (_, secret) = g
        .add_password(object_id, "new", Utc::now() + chrono::Duration::days(30))
        .await
        .unwrap();
    // Not replicated and the timeout is short: the refusal comes back after some retries.
    let r = probe
        .verify_with_retry(
            &tenant,
            &app_id.to_string(),
            &secret,
            &scope,
            Duration::from_millis(60),
        )
        .await;
    assert!(matches!(&r, Err(e) if e.is_replication_delay()), "{r:?}");
    let tries = count(&emu, "entra", "token");
    assert!(tries >= 2, "7000215 is retried, saw {tries} token requests");

    // While the probe waits, the emulated clock moves past the replication delay.
    let probe2 = probe.clone();
    let (t, a, s, sc) = (
        tenant.clone(),
        app_id.to_string(),
        secret.clone(),
        scope.clone(),
    );
    let task = tokio::spawn(async move {
        probe2
            .verify_with_retry(&t, &a, &s, &sc, Duration::from_secs(20))
            .await
    });
    while count(&emu, "entra", "token") < tries + 1 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    c.advance(chrono::Duration::hours(2));
    let ok = task.await.unwrap().unwrap();
    assert!(ok.attempts >= 2);

    // An expired secret is never retried.
    let before = count(&emu, "entra", "token");
    let r = probe
        .verify_with_retry(
            &tenant,
            &app_id.to_string(),
            &SecretValue::new(EXPIRED_SECRET),
            &scope,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(err(r).aadsts(), Some(7000222));
    assert_eq!(count(&emu, "entra", "token"), before + 1);
}

// ---------------- Key Vault ----------------

fn kv(emu: &TestEmulator) -> KeyVaultClient {
    KeyVaultClient::new(
        Cloud::Public,
        emu.app_credential("rotator", ROTATOR_SECRET),
        emu.options(),
    )
}

fn secret_ref(vault: &str, name: &str) -> VaultSecretRef {
    VaultSecretRef {
        vault: vault.into(),
        secret: name.into(),
    }
}

#[tokio::test]
async fn keyvault_get_set_update_list() {
    let emu = start().await;
    let kv = kv(&emu);
    let r = secret_ref("kv-apps", "payments-secret");

    let latest = kv.get_latest(&r).await.unwrap().expect("secret exists");
    assert_eq!(latest.value.expose(), PAYMENTS_SECRET);
    assert_eq!(latest.properties.tags["n"], "2");
    assert_eq!(latest.properties.version.len(), 32);
    assert!(
        kv.get_latest(&secret_ref("kv-apps", "missing"))
            .await
            .unwrap()
            .is_none()
    );

    let exp = Utc::now() + chrono::Duration::days(90);
    let tags = BTreeMap::from([("rotator-key-id".to_string(), "k1".to_string())]);
    let new = kv
        .set(&r, &SecretValue::new("brand-new-value"), &tags, Some(exp))
        .await
        .unwrap();
    assert_eq!(new.expires.unwrap().timestamp(), exp.timestamp());
    assert_eq!(new.content_type.as_deref(), Some("text/plain"));
    let (v, value, t) = emu
        .emulator
        .control()
        .secret_latest("kv-apps", "payments-secret")
        .unwrap();
    assert_eq!(
        (v.as_str(), value.as_str()),
        (new.version.as_str(), "brand-new-value")
    );
    assert_eq!(t, tags);

    let old = kv
        .get_version(&r, &latest.properties.version)
        .await
        .unwrap();
    assert_eq!(old.value.expose(), PAYMENTS_SECRET);

    let tags2 = BTreeMap::from([("rotator-phase".to_string(), "propagated".to_string())]);
    let updated = kv
        .update_version(
            &r,
            &new.version,
            &VersionUpdate {
                tags: Some(tags2.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.tags, tags2, "tags are replaced as a whole");

    let versions = kv.list_versions(&r).await.unwrap();
    assert_eq!(versions.len(), 3);
    assert_eq!(
        versions.last().unwrap().version,
        new.version,
        "sorted by created"
    );
    assert!(versions.windows(2).all(|w| w[0].created <= w[1].created));

    assert_eq!(
        kind(kv.get_version(&r, "0123456789abcdef0123456789abcdef").await),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn keyvault_forbidden_and_throttled() {
    let emu = start().await;
    let kv = kv(&emu);
    let e = err(kv.get_latest(&secret_ref("kv-locked", "s")).await);
    assert_eq!(
        (e.kind(), e.status(), e.code()),
        (&ErrorKind::AccessDenied, Some(403), Some("ForbiddenByRbac"))
    );
    match kv
        .set(
            &secret_ref("kv-locked", "s"),
            &SecretValue::new("x"),
            &BTreeMap::new(),
            None,
        )
        .await
    {
        Err(e) if e.is_access_denied() => assert_eq!(e.code(), Some("ForbiddenByRbac")),
        other => panic!("expected AccessDenied, got {other:?}"),
    }
    let missing = secret_ref("kv-apps", "missing");
    assert_eq!(kind(kv.list_versions(&missing).await), ErrorKind::NotFound);
    assert_eq!(
        kind(
            kv.update_version(
                &missing,
                "0123456789abcdef0123456789abcdef",
                &VersionUpdate::default()
            )
            .await
        ),
        ErrorKind::NotFound
    );
    let r = secret_ref("kv-apps", "payments-secret");
    kv.get_latest(&r).await.unwrap(); // challenge done, token cached
    // A dropped connection is retried like a server error.
    emu.emulator
        .control()
        .add_fault(fault("keyvault", "getSecret", FaultAction::Reset, Some(1)));
    assert!(kv.get_latest(&r).await.unwrap().is_some());
    emu.emulator.control().clear_faults();
    emu.emulator.control().add_fault(fault(
        "keyvault",
        "getSecret",
        status_action(429, Some(1)),
        Some(1),
    ));
    let t0 = Instant::now();
    assert!(kv.get_latest(&r).await.unwrap().is_some());
    assert!(t0.elapsed() >= Duration::from_secs(1));
    emu.emulator.control().add_fault(fault(
        "keyvault",
        "getSecret",
        status_action(500, None),
        None,
    ));
    assert_eq!(kind(kv.get_latest(&r).await), ErrorKind::Transient);
}

// ---------------- App Service ----------------

fn web(emu: &TestEmulator) -> WebClient {
    WebClient::new(
        Cloud::Public,
        emu.app_credential("rotator", ROTATOR_SECRET),
        emu.options(),
    )
}

/// More ARM writes at once than ARM's write bucket holds (200, refilled at 10/s, per principal
/// and subscription; listing a site's settings is a POST, so a write): the clients' shared
/// pacer (`azure::pacer`) spends the bucket at its refill rate, so the emulator, throttling as
/// documented, answers none of them with a 429.
#[tokio::test]
async fn arm_writes_past_the_bucket_are_paced_instead_of_throttled() {
    let mut s = scenario();
    s["throttling"] = json!("documented");
    let emu = TestEmulator::start(s).await;
    let w = web(&emu);
    let site = arm("func-a");
    let t0 = Instant::now();
    let lists = (0..280).map(|_| w.list_app_settings(&site));
    let results = futures::future::join_all(lists).await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        failed.first()
    );
    let throttled = emu
        .emulator
        .control()
        .requests()
        .iter()
        .filter(|r| r.status == 429)
        .count();
    assert_eq!(throttled, 0, "writes answered 429");
    // The last 85 waited for the refill (195 of the 200 spent at once, then 9.5 a second).
    assert!(t0.elapsed() >= Duration::from_secs(8), "{:?}", t0.elapsed());
}

#[tokio::test]
async fn web_settings_read_modify_write_keeps_other_settings() {
    let emu = start().await;
    let w = web(&emu);
    let site = arm("func-a");
    let s = w.list_app_settings(&site).await.unwrap();
    assert_eq!(s.get("PLAIN_SECRET").unwrap().expose(), "old-plain-value");
    assert!(!format!("{s:?}").contains("old-plain-value"));

    assert_eq!(
        w.set_one(&site, "PLAIN_SECRET", SettingValue::new("new-plain-value"))
            .await
            .unwrap(),
        SetOutcome::Written
    );
    assert_eq!(
        w.set_one(&site, "PLAIN_SECRET", SettingValue::new("new-plain-value"))
            .await
            .unwrap(),
        SetOutcome::Unchanged
    );
    let c = emu.emulator.control();
    assert_eq!(
        c.app_setting("rg-apps", "func-a", "PLAIN_SECRET")
            .as_deref(),
        Some("new-plain-value")
    );
    assert_eq!(
        c.app_setting("rg-apps", "func-a", "FUNCTIONS_EXTENSION_VERSION")
            .as_deref(),
        Some("~4")
    );
    assert!(
        c.app_setting("rg-apps", "func-a", "PAYMENTS_SECRET")
            .unwrap()
            .starts_with("@Microsoft.KeyVault(")
    );
    w.restart(&site).await.unwrap();
}

#[tokio::test]
async fn web_key_vault_references_refresh_to_the_new_version() {
    let emu = start().await;
    let w = web(&emu);
    let kv = kv(&emu);
    let site = arm("func-a");
    let first = w
        .reference_status(&site, "PAYMENTS_SECRET")
        .await
        .unwrap()
        .expect("a reference");
    assert_eq!(first.status, ResolveStatus::Resolved);
    let r = secret_ref("kv-apps", "payments-secret");
    let current = kv.get_latest(&r).await.unwrap().unwrap().properties.version;
    assert_eq!(first.active_version.as_deref(), Some(current.as_str()));

    let new = kv
        .set(&r, &SecretValue::new("next-value"), &BTreeMap::new(), None)
        .await
        .unwrap();
    w.refresh_references(&site).await.unwrap();
    let after = w
        .reference_status(&site, "PAYMENTS_SECRET")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.active_version.as_deref(), Some(new.version.as_str()));
    assert_eq!(
        emu.emulator
            .control()
            .app_setting_effective("rg-apps", "func-a", "PAYMENTS_SECRET")
            .as_deref(),
        Some("next-value")
    );
    let all = w.reference_statuses(&site).await.unwrap();
    assert_eq!(all.len(), 1);
    assert!(
        w.reference_status(&site, "PLAIN_SECRET")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn web_typed_errors() {
    let emu = start().await;
    let w = web(&emu);
    let e = err(w.list_app_settings(&arm("func-b")).await);
    assert_eq!(
        (e.kind(), e.status(), e.code(), e.service()),
        (
            &ErrorKind::AccessDenied,
            Some(403),
            Some("AuthorizationFailed"),
            Service::AppService
        )
    );
    emu.emulator.control().add_fault(fault(
        "arm",
        "listAppSettings",
        status_action(429, Some(1)),
        Some(1),
    ));
    let t0 = Instant::now();
    assert!(w.list_app_settings(&arm("func-a")).await.is_ok());
    assert!(t0.elapsed() >= Duration::from_secs(1));
    emu.emulator
        .control()
        .add_fault(fault("arm", "restartSite", status_action(503, None), None));
    assert_eq!(kind(w.restart(&arm("func-a")).await), ErrorKind::Transient);
}

// ---------------- API connections ----------------

#[tokio::test]
async fn connection_parameter_replaced_by_full_put_and_status() {
    let emu = start().await;
    let cc = ConnectionsClient::new(
        Cloud::Public,
        emu.app_credential("rotator", ROTATOR_SECRET),
        emu.options(),
    );
    let conn = arm("kv-conn");
    assert_eq!(
        cc.get(&conn).await.unwrap().health,
        ConnectionHealth::Connected
    );

    cc.replace_secret_parameter(
        &conn,
        "token:clientSecret",
        &SecretValue::new("Bad8Q~wrong-value"),
    )
    .await
    .unwrap();
    match cc.get(&conn).await.unwrap().health {
        ConnectionHealth::Error { message, .. } => {
            assert!(message.unwrap_or_default().contains("7000215"))
        }
        other => panic!("expected Error, got {other:?}"),
    }
    let c = emu.emulator.control();
    assert!(
        c.connection_parameter("rg-apps", "kv-conn", "token:clientId")
            .is_some(),
        "the PUT carried the other parameters"
    );

    cc.replace_secret_parameter(
        &conn,
        "token:clientSecret",
        &SecretValue::new(PAYMENTS_SECRET),
    )
    .await
    .unwrap();
    assert_eq!(
        cc.get(&conn).await.unwrap().health,
        ConnectionHealth::Connected
    );
    assert!(matches!(
        kind(cc.get(&arm("no-such-conn")).await),
        ErrorKind::AccessDenied | ErrorKind::NotFound
    ));
}

// ---------------- Automation ----------------

#[tokio::test]
async fn automation_variables_update_and_create() {
    let emu = start().await;
    let ac = AutomationClient::new(
        Cloud::Public,
        emu.app_credential("rotator", ROTATOR_SECRET),
        emu.options(),
    );
    let acct = arm("aa-ops");
    let v = ac
        .get_variable(&acct, "PaymentsSecret")
        .await
        .unwrap()
        .unwrap();
    assert!(v.is_encrypted);
    let c = emu.emulator.control();

    assert_eq!(
        ac.set_value(
            &acct,
            "PaymentsSecret",
            &SecretValue::new("new \"quoted\" value"),
            "rotated"
        )
        .await
        .unwrap(),
        SetVariableOutcome::Updated
    );
    assert_eq!(
        c.automation_variable("rg-apps", "aa-ops", "PaymentsSecret")
            .as_deref(),
        Some("new \"quoted\" value")
    );
    assert!(ac.get_variable(&acct, "Fresh").await.unwrap().is_none());
    assert_eq!(
        ac.set_value(&acct, "Fresh", &SecretValue::new("v1"), "made by test")
            .await
            .unwrap(),
        SetVariableOutcome::Created
    );
    assert!(
        ac.get_variable(&acct, "Fresh")
            .await
            .unwrap()
            .unwrap()
            .is_encrypted
    );
    assert_eq!(
        c.automation_variable("rg-apps", "aa-ops", "Fresh")
            .as_deref(),
        Some("v1")
    );
    let e = err(ac.get_variable(&arm("aa-other"), "X").await);
    assert_eq!(
        (e.kind(), e.status()),
        (&ErrorKind::AccessDenied, Some(403))
    );
}

// ---------------- Blob storage (Azurite) ----------------

async fn storage(emu: &TestEmulator, az: &azurite::Azurite) -> StorageClient {
    let http = emu.transport_config(&[az.host_override()]).build().unwrap();
    let options = ServiceOptions::new(http).with_retry(emulator::fast_retry());
    let cred = emu.app_credential_with("rotator", ROTATOR_SECRET, &options);
    let endpoint = blob_endpoint(Cloud::Public, &az.account, None).unwrap();
    StorageClient::new(Cloud::Public, &endpoint, "rotator", cred, options).unwrap()
}

#[tokio::test]
async fn storage_documents_roundtrip() {
    let emu = start().await;
    let az = azurite::Azurite::start(&emu.emulator, "strotatordocs");
    let st = storage(&emu, &az).await;
    assert_eq!(st.get_json("runs/none.json").await.unwrap(), None);
    st.put_json("runs/r1.json", br#"{"ok":true}"#)
        .await
        .unwrap();
    st.put_json("audit/2026/11/22/payments-r1.json", b"{}")
        .await
        .unwrap();
    st.put_json("audit/2026/11/22/billing-r1.json", b"{}")
        .await
        .unwrap();
    assert_eq!(
        st.get_json("runs/r1.json").await.unwrap().as_deref(),
        Some(&br#"{"ok":true}"#[..])
    );
    assert_eq!(
        st.list("audit/2026/").await.unwrap(),
        vec![
            "audit/2026/11/22/billing-r1.json",
            "audit/2026/11/22/payments-r1.json"
        ]
    );
    assert!(st.list("nothing/").await.unwrap().is_empty());
}

#[tokio::test]
async fn storage_lease_is_exclusive_and_recoverable() {
    let emu = start().await;
    let az = azurite::Azurite::start(&emu.emulator, "strotatorlease");
    let st = storage(&emu, &az).await;
    let lease = st.acquire_lease("payments").await.unwrap();
    assert!(lease.is_held());
    let e = err(st.acquire_lease("payments").await);
    assert_eq!(
        (e.kind(), e.target()),
        (&ErrorKind::Busy, Some("locks/payments"))
    );
    let other = st.acquire_lease("billing").await.unwrap();
    lease.renew().await.unwrap();
    lease.release().await.unwrap();
    let again = st.acquire_lease("payments").await.unwrap();

    // A lease that ends while its holder still thinks it has it (what expiry does; here the
    // break stands in for 60 s passing): the holder's next renewal reports LeaseLost and a
    // new holder can take it.
    st.break_lease("payments").await.unwrap();
    let e = err(again.renew().await);
    assert_eq!(
        (e.kind(), e.target()),
        (&ErrorKind::LeaseLost, Some("locks/payments"))
    );
    assert!(!again.is_held());
    let taken_over = st.acquire_lease("payments").await.unwrap();

    // Dropping a lease without release() still frees it (a background release), so an
    // engine that returns early through `?` does not block the next run for a minute.
    drop(taken_over);
    let mut freed = None;
    for _ in 0..200 {
        match st.acquire_lease("payments").await {
            Ok(l) => {
                freed = Some(l);
                break;
            }
            Err(e) if e.kind() == &ErrorKind::Busy => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(freed.is_some(), "the dropped lease was released");
    drop(other);
    drop(again);
}

/// The shared transport's trust: the platform's roots (from the system bundle where there is
/// one, `transport::SystemRoots`) do not include the emulator's CA, so without it the emulator's
/// Graph is refused at the TLS handshake; with it (added to those roots) the same request
/// gets an answer.
#[tokio::test]
async fn the_transport_trusts_the_emulator_only_with_its_ca() {
    let emu = emulator::TestEmulator::start(crate::support::world::demo_scenario()).await;
    let url = "https://graph.microsoft.com/v1.0/applications";
    let with_ca = emu.transport_config(&[]);
    let mut without = with_ca.clone();
    without.extra_ca_pem = None;
    let refused = without
        .build()
        .expect("client")
        .get(url)
        .send()
        .await
        .expect_err("the emulator's certificate is not trusted without its CA");
    assert!(refused.is_connect(), "{refused:?}");
    let answered = with_ca
        .build()
        .expect("client")
        .get(url)
        .send()
        .await
        .expect("the emulator answers over TLS with its CA");
    assert_eq!(answered.status(), 401, "no token, but a TLS answer");
}

/// The managed API's definition (read once per process) goes out alongside the PUT's fresh
/// GET when an earlier GET named the API, not after it: with that fresh GET refused, the
/// definition was still asked for; a client that never read the connection asks nothing more
/// after a refused GET.
#[tokio::test]
async fn connection_definition_is_read_alongside_the_fresh_get() {
    for observed_first in [false, true] {
        let emu = start().await;
        let cc = ConnectionsClient::new(
            Cloud::Public,
            emu.app_credential("rotator", ROTATOR_SECRET),
            emu.options(),
        );
        let conn = arm("kv-conn");
        if observed_first {
            cc.get(&conn).await.expect("the observation's read");
        }
        emu.emulator
            .control()
            .add_fault(crate::support::faultkit::rule(
                "arm",
                "getConnection",
                crate::support::faultkit::status(403),
            ));
        let refused = cc
            .replace_secret_parameter(&conn, "token:clientSecret", &SecretValue::new("x"))
            .await
            .expect_err("the fresh GET is refused");
        assert_eq!(refused.kind(), &ErrorKind::AccessDenied, "{refused}");
        assert_eq!(
            count(&emu, "arm", "getManagedApi"),
            usize::from(observed_first),
            "observed first: {observed_first}"
        );
        assert_eq!(count(&emu, "arm", "putConnection"), 0);
    }
}
