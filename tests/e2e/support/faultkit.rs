//! Shared pieces of the fault tests (`tests/e2e/faults.rs`) and the fault campaign
//! (`tests/e2e/fault_campaign.rs`): a world tuned for fault runs (short verification timeout, small
//! replication delay), the baseline of passwords the rotator did not create and the invariant
//! about them, a check of every credential at once, cancelling a pass at the k-th Azure request
//! (a crash), and breaking the leases a crashed run may leave behind.
//!
//! Include after `world`, `invariants`, `emulator` and `azurite`:
//! `#[path = "support/faultkit.rs"] mod faultkit;`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use azure_emulator::faults::{FaultAction, FaultRule};
use azure_emulator::scenario::{ConnectionPut, Uncertainties};
use chrono::{DateTime, Utc};
use secret_rotator::azure::storage::StorageClient;
use secret_rotator::cloud::Cloud;
use secret_rotator::engine::executor::{VerifyPolicy, resource_lock_name};
use secret_rotator::engine::report::{CredentialOutcome, PassReport};
use secret_rotator::policy::{AppRef, Consumer, CredentialPolicy};
use serde_json::Value;
use uuid::Uuid;

use crate::support::azurite::Azurite;
use crate::support::world::{
    CI_APP, CI_SECRET, World, WorldOptions, spawn_world_on, spawn_world_with,
};

/// Replication delay (emulated seconds, which flow with the wall clock) for fault runs: small
/// so a rotation does not wait long, non-zero so verification still retries a refused secret.
pub const REPLICATION_SECONDS: u64 = 1;

/// The consumers an uncertainty variant breaks for good, per credential name: with
/// `connectionPut: refused`, every API connection (ARM refuses the PUT that would update it:
/// the rotator holds it with the manual step). For [`Baseline::broken`].
pub fn broken_by(
    u: &Uncertainties,
    creds: &[CredentialPolicy],
) -> BTreeMap<String, BTreeSet<usize>> {
    if u.connection_put != ConnectionPut::Refused {
        return BTreeMap::new();
    }
    creds
        .iter()
        .filter_map(|cred| {
            let connections: BTreeSet<usize> = cred
                .consumers
                .iter()
                .enumerate()
                .filter(|(_, c)| matches!(c, Consumer::ApiConnection { .. }))
                .map(|(i, _)| i)
                .collect();
            (!connections.is_empty()).then(|| (cred.name.clone(), connections))
        })
        .collect()
}

/// A world whose verification gives up after 5 s (faults on the token endpoint otherwise cost
/// the default 20 s per attempt) and whose emulator replicates new passwords after 1 s.
pub async fn fault_world(scenario: Value, policy: &str) -> World {
    fault_world_scanning(scenario, policy, 0).await
}

/// [`fault_world`] with the timer pass's scan of unenrolled credentials on (0: off), so that
/// faults on Graph's listings hit the scan as well as the rotations.
pub async fn fault_world_scanning(
    scenario: Value,
    policy: &str,
    warn_unenrolled_days: u32,
) -> World {
    let w = spawn_world_with(scenario, policy, fault_options(warn_unenrolled_days)).await;
    fault_tuned(w)
}

/// [`fault_world`] on an account of a shared Azurite process ([`Azurite::shared`]).
pub async fn fault_world_on(scenario: Value, policy: &str, azurite: Azurite) -> World {
    let w = spawn_world_on(scenario, policy, fault_options(0), azurite).await;
    fault_tuned(w)
}

fn fault_options(warn_unenrolled_days: u32) -> WorldOptions {
    WorldOptions {
        verify: VerifyPolicy {
            timeout: Duration::from_secs(5),
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(400),
        },
        warn_unenrolled_days,
        ..Default::default()
    }
}

fn fault_tuned(w: World) -> World {
    w.emu
        .emulator
        .control()
        .set_replication_delay(REPLICATION_SECONDS);
    w
}

