//! The records the engine keeps in the rotator's storage account, as types, and the one place
//! their blob paths are built ([`RecordPath`]).
//!
//! - [`AuditRecord`]: one per credential run. Written to
//!   `audit/{yyyy}/{mm}/{dd}/{credential}-{run}.json` when the run performed a step, and always
//!   to `last/{credential}.json` (the credential's last outcome, which `Status` and the probe
//!   read back).
//! - [`RunRecord`]: one per pass, `runs/{run}.json` (the pass report as answered).
//! - The tenant's learnt lifetime cap (`lifetime::KnownCap`), `lifetime-caps/{credential}.json`.
//! - `last/.probe.json`: never written; the probe reads it to learn that storage answers.
//!
//! Guarantees: a record is written as its type serializes and read back by the same type, so
//! the writer and the reader cannot drift; the shape is the one the previous version wrote with
//! `json!` (tested below), so records already in storage still read. A record that does not
//! parse is an error naming the blob and what is wrong ([`RecordError`]), never a panic; the
//! callers treat it as absent. Key ids and sentences only: no type here can hold a secret value.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::engine::ports::{PortError, StorePorts};
use crate::engine::report::{CredentialReport, PassReport};
use crate::planner::{AppState, Phase, StepKind};

/// Every blob the engine reads or writes, by what it is.
#[derive(Debug, Clone, Copy)]
pub enum RecordPath<'a> {
    /// A run's audit record, filed under the day it was written.
    Audit {
        at: DateTime<Utc>,
        credential: &'a str,
        run_id: &'a str,
    },
    /// The credential's last outcome: its latest audit record.
    Last { credential: &'a str },
    /// A pass's report.
    Run { run_id: &'a str },
    /// The tenant's learnt password-lifetime cap for a credential.
    LifetimeCap { credential: &'a str },
    /// Read by the probe to check that storage answers; never written.
    Probe,
}

impl RecordPath<'_> {
    pub fn path(&self) -> String {
        match self {
            RecordPath::Audit {
                at,
                credential,
                run_id,
            } => format!("audit/{}/{credential}-{run_id}.json", at.format("%Y/%m/%d")),
            RecordPath::Last { credential } => format!("last/{credential}.json"),
            RecordPath::Run { run_id } => format!("runs/{run_id}.json"),
            RecordPath::LifetimeCap { credential } => format!("lifetime-caps/{credential}.json"),
            RecordPath::Probe => "last/.probe.json".to_string(),
        }
    }
}

/// What one credential run did and where it left the credential (key ids, never values).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub credential: String,
    /// The application as last observed (`None` when it could not be read, and in the first
    /// version's records, which held the policy's reference as text).
    #[serde(default, deserialize_with = "application_or_text")]
    pub application: Option<ApplicationRef>,
    /// `{vault}/{secret}`.
    pub key_vault: String,
    pub run_id: String,
    pub at: DateTime<Utc>,
    /// True when the run's rotation step succeeded (absent from the first version's records).
    #[serde(default)]
    pub rotated: bool,
    /// The password the Key Vault value is, from its tags as last observed.
    #[serde(default)]
    pub key_id_in_use: Option<Uuid>,
    #[serde(default)]
    pub previous_key_id: Option<Uuid>,
    /// The rotation's phase (`stored`, `propagated`, `retired`), from the same tags.
    #[serde(default, with = "phase_name")]
    pub phase: Option<Phase>,
    #[serde(default)]
    pub consumers_touched: Vec<ConsumerTouched>,
    /// The outcome of the run's propagation check, when it made one.
    #[serde(default)]
    pub verified: Option<bool>,
    #[serde(default)]
    pub duration_ms: u64,
    pub report: CredentialReport,
}

/// What an audit record is about; the rest of it is read from the run's report.
pub struct AuditSubject {
    pub credential: String,
    pub application: Option<ApplicationRef>,
    /// `{vault}/{secret}` or `{vault}/{certificate}`.
    pub key_vault: String,
    /// The key in use, the previous one and the phase, from the rotator's tags as last observed.
    pub state: Option<(Uuid, Option<Uuid>, Phase)>,
}

