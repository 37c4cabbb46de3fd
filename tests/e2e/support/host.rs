//! Plays the Azure Functions host for the custom handler, offline: the test side of the one
//! host stand-in (`secret_rotator::dev::host`, which builds every invocation as the real host
//! does, sends it and reads the answer as the real host does; the contract and its sources are
//! in `src/handler/mod.rs`).
//!
//! What lives here: starting the binary as the host starts a custom handler — `host.json` and
//! `function-specs/` laid out in an app root, the host's environment (`FUNCTIONS_CUSTOMHANDLER_PORT`
//! = a free port, the worker id, the app root, the legacy `FUNCTIONS_HTTPWORKER_*` names, plus the
//! given app settings and nothing else from the test's environment), `GET /` every 25 ms until
//! any answer ([`FunctionsHost::ready_after`]) — with its output captured; and an
//! [`InvocationClient`] that panics where the library's answers an error.
//!
//! Use it from a test file with `#[path = "support/host.rs"] mod host;`. [`InvocationClient`]
//! also works against an in-process server (`secret_rotator::handler::run` on port 0).
//!
//! Not simulated: function keys (`authLevel`), the host's own 404 for unknown routes (the harness
//! panics instead: a test asking for an unknown route is wrong), and forwarded-HTTP mode.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Settings that satisfy the loader's required entries, with every Azure host pinned to a closed
/// loopback port so nothing can leave the machine.
pub fn minimal_settings() -> Vec<(String, String)> {
    [
        ("AZURE_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
        ("ROTATOR_POLICY_PATH", "policy.json"),
        ("AzureWebJobsStorage__accountName", "stsecretrotator"),
        (
            "ROTATOR_RESOLVE",
            "login.microsoftonline.com=127.0.0.1:9,graph.microsoft.com=127.0.0.1:9,\
             management.azure.com=127.0.0.1:9,*.vault.azure.net=127.0.0.1:9,\
             *.blob.core.windows.net=127.0.0.1:9",
        ),
        ("ROTATOR_LOG", "info"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

// ------------------------------------------------------------------ invocations

// The invocations and the reading of answers are the library's (`secret_rotator::dev::host`),
// shared with dev mode; this file adds the test-side process and panics instead of errors.
use secret_rotator::dev::host::client::raw;
pub use secret_rotator::dev::host::client::read_http_output as try_read_http_output;
#[allow(unused_imports)] // each test file uses a different part of the harness
pub use secret_rotator::dev::host::envelope::{
    FunctionDef, HttpCall, Specs, TimerForm, http_envelope, match_route, newtonsoft_date,
    timer_envelope,
};
pub use secret_rotator::dev::host::{HttpResult, Invocation, RawAnswer};
use secret_rotator::dev::host::{NotReady, wait_ready};

/// `host.json` and `function-specs/` of this repository.
pub fn specs() -> Specs {
    Specs::load(&repo_root()).unwrap_or_else(|e| panic!("{e}"))
}

/// The library's client, panicking where it answers an error (a test that gets one is failing).
#[derive(Clone)]
pub struct InvocationClient {
    pub base: String,
    pub specs: Arc<Specs>,
    inner: secret_rotator::dev::host::InvocationClient,
}

impl InvocationClient {
    pub fn new(base: impl Into<String>, specs: Arc<Specs>) -> Self {
        let inner = secret_rotator::dev::host::InvocationClient::new(base, specs.clone());
        Self {
            base: inner.base.clone(),
            specs,
            inner,
        }
    }

    pub fn reqwest(&self) -> &reqwest::Client {
        self.inner.reqwest()
    }

    pub fn function(&self, name: &str) -> &FunctionDef {
        self.specs
            .function(name)
            .unwrap_or_else(|| panic!("no function '{name}' in function-specs/"))
    }

    /// Sends `envelope` to `POST /{function}` as the host does and returns the raw answer.
    pub async fn send(&self, function: &str, envelope: &Value, invocation_id: &str) -> RawAnswer {
        ok(self.inner.send(function, envelope, invocation_id).await)
    }

    /// Like [`Self::send`], but requires what the host requires (2xx, JSON, the answer's shape).
    pub async fn invoke(&self, function: &str, envelope: &Value) -> Invocation {
        let id = uuid::Uuid::new_v4().to_string();
        self.invoke_with_id(function, envelope, &id).await
    }

    pub async fn invoke_with_id(&self, function: &str, envelope: &Value, id: &str) -> Invocation {
        ok(self.inner.invoke(function, envelope, id).await)
    }

    /// A monitored timer, on time or past due.
    pub async fn timer(&self, function: &str, now: DateTime<Utc>, past_due: bool) -> Invocation {
        self.timer_form(function, now, TimerForm::Monitored { past_due })
            .await
    }

    pub async fn timer_form(
        &self,
        function: &str,
        now: DateTime<Utc>,
        form: TimerForm,
    ) -> Invocation {
        let id = uuid::Uuid::new_v4().to_string();
        ok(self.inner.timer(function, now, form, &id).await)
    }

    /// Routes `call` like the host, sends the envelope and reads the `http` output.
    pub async fn http(&self, call: HttpCall, now: DateTime<Utc>) -> HttpResult {
        let id = uuid::Uuid::new_v4().to_string();
        self.http_with_id(call, now, &id).await
    }

    pub async fn http_with_id(&self, call: HttpCall, now: DateTime<Utc>, id: &str) -> HttpResult {
        ok(self.inner.http(&call, now, id).await)
    }

    /// The envelope the host would send for `call`.
    pub fn http_envelope(&self, call: &HttpCall, now: DateTime<Utc>) -> Value {
        ok(self.inner.http_envelope(call, now)).2
    }

    /// Anything at all, for malformed-input tests.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> RawAnswer {
        let mut rb = self
            .reqwest()
            .post(format!("{}{path}", self.base))
            .body(body);
        if let Some(ct) = content_type {
            rb = rb.header("Content-Type", ct);
        }
        raw(rb.send().await.expect("socket error")).await
    }

    pub async fn get(&self, path: &str) -> RawAnswer {
        raw(self
            .reqwest()
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("socket error"))
        .await
    }
}

/// Why the host fails the invocation `a` answers (panics when the host would accept it).
pub fn accept_error(function: &str, a: RawAnswer) -> String {
    match secret_rotator::dev::host::client::accept(function, "", a) {
        Ok(inv) => panic!("the host accepts this answer of {function}: {}", inv.json),
        Err(e) => e,
    }
}

fn ok<T>(r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// Reads the `http` output as the host does; panics where the host would fail.
pub fn read_http_output(invocation: Invocation, out_name: &str) -> HttpResult {
    ok(try_read_http_output(invocation, out_name))
}

// ------------------------------------------------------------------ the process

/// Why the handler did not become ready.
#[derive(Debug)]
pub struct HostExit {
    pub code: Option<i32>,
    pub stderr: String,
    pub stdout: String,
    pub timed_out: bool,
}

pub struct HostBuilder {
    settings: Vec<(String, String)>,
    files: Vec<(PathBuf, Vec<u8>)>,
    set_port: bool,
    ready_timeout: Duration,
}

impl Default for HostBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl HostBuilder {
    /// Starts from [`minimal_settings`].
    pub fn new() -> Self {
        Self {
            settings: minimal_settings(),
            files: vec![],
            set_port: true,
            ready_timeout: Duration::from_secs(30),
        }
    }
    pub fn setting(mut self, k: &str, v: &str) -> Self {
        self.settings.retain(|(n, _)| n != k);
        self.settings.push((k.into(), v.into()));
        self
    }
    pub fn without(mut self, k: &str) -> Self {
        self.settings.retain(|(n, _)| n != k);
        self
    }
    /// Wired to `emulator` as dev mode wires it: its managed identity `secret-rotator`, its CA,
    /// every Azure host and the storage account `account` (served at `storage`) resolved to it.
    pub fn emulated(
        self,
        emulator: &azure_emulator::Emulator,
        storage: (String, std::net::SocketAddr),
        account: &str,
    ) -> Self {
        let resolve: Vec<String> = emulator
            .host_overrides()
            .into_iter()
            .chain([storage])
            .map(|(h, a)| format!("{h}={a}"))
            .collect();
        let identity = emulator
            .identity_header("secret-rotator")
            .expect("the scenario has the rotator's managed identity");
        self.setting("AZURE_TENANT_ID", &emulator.tenant_id().to_string())
            .setting("AzureWebJobsStorage__accountName", account)
            .setting("IDENTITY_ENDPOINT", &emulator.msi_endpoint())
            .setting("IDENTITY_HEADER", &identity)
            .setting("ROTATOR_RESOLVE", &resolve.join(","))
            .setting("ROTATOR_CA_FILE", &emulator.ca_path().display().to_string())
    }
    /// A file under the app root (e.g. `policy.json`).
    pub fn file(mut self, rel: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((rel.into(), contents.into()));
        self
    }
    /// Start without `FUNCTIONS_CUSTOMHANDLER_PORT` (the host always sets it; tests may not).
    pub fn without_port(mut self) -> Self {
        self.set_port = false;
        self
    }

    pub async fn start(self) -> Result<FunctionsHost, HostExit> {
        let specs = Arc::new(specs());
        let app_root = tempfile::tempdir().expect("temp app root");
        std::fs::copy(
            repo_root().join("host.json"),
            app_root.path().join("host.json"),
        )
        .unwrap();
        for f in &specs.functions {
            let d = app_root.path().join(&f.name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::copy(
                repo_root()
                    .join("function-specs")
                    .join(&f.name)
                    .join("function.json"),
                d.join("function.json"),
            )
            .unwrap();
        }
        for (rel, data) in &self.files {
            let p = app_root.path().join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            std::fs::write(p, data).unwrap();
        }

        let port = free_port();
        let worker_id = uuid::Uuid::new_v4().to_string();
        let mut env: Vec<(String, String)> = self.settings.clone();
        env.push(("FUNCTIONS_WORKER_RUNTIME".into(), "custom".into()));
        env.push((
            "FUNCTIONS_APP_ROOT_PATH".into(),
            app_root.path().display().to_string(),
        ));
        env.push((
            "FUNCTIONS_CUSTOMHANDLER_WORKER_ID".into(),
            worker_id.clone(),
        ));
        env.push(("FUNCTIONS_HTTPWORKER_ID".into(), worker_id));
        if self.set_port {
            env.push(("FUNCTIONS_CUSTOMHANDLER_PORT".into(), port.to_string()));
            env.push(("FUNCTIONS_HTTPWORKER_PORT".into(), port.to_string()));
        }

        // host.json's arguments, with %NAME% expanded from the app settings like the host does.
        let args: Vec<String> = specs
            .host_json
            .pointer("/customHandler/description/arguments")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|s| expand(s, &env))
                    .collect()
            })
            .unwrap_or_default();

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_secret-rotator"));
        cmd.args(&args)
            .current_dir(app_root.path())
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let started = Instant::now();
        let mut child = cmd.spawn().expect("the handler binary starts");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect_lines(child.stdout.take().unwrap(), stdout.clone()),
            collect_lines(child.stderr.take().unwrap(), stderr.clone()),
        ];

        let client = InvocationClient::new(format!("http://127.0.0.1:{port}"), specs.clone());
        let not_ready = wait_ready(&mut child, port, self.ready_timeout).await.err();
        if let Some(why) = not_ready {
            if matches!(why, NotReady::TimedOut) {
                let _ = child.start_kill();
            }
            for r in readers {
                let _ = r.await;
            }
            return Err(HostExit {
                code: match why {
                    NotReady::Exited(status) => status.code(),
                    NotReady::TimedOut => None,
                },
                stderr: stderr.lock().unwrap().join("\n"),
                stdout: stdout.lock().unwrap().join("\n"),
                timed_out: matches!(why, NotReady::TimedOut),
            });
        }
        Ok(FunctionsHost {
            ready_after: started.elapsed(),
            child,
            client,

            _app_root: app_root,
            stdout,
            stderr,
            readers,
        })
    }
}

pub struct FunctionsHost {
    /// From spawn to the first answer on `GET /`.
    pub ready_after: Duration,
    pub client: InvocationClient,
    child: Child,
    /// Held so the app root outlives the process that runs in it.
    _app_root: tempfile::TempDir,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl FunctionsHost {
    pub fn builder() -> HostBuilder {
        HostBuilder::new()
    }
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Sends SIGTERM (what the platform does on scale-in or restart) and waits for the exit.
    pub async fn terminate(mut self) -> HostExit {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("the handler exits after SIGTERM")
            .expect("wait");
        for r in std::mem::take(&mut self.readers) {
            let _ = r.await;
        }
        HostExit {
            code: status.code(),
            stderr: self.stderr.lock().unwrap().join("\n"),
            stdout: self.stdout.lock().unwrap().join("\n"),
            timed_out: false,
        }
    }
}

fn collect_lines<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    r: R,
    into: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            into.lock().unwrap().push(line);
        }
    })
}

fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = s.to_string();
    for (k, v) in env {
        out = out.replace(&format!("%{k}%"), v);
    }
    out
}

/// A port nobody listens on right now (the host picks one the same way).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
