//! The certificate credentials' invariants, checked on the emulator's state (its oracles:
//! `key_records`, `key_writes`, `certificate_versions`, `secret_versions`, app settings),
//! never on what the rotator reports — the certificate counterpart of `invariants.rs` /
//! `faultkit::check_all`, used by the certificate fault table and the fault campaign.
//!
//! - [`check_consumers`]: the key every consumer is configured with (a thumbprint setting's
//!   thumbprints; a Key Vault reference's resolved certificate version) is on the application
//!   and valid now. A consumer untouched since the baseline and already broken then is not the
//!   rotator's doing.
//! - [`check_key_writes`]: across every write to a policy application's keyCredentials in the
//!   emulator's record, no key the rotator did not add (no `secret-rotator:` displayName) is
//!   removed or altered by anyone but a declared other writer, and no write leaves the
//!   application without a valid key when it had one.
//! - [`check_conversion`]: a replaced secret's consumer never holds a password that is gone.
//! - [`check_settled`]: once a run after the grace period finished: the newest certificate
//!   version is on the application, valid and outside its renewal window, every writable
//!   consumer holds it, and no other key of the rotator's is left.
//! - [`private_key_leaks`]: no private key (PEM `PRIVATE KEY`, any piece of a certificate's
//!   PFX/PEM secret) in a text the rotator produced.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex};

use azure_emulator::keycreds::KeyRecord;
use azure_emulator::{CertificateRecord, Control};
use base64::Engine;
use secret_rotator::policy::{AppRef, CertificateConsumer, CertificateCredentialPolicy, Policy};
use uuid::Uuid;

use crate::support::world::World;

/// What every check reads: the emulator's state and the policy the rotator runs.
pub struct Oracle<'a> {
    pub c: Control,
    pub policy: &'a Policy,
}

impl<'a> Oracle<'a> {
    pub fn of(w: &'a World) -> Self {
        Oracle {
            c: w.emu.emulator.control(),
            policy: &w.engine.policy,
        }
    }
}

/// The displayName prefix of every key the rotator adds (policy/certificate.rs).
pub const MARKER: &str = "secret-rotator:";

/// Length of the pieces of a certificate's secret looked for in outputs: long enough that a
/// base64 run of this length cannot occur by chance, short enough to catch a truncated leak.
const PIECE: usize = 24;

/// What the certificate invariants compare with: the state before the first run.
pub struct CertBaseline {
    /// credential name → (application id, its keys before any run).
    pub keys0: BTreeMap<String, (Uuid, Vec<KeyRecord>)>,
    /// credential name → what each consumer held before any run (policy order).
    pub held0: BTreeMap<String, Vec<Option<String>>>,
    /// Client ids of writers other than the rotator (someone adding or removing a key by
    /// hand): their writes are theirs to make.
    pub others: BTreeSet<Uuid>,
    /// Every password ever seen on a converted secret's application (keyId → text): grows at
    /// each check, so a password removed mid-run is still known when a consumer holds it.
    seen_passwords: Mutex<BTreeMap<Uuid, String>>,
}

/// The policy's applications must be named by appId in tests.
pub fn app_of(cred: &CertificateCredentialPolicy) -> Result<Uuid, String> {
    match cred.application {
        AppRef::AppId(a) => Ok(a),
        _ => Err(format!("{}: tests name applications by appId", cred.name)),
    }
}

/// The raw value of each consumer, in policy order (None: notify-only, or nothing set). A Key
/// Vault reference is what the app sees (`app_setting_effective`).
pub fn held(o: &Oracle, cred: &CertificateCredentialPolicy) -> Vec<Option<String>> {
    let c = &o.c;
    cred.consumers
        .iter()
        .map(|consumer| match consumer {
            CertificateConsumer::AppSettingKeyVaultRef { site, setting } => {
                c.app_setting_effective(&site.resource_group, &site.name, setting)
            }
            CertificateConsumer::AppSettingThumbprint { site, setting } => {
                c.app_setting(&site.resource_group, &site.name, setting)
            }
            CertificateConsumer::NotifyOnly { .. } => None,
        })
        .collect()
}

