//! The in-memory run registry: every timer pass and on-demand rotation runs in a spawned task
//! registered here under a run id, so a dropped HTTP connection (or an answer sent early with 202)
//! never cancels the work, and its outcome can be asked for afterwards.
//!
//! Why in memory: the engine records durable outcomes in blob storage (status shows them); this
//! registry only bridges "the request stopped waiting" and "the run finished" within one process.
//! Finished runs beyond `keep` are forgotten, oldest first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use serde::Serialize;
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::engine::report::{CredentialReport, PassReport, ResultCode};

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum RunKind {
    /// A timer (or manual) pass over every credential.
    Pass,
    /// One credential, on demand.
    Rotate,
}

/// What a run ended with.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum RunResult {
    Pass {
        report: PassReport,
    },
    Rotate {
        report: CredentialReport,
    },
    /// The run could not do its work (unknown credential, engine failure, a panic).
    Failed {
        error: String,
        #[serde(skip)]
        code: ResultCode,
        #[serde(skip)]
        not_found: bool,
    },
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunInfo {
    pub run_id: String,
    pub kind: RunKind,
    pub credential: Option<String>,
    pub force: bool,
    /// The host's clock when the run was started.
    pub started: DateTime<Utc>,
}

/// Where a run stands, as callers see it (`running`, `finished` or `failed`).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Finished,
    Failed,
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Failed => "failed",
        })
    }
}

/// A run as callers see it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    #[serde(flatten)]
    pub info: RunInfo,
    pub state: RunState,
    pub elapsed_ms: u64,
    pub result: Option<RunResult>,
}

type Done = watch::Receiver<Option<Arc<RunResult>>>;

struct Slot {
    info: RunInfo,
    started_at: tokio::time::Instant,
    finished_after: Arc<Mutex<Option<Duration>>>,
    done: Done,
}

#[derive(Default)]
struct Runs {
    by_id: HashMap<String, Slot>,
    order: VecDeque<String>,
}

pub struct RunRegistry {
    runs: Mutex<Runs>,
    keep: usize,
}

/// A handle to wait for one run.
#[derive(Clone)]
pub struct RunHandle {
    pub run_id: String,
    /// `true` when an already running run for the same credential was joined.
    pub joined: bool,
    done: Done,
}

impl RunHandle {
    /// Waits up to `limit` for the outcome; `None` if still running then. A run whose task was
    /// torn down (process shutdown) reports a failure rather than hanging.
    pub async fn wait(&self, limit: Duration) -> Option<Arc<RunResult>> {
        let mut rx = self.done.clone();
        match tokio::time::timeout(limit, rx.wait_for(|v| v.is_some())).await {
            Err(_) => None,
            Ok(Ok(v)) => v.clone(),
            Ok(Err(_)) => Some(Arc::new(RunResult::Failed {
                error: "the run was stopped before it finished (process shutting down)".into(),
                code: ResultCode::Internal,
                not_found: false,
            })),
        }
    }
}

