//! Secret hygiene (issue 7 part 3): a full run of the real binary over the demo tenant, and a
//! check that no secret value, nor any 8-character piece of one, appears in anything the run
//! produced — the handler's answers and invocation logs, its stdout/stderr, the emulator's
//! request log and its own log lines, and the audit and run blobs in Azurite.
//!
//! The run: the demo scenario (`src/dev/demo-scenario.json`) and policy
//! (`src/dev/demo-policy.json`), the binary started by the host harness with the managed identity
//! of the emulator (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER` of `secret-rotator`), every Azure
//! host and Azurite's pinned by `ROTATOR_RESOLVE`, the emulator's CA by `ROTATOR_CA_FILE`. It
//! invokes SelfTest Test/Status/Plan, the RotateSecrets timer at the emulator's now, Rotate for
//! every credential, then advances the emulator's clock past the grace period and does it all
//! again, so secrets are created, propagated, verified and removed.
//!
//! The secret set is gathered after every step (removed passwords leave the oracle): every
//! password's `secretText` of every application, and every Key Vault secret version's value
//! except those that are GUIDs (the demo vault also stores the application and tenant ids next
//! to the secret; identifiers are logged on purpose).
//!
//! `checker_finds_a_planted_piece` shows the checker can fail.

use crate::support::azurite;
use crate::support::emulator;
use crate::support::host;

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use host::{FunctionsHost, HttpCall};
use serde_json::{Value, json};

const PIECE: usize = 8;

/// Where secrets (or pieces of them) were found: `(secret index, piece, haystack name)`. Each
/// secret is named by its index only, so the failure message leaks nothing either.
fn leaks(secrets: &BTreeSet<String>, haystacks: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (i, s) in secrets.iter().enumerate() {
        let chars: Vec<char> = s.chars().collect();
        let pieces: BTreeSet<String> = if chars.len() <= PIECE {
            [s.clone()].into()
        } else {
            chars.windows(PIECE).map(|w| w.iter().collect()).collect()
        };
        for (name, hay) in haystacks {
            if let Some(at) = pieces.iter().find_map(|p| hay.find(p.as_str())) {
                found.push(format!(
                    "secret #{i} ({} chars): a {PIECE}-character piece of it in {name} at byte {at}",
                    chars.len()
                ));
            }
        }
    }
    found
}

#[test]
fn checker_finds_a_planted_piece() {
    let secrets: BTreeSet<String> = ["Hcj8Q~.QZRI29VPnoAaMuV33naFd1W4yueZLpa4k".to_string()].into();
    let clean = vec![(
        "log".to_string(),
        "rotated; hint Hcj, keyId 0a4d1c9e".to_string(),
    )];
    assert!(leaks(&secrets, &clean).is_empty());
    // An 8-character piece from the middle, planted in an otherwise harmless line.
    let planted = vec![
        ("clean".to_string(), "nothing here".to_string()),
        ("stdout".to_string(), "{\"msg\":\"x=naFd1W4y\"}".to_string()),
    ];
    let l = leaks(&secrets, &planted);
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].contains("in stdout"), "{l:?}");
    assert!(
        !l[0].contains("naFd1W4y"),
        "the report itself leaks nothing: {l:?}"
    );
    // Seven characters is below the threshold.
    let seven = vec![("stdout".to_string(), "x=naFd1W4".to_string())];
    assert!(leaks(&secrets, &seven).is_empty());
}

/// Every secret the emulator holds right now (see the module doc).
fn secrets_now(c: &azure_emulator::Control, into: &mut BTreeSet<String>) {
    let state = c.state();
    for app in state["applications"].as_array().into_iter().flatten() {
        let id = app["appId"]
            .as_str()
            .and_then(|s| uuid::Uuid::parse_str(s).ok());
        if let Some(id) = id {
            for p in c.passwords(id) {
                into.insert(p.secret_text);
            }
        }
    }
    for v in state["vaults"].as_array().into_iter().flatten() {
        for s in v["secrets"].as_array().into_iter().flatten() {
            for ver in s["versions"].as_array().into_iter().flatten() {
                if let Some(val) = ver["value"].as_str()
                    && uuid::Uuid::parse_str(val).is_err()
                    && !val.is_empty()
                {
                    into.insert(val.to_string());
                }
            }
        }
    }
}

