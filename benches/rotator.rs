//! `cargo bench --bench rotator`: the numbers in `docs/performance.md`, printed as one table.
//!
//! Five measurements, each against the in-process Azure emulator (and a private Azurite for the
//! rotator's own storage), never against Azure:
//! 1. handler start: the release binary spawned as the Functions host spawns it, `GET /` polled
//!    every 1 ms until it answers (ready), then the first `POST /SelfTest` (first served); idle
//!    VmRSS of the handler read from `/proc/<pid>/status`.
//! 2. one rotation of a credential with three consumers, emulator latency 0: wall time.
//! 3. 1,000 due credentials with three consumers each (a versionless Key Vault reference, an API
//!    connection, an Automation variable), every emulator answer delayed 30 ms, ARM and Key Vault
//!    throttled as documented and Graph's write quota enforced: wall time against the larger of
//!    the throttle bound and the critical-path bound (formulas in the docs), and a sequential
//!    sample extrapolated to 1,000.
//! 4. status listing over 100,000 applications through `GraphClient::list_applications`, in a
//!    child process (this same executable, re-run with `ROTATOR_BENCH_CHILD=list`) so the peak
//!    RSS measured (the child's own VmHWM) is the listing's and not the emulator's.
//! 5. side by side with a rotator on Microsoft's Python SDKs (`side`, in `rotator/side.rs`):
//!    one rotation and a batch of 50, whole processes, alternated, medians.
//!
//! Environment knobs (for quick runs): `BENCH_CREDENTIALS` (default 1000), `BENCH_PARALLEL`
//! (comma list of ceilings for the adaptive parallelism, default `8`: `ROTATOR_MAX_PARALLEL`'s
//! default), `BENCH_THROTTLE=off` (no ARM/Key Vault
//! throttling), `BENCH_APPS` (default 100000), `BENCH_ONLY` (comma list of
//! `start,one,scale,list,side`), `BENCH_SEQ_SAMPLE` (default 100), `BENCH_SIDE_REPS` (default 5),
//! `BENCH_SIDE_BATCH` (default 50), `BENCH_PYTHON` (default: the conformance venv's).

// The end-to-end suite's harness (Azurite, emulator, host); the bench uses only part of each.
#[allow(dead_code)]
#[path = "../tests/e2e/support/azurite.rs"]
mod azurite;
#[allow(dead_code)]
#[path = "../tests/e2e/support/emulator.rs"]
mod emulator;
#[allow(dead_code)]
#[path = "../tests/e2e/support/host.rs"]
mod host;
#[path = "rotator/side.rs"]
mod side;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secret_rotator::azure::graph::WriteLimiter;
use secret_rotator::cloud::Cloud;
use secret_rotator::compose::{EngineParts, build_with};
use secret_rotator::engine::Engine;
use secret_rotator::engine::executor::VerifyPolicy;
use secret_rotator::engine::report::CredentialOutcome;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::azurite::Azurite;
use crate::emulator::TestEmulator;

const MI: &str = "secret-rotator";
const CI_APP: &str = "secret-rotator-bench";
const CI_SECRET: &str = "bnR8Q~rotator.bench.identity-0123456789ab";
const LISTER: &str = "secret-rotator-lister";
const LATENCY_MS: u64 = 30;
/// The managed identity every bench site resolves its Key Vault reference with.
const WEB: &str = "bench-web";

/// Whether the emulator throttles ARM and Key Vault as documented (default: yes).
fn throttled() -> bool {
    std::env::var("BENCH_THROTTLE").as_deref() != Ok("off")
}

fn main() {
    if std::env::var("ROTATOR_BENCH_CHILD").as_deref() == Ok("list") {
        child_list();
        return;
    }
    let only: Option<Vec<String>> = std::env::var("BENCH_ONLY")
        .ok()
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    let wants = |k: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == k));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows: Vec<Row> = Vec::new();
    if wants("start") {
        rt.block_on(bench_start(&mut rows));
    }
    if wants("one") {
        rt.block_on(bench_one(&mut rows));
    }
    if wants("scale") {
        rt.block_on(bench_scale(&mut rows));
    }
    if wants("list") {
        rt.block_on(bench_list(&mut rows));
    }
    if wants("side") {
        rt.block_on(side::bench_side(&mut rows));
    }
    print_table(&rows);
}

