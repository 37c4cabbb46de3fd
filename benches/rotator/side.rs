//! `BENCH_ONLY=side`: secret-rotator against the rotator an administrator would otherwise write
//! on Microsoft's official Python SDKs (`benches/python_rotator.py`), the same workload through
//! both as whole processes.
//!
//! Each sample is a fresh emulator (30 ms on every answer, throttles as in the other benches)
//! holding `n` due credentials with three consumers each (the scale scenario), and one process:
//! `secret-rotator rotate` (one pass, `ROTATOR_MAX_PARALLEL` 8, its own storage in a private
//! Azurite) or `python_rotator.py --threads 8`. Both read the same policy (`graceDays` 0, so the
//! product too removes the old password in the same run, as the script does) and reach the
//! emulator the same way (ROTATOR_RESOLVE at name resolution, the emulator's CA). Both are
//! measured by `benches/measure_process.py` (wall from spawn to exit; CPU and peak RSS from
//! `wait4`), alternated A B A B for `BENCH_SIDE_REPS` repetitions (default 5), medians reported.
//! Azure requests are counted from the emulator's log per run. After every run the emulator's
//! state must show the job done (the invariant check below), or the bench stops.
//!
//! `BENCH_OPS=1` prints each run's requests in order (service, operation, status).
//!
//! Needs the conformance venv (`crates/azure-emulator/conformance/run.sh` creates it under
//! target/; `BENCH_PYTHON` names another interpreter): without it the side is skipped with one
//! line saying so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use azure_emulator::faults::RequestRecord;
use chrono::{DateTime, Utc};
use secret_rotator::planner::PasswordMarker;
use serde_json::{Value, json};

use crate::azurite::Azurite;
use crate::emulator::TestEmulator;
use crate::{CI_APP, CI_SECRET, LATENCY_MS, Row, app_id, env_usize, row};

/// The product's ceiling (`ROTATOR_MAX_PARALLEL`'s default) and the script's threads.
const PARALLEL: usize = 8;

/// The two sides; `Product` runs first in every repetition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Product,
    Python,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Product => "secret-rotator",
            Side::Python => "Python + SDKs",
        }
    }
}

/// One whole process's cost, as `measure_process.py` prints it, and its Azure requests.
#[derive(Debug, Clone)]
struct Sample {
    wall: Duration,
    cpu: Duration,
    max_rss_kb: u64,
    /// Requests in the emulator's log during the run, per service (`arm`, `graph`, ...).
    requests: BTreeMap<String, usize>,
}

impl Sample {
    fn total_requests(&self) -> usize {
        self.requests.values().sum()
    }
}

fn repo() -> PathBuf {
    crate::host::repo_root()
}

/// The interpreter of the conformance venv, if it has the SDKs the Python rotator imports;
/// otherwise why not.
fn python() -> Result<PathBuf, String> {
    let py = std::env::var_os("BENCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/conformance-venv/bin/python"));
    if !py.exists() {
        return Err(format!(
            "{} not found (create it with crates/azure-emulator/conformance/run.sh, or set BENCH_PYTHON)",
            py.display()
        ));
    }
    let probe = std::process::Command::new(&py)
        .args(["-c", "import azure.identity, azure.keyvault.secrets, azure.mgmt.web, azure.mgmt.resource, azure.mgmt.automation, requests"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match probe {
        Ok(s) if s.success() => Ok(py),
        _ => Err(format!(
            "{} lacks the SDKs of crates/azure-emulator/conformance/requirements.txt",
            py.display()
        )),
    }
}

/// What the rows are keyed by: the product's rotation run, its removal run, the Python run.
const REMOVAL: &str = "secret-rotator, removal run a day later";

pub async fn bench_side(rows: &mut Vec<Row>) {
    let py = match python() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("side by side: SKIPPED, {why}");
            row(
                rows,
                "side by side with Python",
                format!("skipped: {why}"),
                "",
                None,
            );
            return;
        }
    };
    let reps = env_usize("BENCH_SIDE_REPS", 5).max(1);
    let batch = env_usize("BENCH_SIDE_BATCH", 50);
    for (what, n, target) in [
        ("one rotation, 3 consumers", 1, 0.5),
        ("credentials, 3 consumers each", batch, 0.7),
    ] {
        let mut samples: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
        for rep in 0..reps {
            for side in [Side::Product, Side::Python] {
                eprintln!(
                    "side by side: {n} x {what}, {}, run {}/{reps} ...",
                    side.label(),
                    rep + 1
                );
                let (s, removal) = run_once(side, n, &py).await;
                for (key, s) in [(side.label(), Some(s)), (REMOVAL, removal)] {
                    let Some(s) = s else { continue };
                    eprintln!("    {key}: {}", describe(&s));
                    samples.entry(key).or_default().push(s);
                }
            }
        }
        report(rows, what, n, reps, target, &samples);
    }
}

