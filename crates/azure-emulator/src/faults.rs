//! Fault injection rules and the request log.
//!
//! A rule matches a service and optionally an operation; `nth`/`times`/`probability` pick
//! which matching calls it hits; the first rule that hits decides the call's fate. The log
//! keeps one record per request on the Azure surface and the MI endpoint, without bodies, so
//! no secret value ever lands in it.

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::caller::CallerAbsence;

/// Every operation name the emulator classifies requests into, by service (for `operation`).
pub const OPERATIONS: &[(&str, &[&str])] = &[
    (
        "entra",
        &["token", "openidConfiguration", "instanceDiscovery"],
    ),
    ("msi", &["token"]),
    (
        "graph",
        &[
            "listApplications",
            "getApplication",
            "addPassword",
            "removePassword",
            "listOwners",
            "addOwner",
            "listOwnedObjects",
            "listServicePrincipals",
            "addKey",
            "removeKey",
            "updateApplication",
        ],
    ),
    (
        "keyvault",
        &[
            "setSecret",
            "getSecret",
            "listSecrets",
            "listSecretVersions",
            "updateSecret",
            "deleteSecret",
            "getDeletedSecret",
            "listDeletedSecrets",
            "recoverDeletedSecret",
            "purgeDeletedSecret",
            "createCertificate",
            "getCertificateOperation",
            "getCertificate",
            "listCertificateVersions",
            "getCertificatePolicy",
            "updateCertificate",
            "listCertificates",
            "getKey",
            "sign",
        ],
    ),
    (
        "arm",
        &[
            "getSite",
            "listAppSettings",
            "putAppSettings",
            "getConfigReferences",
            "getConfigReference",
            "refreshConfigReferences",
            "restartSite",
            "getConnection",
            "listConnections",
            "putConnection",
            "patchConnection",
            "deleteConnection",
            "getManagedApi",
            "getVariable",
            "listVariables",
            "putVariable",
            "patchVariable",
            "deleteVariable",
        ],
    ),
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultRule {
    pub service: String,
    #[serde(default)]
    pub operation: Option<String>,
    #[serde(default)]
    pub nth: Option<u64>,
    #[serde(default)]
    pub times: Option<u64>,
    #[serde(default)]
    pub probability: Option<f64>,
    #[serde(default)]
    pub seed: Option<u64>,
    pub action: FaultAction,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
pub enum FaultAction {
    #[serde(rename_all = "camelCase")]
    Status {
        status: u16,
        #[serde(default)]
        retry_after: Option<u64>,
    },
    Delay {
        ms: u64,
    },
    Reset,
    CommitThenFail {
        status: u16,
    },
}

impl FaultRule {
    /// Checks names and ranges; the message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let Some((_, ops)) = OPERATIONS.iter().find(|(s, _)| *s == self.service) else {
            return Err(format!(
                "unknown service '{}' (one of entra, msi, graph, keyvault, arm)",
                self.service
            ));
        };
        if let Some(op) = &self.operation
            && !ops.contains(&op.as_str())
        {
            return Err(format!(
                "unknown operation '{op}' for service '{}' (one of {})",
                self.service,
                ops.join(", ")
            ));
        }
        if self.nth == Some(0) {
            return Err("nth is 1-based".into());
        }
        if self.times == Some(0) {
            return Err("times must be at least 1".into());
        }
        if let Some(p) = self.probability
            && !(0.0..=1.0).contains(&p)
        {
            return Err("probability must be within 0..1".into());
        }
        match self.action {
            FaultAction::Status { status, .. } | FaultAction::CommitThenFail { status }
                if !(400..=599).contains(&status) =>
            {
                Err(format!("status {status} is not an error status (400..599)"))
            }
            _ => Ok(()),
        }
    }
}

pub struct FaultEntry {
    pub id: u64,
    pub rule: FaultRule,
    pub matched: u64,
    pub hits: u64,
    rng: StdRng,
}

