//! The real binary under the harness that plays the Functions host: settings checked at start
//! (a missing or bad one stops the process, named on stderr), readiness within milliseconds,
//! malformed invocations answered 4xx while the process stays up, SIGTERM stops it cleanly.

use crate::support::host;

use chrono::{TimeZone, Utc};
use host::{HostBuilder, HttpCall};
use serde_json::json;

async fn expect_exit(b: HostBuilder) -> host::HostExit {
    match b.start().await {
        Ok(mut h) => panic!(
            "the handler became ready but should have stopped (running: {})",
            h.is_running()
        ),
        Err(e) => e,
    }
}

#[tokio::test]
async fn a_missing_required_setting_stops_the_process_naming_it() {
    for name in [
        "AZURE_TENANT_ID",
        "ROTATOR_POLICY_PATH",
        "AzureWebJobsStorage__accountName",
    ] {
        let exit = expect_exit(HostBuilder::new().without(name)).await;
        assert!(!exit.timed_out);
        assert_ne!(exit.code, Some(0), "{name}");
        assert!(
            exit.stderr.contains(name) && exit.stderr.contains("missing"),
            "stderr should name {name}: {}",
            exit.stderr
        );
    }
    let exit = expect_exit(HostBuilder::new().without_port()).await;
    assert!(
        exit.stderr.contains("FUNCTIONS_CUSTOMHANDLER_PORT"),
        "{}",
        exit.stderr
    );
}

#[tokio::test]
async fn a_bad_setting_stops_the_process_naming_it() {
    for (name, value) in [
        ("ROTATOR_PASS_BUDGET_SECONDS", "900"),
        ("AZURE_CLOUD", "mars"),
        ("ROTATOR_RESOLVE", "graph.microsoft.com"),
        ("ROTATOR_LOG", "info,[[["),
    ] {
        let exit = expect_exit(HostBuilder::new().setting(name, value)).await;
        assert_ne!(exit.code, Some(0));
        assert!(
            exit.stderr.contains(name),
            "stderr should name {name}: {}",
            exit.stderr
        );
    }
}

#[tokio::test]
async fn ready_fast_and_malformed_invocations_do_not_take_it_down() {
    let mut h = HostBuilder::new().start().await.unwrap_or_else(|e| {
        panic!("handler did not become ready: {e:?}");
    });
    println!(
        "custom handler ready after {} ms (spawn to first answer on GET /)",
        h.ready_after.as_millis()
    );
    assert!(
        h.ready_after.as_secs() < 10,
        "the host gives up after 30 s; took {:?}",
        h.ready_after
    );
    let c = h.client.clone();
    let root = c.get("/").await;
    assert_eq!(root.status, 200);

    let json_ct = Some("application/json; charset=utf-8");
    for (a, status) in [
        (
            c.post_raw("/NoSuchFunction", json_ct, b"{}".to_vec()).await,
            404,
        ),
        (c.post_raw("/SelfTest", json_ct, b"{{{".to_vec()).await, 400),
        (
            c.post_raw("/SelfTest", Some("text/plain"), b"{}".to_vec())
                .await,
            415,
        ),
        (
            c.post_raw("/Rotate", json_ct, vec![b'x'; 1024 * 1024 + 1])
                .await,
            413,
        ),
        (c.get("/Rotate").await, 405),
    ] {
        assert_eq!(a.status, status, "{}", a.text);
        let msg = a.json.expect("error bodies are JSON")["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(!msg.is_empty(), "every 4xx says what was wrong");
        assert!(h.is_running(), "the process stays up after a {status}");
    }

    // A well-formed probe still gets the seed's shape, whatever state the engine is in.
    let now = Utc.with_ymd_and_hms(2025, 1, 15, 2, 0, 0).unwrap();
    let r = c
        .http(
            HttpCall::post_json("SelfTest", &json!({"function": "Test"})),
            now,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["appVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(r.body["command"], "Test");
    assert!(r.body["success"].is_boolean());
    assert!(r.body["resultCode"].is_string());
    let r = c
        .http(
            HttpCall::post_json("SelfTest", &json!({"function": "Nope"})),
            now,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["resultCode"], "30");
    assert!(h.is_running());

    // Logs are JSON lines on stdout; the invocation span names the function.
    let stdout = h.stdout_lines();
    assert!(!stdout.is_empty());
    for line in &stdout {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
    }
    assert!(
        stdout
            .iter()
            .any(|l| l.contains("\"function\":\"SelfTest\"")),
        "{stdout:#?}"
    );

    let exit = h.terminate().await;
    assert_eq!(
        exit.code,
        Some(0),
        "SIGTERM is a clean stop: {}",
        exit.stderr
    );
    assert!(
        exit.stdout.contains("shutdown requested"),
        "{}",
        exit.stdout
    );
}

#[tokio::test]
async fn the_identity_header_never_reaches_the_logs() {
    let secret = "platform-identity-header-5b1c2a";
    let h = HostBuilder::new()
        .setting("IDENTITY_HEADER", secret)
        .setting("IDENTITY_ENDPOINT", "http://127.0.0.1:9/msi/token")
        .setting("ROTATOR_LOG", "trace")
        .start()
        .await
        .expect("ready");
    let now = Utc::now();
    let _ = h
        .client
        .http(
            HttpCall::post_json("SelfTest", &json!({"function": "Test"})),
            now,
        )
        .await;
    let exit = h.terminate().await;
    assert!(!exit.stdout.contains(secret));
    assert!(!exit.stderr.contains(secret));
}