/// The passwords of every policy credential's application that the rotator did not create
/// (no `secret-rotator:{credential}:` marker), taken before any run: the invariant is that they
/// stay, unless the policy says `removeUnmanagedExpired` and then only once expired.
pub struct Baseline {
    /// credential name → (application id, may remove expired unmanaged, [(keyId, end)])
    pub unmanaged: BTreeMap<String, Unmanaged>,
    /// credential name → (Key Vault version before any run, what each consumer held then,
    /// whether Entra refused that value then)
    pub initial: BTreeMap<String, Initial>,
    /// (resource group, site) → the settings no policy consumer owns, as before any run: the
    /// rotator must never change them.
    pub unowned_settings: BTreeMap<(String, String), BTreeMap<String, String>>,
    /// credential name → the indexes of its consumers broken on purpose (the campaign's
    /// shapes; empty otherwise): the invariants hold them to less (`invariants::Allowances`).
    pub broken: BTreeMap<String, BTreeSet<usize>>,
    /// Credentials whose Key Vault secret was soft-deleted before the first run: blocked until
    /// a person recovers or purges it, so nothing of theirs may change.
    pub soft_deleted: BTreeSet<String>,
    /// Secret credentials a certificate replaces (`replacesSecret`): their passwords go once
    /// their consumers moved, so the secret rules no longer describe them; the certificate
    /// oracle's conversion rule does (`cert_invariants::check_conversion`).
    pub converted: BTreeSet<String>,
}

impl Baseline {
    /// What the invariants allow `cred`'s broken consumers (none for a healthy credential).
    pub fn allowances(&self, cred: &CredentialPolicy) -> crate::support::invariants::Allowances {
        let (held0, refused0) = match self.initial.get(&cred.name) {
            Some((_, held, refused)) => (held.as_slice(), refused.as_slice()),
            None => (&[][..], &[][..]),
        };
        let broken = self.broken.get(&cred.name).into_iter().flatten();
        crate::support::invariants::Allowances {
            broken: broken
                .map(|&i| {
                    let before = held0.get(i).cloned().flatten();
                    (i, (before, refused0.get(i).copied().unwrap_or(false)))
                })
                .collect(),
        }
    }
}

/// (application id, may remove expired unmanaged passwords, [(keyId, end)])
pub type Unmanaged = (Uuid, bool, Vec<(Uuid, DateTime<Utc>)>);
/// (Key Vault version, what each consumer held, whether Entra refused that)
pub type Initial = (String, Vec<Option<String>>, Vec<bool>);

/// What each consumer of `cred` holds now, in policy order (None for notify-only consumers and
/// for nothing held).
pub fn held_values(w: &World, cred: &CredentialPolicy) -> Vec<Option<String>> {
    held_values_on(&w.emu.emulator.control(), cred)
}

/// [`held_values`] from the emulator's control handle alone.
pub fn held_values_on(c: &azure_emulator::Control, cred: &CredentialPolicy) -> Vec<Option<String>> {
    cred.consumers
        .iter()
        .map(|consumer| match consumer {
            Consumer::AppSettingKeyVaultRef { site, setting } => {
                c.app_setting_effective(&site.resource_group, &site.name, setting)
            }
            Consumer::AppSettingValue { site, setting } => {
                c.app_setting(&site.resource_group, &site.name, setting)
            }
            Consumer::ApiConnection {
                connection,
                parameter,
            } => c.connection_parameter(&connection.resource_group, &connection.name, parameter),
            Consumer::AutomationVariable { account, variable } => {
                c.automation_variable(&account.resource_group, &account.name, variable)
            }
            Consumer::NotifyOnly { .. } => None,
        })
        .collect()
}

