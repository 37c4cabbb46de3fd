//! Certificate credentials under faults (issue 17): the oracle's own tests (each shows a check
//! of `support/cert_invariants.rs` failing on a state that breaks it, and passing on one that
//! does not), then the fault table — each certificate operation × each fault, run to rest on the
//! emulator's clock, the invariants checked on the emulator's state.

use std::sync::Arc;

use azure_emulator::Control;
use chrono::Utc;
use secret_rotator::azure::certificates::{
    CertificatePolicy, CertificateVersion, CertificatesClient, ContentType, KeySpec,
};
use secret_rotator::azure::graph::WriteLimiter;
use secret_rotator::azure::keycredentials::{KeyCredentialsClient, NewKeyCredential};
use secret_rotator::azure::web::{SettingValue, WebClient};
use secret_rotator::cloud::Cloud;
use secret_rotator::policy::{ArmResource, Policy};
use uuid::Uuid;

use crate::support::cert_invariants::{self as inv, Oracle};
use crate::support::cert_tenant::{self as tenant, *};
use crate::support::emulator::TestEmulator;
use crate::support::world::{CI_APP, CI_SECRET, ci_identity};

/// The tenant without a world: the emulator, the parsed policy and the product's own clients
/// signed in as the rotator's CI identity (or the admin, the other writer).
struct Bench {
    emu: TestEmulator,
    policy: Policy,
    kv: CertificatesClient,
    keys: KeyCredentialsClient,
    admin_keys: KeyCredentialsClient,
    web: WebClient,
}

impl Bench {
    async fn start(conversion: bool) -> Bench {
        let mut s = tenant::scenario("2026-03-01T09:00:00Z", "2026-09-01T00:00:00Z");
        ci_identity(&mut s);
        let emu = TestEmulator::start(s).await;
        let policy = secret_rotator::policy::parse("policy.json", &tenant::policy(conversion))
            .expect("the certificate tenant's policy parses");
        let options = emu.options();
        let ci = emu.app_credential(CI_APP, CI_SECRET);
        let admin = emu.app_credential(ADMIN_APP, ADMIN_SECRET);
        let limiter = Arc::new(WriteLimiter::default());
        Bench {
            kv: CertificatesClient::new(Cloud::Public, ci.clone(), options.clone()),
            keys: KeyCredentialsClient::new(
                Cloud::Public,
                ci.clone(),
                options.clone(),
                limiter.clone(),
            ),
            admin_keys: KeyCredentialsClient::new(Cloud::Public, admin, options.clone(), limiter),
            web: WebClient::new(Cloud::Public, ci, options),
            policy,
            emu,
        }
    }

    fn control(&self) -> Control {
        self.emu.emulator.control()
    }

    fn oracle(&self) -> Oracle<'_> {
        Oracle {
            c: self.control(),
            policy: &self.policy,
        }
    }

    /// A completed version of the credential's certificate.
    async fn version(&self) -> CertificateVersion {
        let policy = CertificatePolicy {
            issuer: "Self".into(),
            subject: "CN=pay-cert".into(),
            key: KeySpec::Rsa { bits: 2048 },
            exportable: true,
            reuse_key: false,
            content_type: ContentType::Pkcs12,
            validity_months: 12,
        };
        self.kv
            .create_version(VAULT, CERT, Some(&policy))
            .await
            .unwrap();
        self.control().advance(chrono::Duration::seconds(
            azure_emulator::certificates::SELF_ISSUE_SECONDS,
        ));
        self.kv.get(VAULT, CERT, None).await.unwrap()
    }

    /// Puts `v`'s key on the application as the rotator would (marker displayName).
    async fn add(&self, v: &CertificateVersion) -> Uuid {
        let key_id = Uuid::new_v4();
        let new = NewKeyCredential {
            key_id,
            display_name: format!("secret-rotator:pay-cert:{}", Utc::now().date_naive()),
            cer: v.cer.clone(),
        };
        self.keys.merge_write(pay_obj(), &[new], &[]).await.unwrap();
        key_id
    }

    async fn set(&self, setting: &str, value: &str) {
        let site = ArmResource {
            subscription: SUB.into(),
            resource_group: RG_APP.into(),
            name: SITE.into(),
            slot: None,
        };
        self.web
            .set_one(&site, setting, SettingValue::new(value))
            .await
            .unwrap();
    }
}