fn describe(s: &Sample) -> String {
    format!(
        "wall {:.3} s, CPU {:.3} s, peak RSS {:.1} MiB, {} Azure requests {:?}",
        s.wall.as_secs_f64(),
        s.cpu.as_secs_f64(),
        s.max_rss_kb as f64 / 1024.0,
        s.total_requests(),
        s.requests
    )
}

/// The median sample by each measure separately (wall, CPU, RSS, requests).
fn medians(v: &[Sample]) -> Sample {
    fn mid<T: Copy + Ord>(mut xs: Vec<T>) -> T {
        xs.sort();
        xs[xs.len() / 2]
    }
    let wall = mid(v.iter().map(|s| s.wall).collect());
    let by_wall = v.iter().find(|s| s.wall == wall).expect("a sample");
    Sample {
        wall,
        cpu: mid(v.iter().map(|s| s.cpu).collect()),
        max_rss_kb: mid(v.iter().map(|s| s.max_rss_kb).collect()),
        // Per service from the median-wall run; the total is what `describe` adds up.
        requests: by_wall.requests.clone(),
    }
}

fn report(
    rows: &mut Vec<Row>,
    what: &str,
    n: usize,
    reps: usize,
    target: f64,
    samples: &BTreeMap<&str, Vec<Sample>>,
) {
    let med: BTreeMap<&str, Sample> = samples.iter().map(|(k, v)| (*k, medians(v))).collect();
    for key in [Side::Product.label(), REMOVAL, Side::Python.label()] {
        let Some(m) = med.get(key) else { continue };
        row(
            rows,
            &format!("side by side: {n} x {what}: {key}, median of {reps}"),
            describe(m),
            "",
            None,
        );
    }
    let wall = |k: &str| med[k].wall.as_secs_f64();
    let ratio = wall(Side::Product.label()) / wall(Side::Python.label());
    // Each repetition's pair ran back to back on the same loaded machine: the ratio within a
    // pair is the fairer one. The verdict takes the less favourable of the two medians.
    let mut paired: Vec<f64> = samples[Side::Product.label()]
        .iter()
        .zip(&samples[Side::Python.label()])
        .map(|(a, b)| a.wall.as_secs_f64() / b.wall.as_secs_f64())
        .collect();
    paired.sort_by(f64::total_cmp);
    let pair_median = paired[paired.len() / 2];
    row(
        rows,
        &format!("side by side: {n} x {what}: wall, product / Python"),
        format!(
            "{ratio:.2}x (medians); per pair: median {pair_median:.2}x, {:.2}x..{:.2}x",
            paired[0],
            paired[paired.len() - 1]
        ),
        &format!("<= {target}x"),
        Some(ratio.max(pair_median) <= target),
    );
    if med.contains_key(REMOVAL) {
        let both = (wall(Side::Product.label()) + wall(REMOVAL)) / wall(Side::Python.label());
        row(
            rows,
            &format!("side by side: {n} x {what}: wall, product's two runs / Python"),
            format!("{both:.2}x"),
            "",
            None,
        );
    }
}

