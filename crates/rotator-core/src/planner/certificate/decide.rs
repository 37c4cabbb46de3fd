//! [`decide`] for certificate credentials: the rules documented in the parent module, one pass
//! appending steps to a [`Builder`] in rule order, each with its sentence. All date arithmetic
//! is checked; nothing here can panic on an observation.

use chrono::{DateTime, Duration, Utc};

use super::model::*;
use crate::planner::PasswordMarker;
use crate::policy::CertificateCredentialPolicy;

/// How soon to look again at a pending Key Vault operation.
pub const PENDING_POLL: Duration = Duration::minutes(5);
/// How soon to look again when no date says when (a version waiting on a rotation, ...).
pub const RECHECK: Duration = Duration::hours(1);

/// Decides what to do next for one certificate credential. Pure and total.
pub fn decide(
    policy: &CertificateCredentialPolicy,
    obs: &CertObservation,
    now: DateTime<Utc>,
) -> CertDecision {
    let mut b = Builder::new(policy, now);
    b.run(obs);
    b.finish()
}

/// Azure's words on their way into a message: control characters (a forged line break in a
/// log) dropped, clipped to 200 characters. The executor clips too; the planner does not rely
/// on it.
fn untrusted(text: &str) -> String {
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    if text.chars().filter(|c| !c.is_control()).nth(200).is_some() {
        out.push('…');
    }
    out
}

/// The versions and keys the rules talk about, resolved once.
struct View<'o> {
    app: &'o CertAppState,
    cert: &'o CertificateState,
    /// The newest version with rotation tags: the one consumers are meant to hold.
    current: Option<(&'o CertVersion, &'o CertRotationTags)>,
    /// The application key of the current version (by its tagged keyId, else its thumbprint).
    current_key: Option<&'o KeyCredentialInfo>,
    /// The newest usable untagged version newer than the current one.
    candidate: Option<&'o CertVersion>,
}

/// Newest first: `created`, then position in the list (unknown dates sort oldest).
fn newest<'o>(it: impl Iterator<Item = (usize, &'o CertVersion)>) -> Option<&'o CertVersion> {
    it.max_by_key(|(i, v)| (v.created, *i)).map(|(_, v)| v)
}

impl<'o> View<'o> {
    fn new(app: &'o CertAppState, cert: &'o CertificateState, now: DateTime<Utc>) -> Self {
        let current = cert.current();
        let current_key = current.and_then(|(v, t)| app.key_of_version(v, Some(t.key_id)));
        let after = current.and_then(|(v, _)| v.created);
        let candidate = newest(cert.versions.iter().enumerate().filter(|(_, v)| {
            v.tags.is_none()
                && v.usable_at(now)
                && (current.is_none() || matches!((v.created, after), (Some(c), Some(a)) if c > a))
        }));
        View {
            app,
            cert,
            current,
            current_key,
            candidate,
        }
    }

    fn key_of(&self, t: Thumbprint) -> Option<&'o KeyCredentialInfo> {
        self.app.keys.iter().find(|k| k.thumbprint == Some(t))
    }

    /// The version whose key signs proofs: the current one, when Key Vault can sign with it
    /// and its key on the application is valid (Graph checks the proof against it).
    fn proof_signer(&self, now: DateTime<Utc>) -> Option<&'o CertVersion> {
        let (v, _) = self.current?;
        let key = self.current_key?;
        (v.usable_at(now) && key.valid_at(now)).then_some(v)
    }

    /// Keys nobody may remove: the current version's (by keyId or thumbprint); with no
    /// current version, every key some version of the certificate holds.
    fn in_use(&self, k: &KeyCredentialInfo) -> bool {
        match self.current {
            Some((v, t)) => {
                k.key_id == t.key_id
                    || Some(k.key_id) == self.current_key.map(|c| c.key_id)
                    || k.thumbprint == Some(v.thumbprint)
            }
            None => self
                .cert
                .versions
                .iter()
                .any(|v| k.thumbprint == Some(v.thumbprint)),
        }
    }
}

struct Builder<'a> {
    policy: &'a CertificateCredentialPolicy,
    now: DateTime<Utc>,
    steps: Vec<CertStep>,
    explanation: Vec<String>,
    blocked: Option<String>,
    due: Vec<DateTime<Utc>>,
    held_up: Vec<String>,
}