fn pay_obj() -> Uuid {
    Uuid::parse_str(PAY_OBJ).unwrap()
}

fn thumbprint(v: &CertificateVersion) -> String {
    azure_emulator::crypto::sha1_hex_upper(&v.cer)
}

fn pfx_reference(v: &CertificateVersion) -> String {
    format!(
        "@Microsoft.KeyVault(SecretUri=https://{VAULT}.vault.azure.net/secrets/{CERT}/{})",
        v.version
    )
}

#[tokio::test]
async fn oracle_flags_a_key_the_rotator_did_not_add_removed_and_the_only_valid_key() {
    let b = Bench::start(false).await;
    let o = b.oracle();
    let base = inv::cert_baseline(&o, &[]);
    let v = b.version().await;
    let ours = b.add(&v).await;
    assert_eq!(inv::check_key_writes(&o, &base), Vec::<String>::new());
    // Removing its own key is the rotator's right; someone else's is not.
    b.keys.merge_write(pay_obj(), &[], &[ours]).await.unwrap();
    assert_eq!(inv::check_key_writes(&o, &base), Vec::<String>::new());
    let others = Uuid::parse_str(OTHERS_KEY).unwrap();
    b.keys.merge_write(pay_obj(), &[], &[others]).await.unwrap();
    let found = inv::check_key_writes(&o, &base);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("did not add"), "{found:?}");
    assert!(found[1].contains("only valid key"), "{found:?}");
    // The same write by the declared other writer is theirs to make.
    let admin = b.control().app_id_by_name(ADMIN_APP).unwrap();
    let ci = b.control().app_id_by_name(CI_APP).unwrap();
    let base_admin = inv::cert_baseline(&o, &[admin, ci]);
    assert_eq!(inv::check_key_writes(&o, &base_admin), Vec::<String>::new());
    let _ = b.admin_keys.list(pay_obj()).await.unwrap();
}

#[tokio::test]
async fn oracle_flags_a_consumer_on_a_key_that_is_not_on_the_application() {
    let b = Bench::start(false).await;
    let o = b.oracle();
    let base = inv::cert_baseline(&o, &[]);
    let cred = &b.policy.certificates[0];
    let v1 = b.version().await;
    // Configured with a version whose key is not on the application: refused by Entra.
    b.set(THUMB_SETTING, &thumbprint(&v1)).await;
    let e = inv::check_consumers(&o, &base, cred).unwrap_err();
    assert!(e.contains("not on the application"), "{e}");
    let k1 = b.add(&v1).await;
    inv::check_consumers(&o, &base, cred).unwrap();
    // The Key Vault reference resolves to the certificate's secret: the version it is on counts.
    b.set(PFX_SETTING, &pfx_reference(&v1)).await;
    inv::check_consumers(&o, &base, cred).unwrap();
    let v2 = b.version().await;
    b.set(PFX_SETTING, &pfx_reference(&v2)).await;
    let e = inv::check_consumers(&o, &base, cred).unwrap_err();
    assert!(e.contains("reference") && e.contains(&v2.version), "{e}");
    b.add(&v2).await;
    inv::check_consumers(&o, &base, cred).unwrap();
    // Settled needs every consumer on the newest version and no leftover key of the rotator's.
    let e = inv::check_settled(&o, cred, &Default::default()).unwrap_err();
    assert!(e.contains("not on the newest version"), "{e}");
    b.set(THUMB_SETTING, &thumbprint(&v2)).await;
    let e = inv::check_settled(&o, cred, &Default::default()).unwrap_err();
    assert!(
        e.contains("left over") && e.contains(&k1.to_string()),
        "{e}"
    );
    b.keys.merge_write(pay_obj(), &[], &[k1]).await.unwrap();
    inv::check_settled(&o, cred, &Default::default()).unwrap();
    // Removing the key a consumer is on is the outage.
    b.keys.merge_write(pay_obj(), &[], &[]).await.unwrap();
    let k2 = b
        .control()
        .key_records(pay_app())
        .into_iter()
        .find(|k| k.x5t_s256 == azure_emulator::crypto::x5t_s256(&v2.cer))
        .unwrap()
        .key_id;
    b.keys.merge_write(pay_obj(), &[], &[k2]).await.unwrap();
    let e = inv::check_consumers(&o, &base, cred).unwrap_err();
    assert!(e.contains("not on the application"), "{e}");
}