pub fn baseline(w: &World) -> Baseline {
    let c = w.emu.emulator.control();
    let mut unmanaged = BTreeMap::new();
    let mut initial = BTreeMap::new();
    for cred in &w.engine.policy.credentials {
        let version = c
            .secret_latest(&cred.key_vault.vault, &cred.key_vault.secret)
            .map(|(v, _, _)| v)
            .unwrap_or_default();
        let held = held_values(w, cred);
        let refused = held
            .iter()
            .map(|h| match (&cred.application, h) {
                (AppRef::AppId(app), Some(h)) => c.check_client_secret(*app, h).is_err(),
                _ => false,
            })
            .collect();
        initial.insert(cred.name.clone(), (version, held, refused));
        let AppRef::AppId(app) = cred.application else {
            continue;
        };
        let marker = format!("secret-rotator:{}:", cred.name);
        let list = c
            .passwords(app)
            .into_iter()
            .filter(|p| {
                !p.display_name
                    .as_deref()
                    .is_some_and(|d| d.starts_with(&marker))
            })
            .map(|p| (p.key_id, p.end))
            .collect();
        unmanaged.insert(
            cred.name.clone(),
            (app, cred.remove_unmanaged_expired, list),
        );
    }
    Baseline {
        unmanaged,
        initial,
        unowned_settings: unowned_settings(w),
        broken: BTreeMap::new(),
        soft_deleted: BTreeSet::new(),
        converted: w
            .engine
            .policy
            .certificates
            .iter()
            .filter_map(|c| c.replaces_secret.clone())
            .collect(),
    }
}

/// Every policy site's settings that no consumer of any credential (secret or certificate) owns.
fn unowned_settings(w: &World) -> BTreeMap<(String, String), BTreeMap<String, String>> {
    let c = w.emu.emulator.control();
    let mut owned: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for consumer in w
        .engine
        .policy
        .credentials
        .iter()
        .flat_map(|c| &c.consumers)
    {
        if let Consumer::AppSettingKeyVaultRef { site, setting }
        | Consumer::AppSettingValue { site, setting } = consumer
        {
            owned
                .entry((site.resource_group.clone(), site.name.clone()))
                .or_default()
                .push(setting.clone());
        }
    }
    // Certificate consumers' settings are the rotator's too (thumbprints, PFX references).
    for consumer in w
        .engine
        .policy
        .certificates
        .iter()
        .flat_map(|c| &c.consumers)
    {
        use secret_rotator::policy::CertificateConsumer as C;
        if let C::AppSettingKeyVaultRef { site, setting }
        | C::AppSettingThumbprint { site, setting } = consumer
        {
            owned
                .entry((site.resource_group.clone(), site.name.clone()))
                .or_default()
                .push(setting.clone());
        }
    }
    owned
        .into_iter()
        .map(|((rg, site), names)| {
            let mut all = c.app_settings(&rg, &site).unwrap_or_default();
            all.retain(|k, _| !names.contains(k));
            ((rg, site), all)
        })
        .collect()
}

/// Nothing the rotator does not own on a site changed (compared with the baseline; settings
/// are named, never their values).
pub fn check_unowned_settings(w: &World, b: &Baseline) -> Result<(), String> {
    let now = unowned_settings(w);
    for (site, before) in &b.unowned_settings {
        let after = now.get(site).cloned().unwrap_or_default();
        let changed: Vec<&String> = before
            .keys()
            .chain(after.keys())
            .filter(|k| before.get(*k) != after.get(*k))
            .collect();
        if !changed.is_empty() {
            return Err(format!(
                "site {}/{}: settings the rotator does not own changed: {changed:?}",
                site.0, site.1
            ));
        }
    }
    Ok(())
}

/// Every baseline password that is gone was allowed to go: the policy lets the rotator remove
/// expired unmanaged passwords and this one had expired. Called after each run and before the
/// clock is advanced, so "expired now" is "expired when it was removed" (runs take seconds).
pub fn check_unmanaged(w: &World, b: &Baseline) -> Result<(), String> {
    let c = w.emu.emulator.control();
    let now = c.now();
    for (name, (app, may_remove_expired, list)) in &b.unmanaged {
        let present: Vec<Uuid> = c.passwords(*app).iter().map(|p| p.key_id).collect();
        for (key_id, end) in list {
            if present.contains(key_id) {
                continue;
            }
            if !*may_remove_expired {
                return Err(format!(
                    "{name}: password {key_id}, not created by the rotator, was removed although \
                     the policy does not allow removing unmanaged passwords"
                ));
            }
            if *end > now {
                return Err(format!(
                    "{name}: password {key_id}, not created by the rotator, was removed before it \
                     expired ({end})"
                ));
            }
        }
    }
    Ok(())
}

