//! Test harness: one call builds the whole world the rotator lives in — the emulator loaded with
//! a scenario, a private Azurite for the rotator's storage account, and the real engine wired to
//! both through the real clients (zero-to-production's `spawn_app`, for secret-rotator).
//!
//! The in-process engine signs in as an application (`secret-rotator-ci`, client secret) rather
//! than as the managed identity: azure_identity's ManagedIdentityCredential reads the process
//! environment, which parallel tests cannot each own. [`ci_identity`] gives that application the
//! same Graph app role, ownerships and role assignments the scenario gives the managed identity
//! `secret-rotator`. The host-harness tests cover the managed identity itself.
//!
//! Include with `#[path = "support/emulator.rs"] mod emulator;`,
//! `#[path = "support/azurite.rs"] mod azurite;` and `#[path = "support/world.rs"] mod world;`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secret_rotator::cloud::Cloud;
use secret_rotator::compose::{EngineParts, build_with};
use secret_rotator::engine::Engine;
use secret_rotator::engine::executor::VerifyPolicy;
use secret_rotator::engine::report::{CredentialReport, PassReport};
use secret_rotator::notify::Webhook;
use secret_rotator::policy::Policy;
use serde_json::{Value, json};

use crate::support::azurite::Azurite;
use crate::support::emulator::TestEmulator;

pub const CI_APP: &str = "secret-rotator-ci";
pub const CI_SECRET: &str = "ciR8Q~rotator.test.identity-0123456789ab";
pub const MI: &str = "secret-rotator";

pub fn demo_scenario() -> Value {
    serde_json::from_str(include_str!("../../../src/dev/demo-scenario.json"))
        .expect("demo scenario")
}

pub fn demo_policy() -> String {
    include_str!("../../../src/dev/demo-policy.json").to_string()
}

/// Adds the `secret-rotator-ci` application with everything the managed identity has.
pub fn ci_identity(scenario: &mut Value) {
    mi_twin(scenario, CI_APP, CI_SECRET);
}

