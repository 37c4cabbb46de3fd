//! The operator's commands run as the real binary (`secret-rotator plan|rotate|report|diagnose`)
//! against the emulator and a private Azurite, configured only through the environment an
//! operator would set: a service principal (`secret-rotator-ci`), ROTATOR_RESOLVE with every
//! emulated host plus Azurite's, ROTATOR_CA_FILE with the emulator's CA.
//!
//! Every test also checks that no secret value the tenant holds (before or after the command)
//! appears on stdout or stderr.
//!
//! The emulator's clock is not the wall clock, so every command is given `--at` (the emulator's
//! now): the answers are then the same on any day the tests run.

use crate::support::azurite;
use crate::support::emulator;
use crate::support::world;

use std::collections::BTreeMap;
use std::path::PathBuf;

use azure_emulator::{FaultAction, FaultRule};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use azurite::Azurite;
use emulator::TestEmulator;
use world::{CI_APP, CI_SECRET, ci_identity, demo_policy, demo_scenario};

const EZSIGN_LINE: &str = "2022-11-24 10:31:40.391 [main] ERROR EzSignLog - Max retries 3 times exceeded. Error Details: AADSTS7000222: The provided client secret keys for app '7412f649-8e14-471f-bfc1-733b36a42705' are expired";
const EMPOWER: &str = "5b7d9f1a-2c4e-4a6b-9d8f-0a2c4e6b8d30";
const EZSIGN: &str = "7412f649-8e14-471f-bfc1-733b36a42705";
const INTEGRATION: &str = "3f5b2d1e-0c55-4a8e-9a41-6a2f3b7c9d10";
/// An application nobody enrolled and the rotator does not own, with a certificate.
const PAYROLL: &str = "9e8d7c6b-5a49-4838-a727-161514131211";
const PAYROLL_CERT: &str = "c0ffee00-1111-4222-8333-444455556666";
const PAYROLL_SAML: &str = "5a3115a3-1111-4222-8333-444455556666";
const PAYROLL_OLD: &str = "0badf00d-1111-4222-8333-444455556666";

fn uuid(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap()
}

/// The demo scenario plus the CI identity, an unowned application with a certificate and an
/// expired password, and `ci_roles` as the CI identity's Graph app roles.
fn scenario(ci_roles: &[&str]) -> Value {
    let mut s = demo_scenario();
    s["replicationDelaySeconds"] = json!(0);
    s["applications"].as_array_mut().unwrap().push(json!({
        "appId": PAYROLL,
        "displayName": "Legacy Payroll, EU",
        "owners": [],
        "passwordCredentials": [
            { "keyId": PAYROLL_OLD, "displayName": "old \"prod\" key", "secretText": "PyR0Q~legacy.payroll.secret.value.0001", "startDateTime": "2024-01-01T00:00:00Z", "endDateTime": "2026-10-01T00:00:00Z" }
        ],
        "keyCredentials": [
            { "keyId": PAYROLL_CERT, "displayName": "CN=payroll-signing", "startDateTime": "2025-06-01T00:00:00Z", "endDateTime": "2027-06-01T00:00:00Z" }
        ],
        "servicePrincipalKeyCredentials": [
            { "keyId": PAYROLL_SAML, "displayName": "CN=Microsoft Azure Federated SSO Certificate", "endDateTime": "2026-12-24T10:00:00Z" }
        ]
    }));
    ci_identity(&mut s);
    let ci = s["applications"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|a| a["displayName"] == CI_APP)
        .unwrap();
    ci["graphAppRoles"] = json!(ci_roles);
    s
}