struct Row {
    what: String,
    value: String,
    target: String,
    verdict: String,
}

fn row(rows: &mut Vec<Row>, what: &str, value: String, target: &str, verdict: Option<bool>) {
    let r = Row {
        what: what.to_string(),
        value,
        target: target.to_string(),
        verdict: match verdict {
            Some(true) => "met".into(),
            Some(false) => "MISSED".into(),
            None => String::new(),
        },
    };
    eprintln!("  {} = {} {} {}", r.what, r.value, r.target, r.verdict);
    rows.push(r);
}

fn print_table(rows: &[Row]) {
    let w0 = rows
        .iter()
        .map(|r| r.what.len())
        .max()
        .unwrap_or(10)
        .max(11);
    let w1 = rows.iter().map(|r| r.value.len()).max().unwrap_or(5).max(5);
    let w2 = rows
        .iter()
        .map(|r| r.target.len())
        .max()
        .unwrap_or(6)
        .max(6);
    println!();
    println!(
        "| {:w0$} | {:w1$} | {:w2$} | verdict |",
        "measurement", "value", "target"
    );
    println!(
        "|{}|{}|{}|---------|",
        "-".repeat(w0 + 2),
        "-".repeat(w1 + 2),
        "-".repeat(w2 + 2)
    );
    for r in rows {
        println!(
            "| {:w0$} | {:w1$} | {:w2$} | {:7} |",
            r.what, r.value, r.target, r.verdict
        );
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

// ------------------------------------------------------------------ scenarios

fn app_id(i: usize) -> Uuid {
    Uuid::from_u128(0x0b0e_0000_0000_4000_8000_0000_0000_0000 | i as u128)
}

fn object_id(i: usize) -> Uuid {
    Uuid::from_u128(0x0b1e_0000_0000_4000_8000_0000_0000_0000 | i as u128)
}

fn old_secret(i: usize) -> String {
    format!("b{i:05}Q~{}", Uuid::new_v4().simple())
}

/// `n` applications owned by the managed identity (and the bench's client-secret app), each with
/// a password due in 5 days, a Key Vault secret holding it, and three consumers: a site's app
/// setting, an API connection parameter and an Automation variable.
fn scale_scenario(n: usize, latency_ms: u64, now: DateTime<Utc>) -> Value {
    let sub_scope = "/subscriptions/{sub}";
    let end = (now + chrono::Duration::days(5)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let start =
        (now - chrono::Duration::days(175)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut apps = Vec::with_capacity(n + 1);
    let mut secrets = Vec::with_capacity(n);
    let mut sites = Vec::with_capacity(n);
    let mut connections = Vec::with_capacity(n);
    let mut variables = Vec::with_capacity(n);
    for i in 0..n {
        let s = old_secret(i);
        apps.push(json!({
            "objectId": object_id(i), "appId": app_id(i), "displayName": format!("bench-app-{i:05}"),
            "owners": [MI, CI_APP],
            "passwordCredentials": [{
                "keyId": Uuid::new_v4(), "displayName": "deployment", "secretText": s,
                "startDateTime": start, "endDateTime": end
            }]
        }));
        secrets.push(json!({"name": format!("app-{i:05}"), "versions": [{"value": s}]}));
        sites.push(json!({
            "resourceGroup": "rg-bench", "name": format!("site-{i:05}"), "identity": WEB,
            "appSettings": {
                "EntraClientId": app_id(i),
                "EntraClientSecret": format!("@Microsoft.KeyVault(VaultName=kv-bench;SecretName=app-{i:05})"),
                "WEBSITE_RUN_FROM_PACKAGE": "1"
            }
        }));
        connections.push(json!({
            "resourceGroup": "rg-bench", "name": format!("conn-{i:05}"), "location": "westeurope",
            "api": "keyvault", "displayName": format!("conn-{i:05}"),
            "parameterValues": {
                "token:clientId": app_id(i), "token:clientSecret": s,
                "token:TenantId": "d10c2e35-390b-4343-9fb3-36524a35717c",
                "token:grantType": "client_credentials"
            },
            "nonSecretParameterValues": {"vaultName": "kv-bench"}
        }));
        variables.push(json!({
            "name": format!("app-{i:05}"), "value": format!("\"{s}\""), "isEncrypted": true
        }));
    }
    apps.push(json!({
        "displayName": CI_APP,
        "graphAppRoles": ["Application.ReadWrite.OwnedBy"],
        "passwordCredentials": [{"displayName": "bench", "secretText": CI_SECRET, "endDateTime": "2099-01-01T00:00:00Z"}]
    }));
    let mut roles = Vec::new();
    for p in [MI, CI_APP] {
        for r in [
            "Key Vault Secrets Officer",
            "Website Contributor",
            "Logic App Contributor",
            "Automation Contributor",
        ] {
            roles.push(json!({"principal": p, "role": r, "scope": sub_scope}));
        }
    }
    // The sites resolve their references with one shared identity.
    roles.push(json!({"principal": WEB, "role": "Key Vault Secrets User", "scope": sub_scope}));
    json!({
        "tenantId": "d10c2e35-390b-4343-9fb3-36524a35717c",
        "tenantDomain": "contoso.onmicrosoft.com",
        "subscriptionId": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "now": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "replicationDelaySeconds": 0,
        "latencyMs": latency_ms,
        // ARM and Key Vault throttle as Azure documents (azure-emulator `throttle`); Graph's
        // write quota is always on. BENCH_THROTTLE=off for the unthrottled numbers.
        "throttling": if throttled() { json!("documented") } else { Value::Null },
        "managedIdentities": [
            {"name": MI, "graphAppRoles": ["Application.ReadWrite.OwnedBy"]},
            {"name": WEB}
        ],
        "applications": apps,
        "vaults": [{"name": "kv-bench", "resourceGroup": "rg-bench", "secrets": secrets}],
        "sites": sites,
        "connections": connections,
        "automationAccounts": [{"resourceGroup": "rg-bench", "name": "auto-bench", "variables": variables}],
        "roleAssignments": roles,
    })
}

fn scale_policy(n: usize) -> String {
    scale_policy_with_grace(n, 7)
}

/// [`scale_policy`] with another `graceDays` (the side-by-side bench's 0: the old password goes
/// in the same run, as a script removes it).
fn scale_policy_with_grace(n: usize, grace_days: u32) -> String {
    let sub =
        "/subscriptions/7c9e6679-7425-40de-944b-e07fc1f90ae7/resourceGroups/rg-bench/providers";
    let creds: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "name": format!("bench-{i:05}"),
                "application": {"appId": app_id(i)},
                "keyVault": {"vault": "kv-bench", "secret": format!("app-{i:05}")},
                "consumers": [
                    {"type": "appSettingKeyVaultReference", "site": format!("{sub}/Microsoft.Web/sites/site-{i:05}"), "setting": "EntraClientSecret"},
                    {"type": "apiConnection", "connection": format!("{sub}/Microsoft.Web/connections/conn-{i:05}"), "parameter": "token:clientSecret"},
                    {"type": "automationVariable", "account": format!("{sub}/Microsoft.Automation/automationAccounts/auto-bench"), "variable": format!("app-{i:05}")}
                ]
            })
        })
        .collect();
    json!({
        "defaults": {"renewBeforeDays": 30, "lifetimeDays": 180, "graceDays": grace_days},
        "credentials": creds
    })
    .to_string()
}

