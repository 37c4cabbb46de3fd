//! `secret-rotator dev`: the whole product without an Azure subscription, in one command — in
//! the spirit of `vault server -dev`.
//!
//! Expected flow: start the Azure emulator in-process with a demo tenant built from the five
//! field runbooks (`demo-scenario.json`, `demo-policy.json`); start Azurite as the rotator's
//! storage account; start `secret-rotator serve` exactly as the Functions host would, wired to
//! them only through settings (managed identity endpoint, `ROTATOR_RESOLVE`, `ROTATOR_CA_FILE`);
//! then play the host: self-test, plan, a timer pass, the timer again minutes later (Key Vault
//! has issued the demo certificate), self-test again, status — then play the owner of the
//! application converting to a certificate (`demo-certificate.json`: its secret's setting
//! removed through the emulator's control), jump the emulated clock past the grace period and
//! run the timer again. Everything is printed as an account a person can follow. `--serve`
//! keeps it all running behind a local `/api/...` front.
//!
//! Guarantees: the handler runs the production code path (real URLs, managed identity, blob
//! lease); nothing leaves this machine. Caveats: the clock jump is the emulator's; the handler
//! is told the time by the invocations, as the real host does.

pub mod azurite;
pub mod host;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use host::{Handler, HttpCall};

pub const DEMO_SCENARIO: &str = include_str!("demo-scenario.json");
pub const DEMO_POLICY: &str = include_str!("demo-policy.json");
/// The conversion dev mode adds to the seeds: a certificate credential replacing one secret.
pub const DEMO_CERTIFICATE: &str = include_str!("demo-certificate.json");
/// The consumer of the converted secret the demo moves off it, as its owner would:
/// (resource group, site, setting).
const CONVERTED_CONSUMER: (&str, &str, &str) = (
    "TDC_Erhverv_Telephony_Integration",
    "NuudayToB-5sutozr67fiik",
    "TeamsClientSecret",
);
/// The demo certificate's Key Vault certificate (vault, name), as in `demo-certificate.json`.
const CONVERTED_VAULT: &str = "kv5sutozr67fiik";
const CONVERTED_CERTIFICATE: &str = "integration-app";
const ACCOUNT: &str = "stsecretrotatordev";
const ROTATOR_IDENTITY: &str = "secret-rotator";

#[derive(Debug, Clone, clap::Args)]
pub struct DevOptions {
    /// Keep running after the demo and serve the functions on 127.0.0.1:7071/api/... for curl.
    #[arg(long)]
    pub serve: bool,
    /// Port for the `--serve` front (the Functions host's local default is 7071; 0 = any).
    #[arg(long, default_value_t = 7071)]
    pub port: u16,
    /// Days to jump the emulated clock after the first pass (past the 7-day grace period).
    #[arg(long, default_value_t = 8)]
    pub jump_days: i64,
}

struct Out;
impl Out {
    fn h(&self, n: u32, title: &str) {
        println!("\n{n}. {title}");
    }
    fn l(&self, s: impl AsRef<str>) {
        println!("   {}", s.as_ref());
    }
}

fn mark(ok: bool) -> &'static str {
    if ok { "✓" } else { "✗" }
}