impl AuditRecord {
    /// The record of one run, secret or certificate: `rotated` when its `rotated_by` step
    /// succeeded; the consumers it touched and its propagation check from the report's steps.
    pub fn of_run(
        subject: AuditSubject,
        report: &CredentialReport,
        rotated_by: StepKind,
        run_id: &str,
        at: DateTime<Utc>,
        duration: std::time::Duration,
    ) -> AuditRecord {
        let steps = &report.steps;
        AuditRecord {
            credential: subject.credential,
            application: subject.application,
            key_vault: subject.key_vault,
            run_id: run_id.to_string(),
            at,
            rotated: steps.iter().any(|s| s.step == rotated_by && s.ok),
            key_id_in_use: subject.state.map(|t| t.0),
            previous_key_id: subject.state.and_then(|t| t.1),
            phase: subject.state.map(|t| t.2),
            consumers_touched: steps
                .iter()
                .filter(|s| matches!(s.step, StepKind::UpdateConsumer | StepKind::Notify))
                .map(|s| ConsumerTouched {
                    ok: s.ok,
                    detail: s.detail.clone(),
                })
                .collect(),
            verified: steps
                .iter()
                .find(|s| s.step == StepKind::CompletePropagation)
                .map(|s| s.ok),
            duration_ms: duration.as_millis() as u64,
            report: report.clone(),
        }
    }
}

/// The application object; the first version wrote the policy's reference as text there,
/// which names no application and reads as `None`.
fn application_or_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<ApplicationRef>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(_) | serde_json::Value::Null => Ok(None),
        v => ApplicationRef::deserialize(v)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// The application a credential belongs to, as the audit record names it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationRef {
    pub app_id: Uuid,
    pub object_id: Uuid,
    pub display_name: String,
}

impl From<&AppState> for ApplicationRef {
    fn from(a: &AppState) -> Self {
        Self {
            app_id: a.app_id,
            object_id: a.object_id,
            display_name: a.display_name.clone(),
        }
    }
}

/// One consumer step of the run (an update or a notification) and how it went.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConsumerTouched {
    pub ok: bool,
    pub detail: String,
}

/// A pass's record: the pass report, as the `RotateSecrets` invocation answered it.
pub type RunRecord = PassReport;

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("could not read {path}: {source}")]
    Store { path: String, source: PortError },
    /// The blob exists but is not a record of the expected type (written by hand, truncated,
    /// or by a version with another shape).
    #[error("{path} is not a readable {what}: {reason}")]
    Unparsable {
        path: String,
        what: &'static str,
        reason: String,
    },
}

/// Writes `record` at `path`; a failure is the caller's to report (a warning: records never
/// fail a run).
pub async fn write<T: Serialize>(
    store: &dyn StorePorts,
    path: &RecordPath<'_>,
    record: &T,
) -> Result<(), String> {
    let path = path.path();
    let body = serde_json::to_value(record)
        .map_err(|e| format!("could not serialize the record {path}: {e}"))?;
    store
        .put_json(&path, &body)
        .await
        .map_err(|e| format!("could not write {path}: {e}"))
}

/// Reads the record at `path` as a `T`; `Ok(None)` when there is none.
pub async fn read<T: for<'de> Deserialize<'de>>(
    store: &dyn StorePorts,
    path: &RecordPath<'_>,
    what: &'static str,
) -> Result<Option<T>, RecordError> {
    let path = path.path();
    let Some(body) = store
        .get_json(&path)
        .await
        .map_err(|source| RecordError::Store {
            path: path.clone(),
            source,
        })?
    else {
        return Ok(None);
    };
    serde_json::from_value(body)
        .map(Some)
        .map_err(|e| RecordError::Unparsable {
            path,
            what,
            reason: e.to_string(),
        })
}

/// A credential's last recorded run, or `None` (never recorded, or unreadable: logged).
pub async fn last_run(store: &dyn StorePorts, credential: &str) -> Option<AuditRecord> {
    let path = RecordPath::Last { credential };
    read(store, &path, "audit record")
        .await
        .unwrap_or_else(|e| {
            tracing::warn!("the last outcome of {credential} is unknown: {e}");
            None
        })
}

