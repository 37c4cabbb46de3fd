//! The handler in process (`handler::run` on port 0) with a fake `RotatorService`, driven by the
//! same envelopes the Functions host sends (`secret_rotator::dev::host` through
//! tests/e2e/support/host.rs): every function, every malformed input, the Rotate run that outlives
//! its caller and the 202 + run id path, every form of request data the host sends, a caller's
//! `sys`, and what a failed pass looks like to the host.

use crate::support::host;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use host::{HttpCall, InvocationClient, TimerForm};
use secret_rotator::engine::report::{
    Check, CredentialOutcome, CredentialPlan, CredentialReport, CredentialStatus, PassReport,
    PlanReport, ResultCode, SelfTestReport, StatusReport, StepRecord,
};
use secret_rotator::engine::service::{RotatorService, ServiceError};
use secret_rotator::handler::{Backend, HandlerOptions, StartupError};
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 15, 2, 0, 0).unwrap()
}

/// A service whose rotations can be held at a gate the test opens.
#[derive(Default)]
struct Fake {
    passes: Mutex<Vec<(DateTime<Utc>, Duration)>>,
    rotations: AtomicUsize,
    /// Set: `rotate_one` signals `started` and waits for the gate.
    gate: Mutex<Option<oneshot::Receiver<()>>>,
    started: Notify,
    finished: Notify,
    /// Set: `rotation_pass` waits for it.
    pass_gate: Mutex<Option<oneshot::Receiver<()>>>,
    /// Set: `self_test` and `plan` never finish (a hung dependency).
    hang: std::sync::atomic::AtomicBool,
    /// Set: every credential of a pass progresses (else `ezsign` fails).
    healthy: std::sync::atomic::AtomicBool,
    /// The `now` each `rotate_one` was given.
    rotation_nows: Mutex<Vec<DateTime<Utc>>>,
}

impl Fake {
    fn healthy() -> Arc<Fake> {
        let f = Fake::default();
        f.healthy.store(true, Ordering::SeqCst);
        Arc::new(f)
    }
}

fn report(name: &str, outcome: CredentialOutcome, now: DateTime<Utc>) -> CredentialReport {
    CredentialReport {
        name: name.into(),
        outcome,
        steps: vec![StepRecord {
            at: now,
            step: secret_rotator::planner::StepKind::Rotate,
            detail: "added password keyId 9f0e and stored it as Key Vault version 7028".into(),
            ok: true,
        }],
        error: (outcome == CredentialOutcome::Failed).then(|| "Graph answered 403".into()),
        next_due: Some(now + chrono::Duration::days(300)),
    }
}

#[async_trait::async_trait]
impl RotatorService for Fake {
    async fn rotation_pass(&self, now: DateTime<Utc>, budget: Duration) -> PassReport {
        self.passes.lock().unwrap().push((now, budget));
        let gate = self.pass_gate.lock().unwrap().take();
        if let Some(gate) = gate {
            let _ = gate.await;
        }
        PassReport {
            run_id: "engine-run".into(),
            started: now,
            finished: now,
            credentials: vec![
                report("provision-assist", CredentialOutcome::Progressed, now),
                report(
                    "ezsign",
                    if self.healthy.load(Ordering::SeqCst) {
                        CredentialOutcome::Progressed
                    } else {
                        CredentialOutcome::Failed
                    },
                    now,
                ),
            ],
            deferred: vec!["empower".into()],
            unenrolled: None,
        }
    }

    async fn rotate_one(
        &self,
        credential: &str,
        force: bool,
        now: DateTime<Utc>,
    ) -> Result<CredentialReport, ServiceError> {
        self.rotations.fetch_add(1, Ordering::SeqCst);
        self.rotation_nows.lock().unwrap().push(now);
        match credential {
            "missing" => return Err(ServiceError::UnknownCredential(credential.into())),
            "broken" => return Err(ServiceError::Internal("lease container unreachable".into())),
            "panics" => panic!("engine bug"),
            _ => {}
        }
        self.started.notify_one();
        let gate = self.gate.lock().unwrap().take();
        if let Some(gate) = gate {
            let _ = gate.await;
        }
        self.finished.notify_one();
        let outcome = if force {
            CredentialOutcome::Progressed
        } else {
            CredentialOutcome::Idle
        };
        Ok(report(credential, outcome, now))
    }

    async fn self_test(&self, _now: DateTime<Utc>) -> SelfTestReport {
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        SelfTestReport {
            checks: vec![
                Check {
                    name: "managed-identity".into(),
                    ok: true,
                    result_code: ResultCode::Ok,
                    message: "token acquired".into(),
                },
                Check {
                    name: "credential provision-assist".into(),
                    ok: false,
                    result_code: ResultCode::CredentialRefused,
                    message: "Entra refused the Key Vault value (AADSTS7000215)".into(),
                },
            ],
        }
    }

    async fn status(&self, now: DateTime<Utc>) -> StatusReport {
        StatusReport {
            now,
            unenrolled: None,
            certificates: vec![],
            credentials: vec![CredentialStatus {
                name: "provision-assist".into(),
                app_id: Some("11111111-2222-3333-4444-555555555555".into()),
                display_name: Some("Provision Assist".into()),
                key_id_in_use: Some("9f0e".into()),
                key_id_source: Some("hint".into()),
                expires: Some(now + chrono::Duration::days(20)),
                days_left: Some(20),
                last_rotation: None,
                phase: None,
                consumers_in_sync: false,
                consumers: vec![],
                next_due: Some(now),
                problem: Some("Automation variable appSecret is behind".into()),
                last_outcome: None,
            }],
        }
    }