/// Where the repository is (for `node_modules`): the working directory if it has one, else the
/// source tree this binary was built from.
fn repo_root() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_default();
    if cwd.join("node_modules/.bin/azurite-blob").exists() {
        return cwd;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub async fn run(opts: DevOptions) -> anyhow::Result<()> {
    let o = Out;
    let work = std::env::temp_dir().join(format!("secret-rotator-dev-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    println!(
        "secret-rotator dev — the whole product on an embedded Azure; nothing leaves this machine"
    );

    let (scenario, policy) = demo_tenant()?;
    let emulator = azure_emulator::start(azure_emulator::EmulatorConfig {
        scenario,
        state_dir: Some(work.join("emulator")),
        ..Default::default()
    })
    .await
    .context("starting the Azure emulator")?;
    let control = emulator.control();
    let storage = azurite::Azurite::start(&repo_root(), &emulator, ACCOUNT, &work.join("azurite"))?;
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let hook_addr = start_webhook_receiver(received.clone()).await?;

    let app_root = work.join("wwwroot");
    std::fs::create_dir_all(&app_root)?;
    std::fs::write(app_root.join("policy.json"), policy)?;
    let settings = handler_settings(&emulator, &storage, hook_addr)?;
    let binary = std::env::current_exe().context("locating this binary")?;
    let log_file = work.join("handler.log");
    let handler = Handler::start(&binary, &app_root, &settings, &log_file).await?;
    print_endpoints(&emulator, &storage, &handler, &log_file);

    let after = first_pass(&o, &handler, &control, &received).await?;
    let final_check = after_grace(&o, &handler, &control, opts.jump_days).await?;
    let green = after["success"] == json!(true) && final_check["success"] == json!(true);
    print_verdict(green, &log_file);

    if opts.serve {
        return serve_front(opts.port, handler, &emulator, control).await;
    }
    handler.stop().await;
    drop(storage);
    emulator.shutdown().await;
    if !green {
        bail!("the demo did not end green");
    }
    Ok(())
}

/// The demo tenant and policy: the five runbooks' seeds plus the conversion of one secret to
/// a certificate (its roles in the scenario, its entry in the policy).
fn demo_tenant() -> anyhow::Result<(azure_emulator::Scenario, String)> {
    let mut scenario: Value = serde_json::from_str(DEMO_SCENARIO).context("the demo scenario")?;
    let mut policy: Value = serde_json::from_str(DEMO_POLICY).context("the demo policy")?;
    let cert: Value = serde_json::from_str(DEMO_CERTIFICATE).context("the demo conversion")?;
    let (Some(roles), Some(creds)) = (
        scenario["roleAssignments"].as_array_mut(),
        policy["credentials"].as_array_mut(),
    ) else {
        bail!("the demo scenario has no roleAssignments or the policy no credentials");
    };
    roles.extend(
        cert["roleAssignments"]
            .as_array()
            .into_iter()
            .flatten()
            .cloned(),
    );
    creds.push(cert["credential"].clone());
    let scenario = serde_json::from_value(scenario).context("the demo scenario")?;
    Ok((scenario, policy.to_string()))
}

/// A local webhook receiver stands in for Teams/Slack: the notify-only step lands here, in
/// `received`.
async fn start_webhook_receiver(
    received: Arc<Mutex<Vec<Value>>>,
) -> anyhow::Result<std::net::SocketAddr> {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let got = received.clone();
            async move {
                if let Ok(mut g) = got.lock() {
                    g.push(v);
                }
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move { axum::serve(l, app).await });
    Ok(addr)
}

/// The handler's app settings: wired to the emulator and Azurite only through settings, as in
/// Azure (managed identity endpoint, `ROTATOR_RESOLVE`, `ROTATOR_CA_FILE`).
fn handler_settings(
    emulator: &azure_emulator::Emulator,
    storage: &azurite::Azurite,
    hook_addr: std::net::SocketAddr,
) -> anyhow::Result<Vec<(String, String)>> {
    let resolve: Vec<String> = emulator
        .host_overrides()
        .into_iter()
        .map(|(h, a)| format!("{h}={a}"))
        .chain([format!("{}={}", storage.host(), storage.addr)])
        .collect();
    let header = emulator
        .identity_header(ROTATOR_IDENTITY)
        .context("the demo tenant has the rotator's managed identity")?;
    Ok([
        ("AZURE_TENANT_ID", emulator.tenant_id().to_string()),
        ("ROTATOR_POLICY_PATH", "policy.json".into()),
        ("AzureWebJobsStorage__accountName", ACCOUNT.into()),
        ("IDENTITY_ENDPOINT", emulator.msi_endpoint()),
        ("IDENTITY_HEADER", header),
        ("ROTATOR_RESOLVE", resolve.join(",")),
        ("ROTATOR_CA_FILE", emulator.ca_path().display().to_string()),
        ("ROTATOR_VERIFY_TIMEOUT_SECONDS", "60".into()),
        (
            "ROTATOR_NOTIFY_WEBHOOK_URL",
            format!("http://{hook_addr}/hook"),
        ),
        ("ROTATOR_LOG", "info".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect())
}

fn print_endpoints(
    emulator: &azure_emulator::Emulator,
    storage: &azurite::Azurite,
    handler: &Handler,
    log_file: &std::path::Path,
) {
    println!();
    println!(
        "   Azure emulator   https://{} for login.microsoftonline.com, graph.microsoft.com, management.azure.com, *.vault.azure.net",
        emulator.https_addr()
    );
    println!(
        "   Managed identity {} (identity 'secret-rotator': Application.ReadWrite.OwnedBy, least-privilege roles)",
        emulator.msi_endpoint()
    );
    println!(
        "   Storage          https://{} → Azurite on {}",
        storage.host(),
        storage.addr
    );
    println!(
        "   Custom handler   127.0.0.1:{}, ready in {} ms (its JSON logs: {})",
        handler.port,
        handler.ready_in.as_millis(),
        log_file.display()
    );
    println!(
        "   Emulated time    {}",
        emulator.control().now().format("%Y-%m-%d %H:%M UTC")
    );
}

/// Steps 1-8: probe, plan, the timer pass (twice: Key Vault issues the certificate in
/// minutes), probe again, status, messages, what comes next. Returns the self-test after the
/// passes.
async fn first_pass(
    o: &Out,
    handler: &Handler,
    control: &azure_emulator::Control,
    received: &Arc<Mutex<Vec<Value>>>,
) -> anyhow::Result<Value> {
    o.h(
        1,
        "Self-test before ({\"function\":\"Test\"}) — what an operator's probe sees today",
    );
    let before = self_test(handler, control.now()).await?;
    print_checks(o, &before);

    o.h(
        2,
        "What is due, and why ({\"function\":\"Plan\"}, a dry run)",
    );
    let plan = command(handler, "Plan", control.now()).await?;
    print_plan(o, &plan);

    o.h(
        3,
        "Rotation pass (timer RotateSecrets, as the host fires it)",
    );
    let pass = timer_pass(o, handler, control.now()).await?;
    print_pass(o, &pass);

    o.h(
        4,
        "Minutes later (emulated clock): Key Vault has issued the certificate — the timer again",
    );
    until_certificate_issued(o, control);
    let pass = timer_pass(o, handler, control.now()).await?;
    print_pass(o, &pass);

    o.h(5, "Verified: self-test after the passes");
    let after = self_test(handler, control.now()).await?;
    print_checks(o, &after);

    o.h(
        6,
        "Where each credential is used now ({\"function\":\"Status\"})",
    );
    let status = command(handler, "Status", control.now()).await?;
    print_status(o, &status);
    print_certificates(o, &status);

    o.h(
        7,
        "Messages for people (notify-only systems), as a webhook received them",
    );
    print_messages(o, received);

    o.h(8, "What will be removed, and when");
    let plan = command(handler, "Plan", control.now()).await?;
    print_plan(o, &plan);
    Ok(after)
}

/// Moves the emulated clock past Key Vault's issuance of the demo certificate and the
/// rotator's own retry time for it (5 minutes).
fn until_certificate_issued(o: &Out, control: &azure_emulator::Control) {
    let now = control.now();
    let retry = now + chrono::Duration::minutes(6);
    let due = control
        .certificate_pending_due(CONVERTED_VAULT, CONVERTED_CERTIFICATE)
        .map_or(retry, |d| d.max(retry));
    control.advance(due - now);
    o.l(format!(
        "emulated time is now {}",
        control.now().format("%Y-%m-%d %H:%M UTC")
    ));
}

/// Step 9: the demo plays the application's owner, who moves it off the client secret once
/// the certificate is on it — through the emulator's control, as a portal edit would.
fn move_off_secret(o: &Out, control: &azure_emulator::Control) {
    o.h(
        9,
        "The demo plays the application's owner: NuudayToB moves off its client secret",
    );
    let (rg, site, setting) = CONVERTED_CONSUMER;
    let removed = control.remove_app_setting(rg, site, setting);
    o.l(format!(
        "{} emulator control (not the rotator): removed app setting {setting} from site {rg}/{site}; \
         the app now signs in with the certificate",
        mark(removed)
    ));
}

/// Step 10, accelerated clock: past the grace period, the timer again. Returns the final
/// self-test.
async fn after_grace(
    o: &Out,
    handler: &Handler,
    control: &azure_emulator::Control,
    jump_days: i64,
) -> anyhow::Result<Value> {
    move_off_secret(o, control);
    o.h(
        10,
        &format!("{jump_days} days later (emulated clock): the grace period is over — timer again"),
    );
    control.advance(chrono::Duration::days(jump_days));
    o.l(format!(
        "emulated time is now {}",
        control.now().format("%Y-%m-%d %H:%M UTC")
    ));
    let pass2 = timer_pass(o, handler, control.now()).await?;
    print_pass(o, &pass2);
    let status = command(handler, "Status", control.now()).await?;
    print_certificates(o, &status);
    let final_check = self_test(handler, control.now()).await?;
    o.l(format!(
        "self-test: success={} resultCode={}",
        final_check["success"], final_check["resultCode"]
    ));
    Ok(final_check)
}

fn print_verdict(green: bool, log_file: &std::path::Path) {
    println!();
    if green {
        println!(
            "Every seed system rotated, verified and in sync. Audit records are in the storage \
             account's 'secret-rotator' container (audit/…); the handler's logs are in {}.",
            log_file.display()
        );
    } else {
        println!(
            "Something is not green: see the checks above and {}",
            log_file.display()
        );
    }
}

/// `--serve`: the functions behind a local `/api/...` front until Ctrl-C.
async fn serve_front(
    port: u16,
    handler: Handler,
    emulator: &azure_emulator::Emulator,
    control: azure_emulator::Control,
) -> anyhow::Result<()> {
    let handler = Arc::new(handler);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    let addr = listener.local_addr()?;
    println!("\nServing until Ctrl-C. Try:");
    let base = format!("http://{addr}/api");
    println!("   curl -s {base}/SelfTest -d '{{\"function\":\"Test\"}}'");
    println!("   curl -s {base}/Operate -d '{{\"function\":\"Status\"}}'");
    println!("   curl -s {base}/Operate -d '{{\"function\":\"Plan\"}}'");
    println!("   curl -s -X POST {base}/rotate/provision-assist -d '{{\"force\":true}}'");
    println!("   curl -s {base}/StatusPage > status.html   # then open it in a browser");
    println!(
        "   curl -s {}/clock/advance -d '{{\"seconds\":86400}}'   # move the emulated clock a day",
        emulator.control_url()
    );
    host::front(listener, handler, Arc::new(move || control.now()), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

async fn command(
    h: &Handler,
    cmd: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Value> {
    let function = if cmd == "Test" { "SelfTest" } else { "Operate" };
    let call = HttpCall::post_json(function, &json!({ "function": cmd }));
    Ok(h.http(&call, now).await?.body)
}

async fn self_test(h: &Handler, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<Value> {
    command(h, "Test", now).await
}

async fn timer_pass(
    o: &Out,
    h: &Handler,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Value> {
    let id = uuid::Uuid::new_v4().to_string();
    let started = std::time::Instant::now();
    // A pass with a failed credential is a failed invocation (README "What the host records");
    // the demo goes on to show its report.
    let logs = match h.timer("RotateSecrets", now, &id).await {
        Ok(logs) => logs,
        Err(e) => vec![format!("{e:#}")],
    };
    for l in &logs {
        o.l(format!("log: {l}"));
    }
    let call = HttpCall::post_json(
        "Operate",
        &json!({ "function": "Run", "runId": id, "waitSeconds": 120 }),
    );
    let a = h.http(&call, now).await?;
    o.l(format!(
        "pass took {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(a.body)
}

fn print_checks(o: &Out, v: &Value) {
    o.l(format!(
        "success={} resultCode={} message={}",
        v["success"],
        v["resultCode"],
        v["message"].as_str().unwrap_or("null")
    ));
    for c in v["checks"].as_array().into_iter().flatten() {
        let ok = c["ok"].as_bool().unwrap_or(false);
        o.l(format!(
            "{} {:<32} [{}] {}",
            mark(ok),
            c["name"].as_str().unwrap_or(""),
            c["resultCode"].as_str().unwrap_or(""),
            c["message"].as_str().unwrap_or("")
        ));
    }
}

fn print_plan(o: &Out, v: &Value) {
    let secrets = v["plan"]["credentials"].as_array().into_iter().flatten();
    let certificates = v["plan"]["certificates"].as_array().into_iter().flatten();
    for c in secrets.chain(certificates) {
        o.l(format!("{}:", c["name"].as_str().unwrap_or("?")));
        for e in c["explanation"].as_array().into_iter().flatten() {
            o.l(format!("  · {}", e.as_str().unwrap_or("")));
        }
        if let Some(b) = c["blocked"].as_str() {
            o.l(format!("  ! blocked: {b}"));
        }
    }
}

fn print_pass(o: &Out, v: &Value) {
    let report = if v["run"]["result"]["report"].is_object() {
        &v["run"]["result"]["report"]
    } else {
        find_pass(v).unwrap_or(v)
    };
    for c in report["credentials"].as_array().into_iter().flatten() {
        o.l(format!(
            "{} — {}",
            c["name"].as_str().unwrap_or("?"),
            c["outcome"].as_str().unwrap_or("?")
        ));
        for s in c["steps"].as_array().into_iter().flatten() {
            o.l(format!(
                "  {} {}: {}",
                mark(s["ok"].as_bool().unwrap_or(false)),
                s["step"].as_str().unwrap_or(""),
                s["detail"].as_str().unwrap_or("")
            ));
        }
        if let Some(e) = c["error"].as_str() {
            o.l(format!("  note: {e}"));
        }
    }
    let u = &report["unenrolled"];
    if u.is_object() {
        o.l(format!(
            "not enrolled: {} credential(s) expiring within {} days, {} notified{}",
            u["expiring"],
            u["warnDays"],
            u["notified"],
            u["warning"]
                .as_str()
                .map(|w| format!(" (warning: {w})"))
                .unwrap_or_default()
        ));
    }
}

/// The pass report inside a `Run` answer, wherever the handler put it.
fn find_pass(v: &Value) -> Option<&Value> {
    if v.get("credentials").is_some_and(Value::is_array) && v.get("runId").is_some() {
        return Some(v);
    }
    match v {
        Value::Object(m) => m.values().find_map(find_pass),
        Value::Array(a) => a.iter().find_map(find_pass),
        _ => None,
    }
}

fn print_status(o: &Out, v: &Value) {
    for c in v["status"]["credentials"].as_array().into_iter().flatten() {
        o.l(format!(
            "{}: key {} ({}), expires {}, {} days left, phase {}, consumers in sync: {}",
            c["name"].as_str().unwrap_or("?"),
            c["keyIdInUse"].as_str().unwrap_or("?"),
            c["keyIdSource"].as_str().unwrap_or("?"),
            c["expires"]
                .as_str()
                .map(|s| &s[..10.min(s.len())])
                .unwrap_or("?"),
            c["daysLeft"],
            c["phase"].as_str().unwrap_or("-"),
            c["consumersInSync"]
        ));
        for k in c["consumers"].as_array().into_iter().flatten() {
            let in_sync = match k["inSync"].as_bool() {
                Some(true) => "in sync",
                Some(false) => "OUT OF SYNC",
                None => "unknown",
            };
            o.l(format!(
                "  - {}: {in_sync}{}",
                k["description"].as_str().unwrap_or(""),
                k["detail"]
                    .as_str()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ));
        }
    }
    let u = &v["status"]["unenrolled"];
    if let Some(note) = u["note"].as_str() {
        o.l(format!("not enrolled: {note}"));
        for r in u["listed"].as_array().into_iter().flatten().take(5) {
            o.l(format!(
                "  - {} ({}) {} {}: {} days left",
                r["application"].as_str().unwrap_or("?"),
                r["appId"].as_str().unwrap_or("?"),
                r["kind"].as_str().unwrap_or("?"),
                r["keyId"].as_str().unwrap_or("?"),
                r["daysLeft"]
            ));
        }
    }
}

/// The certificate credentials: version, key, consumers, and a conversion's progress — which
/// consumer still holds the secret, and why that keeps it.
fn print_certificates(o: &Out, v: &Value) {
    for c in v["status"]["certificates"].as_array().into_iter().flatten() {
        o.l(format!(
            "{} (certificate {}/{}): version {}, thumbprint {}, key {} on the application, phase {}, consumers in sync: {}",
            c["name"].as_str().unwrap_or("?"),
            c["vault"].as_str().unwrap_or("?"),
            c["certificate"].as_str().unwrap_or("?"),
            c["currentVersion"].as_str().unwrap_or("none"),
            c["thumbprint"].as_str().unwrap_or("none"),
            c["keyIdInUse"].as_str().unwrap_or("none"),
            c["phase"].as_str().unwrap_or("-"),
            c["consumersInSync"]
        ));
        for k in c["consumers"].as_array().into_iter().flatten() {
            o.l(format!(
                "  - {}: {}",
                k["description"].as_str().unwrap_or(""),
                if k["inSync"] == json!(true) {
                    "holds the certificate"
                } else {
                    "not yet"
                }
            ));
        }
        print_conversion(o, &c["conversion"]);
    }
}

fn print_conversion(o: &Out, conv: &Value) {
    let Some(secret) = conv["secret"].as_str() else {
        return;
    };
    o.l(format!(
        "  conversion from client secret {secret}: {}{}; {} of its password(s) still on the application",
        conv["state"].as_str().unwrap_or("?"),
        conv["removeAfter"]
            .as_str()
            .map(|d| format!(", its passwords go after {}", &d[..16.min(d.len())]))
            .unwrap_or_default(),
        conv["secretPasswords"].as_array().map_or(0, Vec::len)
    ));
    for k in conv["consumers"].as_array().into_iter().flatten() {
        let state = match k["moved"].as_bool() {
            Some(true) => "moved off the secret",
            Some(false) => "STILL HOLDS THE SECRET",
            None => "cannot be read back",
        };
        o.l(format!(
            "    - {}: {state}",
            k["description"].as_str().unwrap_or("")
        ));
    }
    if conv["stillOnSecret"].as_u64().unwrap_or(0) > 0 {
        o.l(
            "  the secret stays: removing a password a consumer still signs in with is an outage; \
             it goes only once every consumer is seen off it, and then after the grace period",
        );
    }
}

fn print_messages(o: &Out, received: &Arc<Mutex<Vec<Value>>>) {
    let msgs = received.lock().map(|g| g.clone()).unwrap_or_default();
    if msgs.is_empty() {
        o.l("none");
    }
    for m in msgs {
        o.l(format!("» {}", m["title"].as_str().unwrap_or("")));
        o.l(format!("  {}", m["text"].as_str().unwrap_or("")));
    }
}