#[tokio::test]
async fn oracle_flags_a_converted_consumer_left_on_a_removed_password() {
    let b = Bench::start(true).await;
    let o = b.oracle();
    let base = inv::cert_baseline(&o, &[]);
    let cert = &b.policy.certificates[0];
    inv::check_conversion(&o, &base, cert).unwrap();
    // The password goes while the setting still references the secret holding it.
    let c = b.control();
    let pw = c.passwords(pay_app())[0].key_id;
    let graph = secret_rotator::azure::graph::GraphClient::new(
        Cloud::Public,
        b.emu.app_credential(CI_APP, CI_SECRET),
        b.emu.options(),
        Arc::new(WriteLimiter::default()),
    );
    graph.remove_password(pay_obj(), pw).await.unwrap();
    let e = inv::check_conversion(&o, &base, cert).unwrap_err();
    assert!(
        e.contains("still holds password") && e.contains(&pw.to_string()),
        "{e}"
    );
    // Once the consumer is off it, the removal was allowed.
    b.set(SECRET_SETTING, "moved-to-certificate").await;
    inv::check_conversion(&o, &base, cert).unwrap();
}

#[test]
fn private_key_scan_finds_pem_blocks_and_pfx_pieces_but_not_the_public_certificate() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let b = Bench::start(false).await;
        let o = b.oracle();
        let v = b.version().await;
        let pfx = b.control().secret_versions(VAULT, CERT)[0].1.clone();
        let public = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &v.cer);
        let outputs = |t: &str| vec![("report".to_string(), t.to_string())];
        assert!(inv::private_key_leaks(&o, &outputs(&format!("cert {public} ok"))).is_empty());
        assert!(inv::private_key_leaks(&o, &outputs("nothing here")).is_empty());
        let piece = &pfx[pfx.len() / 2..pfx.len() / 2 + 40];
        let found = inv::private_key_leaks(&o, &outputs(&format!("oops {piece}")));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(!found[0].contains(piece));
        let found = inv::private_key_leaks(&o, &outputs("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(found.len(), 1, "{found:?}");
    });
}

// ---------------------------------------------------------------------------------------------
// The fault table.

/// Days from the scenario's start to inside the first version's renewal window (12 months of
/// validity, renewal 30 days before its end).
const TO_RENEWAL_DAYS: i64 = 340;
/// Past the 7-day grace period.
const PAST_GRACE_DAYS: i64 = 8;
/// Clean passes a stage may take to come to rest (each after 11 emulated minutes: past the
/// slow-issuance and key-replication variants).
const REST_PASSES: usize = 8;

/// Everything a certificate run leaves for people and machines to read: the pass reports
/// and the log lines, scanned for private key material.
#[derive(Default)]
struct Outputs(Vec<(String, String)>);

impl Outputs {
    fn report(&mut self, what: &str, r: &secret_rotator::engine::report::PassReport) {
        let text = serde_json::to_string(r).expect("reports serialise");
        self.0.push((what.to_string(), text));
    }
}