// ------------------------------------------------------------------ an in-process engine

struct Rig {
    emu: TestEmulator,
    _azurite: Azurite,
    engine: Arc<Engine>,
}

fn account() -> String {
    format!("st{}", &Uuid::new_v4().simple().to_string()[..12])
}

async fn rig(scenario: Value, policy_json: &str, max_parallel: usize) -> Rig {
    let emu = TestEmulator::start(scenario).await;
    let account = account();
    let azurite = Azurite::start(&emu.emulator, &account);
    let transport = emu.transport_config(&[azurite.host_override()]);
    let http = transport.build().expect("transport");
    // Production retry policy: a throttled write waits out Retry-After like `serve` would.
    let options = secret_rotator::azure::ServiceOptions::new(http);
    let credential = emu.app_credential_with(CI_APP, CI_SECRET, &options);
    let policy = secret_rotator::policy::parse("policy.json", policy_json).expect("bench policy");
    let engine = build_with(EngineParts {
        policy,
        cloud: Cloud::Public,
        tenant: emu.tenant(),
        credential,
        options,
        blob_endpoint: url::Url::parse(&format!("https://{account}.blob.core.windows.net"))
            .unwrap(),
        container: "secret-rotator".into(),
        webhooks: Vec::new(),
        max_parallel,
        verify: VerifyPolicy::default(),
        // Rotation throughput alone: the scan for unenrolled credentials is off.
        warn_unenrolled_days: 0,
    })
    .expect("engine builds");
    Rig {
        emu,
        _azurite: azurite,
        engine,
    }
}