/// All invariants of all credentials; every violation is listed.
///
/// Settled: the harness's oracle (`invariants::check`, with the baseline's allowances for
/// consumers broken on purpose), the unmanaged-password rule, and renewal on time: no
/// credential is left inside its renewal window (whatever its broken consumers do), except one
/// whose secret was soft-deleted, of which nothing may have changed.
///
/// Not settled (after any run, faulted or crashed), the same invariants with two allowances
/// that `invariants::check` cannot know about, hence this own walk over the oracles:
/// - a tenant may start broken (the demo's empower secret has expired: runbook 002); a Key
///   Vault value or a consumer value that was already refused before the first run and has not
///   been changed since is not something the rotator did (nor is it made worse when the expired
///   password behind it is removed);
/// - a password of the rotator's that is neither current nor previous may exist mid-way (an
///   addPassword committed whose answer was lost: the orphan the next runs must remove); it
///   only counts once settled.
pub fn check_all(w: &World, b: &Baseline, settled: bool) -> Vec<String> {
    let mut out = Vec::new();
    for cred in &w.engine.policy.credentials {
        if b.converted.contains(&cred.name) {
            continue;
        }
        let r = if settled {
            check_settled(w, b, cred)
        } else {
            check_unsettled(w, b, cred)
        };
        if let Err(e) = r {
            out.push(e);
        }
    }
    if let Err(e) = check_unmanaged(w, b) {
        out.push(e);
    }
    if let Err(e) = check_unowned_settings(w, b) {
        out.push(e);
    }
    out
}

fn check_settled(w: &World, b: &Baseline, cred: &CredentialPolicy) -> Result<(), String> {
    if b.soft_deleted.contains(&cred.name) {
        return check_soft_deleted(w, b, cred);
    }
    crate::support::invariants::check_with(w, cred, true, &b.allowances(cred))?;
    renewed(w, cred)
}

/// The value in Key Vault is not due: a renewal that was due started (and its value reached
/// every healthy consumer: `invariants::check_with`), whatever the broken consumers did.
fn renewed(w: &World, cred: &CredentialPolicy) -> Result<(), String> {
    let c = w.emu.emulator.control();
    let AppRef::AppId(app) = cred.application else {
        return Err("tests name applications by appId".into());
    };
    let kv = &cred.key_vault;
    let (_, value, _) = c
        .secret_latest(&kv.vault, &kv.secret)
        .ok_or_else(|| format!("{}: Key Vault secret missing", cred.name))?;
    let end = c
        .passwords(app)
        .into_iter()
        .find(|p| p.secret_text == value)
        .map(|p| p.end)
        .ok_or_else(|| format!("{}: no password has the Key Vault value", cred.name))?;
    if end - c.now() <= cred.renew_before {
        return Err(format!(
            "{}: settled with the current password inside its renewal window (ends {end})",
            cred.name
        ));
    }
    Ok(())
}

/// A soft-deleted secret blocks its credential until a person recovers or purges it: the
/// secret is still soft-deleted (never recovered nor purged by the rotator), no consumer holds
/// anything new (a Key Vault reference aside: App Service re-resolves it on its own, to the
/// reference text once the secret is gone) and no password of the rotator's exists.
fn check_soft_deleted(w: &World, b: &Baseline, cred: &CredentialPolicy) -> Result<(), String> {
    let c = w.emu.emulator.control();
    let name = &cred.name;
    let kv = &cred.key_vault;
    if c.secret_latest(&kv.vault, &kv.secret).is_some() {
        return Err(format!("{name}: the soft-deleted secret is back"));
    }
    let Some((_, held0, _)) = b.initial.get(name) else {
        return Err(format!("{name}: no baseline"));
    };
    for ((consumer, held), before) in cred.consumers.iter().zip(held_values(w, cred)).zip(held0) {
        if !matches!(consumer, Consumer::AppSettingKeyVaultRef { .. }) && held != *before {
            return Err(format!("{name}: {} was written", consumer.describe()));
        }
    }
    let AppRef::AppId(app) = cred.application else {
        return Err("tests name applications by appId".into());
    };
    let marker = format!("secret-rotator:{name}:");
    if let Some(p) = c.passwords(app).iter().find(|p| {
        p.display_name
            .as_deref()
            .is_some_and(|d| d.starts_with(&marker))
    }) {
        return Err(format!("{name}: password {} was created", p.key_id));
    }
    Ok(())
}