impl<'a> Builder<'a> {
    fn new(policy: &'a CertificateCredentialPolicy, now: DateTime<Utc>) -> Self {
        Builder {
            policy,
            now,
            steps: Vec::new(),
            explanation: Vec::new(),
            blocked: None,
            due: Vec::new(),
            held_up: Vec::new(),
        }
    }

    fn finish(self) -> CertDecision {
        if let Some(reason) = self.blocked {
            return CertDecision {
                steps: Vec::new(),
                next_due: None,
                blocked: Some(reason),
                explanation: self.explanation,
                held_up: self.held_up,
            };
        }
        let next_due = if self.steps.is_empty() {
            let later = self.due.into_iter().filter(|d| *d > self.now).min();
            later.or_else(|| self.now.checked_add_signed(RECHECK))
        } else {
            None
        };
        CertDecision {
            steps: self.steps,
            next_due,
            blocked: None,
            explanation: self.explanation,
            held_up: self.held_up,
        }
    }

    fn say(&mut self, s: String) {
        self.explanation.push(s);
    }

    fn block(&mut self, reason: String) {
        self.explanation.push(format!("Blocked: {reason}."));
        self.blocked = Some(reason);
    }

    fn step(&mut self, step: CertStep, why: String) {
        self.explanation.push(why);
        self.steps.push(step);
    }

    fn is_ours(&self, k: &KeyCredentialInfo) -> bool {
        k.display_name
            .as_deref()
            .is_some_and(|n| PasswordMarker::is_for(n, &self.policy.name))
    }

    fn run(&mut self, obs: &CertObservation) {
        let app = match &obs.app {
            Ok(app) => app,
            Err(reason) => {
                let name = &self.policy.name;
                self.block(format!(
                    "the application for {name} cannot be read: {reason}"
                ));
                return;
            }
        };
        if !self.sane_inputs(obs) {
            return;
        }
        let cert = match &obs.vault {
            CertVaultState::Missing => {
                let c = &self.policy.certificate;
                let why = format!(
                    "Certificate {} does not exist in vault {}: create it from the policy.",
                    c.name, c.vault
                );
                self.step(
                    CertStep::RequestVersion {
                        reason: RenewReason::NotCreated,
                    },
                    why,
                );
                return;
            }
            CertVaultState::SoftDeleted { scheduled_purge } => {
                self.soft_deleted(*scheduled_purge);
                return;
            }
            CertVaultState::Present(c) => c,
        };
        let view = View::new(app, cert, self.now);
        match view.current {
            Some((v, t)) => self.with_current(&view, obs, v, t),
            None => self.no_current(&view, obs),
        }
    }

    /// Inputs a valid policy and a correct executor never produce, but which would otherwise
    /// make the plan loop or index out of range.
    fn sane_inputs(&mut self, obs: &CertObservation) -> bool {
        let p = self.policy;
        if p.renew_before <= Duration::zero() || p.renew_before >= p.min_lifetime() {
            self.block(format!(
                "the policy's renewal window ({} days) must be positive and shorter than its validity ({} months)",
                p.renew_before.num_days(),
                p.validity_months
            ));
            return false;
        }
        let ids_match = obs.consumers.len() == p.consumers.len()
            && p.consumers
                .iter()
                .zip(&obs.consumers)
                .all(|(c, o)| c.id() == o.id);
        if !ids_match {
            self.block(format!(
                "the observed consumers ({}) do not line up with the policy's ({})",
                obs.consumers.len(),
                p.consumers.len()
            ));
            return false;
        }
        let converting = p.replaces_secret.is_some();
        if let Some(c) = &obs.conversion
            && !converting
            && !c.secret_passwords.is_empty()
        {
            self.block("a conversion was observed but the policy replaces no secret".into());
            return false;
        }
        true
    }

    fn soft_deleted(&mut self, scheduled_purge: Option<DateTime<Utc>>) {
        let c = &self.policy.certificate;
        let purge = scheduled_purge
            .map(|t| format!(" (purged {})", t.format("%Y-%m-%d")))
            .unwrap_or_default();
        self.block(format!(
            "certificate {} in vault {} is soft-deleted{purge}: a person must recover it (az keyvault certificate recover) or purge it before the rotator can use the name",
            c.name, c.vault
        ));
    }
}

mod conversion;
mod flow;