fn azure_requests(emu: &TestEmulator) -> usize {
    emu.emulator.control().requests().len()
}

// ------------------------------------------------------------------ 1. handler start

/// `GET /` over a fresh connection; true on any HTTP answer (the host's readiness rule).
fn probe(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(50)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    matches!(s.read(&mut buf), Ok(n) if n >= 5 && &buf[..5] == b"HTTP/")
}

fn proc_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn bench_start(rows: &mut Vec<Row>) {
    eprintln!("handler start ...");
    let now = Utc::now();
    let emu = TestEmulator::start(scale_scenario(3, 0, now)).await;
    let account = account();
    let azurite = Azurite::start(&emu.emulator, &account);
    let dir = tempfile::tempdir().expect("temp dir");
    let specs = Arc::new(host::specs());
    std::fs::copy(
        host::repo_root().join("host.json"),
        dir.path().join("host.json"),
    )
    .unwrap();
    std::fs::write(dir.path().join("policy.json"), scale_policy(3)).unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, emu.emulator.ca_pem()).unwrap();
    let resolve: Vec<String> = emu
        .emulator
        .host_overrides()
        .into_iter()
        .chain([azurite.host_override()])
        .map(|(h, a)| format!("{h}={a}"))
        .collect();
    let header = emu.emulator.identity_header(MI).expect("MI header");
    let runs = 15;
    let (mut ready, mut served, mut rss, mut rss_after) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let port = host::free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_secret-rotator"));
        cmd.arg("serve")
            .current_dir(dir.path())
            .env_clear()
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("FUNCTIONS_WORKER_RUNTIME", "custom")
            .env("FUNCTIONS_APP_ROOT_PATH", dir.path())
            .env("AZURE_TENANT_ID", emu.tenant())
            .env("ROTATOR_POLICY_PATH", "policy.json")
            .env("AzureWebJobsStorage__accountName", &account)
            .env("IDENTITY_ENDPOINT", emu.emulator.msi_endpoint())
            .env("IDENTITY_HEADER", &header)
            .env("ROTATOR_RESOLVE", resolve.join(","))
            .env("ROTATOR_CA_FILE", &ca)
            .env("ROTATOR_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let t0 = Instant::now();
        let mut child = cmd.spawn().expect("the handler starts");
        let pid = child.id();
        loop {
            if probe(addr) {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("the handler exited before ready: {st}");
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "not ready in 20 s");
            std::thread::sleep(Duration::from_millis(1));
        }
        let t_ready = t0.elapsed();
        // Idle: ready, nothing asked of it yet.
        rss.push(proc_kb(pid, "VmRSS:").unwrap_or(0));
        let client = host::InvocationClient::new(format!("http://{addr}"), specs.clone());
        let r = client
            .http(
                host::HttpCall::post_json("SelfTest", &json!({"function": "Test"})),
                emu.emulator.control().now(),
            )
            .await;
        let t_served = t0.elapsed();
        assert_eq!(r.status, 200, "SelfTest answered {}: {}", r.status, r.body);
        std::thread::sleep(Duration::from_millis(200));
        rss_after.push(proc_kb(pid, "VmRSS:").unwrap_or(0));
        ready.push(t_ready);
        served.push(t_served);
        let _ = child.kill();
        let _ = child.wait();
    }
    let ready_med = median(&mut ready);
    let ready_max = *ready.iter().max().unwrap();
    let served_med = median(&mut served);
    rss.sort();
    rss_after.sort();
    let rss_idle = rss[rss.len() / 2];
    let rss_max = *rss.iter().max().unwrap();
    row(
        rows,
        &format!("start: spawn -> ready (GET / answered), median of {runs}"),
        format!("{} (max {})", ms(ready_med), ms(ready_max)),
        "<= 20 ms",
        Some(ready_med <= Duration::from_millis(20)),
    );
    row(
        rows,
        "start: spawn -> first SelfTest Test served, median",
        ms(served_med),
        "",
        None,
    );
    row(
        rows,
        "start: idle VmRSS after ready, median",
        format!(
            "{:.1} MB (max {:.1})",
            rss_idle as f64 / 1024.0,
            rss_max as f64 / 1024.0
        ),
        "<= 20 MB",
        Some(rss_idle <= 20 * 1024),
    );
    row(
        rows,
        "start: VmRSS after first SelfTest, median",
        format!("{:.1} MB", rss_after[rss_after.len() / 2] as f64 / 1024.0),
        "",
        None,
    );
    drop(azurite);
}