pub fn cert_baseline(o: &Oracle, others: &[Uuid]) -> CertBaseline {
    let c = &o.c;
    let mut keys0 = BTreeMap::new();
    let mut held0 = BTreeMap::new();
    for cred in &o.policy.certificates {
        if let Ok(app) = app_of(cred) {
            keys0.insert(cred.name.clone(), (app, c.key_records(app)));
        }
        held0.insert(cred.name.clone(), held(o, cred));
    }
    let b = CertBaseline {
        keys0,
        held0,
        others: others.iter().copied().collect(),
        seen_passwords: Mutex::new(BTreeMap::new()),
    };
    remember_passwords(o, &b);
    b
}

/// Records the passwords now on every converted secret's application.
fn remember_passwords(o: &Oracle, b: &CertBaseline) {
    let c = &o.c;
    let mut seen = b.seen_passwords.lock().unwrap();
    for cred in &o.policy.certificates {
        if cred.replaces_secret.is_some()
            && let Ok(app) = app_of(cred)
        {
            for p in c.passwords(app) {
                seen.insert(p.key_id, p.secret_text);
            }
        }
    }
}

/// Which completed certificate version a consumer's value is: a thumbprint setting lists
/// SHA-1 thumbprints (comma-separated, as `WEBSITE_LOAD_CERTIFICATES`); a Key Vault reference
/// resolves to one version of the certificate's secret. `Err` names what it holds instead.
fn versions_held(
    o: &Oracle,
    cred: &CertificateCredentialPolicy,
    consumer: &CertificateConsumer,
    value: &str,
) -> Result<Vec<CertificateRecord>, String> {
    let c = &o.c;
    let versions = c.certificate_versions(&cred.certificate.vault, &cred.certificate.name);
    match consumer {
        CertificateConsumer::AppSettingThumbprint { .. } => value
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty() && *t != "*")
            .map(|t| {
                versions
                    .iter()
                    .find(|v| v.thumbprint.eq_ignore_ascii_case(t))
                    .cloned()
                    .ok_or_else(|| format!("thumbprint {t}, no version of the certificate"))
            })
            .collect(),
        CertificateConsumer::AppSettingKeyVaultRef { .. } => {
            let secrets = c.secret_versions(&cred.certificate.vault, &cred.certificate.name);
            let version = secrets
                .iter()
                .find(|(_, v)| v == value)
                .map(|(ver, _)| ver.clone())
                .ok_or("a value that is no version of the certificate's secret (unresolved?)")?;
            versions
                .iter()
                .find(|v| v.version == version)
                .cloned()
                .map(|v| vec![v])
                .ok_or_else(|| format!("secret version {version} with no certificate version"))
        }
        CertificateConsumer::NotifyOnly { .. } => Ok(vec![]),
    }
}

/// The key of `v` on the application, valid now.
fn key_of<'a>(keys: &'a [KeyRecord], v: &CertificateRecord) -> Option<&'a KeyRecord> {
    keys.iter().find(|k| k.x5t_s256 == v.x5t_s256)
}

/// Every consumer's key is on the application and valid now (mid-run included): the outage
/// the rotator exists to prevent is a consumer configured with a key Entra refuses.
pub fn check_consumers(
    o: &Oracle,
    b: &CertBaseline,
    cred: &CertificateCredentialPolicy,
) -> Result<(), String> {
    let c = &o.c;
    let app = app_of(cred)?;
    let keys = c.key_records(app);
    let now = c.now();
    let before = b.held0.get(&cred.name);
    for (i, (consumer, value)) in cred.consumers.iter().zip(held(o, cred)).enumerate() {
        let Some(value) = value else { continue };
        let untouched =
            before.and_then(|h| h.get(i)).cloned().flatten().as_deref() == Some(value.as_str());
        let problem = match versions_held(o, cred, consumer, &value) {
            Err(e) => Some(e),
            Ok(vs) => vs.iter().find_map(|v| match key_of(&keys, v) {
                None => Some(format!(
                    "version {} whose key is not on the application",
                    v.version
                )),
                Some(k) if !k.valid_at(now) => Some(format!(
                    "version {} whose key {} is not valid now ({}..{})",
                    v.version, k.key_id, k.start, k.end
                )),
                Some(_) => None,
            }),
        };
        if let Some(p) = problem
            && !untouched
        {
            return Err(format!("{}: {} holds {p}", cred.name, consumer.describe()));
        }
    }
    Ok(())
}

