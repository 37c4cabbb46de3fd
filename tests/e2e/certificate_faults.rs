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
