//! The control API over HTTP: faults, scenario load, state, request log.

use crate::support::*;
use serde_json::{Value, json};

#[tokio::test]
async fn faults_by_rule_through_the_control_api() {
    let h = start().await;
    let c = h.emu.control();
    let tok = h.mi_token("rotator", "https://graph.microsoft.com").await;
    let add = format!("https://graph.microsoft.com/v1.0/applications/{PAY_OBJ}/addPassword");
    // 503 on the 1st addPassword only.
    let (s, v) = json(h.control_post("faults", json!({"service": "graph", "operation": "addPassword", "nth": 1, "action": {"kind": "status", "status": 503, "retryAfter": 7}})).await).await;
    assert_eq!(s, 200);
    let id = v["id"].as_u64().unwrap();
    let r =
        h.c.post(&add)
            .bearer_auth(&tok)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "7");
    assert_eq!(
        c.passwords(PAY_APP.parse().unwrap()).len(),
        1,
        "a status fault does not perform the change"
    );
    let r =
        h.c.post(&add)
            .bearer_auth(&tok)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let (_, list) = json(
        h.p.get(format!("{}/faults", h.emu.control_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["hits"], 1);
    assert_eq!(list[0]["matched"], 2);
    let r =
        h.p.delete(format!("{}/faults", h.emu.control_url()))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 204);
    // commitThenFail: the secret is written, the caller sees 500.
    let kv = h.mi_token("rotator", "https://vault.azure.net").await;
    h.control_post("faults", json!({"service": "keyvault", "operation": "setSecret", "action": {"kind": "commitThenFail", "status": 500}})).await;
    let r =
        h.c.put("https://kv1.vault.azure.net/secrets/payments-secret?api-version=2025-07-01")
            .bearer_auth(&kv)
            .json(&json!({"value": "committed"}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        c.secret_latest("kv1", "payments-secret").unwrap().1,
        "committed"
    );
    c.clear_faults();
    // reset: the connection drops without an answer.
    h.control_post(
        "faults",
        json!({"service": "arm", "operation": "listAppSettings", "action": {"kind": "reset"}}),
    )
    .await;
    let arm = h.mi_token("rotator", "https://management.azure.com/").await;
    let site = h.arm("Microsoft.Web/sites/app1");
    let e =
        h.c.post(format!(
            "{site}/config/appsettings/list?api-version=2024-11-01"
        ))
        .bearer_auth(&arm)
        .header("content-length", "0")
        .send()
        .await;
    assert!(e.is_err(), "expected a dropped connection, got {e:?}");
    c.clear_faults();
    // delay then answer normally; 429 on the token endpoint in Entra's shape.
    h.control_post(
        "faults",
        json!({"service": "arm", "action": {"kind": "delay", "ms": 50}}),
    )
    .await;
    let t0 = std::time::Instant::now();
    let r =
        h.c.post(format!(
            "{site}/config/appsettings/list?api-version=2024-11-01"
        ))
        .bearer_auth(&arm)
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(t0.elapsed() >= std::time::Duration::from_millis(50));
    c.clear_faults();
    h.control_post("faults", json!({"service": "entra", "operation": "token", "action": {"kind": "status", "status": 429}})).await;
    let (s, v) = json(
        h.sp_token(
            PAY_APP,
            "pay-secret-1",
            "https://graph.microsoft.com/.default",
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (429, "too_many_requests")
    );
    c.clear_faults();
    // Probability with a seed is reproducible: same rule, same pattern.
    let a = msi_pattern(&h, 42).await;
    let b = msi_pattern(&h, 42).await;
    assert_eq!(a, b);
    assert!(a.contains(&500) && a.contains(&200));
    c.clear_faults();
    // Bad rules are 400 with a message.
    for bad in [
        json!({"service": "nope", "action": {"kind": "reset"}}),
        json!({"service": "graph", "operation": "addPasswords", "action": {"kind": "reset"}}),
        json!({"service": "graph", "action": {"kind": "status", "status": 200}}),
        json!({"service": "graph", "action": {"kind": "explode"}}),
    ] {
        let (s, v) = json(h.control_post("faults", bad.clone()).await).await;
        assert_eq!(s, 400, "{bad}");
        assert!(v["error"].is_string());
    }
}

#[tokio::test]
async fn scenario_and_state_through_the_control_api() {
    let h = start().await;
    let (_, st) = json(
        h.p.get(format!("{}/state", h.emu.control_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st["tenantId"], TENANT);
    assert_eq!(st["applications"].as_array().unwrap().len(), 3);
    let new = json!({
        "tenantId": TENANT, "now": "2030-05-05T00:00:00Z",
        "managedIdentities": [{"name": "solo"}],
        "applications": [{"displayName": "only", "appId": PAY_APP, "owners": ["solo"],
            "passwordCredentials": [{"secretText": "s3", "endDateTime": "2031-01-01T00:00:00Z"}]}]
    });
    let (s, v) = json(h.control_post("scenario", new).await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["identityHeaders"]["solo"].as_str(),
        h.emu.identity_header("solo").as_deref()
    );
    let (_, clock) = json(
        h.p.get(format!("{}/clock", h.emu.control_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        clock["now"]
            .as_str()
            .unwrap()
            .starts_with("2030-05-05T00:0")
    );
    let c = h.emu.control();
    assert_eq!(c.app_id_by_name("only"), Some(PAY_APP.parse().unwrap()));
    assert_eq!(c.app_id_by_name("payments-api"), None);
    let (s, _) = json(
        h.sp_token(PAY_APP, "s3", "https://graph.microsoft.com/.default")
            .await,
    )
    .await;
    assert_eq!(s, 200);
    // Bad scenarios: unknown field, dangling owner, bad role. State unchanged.
    for (bad, needle) in [
        (json!({"applicationz": []}), "applicationz"),
        (
            json!({"applications": [{"displayName": "a", "owners": ["ghost"]}]}),
            "ghost",
        ),
        (
            json!({"managedIdentities": [{"name": "m"}], "roleAssignments": [{"principal": "m", "role": "Superhero", "scope": "/subscriptions/{sub}"}]}),
            "Superhero",
        ),
        (
            json!({"vaults": [{"name": "kv1", "secrets": [{"name": "bad_name", "versions": []}]}]}),
            "bad_name",
        ),
    ] {
        let (s, v) = json(h.control_post("scenario", bad).await).await;
        assert_eq!(s, 400);
        assert!(v["error"].as_str().unwrap().contains(needle), "{v}");
    }
    assert_eq!(c.app_id_by_name("only"), Some(PAY_APP.parse().unwrap()));
    let (s, _) = json(
        h.p.post(format!("{}/scenario", h.emu.control_url()))
            .body("not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = json(
        h.p.get(format!("{}/nothing", h.emu.control_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn request_log_never_holds_a_secret() {
    let h = start().await;
    let tok = h.mi_token("rotator", "https://graph.microsoft.com").await;
    let (_, pw) = json(
        h.c.post(format!(
            "https://graph.microsoft.com/v1.0/applications/{PAY_OBJ}/addPassword"
        ))
        .bearer_auth(&tok)
        .json(&json!({}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    let secret = pw["secretText"].as_str().unwrap().to_string();
    h.sp_token(PAY_APP, &secret, "https://graph.microsoft.com/.default")
        .await;
    h.sp_token(
        PAY_APP,
        "pay-secret-1",
        "https://graph.microsoft.com/.default",
    )
    .await;
    let kv = h.mi_token("rotator", "https://vault.azure.net").await;
    h.c.put("https://kv1.vault.azure.net/secrets/payments-secret?api-version=2025-07-01")
        .bearer_auth(&kv)
        .json(&json!({"value": secret}))
        .send()
        .await
        .unwrap();
    let (s, log) = json(
        h.p.get(format!("{}/requests", h.emu.control_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let text = log.to_string();
    assert!(!text.contains(&secret));
    assert!(!text.contains("pay-secret-1"));
    assert!(!text.contains(&tok), "no token in the log");
    let ops: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["operation"].as_str())
        .collect();
    assert!(ops.contains(&"addPassword") && ops.contains(&"setSecret") && ops.contains(&"token"));
    let add: &Value = log
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["operation"] == "addPassword")
        .unwrap();
    assert_eq!(add["status"], 200);
    assert_eq!(add["service"], "graph");
    assert!(add["caller"].is_string());
    assert_eq!(
        h.emu.control().requests().len(),
        log.as_array().unwrap().len()
    );
}

async fn msi_pattern(h: &H, seed: u64) -> Vec<u16> {
    h.emu.control().clear_faults();
    h.control_post("faults", json!({"service": "msi", "probability": 0.5, "seed": seed, "action": {"kind": "status", "status": 500}})).await;
    let mut out = vec![];
    for _ in 0..12 {
        let r =
            h.p.get(h.emu.msi_endpoint())
                .query(&[
                    ("api-version", "2019-08-01"),
                    ("resource", "https://vault.azure.net"),
                ])
                .header(
                    "X-IDENTITY-HEADER",
                    h.emu.identity_header("rotator").unwrap(),
                )
                .send()
                .await
                .unwrap();
        out.push(r.status().as_u16());
    }
    out
}

/// The request log's record of the last request.
fn last_request(h: &H) -> azure_emulator::faults::RequestRecord {
    h.emu
        .control()
        .requests()
        .pop()
        .expect("a request was logged")
}

/// Issue 20: a write whose connection a fault reset is logged with its sender, like any other.
#[tokio::test]
async fn a_reset_request_is_logged_with_its_sender() {
    let h = start().await;
    let kv = h.mi_token("rotator", "https://vault.azure.net").await;
    let mi = last_request(&h)
        .caller
        .expect("the MSI request names the identity");
    let state = h.emu.control().state();
    let rotator = state["managedIdentities"]
        .as_array()
        .and_then(|m| m.iter().find(|x| x["name"] == "rotator"))
        .map(|m| m["clientId"].as_str().unwrap_or_default().to_string());
    assert_eq!(Some(mi.clone()), rotator);
    h.control_post(
        "faults",
        json!({"service": "keyvault", "operation": "updateSecret", "action": {"kind": "reset"}}),
    )
    .await;
    let e =
        h.c.patch("https://kv1.vault.azure.net/secrets/payments-secret/?api-version=2025-07-01")
            .bearer_auth(&kv)
            .json(&json!({"tags": {"a": "b"}}))
            .send()
            .await;
    assert!(e.is_err(), "expected a dropped connection, got {e:?}");
    let r = last_request(&h);
    assert_eq!(
        (r.status, r.operation.as_deref()),
        (0, Some("updateSecret"))
    );
    assert!(r.fault.is_some());
    assert_eq!(r.caller, Some(mi));
    assert_eq!(r.caller_absent, None);
}

/// A status fault and a bad secret leave the caller in the log; without credentials, or with
/// credentials that name nobody, the log says which.
#[tokio::test]
async fn the_log_says_why_a_caller_is_absent() {
    use azure_emulator::caller::CallerAbsence;
    let h = start().await;
    h.control_post("faults", json!({"service": "entra", "operation": "token", "nth": 1, "action": {"kind": "status", "status": 503}})).await;
    assert_eq!(
        h.sp_token(
            PAY_APP,
            "pay-secret-1",
            "https://graph.microsoft.com/.default"
        )
        .await
        .status(),
        503
    );
    assert_eq!(last_request(&h).caller.as_deref(), Some(PAY_APP));
    assert_eq!(
        h.sp_token(PAY_APP, "wrong", "https://graph.microsoft.com/.default")
            .await
            .status(),
        401
    );
    assert_eq!(last_request(&h).caller.as_deref(), Some(PAY_APP));
    let url = "https://kv1.vault.azure.net/secrets/payments-secret?api-version=2025-07-01";
    assert_eq!(h.c.get(url).send().await.unwrap().status(), 401);
    let r = last_request(&h);
    assert_eq!(
        (r.caller, r.caller_absent),
        (None, Some(CallerAbsence::NoCredentials))
    );
    let forged = h.c.get(url).bearer_auth("a.b.c").send().await.unwrap();
    assert_eq!(forged.status(), 401);
    let r = last_request(&h);
    assert_eq!(
        (r.caller, r.caller_absent),
        (None, Some(CallerAbsence::CredentialsRefused))
    );
    assert_eq!(
        h.sp_token("not-a-guid", "x", "https://graph.microsoft.com/.default")
            .await
            .status(),
        400
    );
    assert_eq!(
        last_request(&h).caller_absent,
        Some(CallerAbsence::CredentialsRefused)
    );
}
