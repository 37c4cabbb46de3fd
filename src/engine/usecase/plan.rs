//! Use case: `Plan` ([`Engine::plan_report`]), the dry run — for each enrolled credential, what
//! a pass would do now and why, with the password lifetime the tenant allows
//! ([`crate::engine::lifetime`]); for each certificate credential the certificate planner's
//! steps and sentences ([`certificate_plan`]).
//!
//! Guarantees: changes nothing (one observation per credential, no token request); a
//! credential that cannot be observed gets a plan that says so, as `blocked`.

use chrono::{DateTime, Utc};

use crate::engine::context::Engine;
use crate::engine::lifetime;
use crate::engine::observe::{Observed, observe};
use crate::engine::report::{CredentialPlan, PlanReport};
use crate::planner;
use crate::policy::{CertificateCredentialPolicy, CredentialPolicy};

impl Engine {
    pub async fn plan_report(&self, now: DateTime<Utc>) -> PlanReport {
        let mut credentials = Vec::new();
        for cred in &self.policy.credentials {
            let cap = lifetime::load(self.store.as_ref(), cred).await;
            let plan = match observe(self.azure.as_ref(), cred, self.tenant_for(cred), false).await
            {
                Ok(o) => plan_one(cred, cap.as_ref(), &o, now),
                Err(e) => {
                    blocked_plan(cred, format!("could not observe Azure: {e}"), e.to_string())
                }
            };
            credentials.push(plan);
        }
        let mut certificates = Vec::new();
        for cert in &self.policy.certificates {
            certificates.push(self.plan_certificate(cert, now).await);
        }
        PlanReport {
            now,
            credentials,
            certificates,
        }
    }
}

/// A plan with no steps: `why` explains it, `blocked` is the reason a person reads.
fn blocked_plan(cred: &CredentialPolicy, why: String, blocked: String) -> CredentialPlan {
    CredentialPlan {
        name: cred.name.clone(),
        steps: Vec::new(),
        explanation: vec![why],
        next_due: None,
        blocked: Some(blocked),
    }
}

/// The plan for one credential, with the lifetime the tenant allows (and why it differs).
fn plan_one(
    cred: &CredentialPolicy,
    cap: Option<&lifetime::KnownCap>,
    seen: &Observed,
    now: DateTime<Utc>,
) -> CredentialPlan {
    let (capped, note) = match lifetime::apply(cred, cap) {
        Ok(c) => c,
        Err(why) => return blocked_plan(cred, format!("Blocked: {why}."), why),
    };
    let d = planner::decide(&capped, &seen.observation, now);
    CredentialPlan {
        name: cred.name.clone(),
        steps: d.steps.iter().map(planner::describe_step).collect(),
        explanation: note.into_iter().chain(d.explanation).collect(),
        next_due: d.next_due,
        blocked: d.blocked,
    }
}

/// The dry-run plan of one certificate credential from the certificate planner's decision:
/// its steps in words, its sentences, then the consumers held up (they hold up completion only,
/// so a person reads them beside the steps).
pub(crate) fn certificate_plan(
    cert: &CertificateCredentialPolicy,
    d: &planner::certificate::CertDecision,
) -> CredentialPlan {
    CredentialPlan {
        name: cert.name.clone(),
        steps: d
            .steps
            .iter()
            .map(planner::certificate::describe_step)
            .collect(),
        explanation: d
            .explanation
            .iter()
            .cloned()
            .chain(d.held_up.iter().map(|h| format!("Held up: {h}")))
            .collect(),
        next_due: d.next_due,
        blocked: d.blocked.clone(),
    }
}

/// The plan of a certificate credential that could not be observed.
pub(crate) fn certificate_unobserved(
    cert: &CertificateCredentialPolicy,
    e: String,
) -> CredentialPlan {
    CredentialPlan {
        name: cert.name.clone(),
        steps: Vec::new(),
        explanation: vec![format!("could not observe Azure: {e}")],
        next_due: None,
        blocked: Some(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::certificate::{CertDecision, CertStep, RenewReason};

    fn cert() -> CertificateCredentialPolicy {
        let file = serde_json::json!({ "credentials": [{
            "type": "certificate", "name": "pa-cert",
            "application": { "appId": "7412f649-8e14-471f-bfc1-733b36a42705" },
            "certificate": { "vault": "kv-pa", "name": "pa-cert" },
            "issuer": "Self", "subject": "CN=pa", "keySize": 2048,
            "validityInMonths": 12, "renewBeforeDays": 30, "graceDays": 7,
            "consumers": []
        }]});
        crate::policy::parse("p.json", &file.to_string())
            .expect("valid")
            .certificates
            .remove(0)
    }

    #[test]
    fn a_certificate_plan_lists_the_steps_sentences_and_held_up_consumers() {
        let d = CertDecision {
            steps: vec![CertStep::RequestVersion {
                reason: RenewReason::NotCreated,
            }],
            next_due: None,
            blocked: None,
            explanation: vec!["Certificate pa-cert does not exist.".into()],
            held_up: vec!["site func-int is gone".into()],
        };
        let p = certificate_plan(&cert(), &d);
        assert_eq!(p.name, "pa-cert");
        assert_eq!(p.steps.len(), 1);
        assert!(p.steps[0].contains("request a new certificate version"));
        assert_eq!(
            p.explanation,
            [
                "Certificate pa-cert does not exist.",
                "Held up: site func-int is gone"
            ]
        );
        let u = certificate_unobserved(&cert(), "Key Vault answered 403".into());
        assert_eq!(u.blocked.as_deref(), Some("Key Vault answered 403"));
        assert!(u.steps.is_empty());
    }
}