    async fn plan(&self, now: DateTime<Utc>) -> PlanReport {
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        PlanReport {
            now,
            credentials: vec![CredentialPlan {
                name: "provision-assist".into(),
                steps: vec!["add-password".into(), "set-secret".into()],
                explanation: vec!["expires in 20 days, inside the 30-day window".into()],
                next_due: Some(now),
                blocked: None,
            }],
            certificates: vec![],
        }
    }
}

struct Server {
    client: InvocationClient,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

async fn start(fake: Arc<Fake>, opts: HandlerOptions) -> Server {
    start_backend(Backend::Ready(fake), opts).await
}

async fn start_backend(backend: Backend, opts: HandlerOptions) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(secret_rotator::handler::run(
        listener,
        backend,
        opts,
        async {
            let _ = stopped.await;
        },
    ));
    Server {
        client: InvocationClient::new(base, Arc::new(host::specs())),
        stop: Some(stop),
        task,
    }
}

fn opts() -> HandlerOptions {
    HandlerOptions {
        pass_budget: Duration::from_secs(123),
        rotate_wait: Duration::from_secs(60),
        ..HandlerOptions::default()
    }
}

fn self_test_call(body: Value) -> HttpCall {
    HttpCall::post_json("SelfTest", &body)
}

fn operate_call(body: Value) -> HttpCall {
    HttpCall::post_json("Operate", &body)
}

fn assert_probe_shape(body: &Value, command: &str) {
    assert_eq!(body["appVersion"], env!("CARGO_PKG_VERSION"), "{body}");
    assert_eq!(body["command"], command, "{body}");
    assert!(body["success"].is_boolean(), "{body}");
    assert!(
        body["message"].is_null() || body["message"].is_string(),
        "{body}"
    );
    let code = body["resultCode"].as_str().expect("resultCode is a string");
    assert!(code.chars().all(|c| c.is_ascii_digit()), "{body}");
}

#[tokio::test]
async fn readiness_answers_at_once() {
    let s = start(Arc::new(Fake::default()), opts()).await;
    let a = s.client.get("/").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json.unwrap()["engine"], "ready");
    s.shutdown().await;
}

#[tokio::test]
async fn timer_runs_one_pass_with_the_budget_and_logs_a_line_per_credential() {
    let fake = Fake::healthy();
    let s = start(fake.clone(), opts()).await;
    let inv = s.client.timer("RotateSecrets", t0(), true).await;
    assert_eq!(inv.json["Outputs"], json!({}));
    assert!(inv.json["ReturnValue"].is_null());
    assert_eq!(
        *fake.passes.lock().unwrap(),
        vec![(t0(), Duration::from_secs(123))]
    );
    let logs = inv.logs.join("\n");
    assert!(logs.contains("IsPastDue=true"), "{logs}");
    for name in ["provision-assist", "ezsign"] {
        assert!(
            logs.contains(&format!("{name}: progressed (1 step(s))")),
            "{logs}"
        );
    }
    assert!(
        logs.contains("deferred to the next run (pass budget reached): empower"),
        "{logs}"
    );
    assert!(
        logs.contains(&format!(
            "pass {}: 2 credential(s) handled, 0 failed or blocked, 1 deferred",
            inv.invocation_id
        )),
        "{logs}"
    );
    s.shutdown().await;
}