/// One emulator holding `n` due credentials, and what either side's process needs to reach it.
struct Stage {
    emu: TestEmulator,
    scenario: Value,
    dir: tempfile::TempDir,
    client_id: String,
    /// The product's own storage (account name, a private Azurite), not timed.
    azurite: Option<(String, Azurite)>,
    resolve: String,
}

impl Stage {
    async fn new(side: Side, n: usize) -> Self {
        let now = Utc::now();
        let mut scenario = crate::scale_scenario(n, LATENCY_MS, now);
        // The steady state: the password due now is one the product created 175 days ago (its
        // displayName marks it), so the product removes it after the grace as the script does.
        // The vault holds no rotator tags yet: the product adopts it first (one tag write).
        for (i, app) in scenario["applications"]
            .as_array_mut()
            .expect("applications")
            .iter_mut()
            .take(n)
            .enumerate()
        {
            app["passwordCredentials"][0]["displayName"] = json!(PasswordMarker::display_name(
                &format!("bench-{i:05}"),
                now - chrono::Duration::days(175)
            ));
        }
        let emu = TestEmulator::start(scenario.clone()).await;
        let dir = tempfile::tempdir().expect("temp dir");
        // The product's floor for consumers it cannot read back (a connection, an encrypted
        // variable) is one day of grace; the script removes the old password at once.
        std::fs::write(
            dir.path().join("policy.json"),
            crate::scale_policy_with_grace(n, 1),
        )
        .expect("policy written");
        std::fs::write(dir.path().join("ca.pem"), emu.emulator.ca_pem()).expect("CA written");
        let client_id = emu
            .emulator
            .control()
            .app_id_by_name(CI_APP)
            .expect("the bench's service principal")
            .to_string();
        let azurite = (side == Side::Product).then(|| {
            let account = crate::account();
            let a = Azurite::start(&emu.emulator, &account);
            (account, a)
        });
        let resolve = emu
            .emulator
            .host_overrides()
            .into_iter()
            .chain(azurite.iter().map(|(_, a)| a.host_override()))
            .map(|(h, a)| format!("{h}={a}"))
            .collect::<Vec<_>>()
            .join(",");
        Stage {
            emu,
            scenario,
            dir,
            client_id,
            azurite,
            resolve,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The measured command of `side`; `at`: the product's `--at` (the emulator's clock, when
    /// it was advanced past the grace).
    fn command(
        &self,
        side: Side,
        py: &Path,
        at: Option<chrono::DateTime<Utc>>,
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(py);
        cmd.arg(repo().join("benches/measure_process.py"))
            .arg(self.path("out"))
            .arg(self.path("err"))
            .arg("--")
            .env_clear()
            .env("AZURE_TENANT_ID", self.emu.tenant())
            .env("AZURE_CLIENT_ID", &self.client_id)
            .env("AZURE_CLIENT_SECRET", CI_SECRET)
            .env("ROTATOR_RESOLVE", &self.resolve)
            .stdin(Stdio::null());
        match (side, &self.azurite) {
            (Side::Product, Some((account, _))) => {
                cmd.arg(env!("CARGO_BIN_EXE_secret-rotator"))
                    .args(["rotate", "--json", "--policy"])
                    .arg(self.path("policy.json"))
                    .env("ROTATOR_CA_FILE", self.path("ca.pem"))
                    .env("ROTATOR_MAX_PARALLEL", PARALLEL.to_string())
                    // The scan for unenrolled credentials is not the script's job: off.
                    .env("ROTATOR_WARN_UNENROLLED_DAYS", "0")
                    .env("AzureWebJobsStorage__accountName", account)
                    .env("ROTATOR_LOG", "warn");
                if let Some(at) = at {
                    cmd.arg("--at").arg(at.to_rfc3339());
                }
            }
            _ => {
                cmd.arg(py)
                    .arg(repo().join("benches/python_rotator.py"))
                    .args(["--threads", &PARALLEL.to_string(), "--policy"])
                    .arg(self.path("policy.json"))
                    .env("REQUESTS_CA_BUNDLE", self.path("ca.pem"));
            }
        }
        cmd
    }

    /// Runs one measured process; panics with its output's tail when it failed.
    async fn run(&self, side: Side, py: &Path, at: Option<chrono::DateTime<Utc>>) -> Sample {
        let control = self.emu.emulator.control();
        let before = control.requests().len();
        let spawned = control.now();
        let out = self
            .command(side, py, at)
            .output()
            .await
            .expect("measure_process.py runs");
        let exited = control.now();
        let log = control.requests();
        let m: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "measure_process.py printed no JSON ({e}): {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        if m["exit"] != json!(0) {
            let read = |f: &str| std::fs::read_to_string(self.path(f)).unwrap_or_default();
            panic!(
                "{} failed ({}): {}\n{}",
                side.label(),
                m["exit"],
                tail(&read("out")),
                tail(&read("err"))
            );
        }
        eprintln!(
            "    {} timeline: {}",
            side.label(),
            timeline(&log[before..], spawned, exited)
        );
        if std::env::var_os("BENCH_OPS").is_some() {
            let order: Vec<String> = log[before..]
                .iter()
                .map(|r| {
                    let op = r.operation.clone().unwrap_or_else(|| r.method.clone());
                    format!("{} {op} {}", r.service, r.status)
                })
                .collect();
            eprintln!("    {} requests in order: {order:?}", side.label());
        }
        let mut requests = BTreeMap::new();
        for r in &log[before..] {
            *requests.entry(r.service.clone()).or_insert(0) += 1;
        }
        Sample {
            wall: Duration::from_secs_f64(m["wallS"].as_f64().unwrap_or(0.0)),
            cpu: Duration::from_secs_f64(m["cpuS"].as_f64().unwrap_or(0.0)),
            max_rss_kb: m["maxRssKb"].as_u64().unwrap_or(0),
            requests,
        }
    }
}

/// One fresh emulator and one process of `side` over `n` credentials, checked on the emulator.
/// The product keeps the old password for its grace: a second process, a day later on the
/// emulator's clock, removes it (returned second, measured alike).
async fn run_once(side: Side, n: usize, py: &Path) -> (Sample, Option<Sample>) {
    let stage = Stage::new(side, n).await;
    let first = stage.run(side, py, None).await;
    if side == Side::Python {
        check_done(&stage, n, side, Old::Removed);
        return (first, None);
    }
    check_done(&stage, n, side, Old::Kept);
    let control = stage.emu.emulator.control();
    control.advance(chrono::Duration::hours(25));
    let removal = stage.run(side, py, Some(control.now())).await;
    check_done(&stage, n, side, Old::Removed);
    (first, Some(removal))
}

/// The bench's credential a request belongs to: its number in a resource name (`site-00012`,
/// `conn-00012`, `app-00012`) or in an application's ids (`app_id`, `object_id`: the number is
/// the last 12 hex digits), in the path or as the caller of a token request.
fn credential_of(r: &RequestRecord) -> Option<usize> {
    for prefix in ["site-", "conn-", "app-"] {
        if let Some(at) = r.path.find(prefix) {
            let digits = r.path.get(at + prefix.len()..at + prefix.len() + 5)?;
            return digits.parse().ok();
        }
    }
    let id = |s: &str| {
        ["0b0e0000-0000-4000-8000-", "0b1e0000-0000-4000-8000-"]
            .iter()
            .find_map(|p| s.find(p).map(|at| at + p.len()))
            .and_then(|at| usize::from_str_radix(s.get(at..at + 12)?, 16).ok())
    };
    id(&r.path).or_else(|| r.caller.as_deref().and_then(id))
}

/// Where a run's time went, from the emulator's log: the time from spawn to the first Azure
/// request and from the last one to exit (start-up, imports, the product's storage), each
/// credential's span (its first to its last request) and how many were in flight on average.
fn timeline(log: &[RequestRecord], spawned: DateTime<Utc>, exited: DateTime<Utc>) -> String {
    let (Some(first), Some(last)) = (log.first(), log.last()) else {
        return "no Azure request".into();
    };
    let ms = |a: DateTime<Utc>, b: DateTime<Utc>| (b - a).num_milliseconds();
    let mut spans: BTreeMap<usize, (DateTime<Utc>, DateTime<Utc>)> = BTreeMap::new();
    for r in log {
        if let Some(i) = credential_of(r) {
            let e = spans.entry(i).or_insert((r.time, r.time));
            e.0 = e.0.min(r.time);
            e.1 = e.1.max(r.time);
        }
    }
    let mut lengths: Vec<i64> = spans.values().map(|(a, b)| ms(*a, *b)).collect();
    lengths.sort_unstable();
    let busy = ms(first.time, last.time).max(1);
    // A slot's turnover: a credential's last Azure request to the first of the credential
    // that took its place (the `k`-th start after the `k - 8`-th end, 8 = the ceiling): time
    // spent on neither side of the wire (the product's storage and lease, CPU).
    let mut starts: Vec<_> = spans.values().map(|s| s.0).collect();
    let mut ends: Vec<_> = spans.values().map(|s| s.1).collect();
    starts.sort_unstable();
    ends.sort_unstable();
    let mut turnover: Vec<i64> = (PARALLEL..starts.len())
        .map(|k| ms(ends[k - PARALLEL], starts[k]))
        .collect();
    turnover.sort_unstable();
    let turnover = match turnover.get(turnover.len() / 2) {
        Some(t) => format!(", slot turnover median {t} ms"),
        None => String::new(),
    };
    format!(
        "spawn to first request {} ms, first to last {} ms, last to exit {} ms; {} credentials, \
         span median {} ms (max {}), {:.1} in flight on average{turnover}",
        ms(spawned, first.time),
        busy,
        ms(last.time, exited),
        spans.len(),
        lengths.get(lengths.len() / 2).copied().unwrap_or(0),
        lengths.last().copied().unwrap_or(0),
        lengths.iter().sum::<i64>() as f64 / busy as f64,
    )
}

fn tail(s: &str) -> &str {
    &s[s.len().saturating_sub(3000)..]
}

/// Whether the old password must still be there (the product's grace) or gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Old {
    Kept,
    Removed,
}