/// Every keyCredentials write to a policy application: keys not added by the rotator are
/// neither removed nor altered (unless a declared other writer did it), and no write by the
/// rotator leaves the application without a valid key when it had one.
pub fn check_key_writes(o: &Oracle, b: &CertBaseline) -> Vec<String> {
    let apps: BTreeSet<Uuid> = b.keys0.values().map(|(a, _)| *a).collect();
    let mut out = Vec::new();
    for (n, write) in o.c.key_writes().iter().enumerate() {
        if !apps.contains(&write.app_id) || b.others.contains(&write.caller) {
            continue;
        }
        let what = format!("key write #{n} ({} at {})", write.operation, write.time);
        for k in &write.before {
            let ours = k
                .display_name
                .as_deref()
                .is_some_and(|d| d.starts_with(MARKER));
            let after = write.after.iter().find(|a| a.key_id == k.key_id);
            match after {
                None if !ours => out.push(format!(
                    "{what}: removed key {} ({:?}) that the rotator did not add",
                    k.key_id, k.display_name
                )),
                Some(a) if a != k => out.push(format!(
                    "{what}: altered key {} ({:?}): {k:?} became {a:?}",
                    k.key_id, k.display_name
                )),
                _ => {}
            }
        }
        let valid = |ks: &[KeyRecord]| ks.iter().any(|k| k.valid_at(write.time));
        if valid(&write.before) && !valid(&write.after) {
            out.push(format!("{what}: removed the application's only valid key"));
        }
    }
    out
}

/// A converted secret's consumers never hold a password that is no longer on the
/// application: the secret goes only once every listed consumer is off it.
pub fn check_conversion(
    o: &Oracle,
    b: &CertBaseline,
    cert: &CertificateCredentialPolicy,
) -> Result<(), String> {
    let Some(secret_name) = &cert.replaces_secret else {
        return Ok(());
    };
    remember_passwords(o, b);
    let secret = o
        .policy
        .credentials
        .iter()
        .find(|c| &c.name == secret_name)
        .ok_or_else(|| {
            format!(
                "{}: replaced secret {secret_name} not in the policy",
                cert.name
            )
        })?;
    let c = &o.c;
    let present: BTreeSet<Uuid> = c
        .passwords(app_of(cert)?)
        .iter()
        .map(|p| p.key_id)
        .collect();
    let seen = b.seen_passwords.lock().unwrap();
    let held = crate::support::faultkit::held_values_on(&o.c, secret);
    for (consumer, value) in secret.consumers.iter().zip(held) {
        let Some(value) = value else { continue };
        if let Some((id, _)) = seen
            .iter()
            .find(|(id, text)| **text == value && !present.contains(id))
        {
            return Err(format!(
                "{}: {} still holds password {id} of {secret_name}, which was removed",
                cert.name,
                consumer.describe()
            ));
        }
    }
    Ok(())
}

/// The newest enabled version of the certificate (None before the first one completes).
pub fn newest(o: &Oracle, cred: &CertificateCredentialPolicy) -> Option<CertificateRecord> {
    o.c.certificate_versions(&cred.certificate.vault, &cred.certificate.name)
        .into_iter()
        .filter(|v| v.enabled)
        .max_by_key(|v| v.not_before)
}

/// Settled (a run after the grace period finished, nothing in flight): the newest version is
/// on the application, valid and outside its renewal window; every consumer the rotator
/// writes holds it (except those in `held_up`, broken on purpose); no other key with the
/// rotator's marker for this credential remains.
pub fn check_settled(
    o: &Oracle,
    cred: &CertificateCredentialPolicy,
    held_up: &BTreeSet<usize>,
) -> Result<(), String> {
    check_rest(o, cred, held_up, false)
}