/// A pass in which a credential failed is a failed invocation (README "What the host records"):
/// non-2xx, the reason in the status line (the host's exception message), the `Logs` still in
/// the body for local tools, the run queryable afterwards.
#[tokio::test]
async fn a_pass_with_a_failed_credential_fails_the_invocation() {
    let fake = Arc::new(Fake::default());
    let s = start(fake.clone(), opts()).await;
    let def = s.client.function("RotateSecrets");
    let envelope = host::timer_envelope(def, t0(), TimerForm::Monitored { past_due: true });
    let a = s.client.send("RotateSecrets", &envelope, "inv-1").await;
    assert_eq!(a.status, 500, "{}", a.text);
    let failure = host::accept_error("RotateSecrets", a.clone());
    assert!(
        failure
            .contains("500 (rotation pass inv-1: 1 of 2 credential(s) failed or blocked: ezsign)"),
        "{failure}"
    );
    let logs: Vec<&str> = a.json.as_ref().unwrap()["Logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let logs = logs.join("\n");
    assert!(
        logs.contains("ezsign: failed (1 step(s))") && logs.contains("error: Graph answered 403"),
        "{logs}"
    );
    assert!(
        logs.contains("pass inv-1: 2 credential(s) handled, 1 failed or blocked, 1 deferred"),
        "{logs}"
    );

    // The pass is registered under the invocation id and queryable afterwards.
    let r = s
        .client
        .http(
            operate_call(json!({"function": "Run", "runId": "inv-1"})),
            t0(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["run"]["kind"], "pass");
    assert_eq!(r.body["run"]["state"], "finished");
    assert_eq!(r.body["resultCode"], "27");
    s.shutdown().await;
}

/// Every `ScheduleStatus` the host sends: monitored, null (no monitor), and a first run with
/// .NET's `DateTime.MinValue` for `Last` and `LastUpdated`.
#[tokio::test]
async fn timer_in_every_form_the_host_sends() {
    let fake = Fake::healthy();
    let s = start(fake.clone(), opts()).await;
    let forms = [
        TimerForm::Monitored { past_due: false },
        TimerForm::Unmonitored,
        TimerForm::FirstRun,
    ];
    for form in forms {
        let inv = s.client.timer_form("RotateSecrets", t0(), form).await;
        assert!(
            inv.logs.iter().any(|l| l == "IsPastDue=false"),
            "{form:?}: {:?}",
            inv.logs
        );
    }
    let envelope = host::timer_envelope(
        s.client.function("RotateSecrets"),
        t0(),
        TimerForm::FirstRun,
    );
    assert_eq!(
        envelope["Data"]["timer"]["ScheduleStatus"]["Last"],
        "0001-01-01T00:00:00+00:00"
    );
    let nows: Vec<_> = fake.passes.lock().unwrap().iter().map(|p| p.0).collect();
    assert_eq!(nows, vec![t0(); 3]);
    s.shutdown().await;
}

#[tokio::test]
async fn self_test_has_the_probe_shape_with_checks() {
    let s = start(Arc::new(Fake::default()), opts()).await;
    let r = s
        .client
        .http(self_test_call(json!({"function": "Test"})), t0())
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["Content-Type"], "application/json");
    assert_eq!(r.headers["Cache-Control"], "no-store");
    assert_probe_shape(&r.body, "Test");
    assert_eq!(r.body["success"], false);
    assert_eq!(r.body["resultCode"], "19");
    assert_eq!(
        r.body["message"],
        "Entra refused the Key Vault value (AADSTS7000215)"
    );
    let checks = r.body["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 2);
    assert_eq!(checks[1]["resultCode"], "19");
    assert!(
        r.invocation
            .logs
            .iter()
            .any(|l| l.contains("check credential provision-assist: FAILED (resultCode 19)"))
    );

    // The seed's curl sends GET with a body; a browser can use ?function=Test.
    let r = s
        .client
        .http(
            HttpCall::new("GET", "SelfTest")
                .header("Content-Type", "application/json")
                .body(r#"{"function":"test"}"#),
            t0(),
        )
        .await;
    assert_eq!(r.body["command"], "Test");
    let r = s
        .client
        .http(
            HttpCall::new("GET", "SelfTest").query("function", "Test"),
            t0(),
        )
        .await;
    assert_eq!(r.body["command"], "Test");
    s.shutdown().await;
}

#[tokio::test]
async fn status_and_plan() {
    let s = start(Arc::new(Fake::default()), opts()).await;
    let r = s
        .client
        .http(operate_call(json!({"function": "Status"})), t0())
        .await;
    assert_eq!(r.status, 200);
    assert_probe_shape(&r.body, "Status");
    assert_eq!(r.body["resultCode"], "25");
    assert_eq!(r.body["success"], false);
    assert_eq!(
        r.body["status"]["credentials"][0]["name"],
        "provision-assist"
    );
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("Automation variable appSecret is behind")
    );
    assert!(r.body["runs"].is_array());

    let r = s
        .client
        .http(operate_call(json!({"function": "Plan"})), t0())
        .await;
    assert_probe_shape(&r.body, "Plan");
    assert_eq!(r.body["success"], true);
    assert_eq!(r.body["resultCode"], "0");
    assert_eq!(
        r.body["plan"]["credentials"][0]["steps"],
        json!(["add-password", "set-secret"])
    );
    assert_eq!(
        r.invocation.logs,
        vec!["provision-assist: add-password -> set-secret"]
    );
    s.shutdown().await;
}

#[tokio::test]
async fn self_test_rejects_bad_requests_with_400_in_the_same_shape() {
    let s = start(Arc::new(Fake::default()), opts()).await;
    let cases: Vec<(HttpCall, &str)> = vec![
        (
            self_test_call(json!({"function": "Explode"})),
            "unknown command 'Explode'",
        ),
        (
            self_test_call(json!({"function": 7})),
            "\"function\" must be a string",
        ),
        (self_test_call(json!({})), "no command given"),
        (self_test_call(json!([1, 2])), "must be a JSON object"),
        (
            HttpCall::new("POST", "SelfTest")
                .header("Content-Type", "application/json")
                .body("{\"function\":"),
            "not JSON",
        ),
        (HttpCall::new("POST", "SelfTest"), "no command given"),
        (
            operate_call(json!({"function": "Run"})),
            "Run needs a \"runId\"",
        ),
        (
            operate_call(json!({"function": "Run", "runId": "x", "waitSeconds": 9999})),
            "\"waitSeconds\" must be a number",
        ),
    ];
    for (call, want) in cases {
        let r = s.client.http(call, t0()).await;
        assert_eq!(r.status, 400, "{want}: {}", r.body);
        assert_eq!(r.body["resultCode"], "30");
        assert_eq!(r.body["success"], false);
        assert_eq!(r.body["appVersion"], env!("CARGO_PKG_VERSION"));
        let msg = r.body["message"].as_str().unwrap();
        assert!(msg.contains(want), "wanted '{want}' in '{msg}'");
    }
    let r = s
        .client
        .http(
            operate_call(json!({"function": "Run", "runId": "nope"})),
            t0(),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["resultCode"], "30");
    s.shutdown().await;
}

#[tokio::test]
async fn self_test_body_in_base64() {
    let s = start(Arc::new(Fake::default()), opts()).await;
    let r = s
        .client
        .http(
            HttpCall::new("POST", "Operate")
                .header("Content-Type", "application/octet-stream")
                .body(r#"{"function":"Plan"}"#),
            t0(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["command"], "Plan");
    s.shutdown().await;
}

#[tokio::test]
async fn rotate_by_body_route_and_query() {
    let fake = Arc::new(Fake::default());
    let s = start(fake.clone(), opts()).await;
    let r = s
        .client
        .http(
            HttpCall::post_json("rotate", &json!({"credential": "pa", "force": true})),
            t0(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_probe_shape(&r.body, "Rotate");
    assert_eq!(r.body["success"], true);
    assert_eq!(r.body["result"]["name"], "pa");
    assert_eq!(r.body["result"]["outcome"], "progressed");
    assert_eq!(r.body["runId"], r.invocation.invocation_id.as_str());
    assert!(
        r.invocation.logs[0].starts_with("pa: progressed"),
        "{:?}",
        r.invocation.logs
    );

    let r = s
        .client
        .http(HttpCall::new("POST", "rotate/ezsign"), t0())
        .await;
    assert_eq!(r.body["result"]["name"], "ezsign");
    assert_eq!(r.body["result"]["outcome"], "idle");
    assert!(r.body["message"].as_str().unwrap().contains("force"));

    let r = s
        .client
        .http(
            HttpCall::new("POST", "rotate/ezsign").query("force", "true"),
            t0(),
        )
        .await;
    assert_eq!(r.body["result"]["outcome"], "progressed");
    assert_eq!(fake.rotations.load(Ordering::SeqCst), 3);
    s.shutdown().await;
}

#[tokio::test]
async fn rotate_errors() {
    let s = start(Arc::new(Fake::default()), opts()).await;
    let r = s
        .client
        .http(HttpCall::new("POST", "rotate/missing"), t0())
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["resultCode"], "30");
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("no credential named 'missing'")
    );

    let r = s
        .client
        .http(HttpCall::new("POST", "rotate/broken"), t0())
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(r.body["resultCode"], "50");
    assert_eq!(r.body["message"], "lease container unreachable");

    let r = s
        .client
        .http(HttpCall::new("POST", "rotate/panics"), t0())
        .await;
    assert_eq!(r.status, 500);
    assert!(r.body["message"].as_str().unwrap().contains("panicked"));

    for (call, want) in [
        (HttpCall::new("POST", "rotate"), "no credential named"),
        (
            HttpCall::post_json("rotate", &json!({"credential": 5})),
            "\"credential\" must be a non-empty string",
        ),
        (
            HttpCall::post_json("rotate", &json!({"credential": "a", "force": "yes"})),
            "\"force\" must be true or false",
        ),
        (
            HttpCall::new("POST", "rotate/a").query("force", "maybe"),
            "not true or false",
        ),
    ] {
        let r = s.client.http(call, t0()).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.body["resultCode"], "30");
        assert!(
            r.body["message"].as_str().unwrap().contains(want),
            "{}",
            r.body
        );
    }
    // The process is still serving.
    assert_eq!(s.client.get("/").await.status, 200);
    s.shutdown().await;
}

#[tokio::test]
async fn rotate_answers_202_with_a_run_id_then_the_outcome_is_queryable() {
    let fake = Arc::new(Fake::default());
    let (open, gate) = oneshot::channel();
    *fake.gate.lock().unwrap() = Some(gate);
    // The run is held at the gate, so a zero wait always answers 202: no clock involved.
    let s = start(
        fake.clone(),
        HandlerOptions {
            rotate_wait: Duration::ZERO,
            ..opts()
        },
    )
    .await;
    let r = s
        .client
        .http_with_id(
            HttpCall::new("POST", "rotate/slow").query("force", "true"),
            t0(),
            "inv-202",
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["runId"], "inv-202");
    assert_eq!(r.body["success"], true);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("\"runId\":\"inv-202\"")
    );

    let run = json!({"function": "Run", "runId": "inv-202"});
    let q = s.client.http(operate_call(run.clone()), t0()).await;
    assert_eq!(q.body["run"]["state"], "running");
    assert_eq!(q.body["run"]["credential"], "slow");

    // A second request for the same credential joins the running one.
    let j = s
        .client
        .http(HttpCall::new("POST", "rotate/slow"), t0())
        .await;
    assert_eq!(j.status, 202);
    assert_eq!(j.body["runId"], "inv-202");
    assert_eq!(j.body["joined"], true);

    open.send(()).unwrap();
    let q = s
        .client
        .http(
            operate_call(json!({"function": "Run", "runId": "inv-202", "waitSeconds": 60})),
            t0(),
        )
        .await;
    assert_eq!(q.body["run"]["state"], "finished", "{}", q.body);
    assert_eq!(q.body["run"]["result"]["report"]["outcome"], "progressed");
    assert_eq!(q.body["success"], true);
    assert_eq!(fake.rotations.load(Ordering::SeqCst), 1);

    let st = s
        .client
        .http(operate_call(json!({"function": "Status"})), t0())
        .await;
    assert!(
        st.body["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["runId"] == "inv-202")
    );
    s.shutdown().await;
}

#[tokio::test]
async fn a_dropped_rotate_request_does_not_cancel_the_rotation() {
    let fake = Arc::new(Fake::default());
    let (open, gate) = oneshot::channel();
    *fake.gate.lock().unwrap() = Some(gate);
    let s = start(fake.clone(), opts()).await; // waits up to 60 s: the client leaves first
    let client = s.client.clone();
    let caller = tokio::spawn(async move {
        client
            .http_with_id(
                HttpCall::new("POST", "rotate/pa").query("force", "true"),
                t0(),
                "inv-drop",
            )
            .await
    });
    fake.started.notified().await;
    caller.abort(); // the connection is dropped mid-wait
    assert!(caller.await.unwrap_err().is_cancelled());

    open.send(()).unwrap();
    fake.finished.notified().await;
    let q = s
        .client
        .http(
            operate_call(json!({"function": "Run", "runId": "inv-drop", "waitSeconds": 60})),
            t0(),
        )
        .await;
    assert_eq!(q.body["run"]["state"], "finished", "{}", q.body);
    assert_eq!(q.body["run"]["result"]["report"]["name"], "pa");
    assert_eq!(q.body["run"]["result"]["report"]["outcome"], "progressed");
    let st = s
        .client
        .http(operate_call(json!({"function": "Status"})), t0())
        .await;
    let runs = st.body["runs"].as_array().unwrap();
    let run = runs
        .iter()
        .find(|r| r["runId"] == "inv-drop")
        .expect("the run shows in Status");
    assert_eq!(run["state"], "finished");
    s.shutdown().await;
}

#[tokio::test]
async fn shutdown_waits_for_a_running_rotation() {
    let fake = Arc::new(Fake::default());
    let (open, gate) = oneshot::channel();
    *fake.gate.lock().unwrap() = Some(gate);
    let s = start(
        fake.clone(),
        HandlerOptions {
            rotate_wait: Duration::ZERO,
            ..opts()
        },
    )
    .await;
    let r = s
        .client
        .http(HttpCall::new("POST", "rotate/pa"), t0())
        .await;
    assert_eq!(r.status, 202);
    let Server { stop, mut task, .. } = s;
    stop.unwrap().send(()).unwrap();
    // The server is draining: the held run keeps it from returning. (A bounded negative check:
    // without the drain, `run` returns as soon as the listener closes.)
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut task)
            .await
            .is_err(),
        "run returned while a rotation was still running"
    );
    open.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(fake.rotations.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn malformed_envelopes_get_4xx_json_and_the_server_stays_up() {
    let s = start(Arc::new(Fake::default()), opts()).await;
    let c = &s.client;
    let json_ct = Some("application/json; charset=utf-8");
    let cases: Vec<(host::RawAnswer, u16, &str)> = vec![
        (
            c.post_raw("/Nope", json_ct, b"{}".to_vec()).await,
            404,
            "unknown function 'Nope'",
        ),
        (
            c.post_raw("/SelfTest", json_ct, b"not json".to_vec()).await,
            400,
            "not JSON",
        ),
        (
            c.post_raw("/SelfTest", json_ct, b"[]".to_vec()).await,
            400,
            "JSON object",
        ),
        (
            c.post_raw("/SelfTest", Some("text/plain"), b"{}".to_vec())
                .await,
            415,
            "application/json",
        ),
        (
            c.post_raw("/SelfTest", None, b"{}".to_vec()).await,
            415,
            "no Content-Type",
        ),
        (
            c.post_raw("/SelfTest", json_ct, vec![b' '; 2 * 1024 * 1024])
                .await,
            413,
            "limit",
        ),
        (
            c.post_raw(
                "/SelfTest",
                json_ct,
                br#"{"Data": {"other": {}, "x": {}}}"#.to_vec(),
            )
            .await,
            400,
            "'req'",
        ),
        (
            c.post_raw(
                "/RotateSecrets",
                json_ct,
                br#"{"Data": {"timer": 5}}"#.to_vec(),
            )
            .await,
            400,
            "Data.timer",
        ),
        (
            c.post_raw("/a/b", json_ct, b"{}".to_vec()).await,
            404,
            "no such path",
        ),
        (c.get("/SelfTest").await, 405, "not allowed"),
    ];
    for (a, status, want) in cases {
        assert_eq!(a.status, status, "{want}: {}", a.text);
        assert!(
            a.content_type.starts_with("application/json"),
            "{want}: {}",
            a.content_type
        );
        let msg = a
            .json
            .as_ref()
            .and_then(|j| j["message"].as_str())
            .unwrap_or_default()
            .to_string();
        assert!(msg.contains(want), "wanted '{want}' in '{msg}'");
    }
    assert_eq!(c.get("/").await.status, 200);
    let r = c
        .http(operate_call(json!({"function": "Plan"})), t0())
        .await;
    assert_eq!(r.status, 200);
    s.shutdown().await;
}

#[tokio::test]
async fn an_engine_that_did_not_start_is_reported_not_crashed() {
    let s = start_backend(
        Backend::Failed(StartupError {
            message: "policy.json: credential 'x' names no consumer".into(),
            result_code: ResultCode::PolicyInvalid,
        }),
        opts(),
    )
    .await;
    let r = s
        .client
        .http(self_test_call(json!({"function": "Test"})), t0())
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["success"], false);
    assert_eq!(r.body["resultCode"], "10");
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("names no consumer")
    );
    let r = s
        .client
        .http(HttpCall::new("POST", "rotate/pa"), t0())
        .await;
    assert_eq!(r.status, 503);
    let a = s
        .client
        .send(
            "RotateSecrets",
            &host::timer_envelope(
                s.client.function("RotateSecrets"),
                t0(),
                TimerForm::Monitored { past_due: false },
            ),
            "i",
        )
        .await;
    assert_eq!(a.status, 500);
    let failure = host::accept_error("RotateSecrets", a.clone());
    assert!(
        failure.contains(
            "(the rotation pass could not start: the engine is not available: policy.json"
        ),
        "{failure}"
    );
    let logs = a.json.unwrap()["Logs"].to_string();
    assert!(logs.contains("names no consumer"), "{logs}");
    assert!(
        s.client.get("/").await.json.unwrap()["engine"]
            .as_str()
            .unwrap()
            .starts_with("unavailable")
    );
    s.shutdown().await;
}

#[tokio::test]
async fn an_overrunning_pass_continues_and_the_next_timer_does_not_start_another() {
    let fake = Arc::new(Fake::default());
    let (open, gate) = oneshot::channel();
    *fake.pass_gate.lock().unwrap() = Some(gate);
    // Zero budget and grace: the invocation answers at once while the held pass keeps running.
    let s = start(
        fake.clone(),
        HandlerOptions {
            pass_budget: Duration::ZERO,
            pass_grace: Duration::ZERO,
            ..opts()
        },
    )
    .await;
    let first = s.client.timer("RotateSecrets", t0(), false).await;
    let logs = first.logs.join("\n");
    assert!(
        logs.contains(&format!("pass {} is still running", first.invocation_id)),
        "{logs}"
    );

    let second = s.client.timer("RotateSecrets", t0(), true).await;
    let logs = second.logs.join("\n");
    assert!(
        logs.contains("still working; this run starts no second pass"),
        "{logs}"
    );
    assert_eq!(fake.passes.lock().unwrap().len(), 1);

    open.send(()).unwrap();
    let q = s
        .client
        .http(
            operate_call(
                json!({"function": "Run", "runId": first.invocation_id, "waitSeconds": 60}),
            ),
            t0(),
        )
        .await;
    assert_eq!(q.body["run"]["state"], "finished", "{}", q.body);
    assert_eq!(
        q.body["run"]["result"]["report"]["deferred"],
        json!(["empower"])
    );
    s.shutdown().await;
}

#[tokio::test]
async fn a_hung_engine_call_is_answered_504_not_left_hanging() {
    let fake = Arc::new(Fake::default());
    fake.hang.store(true, Ordering::SeqCst);
    // A zero bound: the call is polled once, found pending, and answered without any clock.
    let s = start(
        fake,
        HandlerOptions {
            request_timeout: Duration::ZERO,
            ..opts()
        },
    )
    .await;
    for (function, command) in [("SelfTest", "Test"), ("Operate", "Plan")] {
        let r = s
            .client
            .http(
                HttpCall::post_json(function, &json!({"function": command})),
                t0(),
            )
            .await;
        assert_eq!(r.status, 504, "{}", r.body);
        assert_eq!(r.body["command"], command);
        assert_eq!(r.body["resultCode"], "50");
        assert!(
            r.body["message"]
                .as_str()
                .unwrap()
                .contains("did not finish")
        );
    }
    s.shutdown().await;
}

#[tokio::test]
async fn a_forced_request_does_not_join_an_unforced_run() {
    let fake = Arc::new(Fake::default());
    let (open, gate) = oneshot::channel();
    *fake.gate.lock().unwrap() = Some(gate);
    let s = start(
        fake.clone(),
        HandlerOptions {
            rotate_wait: Duration::ZERO,
            ..opts()
        },
    )
    .await;
    let a = s
        .client
        .http(HttpCall::new("POST", "rotate/pa"), t0())
        .await;
    assert_eq!(a.status, 202);
    let b = s
        .client
        .http(
            HttpCall::new("POST", "rotate/pa").query("force", "true"),
            t0(),
        )
        .await;
    assert_ne!(b.body["runId"], a.body["runId"]);
    assert_eq!(b.body["joined"], false);
    open.send(()).unwrap();
    let q = s
        .client
        .http(
            operate_call(json!({"function": "Run", "runId": b.body["runId"], "waitSeconds": 60})),
            t0(),
        )
        .await;
    assert_eq!(
        q.body["run"]["result"]["report"]["outcome"], "progressed",
        "{}",
        q.body
    );
    assert_eq!(fake.rotations.load(Ordering::SeqCst), 2);
    s.shutdown().await;
}

#[tokio::test]
async fn status_page_serves_one_self_contained_html_page() {
    let s = start(Arc::new(Fake::default()), opts()).await;
    let call = HttpCall::new("GET", "StatusPage");
    let envelope = s.client.http_envelope(&call, t0());
    let inv = s.client.invoke("StatusPage", &envelope).await;
    let res = &inv.json["Outputs"]["res"];
    assert_eq!(res["statusCode"], 200, "{res}");
    assert_eq!(res["headers"]["Content-Type"], "text/html; charset=utf-8");
    assert!(
        res["headers"]["Content-Security-Policy"]
            .as_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    let html = res["body"].as_str().unwrap();
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(
        html.contains("provision-assist"),
        "the fake's credential is listed"
    );
    assert!(!html.contains("https://") && !html.contains("http://"));
    s.shutdown().await;
}

/// Issue 13: a caller's `sys` (query or body, object or not, any casing) or `$sys` neither moves
/// the engine's clock nor fails the invocation, and is not echoed back.
#[tokio::test]
async fn a_callers_sys_does_not_move_the_clock() {
    let fake = Arc::new(Fake::default());
    let s = start(fake.clone(), opts()).await;
    let forged = "2031-01-23T02:00:00Z";
    let calls = [
        HttpCall::post_json(
            "rotate/pa",
            &json!({"force": true, "sys": {"UtcNow": forged}}),
        ),
        HttpCall::post_json("rotate/pa", &json!({"force": true, "sys": forged})),
        HttpCall::post_json("rotate/pa", &json!({"force": true, "SYS": 1})),
        HttpCall::post_json(
            "rotate/pa",
            &json!({"force": true, "$sys": {"UtcNow": forged}}),
        ),
        HttpCall::new("POST", "rotate/pa")
            .query("sys", "1")
            .query("force", "true"),
        HttpCall::new("POST", "rotate/pa")
            .query("Sys", &json!({"UtcNow": forged}).to_string())
            .query("force", "true"),
        HttpCall::new("POST", "rotate/pa")
            .header("Content-Type", "text/plain")
            .body(json!({"sys": {"UtcNow": forged}}).to_string())
            .query("force", "true"),
    ];
    for call in calls {
        let envelope = s.client.http_envelope(&call, t0());
        let r = s.client.http(call.clone(), t0()).await;
        assert_eq!(r.status, 200, "{call:?}: {}", r.body);
        assert_eq!(r.body["result"]["outcome"], "progressed", "{call:?}");
        assert!(
            !r.invocation.json.to_string().contains("2031"),
            "{call:?} echoed: {}",
            r.invocation.json
        );
        // The host shadowed its own `sys` exactly when the caller sent one.
        let shadowed = envelope["Metadata"]["$sys"]["MethodName"] == "Rotate";
        let sent_sys = call
            .query
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("sys"))
            || call.body.as_ref().is_some_and(|b| {
                serde_json::from_slice::<Value>(b)
                    .ok()
                    .and_then(|v| v.as_object().cloned())
                    .is_some_and(|o| o.keys().any(|k| k.eq_ignore_ascii_case("sys")))
            });
        assert_eq!(shadowed, sent_sys, "{call:?}: {envelope}");
    }
    let nows = fake.rotation_nows.lock().unwrap().clone();
    assert_eq!(nows, vec![t0(); 7], "the engine's clock is the host's");
    s.shutdown().await;
}

/// `Body` as the host passes it: a string, base64 for octet-stream, absent for a chunked caller;
/// `Query` as an object and in the docs' legacy string form; `Params` empty and with null.
#[tokio::test]
async fn request_data_in_every_form_the_host_sends() {
    let fake = Arc::new(Fake::default());
    let s = start(fake.clone(), opts()).await;
    let forced = json!({"credential": "pa", "force": true});
    let cases = [
        (HttpCall::post_json("rotate", &forced), "progressed"),
        (
            HttpCall::new("POST", "rotate")
                .header("Content-Type", "application/octet-stream")
                .body(forced.to_string()),
            "progressed",
        ),
        // Chunked: no Body, so no force; the credential comes from the query.
        (
            HttpCall::post_json("rotate", &forced)
                .chunked()
                .query("credential", "pa"),
            "idle",
        ),
        (
            HttpCall::new("POST", "rotate")
                .query("credential", "pa")
                .query("force", "true")
                .legacy_query(),
            "progressed",
        ),
    ];
    for (call, outcome) in cases {
        let envelope = s.client.http_envelope(&call, t0());
        let req = &envelope["Data"]["req"];
        assert_eq!(req["Params"], json!({"credential": null}), "{envelope}");
        let counted = call.body.is_some() && !call.chunked;
        assert_eq!(req.get("Body").is_some(), counted, "{envelope}");
        let r = s.client.http(call.clone(), t0()).await;
        assert_eq!(r.body["result"]["outcome"], outcome, "{call:?}: {}", r.body);
    }
    let b64 = s.client.http_envelope(
        &HttpCall::new("POST", "rotate/pa")
            .header("Content-Type", "application/octet-stream")
            .body("{}"),
        t0(),
    );
    assert_eq!(b64["Data"]["req"]["Body"], "e30=");
    assert_eq!(b64["Data"]["req"]["Params"], json!({"credential": "pa"}));
    assert_eq!(
        b64["Metadata"]["credential"], "\"pa\"",
        "strings JSON-encoded"
    );

    let probe = HttpCall::new("POST", "SelfTest").query("function", "Test");
    assert_eq!(
        s.client.http_envelope(&probe, t0())["Data"]["req"]["Params"],
        json!({})
    );
    let r = s.client.http(probe.chunked(), t0()).await;
    assert_eq!(r.body["command"], "Test");
    s.shutdown().await;
}

/// Every HTTP function, answering well or not, gives the host what it needs: a JSON answer,
/// `Outputs.res` with a numeric `statusCode`, scalar headers with a content type, a body.
/// (`read_http_output` checks all of that on every call; this names the content types.)
#[tokio::test]
async fn every_http_function_answers_in_the_shape_the_host_needs() {
    let s = start(Arc::new(Fake::default()), opts()).await;
    let cases = [
        (
            self_test_call(json!({"function": "Test"})),
            200,
            "application/json",
        ),
        (
            self_test_call(json!({"function": "Nope"})),
            400,
            "application/json",
        ),
        (
            HttpCall::post_json("rotate/pa", &json!({"force": true})),
            200,
            "application/json",
        ),
        (
            HttpCall::post_json("rotate/pa", &json!({"force": "x"})),
            400,
            "application/json",
        ),
        (
            HttpCall::new("POST", "rotate/missing"),
            404,
            "application/json",
        ),
        (
            HttpCall::new("GET", "StatusPage"),
            200,
            "text/html; charset=utf-8",
        ),
    ];
    for (call, status, content_type) in cases {
        let r = s.client.http(call.clone(), t0()).await;
        assert_eq!(r.status, status, "{call:?}: {}", r.body_text);
        assert_eq!(r.headers["Content-Type"], content_type, "{call:?}");
        let res = &r.invocation.json["Outputs"]["res"];
        assert!(res["statusCode"].is_u64(), "{res}");
    }
    // The host also takes a numeric string for statusCode (HttpBinding.cs).
    let inv = host::Invocation {
        invocation_id: "i".into(),
        status: 200,
        json: json!({"Outputs": {"res": {"statusCode": "202", "body": "{}",
                     "headers": {"Content-Type": "application/json"}}}}),
        logs: vec![],
    };
    assert_eq!(host::read_http_output(inv.clone(), "res").status, 202);
    for bad in [json!(null), json!(""), json!({"a": 1})] {
        let mut inv = inv.clone();
        inv.json["Outputs"]["res"]["body"] = bad.clone();
        assert!(host::try_read_http_output(inv, "res").is_err(), "{bad}");
    }
    s.shutdown().await;
}

// ---------------------------------------------------------------- issue #15: who may call what

/// Was: the probe's function key (SelfTest) also answered Status, Plan and Run — the whole
/// inventory. Now SelfTest answers the seed's probe only and names where the rest is served.
#[tokio::test]
async fn the_probe_key_reads_no_inventory() {
    let s = start(Arc::new(Fake::default()), opts()).await;
    // The seed runbook's call, unchanged: `curl …/api/SelfTest?code=<key> -d '{"function":"Test"}'`.
    let seed = HttpCall::new("POST", "SelfTest")
        .query("code", "probe-key")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(r#"{"function":"Test"}"#);
    let r = s.client.http(seed, t0()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_probe_shape(&r.body, "Test");
    for command in ["Status", "Plan", "Run", "status"] {
        let r = s
            .client
            .http(
                self_test_call(json!({"function": command, "runId": "x"})),
                t0(),
            )
            .await;
        assert_eq!(r.status, 403, "{command}: {}", r.body);
        assert_eq!(r.body["success"], false);
        let msg = r.body["message"].as_str().unwrap();
        assert!(msg.contains("POST /api/Operate"), "{msg}");
        assert!(r.body.get("credentials").is_none() && r.body.get("plan").is_none());
    }
    // Operate serves them (with its own key) and not the probe.
    let r = s
        .client
        .http(operate_call(json!({"function": "Status"})), t0())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s
        .client
        .http(operate_call(json!({"function": "Test"})), t0())
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    s.shutdown().await;
}

fn principal(roles: &[&str]) -> String {
    use base64::Engine as _;
    let role_typ = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role";
    let mut claims = vec![json!({"typ": "name", "val": "monitor@contoso.com"})];
    claims.extend(roles.iter().map(|r| json!({"typ": role_typ, "val": r})));
    let p = json!({"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": role_typ});
    base64::engine::general_purpose::STANDARD.encode(p.to_string())
}

/// With App Service authentication on (ROTATOR_REQUIRE_APP_ROLES), the roles in the platform's
/// `X-MS-CLIENT-PRINCIPAL` decide: the probe role calls the probe and nothing else.
#[tokio::test]
async fn app_roles_from_the_platform_header_gate_every_function() {
    let fake = Arc::new(Fake::default());
    let s = start(
        fake.clone(),
        HandlerOptions {
            require_app_roles: true,
            ..opts()
        },
    )
    .await;
    let as_caller = |call: HttpCall, roles: Option<&[&str]>| match roles {
        Some(r) => call.header("X-MS-CLIENT-PRINCIPAL", &principal(r)),
        None => call,
    };
    let probe: &[&str] = &["Rotator.Probe"];
    let operator: &[&str] = &["Rotator.Operator"];
    let cases: Vec<(HttpCall, Option<&[&str]>, u16)> = vec![
        (
            self_test_call(json!({"function": "Test"})),
            Some(probe),
            200,
        ),
        (
            self_test_call(json!({"function": "Test"})),
            Some(operator),
            200,
        ),
        (self_test_call(json!({"function": "Test"})), None, 403),
        (self_test_call(json!({"function": "Test"})), Some(&[]), 403),
        (
            operate_call(json!({"function": "Status"})),
            Some(probe),
            403,
        ),
        (
            operate_call(json!({"function": "Status"})),
            Some(operator),
            200,
        ),
        (HttpCall::new("GET", "StatusPage"), Some(probe), 403),
        (
            HttpCall::post_json("rotate/provision-assist", &json!({"force": true})),
            Some(probe),
            403,
        ),
    ];
    for (call, roles, want) in cases {
        let what = format!("{} {} as {roles:?}", call.method, call.path);
        let r = s.client.http(as_caller(call, roles), t0()).await;
        assert_eq!(r.status, want, "{what}: {}", r.body);
        if want == 403 {
            let msg = r.body["message"].as_str().unwrap_or_default();
            assert!(
                msg.contains("Rotator.") || msg.contains("X-MS-CLIENT-PRINCIPAL"),
                "{msg}"
            );
        }
    }
    // The status page (HTML) for an operator.
    let call =
        HttpCall::new("GET", "StatusPage").header("X-MS-CLIENT-PRINCIPAL", &principal(operator));
    let envelope = s.client.http_envelope(&call, t0());
    let inv = s.client.invoke("StatusPage", &envelope).await;
    assert_eq!(inv.json["Outputs"]["res"]["statusCode"], 200);
    assert_eq!(
        fake.rotations.load(Ordering::SeqCst),
        0,
        "the probe role rotated nothing"
    );
    s.shutdown().await;
}