fn check_unsettled(w: &World, b: &Baseline, cred: &CredentialPolicy) -> Result<(), String> {
    let c = w.emu.emulator.control();
    let AppRef::AppId(app) = cred.application else {
        return Err("tests name applications by appId".into());
    };
    let name = &cred.name;
    let (v0, held0, refused0) = b
        .initial
        .get(name)
        .ok_or_else(|| format!("{name}: no baseline"))?;
    let kv = &cred.key_vault;
    let Some((version, value, tags)) = c.secret_latest(&kv.vault, &kv.secret) else {
        // Not stored yet (first enrolment): the rotator writes no consumer before it is.
        if v0.is_empty() {
            return Ok(());
        }
        return Err(format!(
            "{name}: Key Vault secret {}/{} missing",
            kv.vault, kv.secret
        ));
    };
    let accepted = c.check_client_secret(app, &value).is_ok();
    if !accepted && version != *v0 {
        return Err(format!(
            "{name}: the current Key Vault value (version {version}) is refused by Entra"
        ));
    }
    if accepted {
        let passwords = c.passwords(app);
        let current = passwords
            .iter()
            .find(|p| p.secret_text == value)
            .ok_or_else(|| format!("{name}: no password has the Key Vault value"))?;
        // Either tag form (readable or compact).
        if let Some(k) = secret_rotator::engine::tags::key_id(&tags)
            && k != current.key_id
        {
            return Err(format!(
                "{name}: the tags name password {k}, not the password {} whose value is stored",
                current.key_id
            ));
        }
    }
    for (i, (consumer, held)) in cred.consumers.iter().zip(held_values(w, cred)).enumerate() {
        if matches!(consumer, Consumer::NotifyOnly { .. }) {
            continue;
        }
        let Some(held) = held else {
            return Err(format!("{name}: {} holds nothing", consumer.describe()));
        };
        // Untouched since before the first run and already refused then: not the rotator's doing.
        let pre_existing = held0.get(i).cloned().flatten().as_deref() == Some(held.as_str())
            && refused0.get(i).copied().unwrap_or(false);
        if pre_existing || (held == value && !accepted) {
            continue;
        }
        if let Err(code) = c.check_client_secret(app, &held) {
            return Err(format!(
                "{name}: {} holds a value Entra refuses (AADSTS{code})",
                consumer.describe()
            ));
        }
        // A connection broken on purpose (never Connected) is not the rotator's doing.
        let broken = b.broken.get(name).is_some_and(|s| s.contains(&i));
        if let Consumer::ApiConnection { connection, .. } = consumer
            && !broken
        {
            let status = c.connection_status(&connection.resource_group, &connection.name);
            if status.as_deref() != Some("Connected") {
                return Err(format!("{name}: {} status {status:?}", consumer.describe()));
            }
        }
    }
    Ok(())
}

/// A full pass of every credential, as the timer runs it.
pub async fn pass(w: &World) -> PassReport {
    w.engine.pass(w.now(), Duration::from_secs(300)).await
}

/// Gets a token for every service the engine calls before faults are set, so faults on the
/// token endpoint hit the rotator's verification requests rather than its own sign-in (the
/// engine caches its tokens for an hour of wall time).
pub async fn warm_up(w: &World) {
    let _ = w.engine.status_report(w.now()).await;
}