// ------------------------------------------------------------------ 2. one rotation

async fn bench_one(rows: &mut Vec<Row>) {
    eprintln!("one rotation ...");
    for latency in [0u64, LATENCY_MS] {
        let lone = lone_rotation(latency).await;
        if latency == 0 && std::env::var("BENCH_OPS").is_ok() {
            let mut ops = std::collections::BTreeMap::<String, usize>::new();
            for r in &lone.rig.emu.emulator.control().requests()[lone.before..] {
                *ops.entry(format!(
                    "{} {} {}",
                    r.service,
                    r.method,
                    r.operation.clone().unwrap_or_default()
                ))
                .or_default() += 1;
            }
            eprintln!("    requests of one rotation: {ops:#?}");
        }
        row(
            rows,
            &format!("one rotation, 3 consumers, latency {latency} ms: wall"),
            format!(
                "{} ({} Azure requests, {} steps)",
                ms(lone.took),
                lone.requests,
                lone.report.steps.len()
            ),
            "",
            None,
        );
    }
}

/// One due credential (password expiring in 5 days) with three consumers, rotated alone at
/// `latency`; the rig is kept so that its request log can be read.
struct Lone {
    rig: Rig,
    report: secret_rotator::engine::report::CredentialReport,
    took: Duration,
    /// Emulator requests the rotation made, and where they start in the log.
    requests: usize,
    before: usize,
}

async fn lone_rotation(latency: u64) -> Lone {
    let now = Utc::now();
    let rig = rig(scale_scenario(1, latency, now), &scale_policy(1), 1).await;
    let cred = rig.engine.policy.credentials[0].clone();
    let before = azure_requests(&rig.emu);
    let t0 = Instant::now();
    let report = rig
        .engine
        .run_credential(&cred, now, false, None, "bench")
        .await;
    let took = t0.elapsed();
    assert_eq!(report.outcome, CredentialOutcome::Progressed, "{report:#?}");
    let requests = azure_requests(&rig.emu) - before;
    Lone {
        rig,
        report,
        took,
        requests,
        before,
    }
}

