//! The `azure-emulator` binary: ready line on stdout, CA file, control API reachable.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_prints_ready_line_and_serves() {
    let dir = std::env::temp_dir().join(format!("emu-bin-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("scenario.json");
    std::fs::write(&scenario, r#"{"tenantId":"72f988bf-86f1-41af-91ab-2d7cd011db47","managedIdentities":[{"name":"rot"}]}"#).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_azure-emulator"))
        .args([
            "--scenario",
            scenario.to_str().unwrap(),
            "--state-dir",
            dir.to_str().unwrap(),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Kill(child);
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).expect("ready line is JSON");
    assert_eq!(v["ready"], true);
    assert_eq!(v["tenantId"], "72f988bf-86f1-41af-91ab-2d7cd011db47");
    assert_eq!(v["hosts"].as_array().unwrap().len(), 4);
    assert!(v["identityHeaders"]["rot"].is_string());
    let ca = std::fs::read(v["caPath"].as_str().unwrap()).unwrap();
    assert!(
        v["caPath"]
            .as_str()
            .unwrap()
            .starts_with(dir.to_str().unwrap())
    );
    let https: std::net::SocketAddr = v["https"].as_str().unwrap().parse().unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .no_proxy()
        .resolve("login.microsoftonline.com", https)
        .build()
        .unwrap();
    let r = client
        .get("https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0/.well-known/openid-configuration")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/clock", v["controlUrl"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn binary_rejects_a_bad_scenario_with_a_message() {
    let dir = std::env::temp_dir().join(format!("emu-bin-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("bad.json");
    std::fs::write(
        &scenario,
        r#"{"sites":[{"resourceGroup":"rg","name":"s","identity":"ghost"}]}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_azure-emulator"))
        .args(["--scenario", scenario.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ghost"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