/// `Phase` by its tag name (`rotator-phase`), the one spelling the rotator writes.
mod phase_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::engine::tags;
    use crate::planner::Phase;

    const ALL: [Phase; 3] = [Phase::Stored, Phase::Propagated, Phase::Retired];

    pub fn serialize<S: Serializer>(phase: &Option<Phase>, s: S) -> Result<S::Ok, S::Error> {
        match phase {
            Some(p) => s.serialize_some(tags::phase_name(*p)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Phase>, D::Error> {
        let Some(name) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        ALL.into_iter()
            .find(|p| tags::phase_name(*p) == name)
            .map(Some)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "phase {name:?} is none of stored, propagated, retired"
                ))
            })
    }
}

/// Every phase has a name here: a new phase must be given one (the match is exhaustive).
const _: fn(Phase) = |p| match p {
    Phase::Stored | Phase::Propagated | Phase::Retired => {}
};

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::engine::ports::LeaseGuard;
    use crate::engine::report::CredentialOutcome;
    use crate::planner::StepKind;

    /// The rotator's storage, in memory: enough for reading and writing records.
    #[derive(Default)]
    struct MemStore(Mutex<BTreeMap<String, serde_json::Value>>);

    #[async_trait::async_trait]
    impl StorePorts for MemStore {
        async fn lease(&self, name: &str) -> Result<Box<dyn LeaseGuard>, PortError> {
            unreachable!("records take no lease ({name})")
        }
        async fn put_json(&self, path: &str, body: &serde_json::Value) -> Result<(), PortError> {
            self.0.lock().unwrap().insert(path.into(), body.clone());
            Ok(())
        }
        async fn get_json(&self, path: &str) -> Result<Option<serde_json::Value>, PortError> {
            Ok(self.0.lock().unwrap().get(path).cloned())
        }
    }

    /// `last/provision-assist.json` exactly as the previous version wrote it (its `json!`).
    fn previous_version_record() -> serde_json::Value {
        serde_json::json!({
            "credential": "provision-assist",
            "application": {
                "appId": "7412f649-8e14-471f-bfc1-733b36a42705",
                "objectId": "0f0e0d0c-0b0a-4909-8807-060504030201",
                "displayName": "Provision Assist"
            },
            "keyVault": "kv-provisionassist/appSecret",
            "runId": "20261122T020000Z-1a2b3c4d",
            "at": "2026-11-22T02:00:03.250Z",
            "rotated": true,
            "keyIdInUse": "5d6e7f80-9a0b-4c1d-8e2f-3a4b5c6d7e8f",
            "previousKeyId": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e71",
            "phase": "stored",
            "consumersTouched": [
                {"ok": true, "detail": "updated connection pa-conn"},
                {"ok": false, "detail": "variable pa-var: access denied"}
            ],
            "verified": null,
            "durationMs": 3250u64,
            "report": {
                "name": "provision-assist",
                "outcome": "blocked",
                "steps": [
                    {"at": "2026-11-22T02:00:01Z", "step": "rotate", "detail": "added key 5d6e7f80", "ok": true},
                    {"at": "2026-11-22T02:00:02Z", "step": "update-consumer", "detail": "updated connection pa-conn", "ok": true}
                ],
                "error": "held up by 1 consumer(s)",
                "nextDue": null
            }
        })
    }

    #[test]
    fn a_record_the_previous_version_wrote_reads_and_writes_back_the_same() {
        let old = previous_version_record();
        let r: AuditRecord = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(r.report.outcome, CredentialOutcome::Blocked);
        assert_eq!(r.phase, Some(Phase::Stored));
        assert_eq!(r.report.steps[1].step, StepKind::UpdateConsumer);
        assert_eq!(
            r.previous_key_id.unwrap().to_string(),
            "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e71"
        );
        assert_eq!(
            r.application.as_ref().unwrap().display_name,
            "Provision Assist"
        );
        assert_eq!(r.consumers_touched.len(), 2);
        // Same shape both ways: what this version writes, the previous one would have written.
        let mut back = serde_json::to_value(&r).unwrap();
        // The timestamp's spelling may differ; its value may not.
        let at =
            |v: &serde_json::Value| v["at"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
        assert_eq!(at(&back), at(&old));
        back["at"] = old["at"].clone();
        back["report"]["steps"] = old["report"]["steps"].clone();
        assert_eq!(back, old);
    }

    #[test]
    fn a_record_without_an_application_or_tags_reads() {
        let mut old = previous_version_record();
        for f in ["application", "keyIdInUse", "previousKeyId", "phase"] {
            old[f] = serde_json::Value::Null;
        }
        let r: AuditRecord = serde_json::from_value(old).unwrap();
        assert_eq!(
            (r.application, r.key_id_in_use, r.phase),
            (None, None, None)
        );
    }

    #[test]
    fn a_record_of_the_first_version_reads_with_its_outcome() {
        // The shape before the audit record named key ids (commit ba8ce78's parent).
        let first = serde_json::json!({
            "credential": "c",
            "application": "ClientId(7412f649-8e14-471f-bfc1-733b36a42705)",
            "keyVault": "kv1/s",
            "runId": "20261121T020000Z-1a2b3c4d",
            "at": "2026-11-21T02:00:00Z",
            "report": {"name": "c", "outcome": "failed", "steps": [
                {"at": "2026-11-21T02:00:00Z", "step": "update-consumer", "detail": "x", "ok": false}
            ], "error": "x", "nextDue": null}
        });
        let r: AuditRecord = serde_json::from_value(first).unwrap();
        assert_eq!(r.report.outcome, CredentialOutcome::Failed);
        assert_eq!((r.application, r.rotated, r.duration_ms), (None, false, 0));
        // An application that is an object but not an application is not silently dropped.
        let mut odd = previous_version_record();
        odd["application"] = serde_json::json!({"appId": 5});
        assert!(serde_json::from_value::<AuditRecord>(odd).is_err());
    }

    #[tokio::test]
    async fn an_unparsable_record_is_an_error_naming_the_blob_and_reads_as_absent() {
        let store = MemStore::default();
        let last = RecordPath::Last { credential: "c" };
        assert_eq!(last_run(&store, "c").await, None, "never written");
        let mut bad = previous_version_record();
        bad["phase"] = "halfway".into();
        store.put_json(&last.path(), &bad).await.unwrap();
        let err = read::<AuditRecord>(&store, &last, "audit record")
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("last/c.json") && text.contains("halfway"),
            "{text}"
        );
        assert_eq!(last_run(&store, "c").await, None);
        store
            .put_json(&last.path(), &serde_json::json!({"report": "x"}))
            .await
            .unwrap();
        assert!(matches!(
            read::<AuditRecord>(&store, &last, "audit record").await,
            Err(RecordError::Unparsable { .. })
        ));
    }

    #[tokio::test]
    async fn a_written_record_reads_back_by_its_type() {
        let store = MemStore::default();
        let r: AuditRecord = serde_json::from_value(previous_version_record()).unwrap();
        let path = RecordPath::Last {
            credential: "provision-assist",
        };
        write(&store, &path, &r).await.unwrap();
        assert_eq!(last_run(&store, "provision-assist").await, Some(r));
        let run: RunRecord = serde_json::from_value(serde_json::json!({
            "runId": "r1", "started": "2026-11-22T02:00:00Z", "finished": "2026-11-22T02:01:00Z",
            "credentials": [], "deferred": ["b"], "unenrolled": {
                "warnDays": 30, "expiring": 1, "notified": 1, "alreadySentToday": 0, "warning": null,
                "scan": {"applications": 3, "servicePrincipals": 0, "rows": 4, "pages": 1,
                         "ownedOnly": false, "ownedOnlyReason": null, "complete": true}}
        }))
        .unwrap();
        write(&store, &RecordPath::Run { run_id: "r1" }, &run)
            .await
            .unwrap();
        let back: Option<RunRecord> = read(&store, &RecordPath::Run { run_id: "r1" }, "run record")
            .await
            .unwrap();
        assert_eq!(back, Some(run));
    }

    #[test]
    fn every_record_has_its_path() {
        let at = "2026-11-22T02:00:00Z".parse().unwrap();
        let paths = [
            RecordPath::Audit {
                at,
                credential: "c",
                run_id: "r",
            },
            RecordPath::Last { credential: "c" },
            RecordPath::Run { run_id: "r" },
            RecordPath::LifetimeCap { credential: "c" },
            RecordPath::Probe,
        ];
        let paths: Vec<String> = paths.iter().map(RecordPath::path).collect();
        assert_eq!(
            paths,
            [
                "audit/2026/11/22/c-r.json",
                "last/c.json",
                "runs/r.json",
                "lifetime-caps/c.json",
                "last/.probe.json"
            ]
        );
    }
}