// ------------------------------------------------------------------ 3. 1,000 credentials

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct PassResult {
    wall: Duration,
    failures: usize,
    progressed: usize,
    azure_requests: usize,
    throttled: usize,
    /// What the pass took from each throttle (429s excluded: they take nothing).
    load: Load,
}

/// Requests a run took from each documented throttle.
#[derive(Debug, Default, Clone, Copy)]
struct Load {
    arm_reads: usize,
    arm_writes: usize,
    arm_deletes: usize,
    /// Key Vault transactions with credentials (the challenge is not one), one vault.
    key_vault: usize,
    graph_writes: usize,
}

impl Load {
    fn of(log: &[azure_emulator::faults::RequestRecord]) -> Self {
        let mut l = Load::default();
        for r in log.iter().filter(|r| r.status != 429) {
            match (r.service.as_str(), r.method.as_str()) {
                ("arm", "GET") => l.arm_reads += 1,
                ("arm", "DELETE") => l.arm_deletes += 1,
                ("arm", _) => l.arm_writes += 1,
                ("keyvault", _) if r.status != 401 => l.key_vault += 1,
                ("graph", "POST" | "PATCH" | "DELETE") => l.graph_writes += 1,
                _ => {}
            }
        }
        l
    }

    /// The least time the documented throttles allow for this load, and which one sets it:
    /// a token bucket of size B refilled at r/s serves n in (n - B) / r; Key Vault's window of
    /// 4,000 per 10 s serves n in (ceil(n / 4000) - 1) x 10 s; Graph's 3,000 writes per 150 s
    /// likewise (sources: azure-emulator `throttle`, `graph::count_write`).
    fn throttle_bound(&self) -> (Duration, &'static str) {
        let bucket = |n: usize, b: f64, r: f64| ((n as f64 - b) / r).max(0.0);
        let window = |n: usize, q: f64, w: f64| ((n as f64 / q).ceil() - 1.0).max(0.0) * w;
        [
            (bucket(self.arm_reads, 250.0, 25.0), "ARM reads"),
            (bucket(self.arm_writes, 200.0, 10.0), "ARM writes"),
            (bucket(self.arm_deletes, 200.0, 10.0), "ARM deletes"),
            (window(self.key_vault, 4000.0, 10.0), "Key Vault"),
            (window(self.graph_writes, 3000.0, 150.0), "Graph writes"),
        ]
        .into_iter()
        .map(|(s, what)| (Duration::from_secs_f64(s), what))
        .max_by_key(|(d, _)| *d)
        .unwrap_or((Duration::ZERO, "none"))
    }
}

/// Round trips on one credential's critical path: its requests grouped in waves (a request
/// that arrives within half a round trip of the wave's first one was sent with it).
fn waves(log: &[azure_emulator::faults::RequestRecord], rtt: Duration) -> usize {
    let half = chrono::Duration::from_std(rtt / 2).unwrap_or_default();
    let mut n = 0;
    let mut start: Option<DateTime<Utc>> = None;
    for r in log {
        if start.is_none_or(|s| r.time > s + half) {
            n += 1;
            start = Some(r.time);
        }
    }
    n
}

async fn one_pass(n: usize, parallel: usize) -> PassResult {
    let now = Utc::now();
    let rig = rig(
        scale_scenario(n, LATENCY_MS, now),
        &scale_policy(n),
        parallel,
    )
    .await;
    let before = azure_requests(&rig.emu);
    let t0 = Instant::now();
    let report = rig.engine.pass(now, Duration::from_secs(3600)).await;
    let wall = t0.elapsed();
    let log = rig.emu.emulator.control().requests();
    let log = &log[before..];
    let failures = report
        .credentials
        .iter()
        .filter(|c| c.outcome != CredentialOutcome::Progressed)
        .count()
        + report.deferred.len();
    if failures > 0 {
        let first = report
            .credentials
            .iter()
            .find(|c| c.outcome != CredentialOutcome::Progressed);
        eprintln!("    {failures} not progressed; first: {first:#?}");
    }
    let throttled = log.iter().filter(|r| r.status == 429).count();
    PassResult {
        wall,
        failures,
        progressed: report.credentials.len() - failures.min(report.credentials.len()),
        azure_requests: log.len(),
        throttled,
        load: Load::of(log),
    }
}