/// The certificate world under `u`: the tenant, the policy (with the conversion when asked),
/// the fault-tuned engine, on an account of a shared Azurite.
async fn cert_world(
    u: &azure_emulator::scenario::Uncertainties,
    conversion: bool,
    storage: Option<crate::support::azurite::Azurite>,
) -> crate::support::world::World {
    let mut s = tenant::scenario("2026-03-01T09:00:00Z", "2026-09-01T00:00:00Z");
    s["uncertainties"] = serde_json::to_value(u).expect("uncertainties serialise");
    let policy = tenant::policy(conversion);
    match storage {
        Some(st) => crate::support::faultkit::fault_world_on(s, &policy, st).await,
        None => crate::support::faultkit::fault_world(s, &policy).await,
    }
}

fn assert_cert_invariants(o: &Oracle, b: &inv::CertBaseline, when: &str) {
    let v = inv::check_all(o, b);
    assert!(v.is_empty(), "certificate invariants broken {when}: {v:#?}");
}

/// Gets the engine every token it needs before the faults, so a fault on the token endpoint
/// hits the rotator's client assertions rather than its own sign-in (whose retries, in
/// azure_identity, take minutes): a pass in which Key Vault refuses the first version's
/// creation (the lease, Graph, Key Vault and ARM are all called; nothing changes).
async fn warm_up(w: &crate::support::world::World, out: &mut Outputs) {
    let c = w.emu.emulator.control();
    c.add_fault(crate::support::faultkit::rule(
        "keyvault",
        "createCertificate",
        s503(),
    ));
    let r = bounded_pass(w, "warm-up pass").await;
    out.report("warm-up pass", &r);
    c.clear_faults();
}

/// A pass that must end within two minutes of wall time (its own budget is five): a pass
/// that hangs is a finding, named with its stage.
async fn bounded_pass(
    w: &crate::support::world::World,
    what: &str,
) -> secret_rotator::engine::report::PassReport {
    let limit = std::time::Duration::from_secs(120);
    match tokio::time::timeout(limit, crate::support::faultkit::pass(w)).await {
        Ok(r) => r,
        Err(_) => panic!("{what}: the pass did not end within {limit:?}"),
    }
}

/// Clean passes (the clock 11 minutes on before each) until the certificate is at rest
/// (settled; `in_grace`: but for the previous key) or [`REST_PASSES`] have run; the
/// invariants after each.
async fn to_rest(
    w: &crate::support::world::World,
    b: &inv::CertBaseline,
    out: &mut Outputs,
    stage: &str,
    in_grace: bool,
) -> Result<(), String> {
    let o = Oracle::of(w);
    let cred = &w.engine.policy.certificates[0];
    let mut last = String::new();
    for i in 0..REST_PASSES {
        w.emu
            .emulator
            .control()
            .advance(chrono::Duration::minutes(11));
        let r = bounded_pass(w, &format!("{stage}: clean pass {i}")).await;
        out.report(&format!("{stage}: clean pass {i}"), &r);
        assert_cert_invariants(&o, b, &format!("after clean pass {i} ({stage})"));
        match inv::check_rest(&o, cred, &Default::default(), in_grace) {
            Ok(()) => return Ok(()),
            Err(e) => last = format!("{} ({e})", crate::support::world::summary(&r)),
        }
    }
    Err(format!(
        "{stage}: not at rest after {REST_PASSES} clean passes; last: {last}"
    ))
}