struct Cli {
    emu: TestEmulator,
    _azurite: Azurite,
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Cli {
    async fn start(scenario: Value, policy: &str) -> Self {
        let emu = TestEmulator::start(scenario).await;
        let account = format!("st{}", &Uuid::new_v4().simple().to_string()[..12]);
        let azurite = Azurite::start(&emu.emulator, &account);
        let dir = tempfile::tempdir().unwrap();
        let policy_path = dir.path().join("policy.json");
        std::fs::write(&policy_path, policy).unwrap();
        let resolve = emu
            .emulator
            .host_overrides()
            .into_iter()
            .chain([azurite.host_override()])
            .map(|(host, addr)| format!("{host}={addr}"))
            .collect::<Vec<_>>()
            .join(",");
        let ci_app_id = emu.emulator.control().app_id_by_name(CI_APP).unwrap();
        let env: BTreeMap<String, String> = [
            ("AZURE_TENANT_ID", emu.tenant()),
            ("AZURE_CLIENT_ID", ci_app_id.to_string()),
            ("AZURE_CLIENT_SECRET", CI_SECRET.to_string()),
            ("ROTATOR_POLICY_PATH", policy_path.display().to_string()),
            ("AzureWebJobsStorage__accountName", account),
            ("ROTATOR_RESOLVE", resolve),
            (
                "ROTATOR_CA_FILE",
                emu.emulator.ca_path().display().to_string(),
            ),
            ("ROTATOR_VERIFY_TIMEOUT_SECONDS", "30".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Self {
            emu,
            _azurite: azurite,
            dir,
            env,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.emu.emulator.control().now()
    }

    fn at(&self) -> String {
        self.now().to_rfc3339()
    }

    async fn run(&self, args: &[&str]) -> Output {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_secret-rotator"))
            .args(args)
            // Nothing from the test process's environment (an IDENTITY_ENDPOINT, a proxy)
            // may change which credential or transport the binary uses.
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.env)
            .current_dir(self.dir.path())
            .output()
            .await
            .expect("the binary runs");
        let o = Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        };
        self.assert_no_secret(&o, args);
        o
    }

    /// Every secret value the tenant holds now (passwords, vault versions seen by the control
    /// API, the CI identity's own secret) is absent from the command's output.
    fn assert_no_secret(&self, o: &Output, args: &[&str]) {
        let state = self.emu.emulator.control().state();
        let mut secrets = vec![CI_SECRET.to_string()];
        for app in state["applications"].as_array().into_iter().flatten() {
            for p in app["passwordCredentials"].as_array().into_iter().flatten() {
                if let Some(s) = p["secretText"].as_str() {
                    secrets.push(s.to_string());
                }
            }
        }
        for s in &secrets {
            assert!(
                !o.stdout.contains(s.as_str()) && !o.stderr.contains(s.as_str()),
                "`{}` printed a secret value",
                args.join(" ")
            );
        }
    }
}

fn writes(emu: &TestEmulator) -> Vec<String> {
    const WRITES: [&str; 13] = [
        "addPassword",
        "removePassword",
        "addOwner",
        "setSecret",
        "updateSecret",
        "deleteSecret",
        "putAppSettings",
        "refreshConfigReferences",
        "restartSite",
        "putConnection",
        "patchConnection",
        "putVariable",
        "patchVariable",
    ];
    emu.emulator
        .control()
        .requests()
        .into_iter()
        .filter(|r| {
            r.operation
                .as_deref()
                .is_some_and(|op| WRITES.contains(&op))
                || matches!(r.method.as_str(), "PUT" | "PATCH" | "DELETE")
        })
        .map(|r| format!("{} {} {}", r.method, r.host, r.path))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_explains_each_demo_credential_and_changes_nothing() {
    let cli = Cli::start(scenario(&["Application.ReadWrite.OwnedBy"]), &demo_policy()).await;
    let c = cli.emu.emulator.control();
    let passwords_before: Vec<_> = [EMPOWER, EZSIGN, INTEGRATION]
        .iter()
        .map(|a| {
            c.passwords(uuid(a))
                .iter()
                .map(|p| p.key_id)
                .collect::<Vec<_>>()
        })
        .collect();
    let vault_before = c.secret_latest("kv-empower", "clientSecret").unwrap().0;

    let at = cli.at();
    let human = cli.run(&["plan", "--at", &at]).await;
    assert_eq!(human.code, 0, "{}", human.stderr);
    for name in ["integration-app", "provision-assist", "empower", "ezsign"] {
        assert!(
            human.stdout.contains(&format!("\n{name}: ")),
            "{name} missing:\n{}",
            human.stdout
        );
    }
    assert!(human.stdout.contains("nothing has been changed"));
    assert!(human.stdout.contains("why:"), "{}", human.stdout);

    let json = cli.run(&["plan", "--json", "--at", &at]).await;
    assert_eq!(json.code, 0, "{}", json.stderr);
    let plan: Value = serde_json::from_str(&json.stdout).expect("plan --json is JSON");
    let creds = plan["credentials"].as_array().unwrap();
    assert_eq!(creds.len(), 4);
    for c in creds {
        assert!(
            !c["explanation"].as_array().unwrap().is_empty(),
            "every credential is explained: {c}"
        );
    }
    let empower = creds.iter().find(|c| c["name"] == "empower").unwrap();
    let steps = empower["steps"].as_array().unwrap();
    assert!(
        !steps.is_empty(),
        "the expired empower secret is due: {empower}"
    );
    let why = empower["explanation"].to_string().to_lowercase();
    assert!(why.contains("expire"), "{why}");

    // Changes nothing: no write reached any service, Graph and Key Vault are as they were.
    assert_eq!(writes(&cli.emu), Vec::<String>::new());
    let passwords_after: Vec<_> = [EMPOWER, EZSIGN, INTEGRATION]
        .iter()
        .map(|a| {
            c.passwords(uuid(a))
                .iter()
                .map(|p| p.key_id)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(passwords_before, passwords_after);
    assert_eq!(
        c.secret_latest("kv-empower", "clientSecret").unwrap().0,
        vault_before
    );
    assert!(
        cli.emu
            .emulator
            .control()
            .requests()
            .iter()
            .any(|r| r.operation.as_deref() == Some("getApplication")),
        "plan did observe Graph"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_only_empower_fixes_the_expired_secret() {
    let cli = Cli::start(scenario(&["Application.ReadWrite.OwnedBy"]), &demo_policy()).await;
    let c = cli.emu.emulator.control();
    let app = uuid(EMPOWER);
    let (_, before, _) = c.secret_latest("kv-empower", "clientSecret").unwrap();
    assert_eq!(c.check_client_secret(app, &before), Err(7000222));

    let at = cli.at();
    let out = cli.run(&["rotate", "--only", "empower", "--at", &at]).await;
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.starts_with("empower: done"), "{}", out.stdout);
    assert!(
        out.stdout.contains("ok  "),
        "each step is printed: {}",
        out.stdout
    );
    let (_, value, _) = c.secret_latest("kv-empower", "clientSecret").unwrap();
    assert_ne!(value, before);
    assert_eq!(c.check_client_secret(app, &value), Ok(()));
    assert_eq!(
        c.app_setting("rg-empower", "empower-backend", "EntraClientSecret"),
        Some(value)
    );
    // Only empower was touched.
    assert_eq!(c.passwords(uuid(EZSIGN)).len(), 1);

    // Again, as JSON: nothing is due any more.
    let again = cli
        .run(&["rotate", "--only", "empower", "--json", "--at", &at])
        .await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    let v: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(v["name"], "empower");
    assert_ne!(v["outcome"], "failed");

    let unknown = cli.run(&["rotate", "--only", "nosuch"]).await;
    assert_ne!(unknown.code, 0);
    assert!(
        unknown.stderr.contains("no credential named 'nosuch'")
            && unknown.stderr.contains("empower"),
        "{}",
        unknown.stderr
    );
    let force_alone = cli.run(&["rotate", "--force"]).await;
    assert_ne!(force_alone.code, 0, "--force needs --only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_pass_exits_non_zero_when_a_credential_fails() {
    // A policy that also enrols an application the rotator does not own: Graph refuses it.
    let mut policy: Value = serde_json::from_str(&demo_policy()).unwrap();
    policy["credentials"].as_array_mut().unwrap().push(json!({
        "name": "payroll",
        "application": { "appId": PAYROLL },
        "keyVault": { "vault": "kv-empower", "secret": "payroll" },
        "consumers": [ { "type": "notifyOnly", "system": "payroll", "instructions": "paste it" } ]
    }));
    let cli = Cli::start(
        scenario(&["Application.ReadWrite.OwnedBy"]),
        &policy.to_string(),
    )
    .await;
    let at = cli.at();
    let out = cli.run(&["rotate", "--at", &at]).await;
    assert_eq!(
        out.code, 2,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.starts_with("Run "), "{}", out.stdout);
    assert!(out.stdout.contains("empower: done"), "{}", out.stdout);
    let payroll = out
        .stdout
        .lines()
        .find(|l| l.starts_with("payroll: "))
        .unwrap_or_else(|| panic!("payroll reported:\n{}", out.stdout));
    assert!(
        payroll.contains("FAILED") || payroll.contains("BLOCKED"),
        "{payroll}"
    );
}

/// A minimal RFC 4180 reader: quoted fields, doubled quotes, commas inside quotes.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        match (quoted, ch) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        !quoted && field.is_empty() && row.is_empty(),
        "CSV ends with a newline"
    );
    rows
}

fn days_left(end: &str, now: DateTime<Utc>) -> i64 {
    let end = DateTime::parse_from_rfc3339(end)
        .unwrap()
        .with_timezone(&Utc);
    (end - now).num_seconds().div_euclid(86_400)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_lists_every_credential_in_three_formats() {
    let s = scenario(&["Application.ReadWrite.OwnedBy", "Application.Read.All"]);
    let cli = Cli::start(s.clone(), &demo_policy()).await;
    let at = cli.at();
    let now = cli.now();

    let csv = cli
        .run(&[
            "report",
            "--format",
            "csv",
            "--at",
            &at,
            "--page-size",
            "2",
            "--progress",
        ])
        .await;
    assert_eq!(csv.code, 0, "{}", csv.stderr);
    let rows = parse_csv(&csv.stdout);
    assert_eq!(
        rows[0].join(","),
        "application,holder,appId,objectId,kind,keyId,displayName,end,daysLeft,enrolledAs,keyVault,managed"
    );
    let rows = &rows[1..];
    // Every password and certificate of every application in the scenario, nothing else.
    let mut expected = 0;
    for app in s["applications"].as_array().unwrap() {
        let name = app["displayName"].as_str().unwrap();
        let app_id = cli.emu.emulator.control().app_id_by_name(name).unwrap();
        let enrolled = match app_id.to_string().as_str() {
            INTEGRATION => "integration-app",
            EMPOWER => "empower",
            EZSIGN => "ezsign",
            "4a6c8e0f-1b3d-4f5a-8c7e-9f1b3d5e7a20" => "provision-assist",
            _ => "",
        };
        for (holder, kind, list) in [
            ("application", "secret", &app["passwordCredentials"]),
            ("application", "certificate", &app["keyCredentials"]),
            (
                "servicePrincipal",
                "certificate",
                &app["servicePrincipalKeyCredentials"],
            ),
        ] {
            for cred in list.as_array().into_iter().flatten() {
                expected += 1;
                let end = cred["endDateTime"].as_str().unwrap();
                let row = rows
                    .iter()
                    .find(|r| {
                        r[1] == holder
                            && r[2] == app_id.to_string()
                            && r[4] == kind
                            && cred["keyId"].as_str().is_none_or(|k| r[5] == k)
                    })
                    .unwrap_or_else(|| panic!("no {holder} {kind} row for {name}: {rows:?}"));
                assert_eq!(row[0], name, "names with commas survive CSV");
                assert_eq!(row[8], days_left(end, now).to_string(), "{name} {kind}");
                let want_enrolled = if kind == "secret" { enrolled } else { "" };
                assert_eq!(row[9], want_enrolled, "{name} {kind}");
                if !row[10].is_empty() {
                    assert_eq!(kind, "secret");
                    assert!(!enrolled.is_empty(), "only enrolled secrets sit in a vault");
                }
            }
        }
    }
    assert_eq!(rows.len(), expected);
    let payroll_old = rows.iter().find(|r| r[5] == PAYROLL_OLD).unwrap();
    assert_eq!(payroll_old[6], "old \"prod\" key");
    assert!(payroll_old[8].starts_with('-'), "expired: {payroll_old:?}");
    let empower = rows.iter().find(|r| r[2] == EMPOWER).unwrap();
    assert!(
        empower[8].parse::<i64>().unwrap() < 0,
        "empower's secret has expired"
    );
    // 6 applications at 2 a page: 3 pages, each reported on stderr.
    assert!(
        csv.stderr.contains("page 3: 6 application(s)"),
        "{}",
        csv.stderr
    );
    assert!(!csv.stderr.contains("lacks Application.Read.All"));

    let json = cli.run(&["report", "--format", "json", "--at", &at]).await;
    assert_eq!(json.code, 0, "{}", json.stderr);
    let v: Vec<Value> = serde_json::from_str(&json.stdout).expect("report JSON is an array");
    assert_eq!(v.len(), expected);
    let cert = v.iter().find(|r| r["keyId"] == PAYROLL_CERT).unwrap();
    assert_eq!(cert["kind"], "certificate");
    assert_eq!(cert["daysLeft"], days_left("2027-06-01T00:00:00Z", now));
    assert_eq!(cert["enrolledAs"], Value::Null);
    let saml = v.iter().find(|r| r["keyId"] == PAYROLL_SAML).unwrap();
    assert_eq!(saml["holder"], "servicePrincipal");
    assert_eq!(saml["daysLeft"], days_left("2026-12-24T10:00:00Z", now));
    let ezsign = v.iter().find(|r| r["appId"] == EZSIGN).unwrap();
    assert_eq!(ezsign["enrolledAs"], "ezsign");
    assert_eq!(ezsign["daysLeft"], days_left("2026-12-05T12:00:00Z", now));

    let table = cli.run(&["report", "--at", &at]).await;
    assert_eq!(table.code, 0, "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("APPLICATION") && lines[0].contains("DAYS LEFT"));
    assert_eq!(lines.len(), expected + 1);
    let ez = lines.iter().find(|l| l.contains(EZSIGN)).unwrap();
    assert!(
        ez.starts_with("ezsign2 ") && ez.contains(" ezsign "),
        "{ez}"
    );
    assert!(
        ez.contains(&format!(" {} ", days_left("2026-12-05T12:00:00Z", now))),
        "{ez}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(PAYROLL_SAML) && l.contains(" sp cert ")),
        "{}",
        table.stdout
    );
    // Without --progress and with stderr not a terminal: only the closing summary.
    assert!(!table.stderr.contains("page 1"), "{}", table.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_without_read_all_says_so_and_lists_owned_apps() {
    let cli = Cli::start(scenario(&["Application.ReadWrite.OwnedBy"]), &demo_policy()).await;
    let at = cli.at();
    let out = cli.run(&["report", "--format", "json", "--at", &at]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("lacks Application.Read.All"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("service principals' own credentials are not listed"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("ownedObjects"), "{}", out.stderr);
    let v: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    let apps: std::collections::BTreeSet<&str> = v
        .iter()
        .map(|r| r["application"].as_str().unwrap())
        .collect();
    assert_eq!(
        apps.into_iter().collect::<Vec<_>>(),
        [
            "Provision Assist",
            "TDC Erhverv Integration App",
            "empower",
            "ezsign2"
        ],
        "only the four owned applications"
    );
    assert!(
        cli.emu
            .emulator
            .control()
            .requests()
            .iter()
            .all(|r| r.operation.as_deref() != Some("listApplications")),
        "the full list is not even tried"
    );

    // An identity whose token claims Application.Read.All but whom Graph refuses (403):
    // detected on the first page, said on stderr, and the owned applications listed instead.
    let cli = Cli::start(
        scenario(&["Application.ReadWrite.OwnedBy", "Application.Read.All"]),
        &demo_policy(),
    )
    .await;
    cli.emu.emulator.control().add_fault(FaultRule {
        service: "graph".into(),
        operation: Some("listApplications".into()),
        nth: None,
        times: None,
        probability: None,
        seed: None,
        action: FaultAction::Status {
            status: 403,
            retry_after: None,
        },
    });
    let at = cli.at();
    let out = cli.run(&["report", "--format", "csv", "--at", &at]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "refused to list every application (Graph list applications: access denied (HTTP 403"
        ),
        "{}",
        out.stderr
    );
    let rows = parse_csv(&out.stdout);
    assert!(rows.iter().any(|r| r[2] == EZSIGN));
    assert!(
        rows.iter().all(|r| r[2] != PAYROLL),
        "the unowned app is not listed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_the_ezsign_log_line() {
    let cli = Cli::start(scenario(&["Application.ReadWrite.OwnedBy"]), &demo_policy()).await;
    let at = cli.at();
    let out = cli.run(&["diagnose", EZSIGN_LINE, "--at", &at]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = &out.stdout;
    assert!(
        text.starts_with("AADSTS7000222: the client secret the application sent has expired"),
        "{text}"
    );
    assert!(
        text.contains("Application: ezsign2 (appId 7412f649-8e14-471f-bfc1-733b36a42705"),
        "{text}"
    );
    // Its only secret: not expired at the emulator's now, and expiring within the window.
    assert!(text.contains("-> expiring"), "{text}");
    assert!(
        text.contains("3e4f5a6b-7c8d-4e9f-8a1b-2c3d4e5f6a91 'ezsign token'"),
        "{text}"
    );
    assert!(text.contains("enrolled as 'ezsign'"), "{text}");
    assert!(text.contains("kv-ezsign/ezsign-token"), "{text}");
    assert!(text.contains("EzSign signing server"), "{text}");
    assert!(
        text.contains("secret-rotator rotate --only ezsign --force"),
        "{text}"
    );
    assert!(text.contains("ezsign-manage.sh"), "{text}");

    let json = cli
        .run(&["diagnose", "--json", EZSIGN_LINE, "--at", &at])
        .await;
    assert_eq!(json.code, 0, "{}", json.stderr);
    let d: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(d["code"], 7000222);
    assert_eq!(d["application"]["displayName"], "ezsign2");
    assert_eq!(d["enrolledAs"], "ezsign");
    assert_eq!(
        d["involved"],
        json!(["3e4f5a6b-7c8d-4e9f-8a1b-2c3d4e5f6a91"])
    );
    assert_eq!(d["fix"][0], "secret-rotator rotate --only ezsign --force");

    // Following the advice fixes it; diagnosing again shows the new secret as valid.
    let fix = cli
        .run(&["rotate", "--only", "ezsign", "--force", "--at", &at])
        .await;
    assert_eq!(fix.code, 0, "{}\n{}", fix.stdout, fix.stderr);
    // (judged a moment later: the new password starts when Graph created it)
    let later = cli.at();
    let after = cli
        .run(&["diagnose", "--json", EZSIGN_LINE, "--at", &later])
        .await;
    let d: Value = serde_json::from_str(&after.stdout).unwrap();
    assert!(
        d["passwords"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["state"] == "valid" && p["inKeyVault"] == true),
        "{d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_expired_wrong_unknown_and_unenrolled() {
    let cli = Cli::start(
        scenario(&["Application.ReadWrite.OwnedBy", "Application.Read.All"]),
        &demo_policy(),
    )
    .await;
    let at = cli.at();

    // 7000222 for empower: the expired password is named.
    let line =
        format!("AADSTS7000222: The provided client secret keys for app '{EMPOWER}' are expired.");
    let out = cli.run(&["diagnose", "--json", &line, "--at", &at]).await;
    let d: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        d["involved"],
        json!(["2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f81"])
    );
    assert_eq!(d["passwords"][0]["state"], "expired");
    assert_eq!(d["fix"][0], "secret-rotator rotate --only empower --force");
    assert!(
        d["usedBy"][0]
            .as_str()
            .unwrap()
            .contains("EntraClientSecret"),
        "{d}"
    );

    // 7000215 for the integration app: both valid passwords, the value matches none, and the
    // Key Vault reference on the enrolled site is found.
    let line = format!(
        "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{INTEGRATION}'."
    );
    let out = cli.run(&["diagnose", "--json", &line, "--at", &at]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let d: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(d["involved"].as_array().unwrap().len(), 2, "{d}");
    assert!(d["findings"].to_string().contains("matches none"), "{d}");
    let refs = d["keyVaultReferences"].as_array().unwrap();
    assert_eq!(refs.len(), 1, "{d}");
    assert_eq!(refs[0]["setting"], "TeamsClientSecret");
    assert_eq!(
        refs[0]["site"],
        "TDC_Erhverv_Telephony_Integration/NuudayToB-5sutozr67fiik"
    );

    // Not enrolled: a policy entry to enrol it.
    let line =
        format!("AADSTS7000222: The provided client secret keys for app '{PAYROLL}' are expired.");
    let out = cli.run(&["diagnose", &line, "--at", &at]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("Legacy Payroll, EU is not enrolled"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("\"name\": \"legacy-payroll-eu\""),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(PAYROLL_OLD), "{}", out.stdout);

    // 700016: no such application in the tenant.
    let line = "AADSTS700016: Application with identifier '11111111-2222-3333-4444-555555555555' was not found in the directory 'Contoso'.";
    let out = cli.run(&["diagnose", line, "--at", &at]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("no application with appId 11111111-2222-3333-4444-555555555555 exists"),
        "{}",
        out.stdout
    );

    // 700016 for an application that does exist here: the tenant is wrong, not the secret.
    let line = format!(
        "AADSTS700016: Application with identifier '{EZSIGN}' was not found in the directory 'Fabrikam'."
    );
    let out = cli.run(&["diagnose", "--json", &line, "--at", &at]).await;
    let d: Value = serde_json::from_str(&out.stdout).unwrap();
    let fix = d["fix"].to_string();
    assert!(fix.contains("set the client's tenant"), "{d}");
    assert!(
        !fix.contains("rotate"),
        "a new secret does not fix a wrong tenant: {d}"
    );

    // 90002: the tenant is named and compared with ours.
    let out = cli
        .run(&[
            "diagnose",
            "AADSTS90002: Tenant 'contoso.example' not found.",
            "--at",
            &at,
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("'contoso.example'"), "{}", out.stdout);
    assert!(out.stdout.contains(&cli.emu.tenant()), "{}", out.stdout);

    // No code at all: a clear error, non-zero.
    let out = cli.run(&["diagnose", "it does not work"]).await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("no AADSTS error code"),
        "{}",
        out.stderr
    );
}

/// The pre-2022 7000215 wording names no application: its Trace and Correlation IDs are never
/// taken for one; the operator is asked for the client id, or finds it by the secret's hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_a_line_without_an_application_asks_instead_of_guessing() {
    let cli = Cli::start(
        scenario(&["Application.ReadWrite.OwnedBy", "Application.Read.All"]),
        &demo_policy(),
    )
    .await;
    let at = cli.at();
    let line = "AADSTS7000215: Invalid client secret is provided. Trace ID: 02f6f1c8-78b8-44f9-9576-66a55b4aa100 Correlation ID: 52f513ad-39d9-4eb4-b1a9-281571228968 Timestamp: 2021-09-13 23:21:24Z";
    let out = cli.run(&["diagnose", "--json", line, "--at", &at]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let d: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(d["appId"], Value::Null, "{d}");
    assert_eq!(d["policySnippet"], Value::Null, "no enrolment offered: {d}");
    assert!(
        d["findings"]
            .to_string()
            .contains("does not say which application"),
        "{d}"
    );
    assert!(d["fix"].to_string().contains("--app-id"), "{d}");
    assert!(!out.stdout.contains("02f6f1c8"), "{}", out.stdout);

    let by_id = cli
        .run(&["diagnose", "--json", line, "--app-id", EMPOWER, "--at", &at])
        .await;
    let d: Value = serde_json::from_str(&by_id.stdout).unwrap();
    assert_eq!(d["enrolledAs"], "empower", "{d}");

    // empower's password value starts with "emP"; only those three characters are used.
    let by_hint = cli
        .run(&[
            "diagnose",
            "--json",
            line,
            "--secret-hint",
            "emP",
            "--at",
            &at,
        ])
        .await;
    assert_eq!(by_hint.code, 0, "{}", by_hint.stderr);
    let d: Value = serde_json::from_str(&by_hint.stdout).unwrap();
    assert_eq!(d["appId"], EMPOWER, "{d}");
    assert_eq!(d["enrolledAs"], "empower", "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_and_policy_are_named() {
    let cli = Cli::start(scenario(&["Application.ReadWrite.OwnedBy"]), &demo_policy()).await;
    let missing = PathBuf::from(cli.dir.path()).join("nope.json");
    let out = cli
        .run(&["plan", "--policy", missing.to_str().unwrap()])
        .await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("nope.json"), "{}", out.stderr);
    // An invalid policy: every error once, the duplicate name among them.
    let bad = PathBuf::from(cli.dir.path()).join("bad.json");
    let mut policy: Value = serde_json::from_str(&demo_policy()).unwrap();
    let mut twin = policy["credentials"][0].clone();
    twin["lifetimeDays"] = json!(9999);
    policy["credentials"].as_array_mut().unwrap().push(twin);
    std::fs::write(&bad, policy.to_string()).unwrap();
    let out = cli.run(&["plan", "--policy", bad.to_str().unwrap()]).await;
    assert_ne!(out.code, 0);
    for needle in [
        "lifetimeDays: must be between",
        "'integration-app' is already used by",
    ] {
        assert_eq!(
            out.stderr.matches(needle).count(),
            1,
            "{needle}: {}",
            out.stderr
        );
    }
    let mut env = cli.env.clone();
    env.remove("AZURE_TENANT_ID");
    let cli2 = Cli { env, ..cli };
    let out = cli2.run(&["report"]).await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("AZURE_TENANT_ID"), "{}", out.stderr);
}

/// A certificate credential is enrolled like a secret: `plan` lists what it would do, and
/// `rotate --only` creates the certificate in Key Vault, puts its key on the application (the
/// key someone else put there kept) and tells the notify-only consumer — checked on the
/// emulator's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_entry_is_enrolled_and_renewed() {
    let mut s = scenario(&["Application.ReadWrite.OwnedBy"]);
    let scope = "/subscriptions/{sub}/resourceGroups/TDC_Erhverv_Telephony_Integration/providers/Microsoft.KeyVault/vaults/kv5sutozr67fiik";
    for role in ["Key Vault Certificates Officer", "Key Vault Crypto User"] {
        s["roleAssignments"]
            .as_array_mut()
            .unwrap()
            .push(json!({"principal": CI_APP, "role": role, "scope": scope}));
    }
    let cli = Cli::start(s, &demo_policy()).await;
    let mut policy: Value = serde_json::from_str(&demo_policy()).unwrap();
    let app = policy["credentials"][0]["application"].clone();
    policy["credentials"].as_array_mut().unwrap().push(json!({
        "type": "certificate",
        "name": "teams-cert",
        "application": app,
        "certificate": { "vault": "kv5sutozr67fiik", "name": "teams-cert" },
        "issuer": "Self",
        "keySize": 2048,
        "validityInMonths": 12,
        "renewBeforeDays": 30,
        "graceDays": 7,
        "consumers": [
            { "type": "notifyOnly", "system": "EzSign", "instructions": "Upload the new .cer" }
        ]
    }));
    let path = PathBuf::from(cli.dir.path()).join("cert.json");
    std::fs::write(&path, policy.to_string()).unwrap();
    let p = path.to_str().unwrap();
    let out = cli.run(&["plan", "--policy", p, "--at", &cli.at()]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("teams-cert"), "{}", out.stdout);
    assert!(out.stdout.contains("request-certificate"), "{}", out.stdout);
    let app_id = uuid(INTEGRATION);
    let control = cli.emu.emulator.control();
    assert!(control.key_credentials(app_id).is_empty());
    // The first run asks Key Vault; once it has issued (seconds on the emulated clock), the
    // next puts the key on the application and proves it.
    let out = cli
        .run(&[
            "rotate",
            "--only",
            "teams-cert",
            "--policy",
            p,
            "--at",
            &cli.at(),
        ])
        .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    control.advance(chrono::Duration::seconds(
        azure_emulator::certificates::SELF_ISSUE_SECONDS,
    ));
    let out = cli
        .run(&[
            "rotate",
            "--only",
            "teams-cert",
            "--policy",
            p,
            "--json",
            "--at",
            &cli.at(),
        ])
        .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for step in ["add-key", "prove-key", "notify", "complete-propagation"] {
        assert!(out.stdout.contains(step), "{step} in {}", out.stdout);
    }
    for bad in ["BEGIN", "PRIVATE", "MII"] {
        assert!(
            !out.stdout.contains(bad) && !out.stderr.contains(bad),
            "{bad}"
        );
    }
    assert_eq!(control.key_credentials(app_id).len(), 1);
}

/// A tenant of many applications: every credential is reported, page by page, and the binary's
/// peak memory does not grow with the tenant (measured with /usr/bin/time when present).
/// `CLI_SCALE_APPS` raises the size for a manual measurement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_streams_a_large_tenant() {
    async fn run_with(apps: usize) -> (usize, Option<u64>, std::time::Duration) {
        let mut s = scenario(&["Application.Read.All"]);
        let list = s["applications"].as_array_mut().unwrap();
        for i in 0..apps {
            list.push(json!({
                "displayName": format!("bulk app {i:05}"),
                "owners": [],
                "passwordCredentials": [
                    { "displayName": "a", "secretText": format!("bulkQ~{i:05}.value.one.0123456789"), "endDateTime": "2027-01-01T00:00:00Z" },
                    { "displayName": "b", "secretText": format!("bulkQ~{i:05}.value.two.0123456789"), "endDateTime": "2026-01-01T00:00:00Z" }
                ]
            }));
        }
        let cli = Cli::start(s, &demo_policy()).await;
        let at = cli.at();
        let started = std::time::Instant::now();
        let timed = std::path::Path::new("/usr/bin/time").exists();
        let bin = env!("CARGO_BIN_EXE_secret-rotator");
        let args = [
            "report",
            "--format",
            "csv",
            "--page-size",
            "999",
            "--at",
            &at,
        ];
        let mut cmd = if timed {
            let mut c = tokio::process::Command::new("/usr/bin/time");
            c.args(["-f", "maxrss_kb=%M", bin]).args(args);
            c
        } else {
            let mut c = tokio::process::Command::new(bin);
            c.args(args);
            c
        };
        let out = cmd
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&cli.env)
            .output()
            .await
            .unwrap();
        let elapsed = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(!stdout.contains("bulkQ~"), "no secret value printed");
        let rows = stdout.lines().count() - 1;
        let rss = stderr
            .lines()
            .find_map(|l| l.strip_prefix("maxrss_kb="))
            .and_then(|v| v.trim().parse().ok());
        (rows, rss, elapsed)
    }
    let big: usize = std::env::var("CLI_SCALE_APPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let (rows_small, rss_small, t_small) = run_with(100).await;
    // The demo's 6 applications hold 8 credentials, Payroll's service principal 1.
    assert_eq!(rows_small, 9 + 2 * 100);
    let (rows_big, rss_big, t_big) = run_with(big).await;
    assert_eq!(rows_big, 9 + 2 * big);
    eprintln!(
        "report: {rows_small} rows in {t_small:?} (max RSS {rss_small:?} kB); {rows_big} rows in {t_big:?} (max RSS {rss_big:?} kB)"
    );
    if let (Some(small), Some(big_rss)) = (rss_small, rss_big) {
        // One page (999 applications) is held at most: far less than the whole tenant's growth.
        assert!(
            big_rss < small + 64 * 1024,
            "peak memory grew from {small} kB to {big_rss} kB"
        );
    }
}

/// The Graph client's service-principal list against the emulator: a directory-wide read role
/// is needed, every application's SP and every managed identity come back, each with the
/// certificates it holds itself.
#[tokio::test]
async fn graph_lists_service_principals_with_their_certificates() {
    use secret_rotator::azure::graph::{GraphClient, WriteLimiter};
    for (roles, allowed) in [
        (vec!["Application.ReadWrite.OwnedBy"], false),
        (vec!["Application.Read.All"], true),
    ] {
        let emu = TestEmulator::start(scenario(&roles)).await;
        let graph = GraphClient::new(
            secret_rotator::cloud::Cloud::Public,
            emu.app_credential(CI_APP, CI_SECRET),
            emu.options(),
            std::sync::Arc::new(WriteLimiter::default()),
        );
        let mut pager = graph.list_service_principals(3);
        let mut all = Vec::new();
        loop {
            match pager.next_listing().await {
                Ok(Some(page)) => {
                    assert!(page.len() <= 3);
                    all.extend(page);
                }
                Ok(None) => break,
                Err(e) if e.is_access_denied() && e.status() == Some(403) && !allowed => break,
                Err(e) => panic!("{roles:?}: {e}"),
            }
        }
        if !allowed {
            assert!(all.is_empty());
            continue;
        }
        // 6 applications' service principals and 3 managed identities.
        assert_eq!(all.len(), 9);
        let payroll = all.iter().find(|l| l.app.app_id == uuid(PAYROLL)).unwrap();
        assert_eq!(payroll.certificates.len(), 1);
        assert_eq!(payroll.certificates[0].key_id, uuid(PAYROLL_SAML));
        assert!(payroll.app.passwords.is_empty());
        let app_certs = graph
            .list_applications(Some(&format!("appId eq '{PAYROLL}'")), 10)
            .next_listing()
            .await
            .unwrap()
            .unwrap();
        assert_eq!(app_certs[0].certificates[0].key_id, uuid(PAYROLL_CERT));
    }
}