async fn bench_scale(rows: &mut Vec<Row>) {
    let n = env_usize("BENCH_CREDENTIALS", 1000);
    let sample = env_usize("BENCH_SEQ_SAMPLE", 100).min(n);
    let parallels: Vec<usize> = std::env::var("BENCH_PARALLEL")
        .unwrap_or_else(|_| "8".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();

    // Round trips on one credential's critical path, measured at 30 ms: the waves of requests
    // of one credential rotated alone (requests sent together count once).
    eprintln!("scale: one credential at {LATENCY_MS} ms ...");
    let rtt = Duration::from_millis(LATENCY_MS);
    let (round_trips, depth, t1) = {
        let lone = lone_rotation(LATENCY_MS).await;
        let log = lone.rig.emu.emulator.control().requests();
        (lone.requests, waves(&log[lone.before..], rtt), lone.took)
    };

    eprintln!("scale: sequential sample of {sample} ...");
    let seq = one_pass(sample, 1).await;
    let seq_extrapolated = seq.wall.mul_f64(n as f64 / sample as f64);
    row(
        rows,
        &format!(
            "{n} creds: sequential (max_parallel=1), {sample} run, x{}",
            n / sample.max(1)
        ),
        format!(
            "{} (measured {} for {sample})",
            secs(seq_extrapolated),
            secs(seq.wall)
        ),
        "",
        None,
    );

    for p in parallels {
        eprintln!("scale: {n} credentials, max_parallel {p} ...");
        let res = one_pass(n, p).await;
        // Two lower bounds, the verdict against the larger: the critical path (each
        // credential's waves of round trips, P credentials at once) and the documented
        // throttles for what the pass asked of each service.
        let critical = rtt.mul_f64(depth as f64 * n as f64 / p as f64);
        let (throttle, by) = if throttled() {
            res.load.throttle_bound()
        } else {
            (Duration::ZERO, "none (BENCH_THROTTLE=off)")
        };
        let bound = critical.max(throttle);
        let ratio = res.wall.as_secs_f64() / bound.as_secs_f64();
        row(
            rows,
            &format!(
                "{n} creds, 30 ms RTT, max_parallel={p}, throttled={}: wall",
                throttled()
            ),
            format!(
                "{} = {:.2}x bound {} (critical path {}, throttle {} by {by}; {} failed, {} Azure req, {} x 429, load {:?})",
                secs(res.wall),
                ratio,
                secs(bound),
                secs(critical),
                secs(throttle),
                res.failures,
                res.azure_requests,
                res.throttled,
                res.load
            ),
            "<= 1.25x bound, 0 failed",
            Some(ratio <= 1.25 && res.failures == 0 && res.progressed == n),
        );
    }
    row(
        rows,
        &format!("  lower bound inputs: one credential alone at {LATENCY_MS} ms"),
        format!(
            "{round_trips} requests in {depth} waves of round trips ({})",
            ms(t1)
        ),
        "",
        None,
    );
}

// ------------------------------------------------------------------ 4. listing 100k apps

fn list_scenario(n: usize) -> Value {
    let now = Utc::now();
    let end = (now + chrono::Duration::days(90)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut apps: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "objectId": object_id(i), "appId": app_id(i), "displayName": format!("app-{i:06}"),
                "passwordCredentials": [{
                    "keyId": Uuid::from_u128(i as u128 | 0x0c0e_0000_0000_4000_8000_0000_0000_0000),
                    "displayName": "deployment", "secretText": format!("l{i:06}Q~listing.bench.secret.value"),
                    "endDateTime": end
                }]
            })
        })
        .collect();
    apps.push(json!({
        "displayName": LISTER,
        "graphAppRoles": ["Application.Read.All"],
        "passwordCredentials": [{"displayName": "bench", "secretText": CI_SECRET, "endDateTime": "2099-01-01T00:00:00Z"}]
    }));
    json!({
        "tenantId": "d10c2e35-390b-4343-9fb3-36524a35717c",
        "subscriptionId": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "applications": apps,
    })
}