/// Passes with the fault active, the clock 11 minutes on between them, until it has hit in
/// this stage (a step may come only after Key Vault has issued the version) or three passes
/// ran; the invariants after each. Returns the last faulted pass's summary.
async fn faulted_passes(
    w: &crate::support::world::World,
    b: &inv::CertBaseline,
    out: &mut Outputs,
    stage: &str,
    service: &str,
    op: &str,
    action: &azure_emulator::faults::FaultAction,
) -> String {
    let c = w.emu.emulator.control();
    let o = Oracle::of(w);
    let before = crate::support::faultkit::faults_injected(w);
    c.add_fault(crate::support::faultkit::rule(service, op, action.clone()));
    let mut last = String::new();
    for k in 0..3 {
        if k > 0 {
            c.advance(chrono::Duration::minutes(11));
        }
        let what = format!("{stage}: faulted pass {k}");
        let r = bounded_pass(w, &what).await;
        out.report(&what, &r);
        assert_cert_invariants(&o, b, &format!("after {what}"));
        last = crate::support::world::summary(&r);
        if crate::support::faultkit::faults_injected(w) > before {
            break;
        }
    }
    c.clear_faults();
    last
}

/// One (service, operation, fault) under one variant: enrolment, renewal and the pass after
/// the grace period, each with the fault active for its first passes (until it hit), then
/// clean passes to rest; the invariants after every pass, settled at the end of each stage (the old key gone
/// only after the last), no private key in any report or log line.
async fn fault_case(
    service: &str,
    op: &str,
    action: azure_emulator::faults::FaultAction,
    u: azure_emulator::scenario::Uncertainties,
    storage: crate::support::azurite::Azurite,
) {
    let (dispatch, logs) = inv::capture_logs();
    tracing::instrument::WithSubscriber::with_subscriber(
        fault_run(service, op, action, u, storage, logs),
        dispatch,
    )
    .await;
}

async fn fault_run(
    service: &str,
    op: &str,
    action: azure_emulator::faults::FaultAction,
    u: azure_emulator::scenario::Uncertainties,
    storage: crate::support::azurite::Azurite,
    logs: inv::Captured,
) {
    let w = cert_world(&u, false, Some(storage)).await;
    let c = w.emu.emulator.control();
    let o = Oracle::of(&w);
    let b = inv::cert_baseline(&o, &[]);
    let mut out = Outputs::default();
    warm_up(&w, &mut out).await;
    // Faults the warm-up injected are not this case's.
    let warm = crate::support::faultkit::faults_injected(&w);
    for (stage, days) in [
        ("enrolment", 0),
        ("renewal", TO_RENEWAL_DAYS),
        ("after grace", PAST_GRACE_DAYS),
    ] {
        w.advance_days(days);
        let faulted = faulted_passes(&w, &b, &mut out, stage, service, op, &action).await;
        let in_grace = stage == "renewal";
        if let Err(e) = to_rest(&w, &b, &mut out, stage, in_grace).await {
            panic!("{e}\n(last faulted pass: {faulted})");
        }
    }
    let hit = crate::support::faultkit::faults_injected(&w) - warm;
    assert!(hit > 0, "the {service}/{op} fault never hit");
    // The renewal's old key went after grace; the key someone else added is still there.
    let keys = c.key_records(pay_app());
    let others = Uuid::parse_str(OTHERS_KEY).unwrap();
    assert!(keys.iter().any(|k| k.key_id == others), "{keys:?}");
    assert_eq!(
        keys.len(),
        2,
        "someone else's key and the current one: {keys:?}"
    );
    out.0.push(("log lines".into(), logs.text()));
    let leaks = inv::private_key_leaks(&o, &out.0);
    assert!(leaks.is_empty(), "{leaks:#?}");
}