/// [`check_settled`], except that within the grace period (`in_grace`) one other key of the
/// rotator's, the previous version's, may remain.
pub fn check_rest(
    o: &Oracle,
    cred: &CertificateCredentialPolicy,
    held_up: &BTreeSet<usize>,
    in_grace: bool,
) -> Result<(), String> {
    let c = &o.c;
    let name = &cred.name;
    let app = app_of(cred)?;
    let keys = c.key_records(app);
    let now = c.now();
    let v = newest(o, cred).ok_or_else(|| format!("{name}: no certificate version"))?;
    let k = key_of(&keys, &v).ok_or_else(|| {
        format!(
            "{name}: newest version {} is not on the application",
            v.version
        )
    })?;
    if !k.valid_at(now) || v.expires - now <= cred.renew_before {
        return Err(format!(
            "{name}: settled with version {} (expires {}) inside its renewal window or invalid",
            v.version, v.expires
        ));
    }
    for (i, (consumer, value)) in cred.consumers.iter().zip(held(o, cred)).enumerate() {
        if matches!(consumer, CertificateConsumer::NotifyOnly { .. }) || held_up.contains(&i) {
            continue;
        }
        let on_newest = value
            .as_deref()
            .map(|val| versions_held(o, cred, consumer, val))
            .is_some_and(|r| r.is_ok_and(|vs| vs.iter().any(|x| x.version == v.version)));
        if !on_newest {
            return Err(format!(
                "{name}: {} is not on the newest version {}",
                consumer.describe(),
                v.version
            ));
        }
    }
    let marker = format!("{MARKER}{name}:");
    let mut others = keys.iter().filter(|x| {
        x.key_id != k.key_id
            && x.display_name
                .as_deref()
                .is_some_and(|d| d.starts_with(&marker))
    });
    if in_grace {
        others.next();
    }
    if let Some(left) = others.next()
        && held_up.is_empty()
    {
        return Err(format!(
            "{name}: key {} ({:?}, ends {}) is left over (current {})",
            left.key_id, left.display_name, left.end, k.key_id
        ));
    }
    Ok(())
}

/// Every not-settled invariant of every certificate credential, plus the key-write record.
pub fn check_all(o: &Oracle, b: &CertBaseline) -> Vec<String> {
    let mut out = Vec::new();
    for cred in &o.policy.certificates {
        for r in [check_consumers(o, b, cred), check_conversion(o, b, cred)] {
            if let Err(e) = r {
                out.push(e);
            }
        }
    }
    out.extend(check_key_writes(o, b));
    out
}

/// Where a private key (or a piece of a certificate's PFX/PEM secret) appears in `outputs`
/// (name, text). Pieces that also occur in a version's public certificate (base64 or PEM
/// body) are not counted: the public part may be shown. Each leak is named by certificate and
/// output only.
pub fn private_key_leaks(o: &Oracle, outputs: &[(String, String)]) -> Vec<String> {
    let c = &o.c;
    let mut found = Vec::new();
    for (name, text) in outputs {
        if text.contains("PRIVATE KEY") {
            found.push(format!("{name}: a PEM PRIVATE KEY block"));
        }
    }
    for cred in &o.policy.certificates {
        let (vault, cert) = (&cred.certificate.vault, &cred.certificate.name);
        let public: Vec<String> = c
            .certificate_versions(vault, cert)
            .iter()
            .map(|v| base64::engine::general_purpose::STANDARD.encode(&v.cer))
            .collect();
        for (_, secret) in c.secret_versions(vault, cert) {
            let flat: String = secret.chars().filter(|ch| !ch.is_whitespace()).collect();
            let chars: Vec<char> = flat.chars().collect();
            let pieces: BTreeSet<String> = chars
                .windows(PIECE)
                .step_by(PIECE / 2)
                .map(|p| p.iter().collect::<String>())
                .filter(|p| !public.iter().any(|pb| pb.contains(p.as_str())))
                .filter(|p| !p.starts_with("-----"))
                .collect();
            for (name, text) in outputs {
                if pieces.iter().any(|p| text.contains(p.as_str())) {
                    found.push(format!("{name}: a piece of certificate {cert}'s secret"));
                }
            }
        }
    }
    found
}

/// Log lines written by a future it is attached to (`WithSubscriber::with_subscriber`), on
/// whichever thread polls it (a task it spawns is not followed: the run's own steps are).
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A subscriber capturing every log line at debug and above, and where they go.
pub fn capture_logs() -> (tracing::Dispatch, Captured) {
    let cap = Captured::default();
    let writer = cap.clone();
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    (tracing::Dispatch::new(sub), cap)
}
