//! The rules once the certificate is present: enrolment, taking a new version up, renewal,
//! consumers, removal of old keys, and the conversion's removal of the replaced secret.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Builder, PENDING_POLL, View};
use crate::planner::certificate::model::*;
use crate::planner::{ConsumerSync, Phase};
use crate::policy::CertificateConsumer;

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

fn short(k: Uuid) -> String {
    let s = k.simple().to_string();
    format!("{}…", &s[..8])
}

impl Builder<'_> {
    /// No version carries the rotator's tags: adopt one already on the application, else take
    /// up the newest usable version, else ask Key Vault for one.
    pub(super) fn no_current(&mut self, view: &View<'_>, obs: &CertObservation) {
        let now = self.now;
        // Only a version the rotator has not taken up itself: one it requested or adopted
        // whose key it put on the application is proven next (`take_up`), not enrolled.
        let on_app = view.cert.versions.iter().enumerate().filter(|(_, v)| {
            v.origin == VersionOrigin::Unknown
                && v.usable_at(now)
                && view.key_of(v.thumbprint).is_some_and(|k| k.valid_at(now))
        });
        if let Some(v) = super::newest(on_app)
            && let Some(k) = view.key_of(v.thumbprint)
        {
            let why = format!(
                "Version {} is already on the application as key {}: adopt it as the current version.",
                v.version,
                short(k.key_id)
            );
            let step = CertStep::AdoptCurrent {
                version: v.version.clone(),
                key_id: k.key_id,
            };
            self.step(step, why);
            return;
        }
        if let Some(c) = view.candidate {
            self.take_up(view, obs, c);
            return;
        }
        self.request(
            view,
            RenewReason::NotCreated,
            "no usable version to take up".into(),
        );
    }

    /// A current version exists: move on to a newer one when allowed, renew when due, then the
    /// phase's own steps and the conversion's.
    pub(super) fn with_current(
        &mut self,
        view: &View<'_>,
        obs: &CertObservation,
        cur: &CertVersion,
        tags: &CertRotationTags,
    ) {
        let trigger = self.renewal_trigger(view, obs, cur);
        let key_on_app = view.current_key.is_some();
        let may_move_on = tags.phase == Phase::Retired || trigger.is_some() || !key_on_app;
        if let Some(c) = view.candidate {
            if may_move_on {
                self.take_up(view, obs, c);
                return;
            }
            self.say(format!(
                "Version {} is ready; it is taken up once the current rotation has finished.",
                c.version
            ));
        }
        if !key_on_app && cur.usable_at(self.now) {
            let why = format!(
                "The current version {}'s key is missing from the application: put it back.",
                cur.version
            );
            let method = self.add_method(view);
            self.step(
                CertStep::AddKey {
                    version: cur.version.clone(),
                    method,
                },
                why,
            );
            return;
        }
        if let Some((reason, why)) = trigger
            && view.candidate.is_none()
        {
            self.request(view, reason, why);
            if self.blocked.is_some() {
                return;
            }
        } else if let Some(end) = cur.expires {
            self.due
                .extend(end.checked_sub_signed(self.policy.renew_before));
        }
        self.cleanup(view, tags);
        self.phase_steps(view, obs, tags);
        self.conversion(obs, tags, key_on_app && obs.current_accepted != Some(false));
    }

    /// Why the current version must be renewed, if it must.
    fn renewal_trigger(
        &self,
        view: &View<'_>,
        obs: &CertObservation,
        cur: &CertVersion,
    ) -> Option<(RenewReason, String)> {
        let v = &cur.version;
        if !cur.enabled {
            let why = format!("The current version {v} is disabled in Key Vault: it cannot sign.");
            return Some((RenewReason::CurrentDisabled, why));
        }
        let Some(end) = cur.expires else {
            let why = format!("The current version {v} has no expiry date: replace it.");
            return Some((RenewReason::ExpiryUnknown, why));
        };
        if end <= self.now {
            let why = format!("The current version {v} expired {}.", day(end));
            return Some((RenewReason::Expired { expired: end }, why));
        }
        if obs.current_accepted == Some(false) && view.current_key.is_some() {
            let why = format!("Entra refuses an assertion signed by version {v}.");
            return Some((RenewReason::CurrentRefused, why));
        }
        let window = end.checked_sub_signed(self.policy.renew_before);
        if window.is_none_or(|w| w <= self.now) {
            let why = format!(
                "The current version {v} expires {}, within {} days.",
                day(end),
                self.policy.renew_before.num_days()
            );
            return Some((RenewReason::ExpiringSoon { expires: end }, why));
        }
        None
    }

    /// Ask Key Vault for a new version, unless one is on its way or the last request failed.
    fn request(&mut self, view: &View<'_>, reason: RenewReason, why: String) {
        match &view.cert.pending {
            Some(PendingOperation::InProgress { requested }) => {
                let since = requested.map(|t| format!(" since {}", day(t)));
                self.say(format!(
                    "{why} A new version is being issued{}: wait for it.",
                    since.unwrap_or_default()
                ));
                self.due.extend(self.now.checked_add_signed(PENDING_POLL));
            }
            Some(PendingOperation::Failed { detail }) => self.block(format!(
                "Key Vault's request for a new version of {} failed ({}); fix the issuer or policy, then delete the failed operation (az keyvault certificate pending delete)",
                self.policy.certificate.name,
                super::untrusted(detail)
            )),
            None => self.step(
                CertStep::RequestVersion { reason },
                format!("{why} Ask Key Vault for a new version."),
            ),
        }
    }

    /// Put a newer version on the application and prove it (adopting it first when Key
    /// Vault's auto-renewal made it).
    fn take_up(&mut self, view: &View<'_>, obs: &CertObservation, c: &CertVersion) {
        if let Some(r) = &obs.add_refused
            && r.version == c.version
        {
            let what = match r.kind {
                AddRefusalKind::KeyCredentialLimit => {
                    "the application is at its key-credential limit: remove a key it no longer needs"
                }
                AddRefusalKind::LifetimePolicy => {
                    "a tenant policy caps certificate lifetime below this version's: lower validityInMonths or ask for an exemption"
                }
                AddRefusalKind::UntrustedIssuer => {
                    "a tenant policy does not trust this version's issuer: use a trusted issuer"
                }
                AddRefusalKind::Other => "Graph refused the key",
            };
            self.block(format!(
                "version {} cannot go on the application: {what} ({})",
                c.version,
                super::untrusted(&r.detail)
            ));
            return;
        }
        if c.origin == VersionOrigin::Unknown {
            let why = format!(
                "Version {} was made by Key Vault's auto-renewal (or a person): adopt it.",
                c.version
            );
            self.step(
                CertStep::AdoptVersion {
                    version: c.version.clone(),
                },
                why,
            );
            return;
        }
        match view.key_of(c.thumbprint) {
            None => {
                let method = self.add_method(view);
                let why = format!("Put version {}'s public key on the application.", c.version);
                let step = CertStep::AddKey {
                    version: c.version.clone(),
                    method,
                };
                self.step(step, why);
            }
            Some(k) => {
                let why = format!(
                    "Version {} is on the application as key {}: prove it with a client assertion and make it current.",
                    c.version,
                    short(k.key_id)
                );
                let step = CertStep::Prove {
                    version: c.version.clone(),
                    key_id: k.key_id,
                    previous_key_id: view.current_key.map(|k| k.key_id),
                };
                self.step(step, why);
            }
        }
    }

    /// addKey with a proof when a current key can sign one, else the merge-write keeping every
    /// key on the application.
    fn add_method(&self, view: &View<'_>) -> KeyWrite {
        match view.proof_signer(self.now) {
            Some(v) => KeyWrite::WithProof {
                signer: v.version.clone(),
            },
            None => KeyWrite::MergeWrite {
                keep: view.app.keys.iter().map(|k| k.key_id).collect(),
            },
        }
    }

    /// How to remove `key_id`: removeKey with a proof from another key, else a merge-write
    /// keeping every other key.
    fn remove_method(&self, view: &View<'_>, key_id: Uuid) -> KeyWrite {
        match view.proof_signer(self.now) {
            Some(v) if view.current_key.is_some_and(|k| k.key_id != key_id) => {
                KeyWrite::WithProof {
                    signer: v.version.clone(),
                }
            }
            _ => KeyWrite::MergeWrite {
                keep: view
                    .app
                    .keys
                    .iter()
                    .map(|k| k.key_id)
                    .filter(|k| *k != key_id)
                    .collect(),
            },
        }
    }

    /// Whether `k` may be removed at all: the rotator's, not in use, not the only valid key.
    /// Every entry with `k`'s keyId counts: Graph keeps them unique, but an observation that
    /// repeats one must not let a removal by keyId take a key that is not the rotator's.
    fn removable(&mut self, view: &View<'_>, k: &KeyCredentialInfo) -> bool {
        let same_id = || view.app.keys.iter().filter(|o| o.key_id == k.key_id);
        if !same_id().all(|o| self.is_ours(o) && !view.in_use(o)) {
            return false;
        }
        let other_valid = view
            .app
            .keys
            .iter()
            .any(|o| o.key_id != k.key_id && o.valid_at(self.now));
        if !other_valid {
            self.say(format!(
                "Key {} is kept: it is the application's only valid key.",
                short(k.key_id)
            ));
        }
        other_valid
    }

    fn remove(&mut self, view: &View<'_>, k: &KeyCredentialInfo, reason: KeyRemoveReason) {
        let method = self.remove_method(view, k.key_id);
        let why = match reason {
            KeyRemoveReason::Superseded => "superseded, grace period over",
            KeyRemoveReason::Orphan => "added by a run whose version was never taken up",
            KeyRemoveReason::Expired => "expired",
        };
        let step = CertStep::RemoveKey {
            key_id: k.key_id,
            reason,
            method,
        };
        self.step(step, format!("Remove key {} ({why}).", short(k.key_id)));
    }

    /// The rotator's keys that are neither current, previous nor the candidate's: expired
    /// ones, never-taken-up ones, and once consumers have moved, older ones.
    fn cleanup(&mut self, view: &View<'_>, tags: &CertRotationTags) {
        let candidate = view.candidate.map(|c| c.thumbprint);
        for k in &view.app.keys {
            if Some(k.key_id) == tags.previous_key_id
                || (k.thumbprint.is_some() && k.thumbprint == candidate)
                || !self.removable(view, k)
            {
                continue;
            }
            let ever_current = view
                .cert
                .versions
                .iter()
                .any(|v| v.tags.is_some() && k.thumbprint == Some(v.thumbprint));
            if k.end.is_some_and(|e| e <= self.now) {
                self.remove(view, k, KeyRemoveReason::Expired);
            } else if !ever_current {
                self.remove(view, k, KeyRemoveReason::Orphan);
            } else if tags.phase != Phase::Stored {
                self.remove(view, k, KeyRemoveReason::Superseded);
            }
        }
    }

    /// `Stored`: move the consumers, then complete. `Propagated`/`Retired`: repair drift and
    /// remove the previous key after grace.
    fn phase_steps(&mut self, view: &View<'_>, obs: &CertObservation, tags: &CertRotationTags) {
        let all_in = self.consumer_steps(view, obs, tags);
        match tags.phase {
            Phase::Stored if all_in => {
                match self.now.checked_add_signed(self.policy.grace) {
                    Some(remove_after) => self.step(
                        CertStep::CompletePropagation { remove_after },
                        "Every consumer holds the current version: prove it again and mark the rotation propagated.".into(),
                    ),
                    None => self.block("the end of the grace period is out of range".into()),
                }
            }
            Phase::Stored => {}
            Phase::Propagated => self.previous_key(view, tags, true),
            Phase::Retired => self.previous_key(view, tags, false),
        }
    }

    /// One step per consumer not holding the current version; `true` when all hold it.
    fn consumer_steps(
        &mut self,
        view: &View<'_>,
        obs: &CertObservation,
        tags: &CertRotationTags,
    ) -> bool {
        let mut all_in = true;
        for (index, (c, o)) in self.policy.consumers.iter().zip(&obs.consumers).enumerate() {
            let synced = tags.synced.contains(&o.id);
            let needs = match &o.sync {
                ConsumerSync::InSync => false,
                ConsumerSync::OutOfSync { .. } => true,
                ConsumerSync::NotObservable { .. } => tags.phase == Phase::Stored && !synced,
                ConsumerSync::Blocked { reason } => {
                    self.held_up.push(format!("{}: {reason}", c.describe()));
                    all_in = false;
                    continue;
                }
            };
            if !needs {
                continue;
            }
            all_in = false;
            if c.needs_private_key() && !view.cert.exportable {
                self.held_up.push(format!(
                    "{}: Key Vault will not export the private key (the certificate policy's key is not exportable), so it cannot load the new version; make the key exportable or use a thumbprint consumer",
                    c.describe()
                ));
                continue;
            }
            let consumer_id = o.id.clone();
            let (step, verb) = match c {
                CertificateConsumer::NotifyOnly { .. } => {
                    (CertStep::Notify { index, consumer_id }, "Notify")
                }
                _ => (CertStep::UpdateConsumer { index, consumer_id }, "Update"),
            };
            self.step(
                step,
                format!("{verb} {} with the current version.", c.describe()),
            );
        }
        all_in
    }

    /// The previous key after grace (`Propagated`), or still there after retirement.
    fn previous_key(&mut self, view: &View<'_>, tags: &CertRotationTags, propagated: bool) {
        let prev = tags
            .previous_key_id
            .and_then(|p| view.app.keys.iter().find(|k| k.key_id == p));
        let Some(k) = prev else {
            if propagated {
                self.step(
                    CertStep::MarkRetired,
                    "The previous key is gone: mark the rotation retired.".into(),
                );
            }
            return;
        };
        let due =
            tags.remove_after.is_none_or(|r| r <= self.now) || k.end.is_some_and(|e| e <= self.now);
        if !due {
            self.due.extend(tags.remove_after);
            let when = tags.remove_after.map(day).unwrap_or_default();
            self.say(format!(
                "The previous key {} stays until {when}.",
                short(k.key_id)
            ));
            return;
        }
        if self.removable(view, k) {
            self.remove(view, k, KeyRemoveReason::Superseded);
        } else {
            self.say(format!(
                "The previous key {} was not added by the rotator (or is in use): it is left alone.",
                short(k.key_id)
            ));
            if !propagated {
                return;
            }
        }
        if propagated {
            self.step(CertStep::MarkRetired, "Mark the rotation retired.".into());
        }
    }
}