/// Adds the application `name`, signing in with client secret `secret`, with everything the
/// managed identity has: its Graph app roles, its ownerships and its role assignments.
pub fn mi_twin(scenario: &mut Value, name: &str, secret: &str) {
    let roles = scenario["managedIdentities"]
        .as_array()
        .and_then(|m| m.iter().find(|x| x["name"] == MI))
        .map(|m| m["graphAppRoles"].clone())
        .unwrap_or_else(|| json!(["Application.ReadWrite.OwnedBy"]));
    for app in scenario["applications"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        // `get_mut`, not `app["owners"]`: indexing would add `"owners": null` to an app without.
        if let Some(owners) = app.get_mut("owners").and_then(Value::as_array_mut)
            && owners.iter().any(|o| o == MI)
        {
            owners.push(json!(name));
        }
    }
    let extra: Vec<Value> = scenario["roleAssignments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["principal"] == MI)
        .map(|r| {
            let mut r = r.clone();
            r["principal"] = json!(name);
            r
        })
        .collect();
    if let Some(ras) = scenario["roleAssignments"].as_array_mut() {
        ras.extend(extra);
    }
    let apps = scenario["applications"]
        .as_array_mut()
        .expect("scenario has applications");
    apps.push(json!({
        "displayName": name,
        "graphAppRoles": roles,
        "passwordCredentials": [{
            "displayName": "ci",
            "secretText": secret,
            "endDateTime": "2099-01-01T00:00:00Z"
        }]
    }));
}

/// One line per credential of a pass: name, outcome, error (for assertion messages).
pub fn summary(r: &PassReport) -> String {
    r.credentials
        .iter()
        .map(|c| {
            format!(
                "{}: {:?} {}",
                c.name,
                c.outcome,
                c.error.clone().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub struct World {
    pub emu: TestEmulator,
    pub azurite: Azurite,
    pub engine: Arc<Engine>,
    pub http: reqwest::Client,
}

pub struct WorldOptions {
    pub webhooks: Vec<Webhook>,
    pub max_parallel: usize,
    pub verify: VerifyPolicy,
    /// ROTATOR_WARN_UNENROLLED_DAYS; off unless a test is about the scan, so the other tests'
    /// request counts and faults concern the rotations only.
    pub warn_unenrolled_days: u32,
}

impl Default for WorldOptions {
    fn default() -> Self {
        Self {
            webhooks: Vec::new(),
            max_parallel: 4,
            verify: VerifyPolicy {
                timeout: Duration::from_secs(20),
                first_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(800),
            },
            warn_unenrolled_days: 0,
        }
    }
}

pub async fn spawn_world(scenario: Value, policy_json: &str) -> World {
    spawn_world_with(scenario, policy_json, WorldOptions::default()).await
}

pub async fn spawn_world_with(mut scenario: Value, policy_json: &str, opts: WorldOptions) -> World {
    ci_identity(&mut scenario);
    let emu = TestEmulator::start(scenario).await;
    let account = format!("st{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let azurite = Azurite::start(&emu.emulator, &account);
    world_on(emu, azurite, policy_json, opts)
}

/// [`spawn_world_with`] on an account of an Azurite process other worlds share
/// ([`Azurite::shared`]).
pub async fn spawn_world_on(
    mut scenario: Value,
    policy_json: &str,
    opts: WorldOptions,
    azurite: Azurite,
) -> World {
    ci_identity(&mut scenario);
    let emu = TestEmulator::start(scenario).await;
    world_on(emu, azurite, policy_json, opts)
}

fn world_on(emu: TestEmulator, azurite: Azurite, policy_json: &str, opts: WorldOptions) -> World {
    let (engine, http) = build_engine(&emu, &azurite, policy_json, opts);
    World {
        emu,
        azurite,
        engine,
        http,
    }
}

/// The real engine on `emu` and `azurite`: one rotator instance.
fn build_engine(
    emu: &TestEmulator,
    azurite: &Azurite,
    policy_json: &str,
    opts: WorldOptions,
) -> (Arc<Engine>, reqwest::Client) {
    let mut transport = emu.transport_config(&[azurite.host_override()]);
    if let (Some(ca), Some(pem)) = (&azurite.foreign_ca, transport.extra_ca_pem.as_mut()) {
        pem.extend_from_slice(b"\n");
        pem.extend_from_slice(ca.as_bytes());
    }
    let http = transport.build().expect("transport");
    let options = secret_rotator::azure::ServiceOptions::new(http.clone())
        .with_retry(crate::support::emulator::fast_retry());
    let credential = emu.app_credential_with(CI_APP, CI_SECRET, &options);
    let policy: Policy =
        secret_rotator::policy::parse("policy.json", policy_json).expect("test policy is valid");
    let engine = build_with(EngineParts {
        policy,
        cloud: Cloud::Public,
        tenant: emu.tenant(),
        credential,
        options,
        blob_endpoint: url::Url::parse(&format!(
            "https://{}.blob.core.windows.net",
            azurite.account
        ))
        .unwrap(),
        container: "secret-rotator".into(),
        webhooks: opts.webhooks,
        max_parallel: opts.max_parallel,
        verify: opts.verify,
        warn_unenrolled_days: opts.warn_unenrolled_days,
    })
    .expect("engine builds");
    (engine, http)
}

impl World {
    /// A second rotator instance on the same tenant and storage account (another Functions
    /// worker): its own clients and engine, the same leases.
    pub fn another_instance(&self, policy_json: &str, opts: WorldOptions) -> Arc<Engine> {
        build_engine(&self.emu, &self.azurite, policy_json, opts).0
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.emu.emulator.control().now()
    }

    pub fn advance_days(&self, days: i64) {
        self.emu
            .emulator
            .control()
            .advance(chrono::Duration::days(days));
    }

    /// The policy's credential of that name (panics when there is none).
    pub fn credential(&self, name: &str) -> &secret_rotator::policy::CredentialPolicy {
        self.engine
            .policy
            .credentials
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("policy has {name}"))
    }

    pub async fn run(&self, credential: &str) -> CredentialReport {
        self.run_with(credential, false).await
    }

    /// One credential as on-demand `Rotate` runs it (`force`: rotate even when nothing is due).
    pub async fn run_with(&self, credential: &str, force: bool) -> CredentialReport {
        let cred = self.credential(credential).clone();
        self.engine
            .run_credential(&cred, self.now(), force, None, "test")
            .await
    }

    /// Runs the credential and expects `blocked`; returns the reason.
    pub async fn blocked_reason(&self, credential: &str) -> String {
        let r = self.run(credential).await;
        assert_eq!(
            r.outcome,
            secret_rotator::engine::report::CredentialOutcome::Blocked,
            "{r:#?}"
        );
        r.error.unwrap_or_default()
    }

    /// An on-demand forced rotation (`Rotate` with force), as the HTTP function asks for it.
    pub async fn force(&self, credential: &str) -> CredentialReport {
        use secret_rotator::engine::service::RotatorService;
        self.engine
            .rotate_one(credential, true, self.now())
            .await
            .expect("the credential is in the policy")
    }
}