impl RunRegistry {
    pub fn new(keep: usize) -> Self {
        Self {
            runs: Mutex::new(Runs::default()),
            keep: keep.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Runs> {
        // A panic while holding this lock cannot leave the map half-updated in a way that matters.
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spawns `work` as a run. `id_hint` (the host's invocation id) becomes the run id when it is
    /// a plain token not already used; otherwise a fresh UUID is used.
    pub fn start<F>(
        &self,
        id_hint: Option<&str>,
        kind: RunKind,
        credential: Option<String>,
        force: bool,
        started: DateTime<Utc>,
        work: F,
    ) -> RunHandle
    where
        F: Future<Output = RunResult> + Send + 'static,
    {
        let (tx, rx) = watch::channel(None);
        let finished_after = Arc::new(Mutex::new(None));
        let started_at = tokio::time::Instant::now();
        let credential_for_span = credential.clone();
        let run_id = {
            let mut runs = self.lock();
            let run_id = match id_hint {
                Some(h) if is_token(h) && !runs.by_id.contains_key(h) => h.to_string(),
                _ => uuid::Uuid::new_v4().to_string(),
            };
            runs.by_id.insert(
                run_id.clone(),
                Slot {
                    info: RunInfo {
                        run_id: run_id.clone(),
                        kind,
                        credential,
                        force,
                        started,
                    },
                    started_at,
                    finished_after: finished_after.clone(),
                    done: rx.clone(),
                },
            );
            runs.order.push_back(run_id.clone());
            self.evict(&mut runs);
            run_id
        };
        // The run's span is a child of the invocation's (the current span here), so its log
        // lines carry both the run id and the invocation that started it.
        let span = tracing::info_span!(
            "run",
            run_id = %run_id,
            kind = ?kind,
            credential = credential_for_span.as_deref().unwrap_or("")
        );
        tokio::spawn(async move {
            let result = std::panic::AssertUnwindSafe(work.instrument(span))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| RunResult::Failed {
                    error: "internal error: the run panicked".into(),
                    code: ResultCode::Internal,
                    not_found: false,
                });
            *finished_after.lock().unwrap_or_else(|e| e.into_inner()) = Some(started_at.elapsed());
            tx.send_replace(Some(Arc::new(result)));
        });
        RunHandle {
            run_id,
            joined: false,
            done: rx,
        }
    }

    /// An unfinished pass, if any (a timer firing while the previous pass overran).
    pub fn running_pass(&self) -> Option<String> {
        let runs = self.lock();
        runs.by_id
            .values()
            .find(|s| s.info.kind == RunKind::Pass && s.done.borrow().is_none())
            .map(|s| s.info.run_id.clone())
    }

    /// The unfinished rotate run for `credential` that a new request (with `force`) can join:
    /// a forced run serves any request, an unforced one only unforced requests.
    pub fn running_rotation(&self, credential: &str, force: bool) -> Option<RunHandle> {
        let runs = self.lock();
        runs.by_id
            .values()
            .find(|s| {
                s.info.kind == RunKind::Rotate
                    && s.info.credential.as_deref() == Some(credential)
                    && (s.info.force || !force)
                    && s.done.borrow().is_none()
            })
            .map(|s| RunHandle {
                run_id: s.info.run_id.clone(),
                joined: true,
                done: s.done.clone(),
            })
    }

    pub fn handle(&self, run_id: &str) -> Option<RunHandle> {
        self.lock().by_id.get(run_id).map(|s| RunHandle {
            run_id: run_id.to_string(),
            joined: false,
            done: s.done.clone(),
        })
    }

    pub fn get(&self, run_id: &str) -> Option<RunView> {
        self.lock().by_id.get(run_id).map(view)
    }

    /// Every remembered run, newest first.
    pub fn list(&self) -> Vec<RunView> {
        let runs = self.lock();
        runs.order
            .iter()
            .rev()
            .filter_map(|id| runs.by_id.get(id))
            .map(view)
            .collect()
    }

    /// Waits (up to `limit`) for every unfinished run: used at shutdown so a rotation in its
    /// critical section gets the chance to finish.
    pub async fn drain(&self, limit: Duration) -> usize {
        let pending: Vec<Done> = {
            let runs = self.lock();
            runs.by_id
                .values()
                .filter(|s| s.done.borrow().is_none())
                .map(|s| s.done.clone())
                .collect()
        };
        let waits = pending.into_iter().map(|mut rx| async move {
            let _ = rx.wait_for(|v| v.is_some()).await;
        });
        let _ = tokio::time::timeout(limit, futures::future::join_all(waits)).await;
        self.lock()
            .by_id
            .values()
            .filter(|s| s.done.borrow().is_none())
            .count()
    }

    fn evict(&self, runs: &mut Runs) {
        while runs.order.len() > self.keep {
            // Oldest finished run first; running ones are never forgotten.
            let Some(pos) = runs
                .order
                .iter()
                .position(|id| runs.by_id.get(id).is_none_or(|s| s.done.borrow().is_some()))
            else {
                break;
            };
            if let Some(id) = runs.order.remove(pos) {
                runs.by_id.remove(&id);
            }
        }
    }
}

fn view(s: &Slot) -> RunView {
    let result = s.done.borrow().as_deref().cloned();
    let state = match &result {
        None => RunState::Running,
        Some(RunResult::Failed { .. }) => RunState::Failed,
        Some(_) => RunState::Finished,
    };
    let elapsed = s
        .finished_after
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or_else(|| s.started_at.elapsed());
    RunView {
        info: s.info.clone(),
        state,
        elapsed_ms: elapsed.as_millis() as u64,
        result,
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::report::CredentialOutcome;
    use tokio::sync::oneshot;

    fn report(name: &str) -> CredentialReport {
        CredentialReport {
            name: name.into(),
            outcome: CredentialOutcome::Progressed,
            steps: vec![],
            error: None,
            next_due: None,
        }
    }

    #[tokio::test]
    async fn a_run_outlives_its_waiter_and_is_visible_afterwards() {
        let reg = RunRegistry::new(10);
        let (go, gate) = oneshot::channel::<()>();
        let h = reg.start(
            Some("inv-1"),
            RunKind::Rotate,
            Some("a".into()),
            false,
            Utc::now(),
            async move {
                let _ = gate.await;
                RunResult::Rotate {
                    report: report("a"),
                }
            },
        );
        assert_eq!(h.run_id, "inv-1");
        assert!(h.wait(Duration::ZERO).await.is_none());
        assert_eq!(reg.get("inv-1").unwrap().state, RunState::Running);
        assert!(reg.running_rotation("a", false).unwrap().joined);
        assert!(
            reg.running_rotation("a", true).is_none(),
            "a forced request does not join an unforced run"
        );
        go.send(()).unwrap();
        let r = reg
            .handle("inv-1")
            .unwrap()
            .wait(Duration::from_secs(30))
            .await
            .unwrap();
        assert!(matches!(&*r, RunResult::Rotate { report } if report.name == "a"));
        assert_eq!(reg.get("inv-1").unwrap().state, RunState::Finished);
        assert!(reg.running_rotation("a", false).is_none());
    }

    #[tokio::test]
    async fn duplicate_or_odd_ids_get_a_fresh_uuid_and_panics_are_recorded() {
        let reg = RunRegistry::new(10);
        let a = reg.start(Some("x"), RunKind::Pass, None, false, Utc::now(), async {
            panic!("boom")
        });
        let b = reg.start(Some("x"), RunKind::Pass, None, false, Utc::now(), async {
            RunResult::Failed {
                error: "e".into(),
                code: ResultCode::Internal,
                not_found: false,
            }
        });
        let c = reg.start(
            Some("has space"),
            RunKind::Pass,
            None,
            false,
            Utc::now(),
            async {
                RunResult::Failed {
                    error: "e".into(),
                    code: ResultCode::Internal,
                    not_found: false,
                }
            },
        );
        assert_eq!(a.run_id, "x");
        assert_ne!(b.run_id, "x");
        assert_ne!(c.run_id, "has space");
        let r = a.wait(Duration::from_secs(30)).await.unwrap();
        assert!(matches!(&*r, RunResult::Failed { error, .. } if error.contains("panicked")));
        assert_eq!(reg.get("x").unwrap().state, RunState::Failed);
    }

    #[tokio::test]
    async fn keeps_only_the_newest_finished_runs_but_never_drops_running_ones() {
        let reg = RunRegistry::new(2);
        let (_keep_open, gate) = oneshot::channel::<()>();
        let running = reg.start(None, RunKind::Pass, None, false, Utc::now(), async move {
            let _ = gate.await;
            RunResult::Failed {
                error: "x".into(),
                code: ResultCode::Internal,
                not_found: false,
            }
        });
        for i in 0..5 {
            let h = reg.start(
                None,
                RunKind::Rotate,
                Some(format!("c{i}")),
                false,
                Utc::now(),
                async move {
                    RunResult::Rotate {
                        report: report("c"),
                    }
                },
            );
            h.wait(Duration::from_secs(30)).await.unwrap();
        }
        let ids: Vec<String> = reg.list().into_iter().map(|v| v.info.run_id).collect();
        assert!(ids.len() <= 3, "{ids:?}");
        assert!(ids.contains(&running.run_id));
    }
}