/// Runs a pass and drops it (a crash: nothing after the drop point happens) once the emulator has
/// logged `k` more Azure requests. Returns true if the pass finished before the k-th request.
///
/// Dropping the future drops the held blob lease, whose `Drop` releases it in the background
/// (best effort) — a killed process would not; its lease would lapse after its duration. So
/// after a crash the lease is either free already or still held: [`break_leases`] stands in
/// for the lapse.
pub async fn crash_pass_at(w: &World, k: usize) -> bool {
    let control = w.emu.emulator.control();
    let start = control.request_count();
    let watch = async {
        loop {
            if control.request_count() >= start + k {
                return;
            }
            // Polling the request log, not waiting for time to pass.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::select! {
        _ = pass(w) => true,
        _ = watch => false,
    }
}

/// A storage client on the world's Azurite container, signed in as the rotator's CI identity.
pub fn storage(w: &World) -> StorageClient {
    let options = secret_rotator::azure::ServiceOptions::new(w.http.clone())
        .with_retry(crate::support::emulator::fast_retry());
    let credential = w.emu.app_credential_with(CI_APP, CI_SECRET, &options);
    let endpoint = url::Url::parse(&format!(
        "https://{}.blob.core.windows.net",
        w.azurite.account
    ))
    .unwrap();
    StorageClient::new(
        Cloud::Public,
        &endpoint,
        "secret-rotator",
        credential,
        options,
    )
    .expect("storage client")
}

/// A pass after a crash: a credential reported Busy is still leased by the crashed run (its
/// in-flight lease request may even land after the crash); the lease is broken, as its expiry
/// would, and the pass repeated — at most three times.
pub async fn pass_after_crash(w: &World) -> PassReport {
    let mut r = pass(w).await;
    for _ in 0..3 {
        if !r
            .credentials
            .iter()
            .any(|c| c.outcome == CredentialOutcome::Busy)
        {
            break;
        }
        break_leases(w).await;
        r = pass(w).await;
    }
    r
}

/// Breaks every credential's lease (certificates' too) and every consumer site's write lease (what the lease's
/// expiry does for a killed process). A lease that is not held, or a lock blob never created,
/// is fine.
pub async fn break_leases(w: &World) {
    let s = storage(w);
    for cred in &w.engine.policy.credentials {
        let _ = s.break_lease(&format!("credential-{}", cred.name)).await;
        for c in &cred.consumers {
            if let Consumer::AppSettingKeyVaultRef { site, .. }
            | Consumer::AppSettingValue { site, .. } = c
            {
                let _ = s.break_lease(&resource_lock_name(site)).await;
            }
        }
    }
    for cert in &w.engine.policy.certificates {
        let _ = s.break_lease(&format!("credential-{}", cert.name)).await;
        for c in &cert.consumers {
            if let secret_rotator::policy::CertificateConsumer::AppSettingKeyVaultRef {
                site, ..
            }
            | secret_rotator::policy::CertificateConsumer::AppSettingThumbprint {
                site, ..
            } = c
            {
                let _ = s.break_lease(&resource_lock_name(site)).await;
            }
        }
    }
}

pub fn rule(service: &str, op: &str, action: FaultAction) -> FaultRule {
    FaultRule {
        service: service.into(),
        operation: Some(op.into()),
        nth: None,
        times: None,
        probability: None,
        seed: None,
        action,
    }
}

pub fn status(status: u16) -> FaultAction {
    FaultAction::Status {
        status,
        retry_after: if status == 429 { Some(0) } else { None },
    }
}

/// Injected faults so far: requests the log marks as hit by a rule.
pub fn faults_injected(w: &World) -> usize {
    w.emu
        .emulator
        .control()
        .requests()
        .iter()
        .filter(|r| r.fault.is_some())
        .count()
}

/// Runs `fut` while sampling the not-settled invariants every 20 ms, so a state that is wrong
/// only mid-run (a consumer given a value Entra does not accept yet, a Key Vault value stored
/// before it works) is seen too, not only what is left after the run. Returns the future's
/// output and every violation seen (each distinct message once).
/// `check` is the not-settled invariants, e.g. `|| check_all(w, b, false)` (the campaign adds the
/// certificate oracle's).
pub async fn watched_with<F: std::future::Future>(
    fut: F,
    check: impl Fn() -> Vec<String>,
) -> (F::Output, Vec<String>) {
    let mut seen: Vec<String> = Vec::new();
    let fut = std::pin::pin!(fut);
    let mut fut = fut;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            out = &mut fut => return (out, seen),
            _ = tick.tick() => {
                for v in check() {
                    if !seen.contains(&v) {
                        seen.push(v);
                    }
                }
            }
        }
    }
}