/// The emulator's own log lines (it logs through `tracing`), captured in this test process.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_output_of_a_full_run_of_the_demo_tenant() {
    let emu_log = Captured::default();
    let writer = emu_log.clone();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .try_init();

    let mut scenario: Value =
        serde_json::from_str(include_str!("../../src/dev/demo-scenario.json")).unwrap();
    // An application for this test to read the audit blobs back with (Azurite's basic OAuth
    // accepts any token the emulator issued); its secret is in the secret set like any other.
    scenario["applications"].as_array_mut().unwrap().push(json!({
        "displayName": "hygiene-reader",
        "passwordCredentials": [{"displayName": "t", "secretText": "hyG8Q~reader.secret.0123456789abcdefghij", "endDateTime": "2099-01-01T00:00:00Z"}]
    }));
    let emu = emulator::TestEmulator::start(scenario).await;
    let c = emu.emulator.control();
    let account = format!("st{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let azurite = azurite::Azurite::start(&emu.emulator, &account);
    let mut secrets = BTreeSet::new();
    secrets_now(&c, &mut secrets);

    let mut h = FunctionsHost::builder()
        .emulated(&emu.emulator, azurite.host_override(), &account)
        .setting("ROTATOR_ROTATE_WAIT_SECONDS", "60")
        .setting("ROTATOR_LOG", "debug")
        .setting("ROTATION_SCHEDULE", "0 0 3 * * *")
        .file(
            "policy.json",
            include_str!("../../src/dev/demo-policy.json"),
        )
        .start()
        .await
        .unwrap_or_else(|e| panic!("the handler did not start: {e:?}"));

    let credentials: Vec<String> = serde_json::from_str::<Value>(include_str!(
        "../../src/dev/demo-policy.json"
    ))
    .unwrap()["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();

    let mut answers: Vec<(String, String)> = Vec::new();
    let mut rotated = 0;
    for round in 0..2 {
        for command in ["Test", "Status", "Plan"] {
            let r = h
                .client
                .http(
                    HttpCall::post_json(
                        if command == "Test" {
                            "SelfTest"
                        } else {
                            "Operate"
                        },
                        &json!({ "function": command }),
                    ),
                    c.now(),
                )
                .await;
            assert_eq!(r.status, 200, "SelfTest {command}: {}", r.body);
            answers.push((
                format!("round {round} SelfTest {command}"),
                r.invocation.json.to_string(),
            ));
            secrets_now(&c, &mut secrets);
        }
        let t = h.client.timer("RotateSecrets", c.now(), false).await;
        answers.push((format!("round {round} RotateSecrets"), t.json.to_string()));
        secrets_now(&c, &mut secrets);
        for name in &credentials {
            let r = h
                .client
                .http(
                    HttpCall::post_json(&format!("rotate/{name}"), &json!({ "force": round == 1 })),
                    c.now(),
                )
                .await;
            assert!(
                (200..300).contains(&r.status),
                "Rotate {name}: {} {}",
                r.status,
                r.body
            );
            answers.push((
                format!("round {round} Rotate {name}"),
                r.invocation.json.to_string(),
            ));
            secrets_now(&c, &mut secrets);
        }
        // Past every grace period (7 days in the demo policy).
        c.advance(chrono::Duration::days(8));
        let t = h.client.timer("RotateSecrets", c.now(), false).await;
        answers.push((
            format!("round {round} RotateSecrets after grace"),
            t.json.to_string(),
        ));
        secrets_now(&c, &mut secrets);
        rotated = secrets.len();
    }
    assert!(h.is_running());

    // The run did what it is for: new secrets were made (so the check covers them too).
    let initial_passwords = 10;
    assert!(
        rotated > initial_passwords,
        "the run created new secrets (secret set has {rotated})"
    );

    // Audit records and run records in Azurite, read back through the rotator's own client.
    let options = secret_rotator::azure::ServiceOptions::new(
        emu.transport_config(&[azurite.host_override()])
            .build()
            .expect("transport"),
    )
    .with_retry(emulator::fast_retry());
    let reader = emu.app_credential_with(
        "hygiene-reader",
        "hyG8Q~reader.secret.0123456789abcdefghij",
        &options,
    );
    let storage = secret_rotator::azure::storage::StorageClient::new(
        secret_rotator::cloud::Cloud::Public,
        &url::Url::parse(&format!("https://{account}.blob.core.windows.net")).unwrap(),
        "secret-rotator",
        reader,
        options,
    )
    .expect("storage client");
    let names = storage.list("").await.expect("list blobs");
    assert!(
        names.iter().any(|n| n.starts_with("audit/")),
        "audit records were written: {names:?}"
    );
    let mut blobs = Vec::new();
    for n in &names {
        if let Some(bytes) = storage.get_json(n).await.expect("read blob") {
            blobs.push((
                format!("blob {n}"),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }

    let exit = h.terminate().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut haystacks = answers;
    haystacks.push(("handler stdout".into(), exit.stdout.clone()));
    haystacks.push(("handler stderr".into(), exit.stderr.clone()));
    haystacks.push((
        "emulator request log".into(),
        serde_json::to_string(&c.requests()).unwrap(),
    ));
    haystacks.push((
        "emulator log".into(),
        String::from_utf8_lossy(&emu_log.0.lock().unwrap()).into_owned(),
    ));
    haystacks.extend(blobs);
    assert!(
        exit.stdout.lines().count() > 20,
        "the handler logged the run (debug): {} lines",
        exit.stdout.lines().count()
    );

    let found = leaks(&secrets, &haystacks);
    assert!(
        found.is_empty(),
        "{} secret(s) leaked:\n{}",
        found.len(),
        found.join("\n")
    );
    eprintln!(
        "checked {} secrets against {} outputs ({} bytes)",
        secrets.len(),
        haystacks.len(),
        haystacks.iter().map(|(_, h)| h.len()).sum::<usize>()
    );
    drop(azurite);
}