impl FaultEntry {
    pub fn new(id: u64, rule: FaultRule) -> Self {
        let rng = StdRng::seed_from_u64(rule.seed.unwrap_or(id));
        Self {
            id,
            rule,
            matched: 0,
            hits: 0,
            rng,
        }
    }

    /// Counts a matching call and says whether this rule hits it.
    pub fn try_hit(&mut self, service: &str, op: &str) -> bool {
        if self.rule.service != service {
            return false;
        }
        if let Some(o) = &self.rule.operation
            && o != op
        {
            return false;
        }
        self.matched += 1;
        let times = self
            .rule
            .times
            .unwrap_or(if self.rule.nth.is_some() { 1 } else { u64::MAX });
        if self.hits >= times {
            return false;
        }
        if let Some(n) = self.rule.nth
            && self.matched < n
        {
            return false;
        }
        if let Some(p) = self.rule.probability
            && self.rng.random::<f64>() >= p
        {
            return false;
        }
        self.hits += 1;
        true
    }

    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({ "id": self.id, "rule": self.rule, "matched": self.matched, "hits": self.hits })
    }
}

/// One request as the log keeps it: never a body, never a header value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub seq: u64,
    /// Emulated time of arrival.
    pub time: chrono::DateTime<chrono::Utc>,
    pub service: String,
    pub operation: Option<String>,
    pub method: String,
    pub host: String,
    /// Path and query (these APIs never carry secrets in the URL).
    pub path: String,
    pub status: u16,
    /// Client id of the sender, known from its credentials before any fault applied (see
    /// `caller.rs`): present whatever the answer was, a connection reset included.
    pub caller: Option<String>,
    /// Why `caller` is absent (`None` when it is present).
    #[serde(default)]
    pub caller_absent: Option<CallerAbsence>,
    /// Id of the fault rule that hit this request.
    pub fault: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(nth: Option<u64>, times: Option<u64>) -> FaultRule {
        FaultRule {
            service: "graph".into(),
            operation: Some("addPassword".into()),
            nth,
            times,
            probability: None,
            seed: None,
            action: FaultAction::Reset,
        }
    }

    #[test]
    fn nth_and_times() {
        let mut e = FaultEntry::new(1, rule(Some(2), None));
        let hits: Vec<bool> = (0..4).map(|_| e.try_hit("graph", "addPassword")).collect();
        assert_eq!(hits, vec![false, true, false, false]);
        let mut e = FaultEntry::new(1, rule(Some(2), Some(2)));
        let hits: Vec<bool> = (0..4).map(|_| e.try_hit("graph", "addPassword")).collect();
        assert_eq!(hits, vec![false, true, true, false]);
        let mut e = FaultEntry::new(1, rule(None, None));
        assert!(!e.try_hit("graph", "removePassword"));
        assert!(e.try_hit("graph", "addPassword") && e.try_hit("graph", "addPassword"));
    }

    #[test]
    fn probability_is_seeded() {
        let mk = || {
            let mut r = rule(None, None);
            r.probability = Some(0.5);
            r.seed = Some(7);
            FaultEntry::new(1, r)
        };
        let (mut a, mut b) = (mk(), mk());
        let x: Vec<bool> = (0..32).map(|_| a.try_hit("graph", "addPassword")).collect();
        let y: Vec<bool> = (0..32).map(|_| b.try_hit("graph", "addPassword")).collect();
        assert_eq!(x, y);
        assert!(x.iter().any(|h| *h) && x.iter().any(|h| !*h));
    }

    #[test]
    fn validation_names_the_problem() {
        let mut r = rule(None, None);
        r.operation = Some("nope".into());
        assert!(r.validate().unwrap_err().contains("nope"));
        let r: Result<FaultRule, _> = serde_json::from_str(
            r#"{"service":"arm","action":{"kind":"status","status":429,"retryAfter":3}}"#,
        );
        assert!(r.unwrap().validate().is_ok());
    }
}