/// The job is done, judged on the emulator's state and not on either rotator's word: each
/// application holds the new password (and the old one only while `old` says it is kept), and
/// the vault's latest version, the site's resolved reference, the connection and the variable
/// all hold the new one.
fn check_done(stage: &Stage, n: usize, side: Side, old: Old) {
    let c = stage.emu.emulator.control();
    for i in 0..n {
        let first = stage.scenario["applications"][i]["passwordCredentials"][0]["secretText"]
            .as_str()
            .expect("scenario password");
        let who = format!("{} ({old:?}): bench-{i:05}", side.label());
        let name = format!("app-{i:05}");
        let new = c
            .secret_latest("kv-bench", &name)
            .map(|s| s.1)
            .expect("the vault holds the secret");
        let pw: Vec<String> = c
            .passwords(app_id(i))
            .into_iter()
            .map(|p| p.secret_text)
            .collect();
        // Compared, never printed: these are secret values.
        assert!(
            new != first && pw.contains(&new),
            "{who}: the vault's latest is a new password of the application"
        );
        let want_old = usize::from(old == Old::Kept);
        assert_eq!(
            pw.len(),
            1 + want_old,
            "{who}: passwords on the application"
        );
        assert_eq!(
            pw.iter().filter(|p| **p == first).count(),
            want_old,
            "{who}: the old password"
        );
        let held = [
            (
                "site",
                c.app_setting_effective("rg-bench", &format!("site-{i:05}"), "EntraClientSecret"),
            ),
            (
                "connection",
                c.connection_parameter("rg-bench", &format!("conn-{i:05}"), "token:clientSecret"),
            ),
            (
                "variable",
                c.automation_variable("rg-bench", "auto-bench", &name),
            ),
        ];
        for (what, value) in held {
            assert!(
                value.as_deref() == Some(new.as_str()),
                "{who}: the {what} holds the new password"
            );
        }
    }
}