async fn bench_list(rows: &mut Vec<Row>) {
    let n = env_usize("BENCH_APPS", 100_000);
    eprintln!("listing: loading {n} applications ...");
    let emu = TestEmulator::start(list_scenario(n)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, emu.emulator.ca_pem()).unwrap();
    let resolve: Vec<String> = emu
        .emulator
        .host_overrides()
        .into_iter()
        .map(|(h, a)| format!("{h}={a}"))
        .collect();
    let client_id = emu.emulator.control().app_id_by_name(LISTER).unwrap();
    let exe = std::env::current_exe().expect("own executable");
    let t0 = Instant::now();
    let out = tokio::process::Command::new(exe)
        .env("ROTATOR_BENCH_CHILD", "list")
        .env("BENCH_RESOLVE", resolve.join(","))
        .env("BENCH_CA", &ca)
        .env("BENCH_TENANT", emu.tenant())
        .env("BENCH_CLIENT", client_id.to_string())
        .env("BENCH_SECRET", CI_SECRET)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("child runs");
    let wall = t0.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "listing child failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        stdout
    );
    let answer: Value = serde_json::from_str(stdout.trim()).expect("child prints JSON");
    let count = answer["rows"].as_u64().unwrap_or(0);
    let hwm = answer["vmHwmKb"].as_u64().unwrap_or(0);
    assert_eq!(count as usize, n + 1, "every application listed once");
    row(
        rows,
        &format!(
            "status listing of {n} apps ({} pages): wall",
            answer["pages"]
        ),
        secs(wall),
        "",
        None,
    );
    row(
        rows,
        "status listing: child peak RSS (VmHWM)",
        format!("{:.1} MB", hwm as f64 / 1024.0),
        "<= 64 MB",
        Some(hwm <= 64 * 1024),
    );
}

/// The measured child: streams every application page by page and counts rows (what a
/// `report` over the tenant does), then prints its own peak RSS.
fn child_list() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let result = rt.block_on(async {
        use secret_rotator::azure::credential::{CredentialChoice, build_credential};
        use secret_rotator::transport::TransportConfig;
        let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is set"));
        let transport = TransportConfig {
            overrides: TransportConfig::parse_overrides(&var("BENCH_RESOLVE")).expect("resolve"),
            extra_ca_pem: Some(std::fs::read(var("BENCH_CA")).expect("CA")),
            timeout: Some(Duration::from_secs(60)),
        };
        let options = secret_rotator::azure::ServiceOptions::new(transport.build().unwrap());
        let credential = build_credential(
            Cloud::Public,
            &CredentialChoice::ClientSecret {
                tenant_id: var("BENCH_TENANT"),
                client_id: var("BENCH_CLIENT"),
                secret: secret_rotator::secret::SecretValue::new(var("BENCH_SECRET")),
            },
            &options,
        )
        .expect("credential");
        let graph = secret_rotator::azure::graph::GraphClient::new(
            Cloud::Public,
            credential,
            options,
            Arc::new(WriteLimiter::default()),
        );
        let mut pager = graph.list_applications(None, 999);
        let (mut rows, mut pages, mut expiring) = (0u64, 0u64, 0u64);
        let soon = Utc::now() + chrono::Duration::days(30);
        while let Some(page) = pager.next_page().await.expect("page") {
            pages += 1;
            for app in page {
                rows += 1;
                // What a report line needs: does anything expire within 30 days.
                if app
                    .passwords
                    .iter()
                    .any(|p| p.end.is_some_and(|e| e < soon))
                {
                    expiring += 1;
                }
            }
        }
        (rows, pages, expiring)
    });
    let hwm = proc_kb(std::process::id(), "VmHWM:").unwrap_or(0);
    println!(
        "{}",
        json!({"rows": result.0, "pages": result.1, "expiring": result.2, "vmHwmKb": hwm})
    );
}