/// [`fault_case`] under every certificate variant at once, each on its own task and account of
/// one Azurite process; every variant that failed is named with its failure.
async fn under_every_variant(
    service: &'static str,
    op: &'static str,
    action: azure_emulator::faults::FaultAction,
) {
    use azure_emulator::scenario::Uncertainties;
    let variants = Uncertainties::certificate_variants();
    let issuer = TestEmulator::start(serde_json::json!({})).await;
    let storage = crate::support::azurite::Azurite::shared(&issuer.emulator, variants.len());
    issuer.emulator.shutdown().await;
    let mut failed = Vec::new();
    // One variant after the other (each with its own log capture).
    for ((name, u), storage) in variants.into_iter().zip(storage) {
        let run = std::panic::AssertUnwindSafe(fault_case(service, op, action.clone(), u, storage));
        if let Err(p) = futures::FutureExt::catch_unwind(run).await {
            let text = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            failed.push(format!("under {name}: {text}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

macro_rules! cases {
    ($($name:ident: $service:literal, $op:literal, $action:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            under_every_variant($service, $op, $action).await;
        }
    )*};
}

fn ctf(status: u16) -> azure_emulator::faults::FaultAction {
    azure_emulator::faults::FaultAction::CommitThenFail { status }
}

fn throttled() -> azure_emulator::faults::FaultAction {
    azure_emulator::faults::FaultAction::Status {
        status: 429,
        retry_after: Some(1),
    }
}

fn s503() -> azure_emulator::faults::FaultAction {
    crate::support::faultkit::status(503)
}

const RESET: azure_emulator::faults::FaultAction = azure_emulator::faults::FaultAction::Reset;

cases! {
    kv_create_429: "keyvault", "createCertificate", throttled();
    kv_create_503: "keyvault", "createCertificate", s503();
    kv_create_reset: "keyvault", "createCertificate", RESET;
    kv_create_commit_then_fail: "keyvault", "createCertificate", ctf(500);
    kv_pending_429: "keyvault", "getCertificateOperation", throttled();
    kv_pending_503: "keyvault", "getCertificateOperation", s503();
    kv_pending_reset: "keyvault", "getCertificateOperation", RESET;
    kv_get_version_429: "keyvault", "getCertificate", throttled();
    kv_get_version_503: "keyvault", "getCertificate", s503();
    kv_get_version_reset: "keyvault", "getCertificate", RESET;
    kv_versions_503: "keyvault", "listCertificateVersions", s503();
    kv_update_tags_429: "keyvault", "updateCertificate", throttled();
    kv_update_tags_503: "keyvault", "updateCertificate", s503();
    kv_update_tags_reset: "keyvault", "updateCertificate", RESET;
    kv_update_tags_commit_then_fail: "keyvault", "updateCertificate", ctf(500);
    kv_sign_429: "keyvault", "sign", throttled();
    kv_sign_503: "keyvault", "sign", s503();
    kv_sign_reset: "keyvault", "sign", RESET;
    graph_add_key_429: "graph", "addKey", throttled();
    graph_add_key_503: "graph", "addKey", s503();
    graph_add_key_reset: "graph", "addKey", RESET;
    graph_add_key_commit_then_fail: "graph", "addKey", ctf(500);
    graph_remove_key_429: "graph", "removeKey", throttled();
    graph_remove_key_503: "graph", "removeKey", s503();
    graph_remove_key_reset: "graph", "removeKey", RESET;
    graph_remove_key_commit_then_fail: "graph", "removeKey", ctf(500);
    graph_patch_keys_429: "graph", "updateApplication", throttled();
    graph_patch_keys_503: "graph", "updateApplication", s503();
    graph_patch_keys_reset: "graph", "updateApplication", RESET;
    graph_patch_keys_commit_then_fail: "graph", "updateApplication", ctf(500);
    graph_get_keys_429: "graph", "getApplication", throttled();
    graph_get_keys_503: "graph", "getApplication", s503();
    graph_get_keys_reset: "graph", "getApplication", RESET;
    assertion_token_429: "entra", "token", throttled();
    assertion_token_503: "entra", "token", s503();
    assertion_token_reset: "entra", "token", RESET;
    assertion_token_commit_then_fail: "entra", "token", ctf(500);
    settings_put_503: "arm", "putAppSettings", s503();
    settings_put_commit_then_fail: "arm", "putAppSettings", ctf(500);
}
