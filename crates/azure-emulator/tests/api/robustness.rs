//! Malformed, unknown and hostile requests get Azure's error shapes, never a 500 or a hang.

use crate::support::*;
use serde_json::Value;

#[tokio::test]
async fn garbage_never_yields_a_server_error() {
    let h = start().await;
    let graph = h.mi_token("rotator", "https://graph.microsoft.com").await;
    let kv = h.mi_token("rotator", "https://vault.azure.net").await;
    let arm = h.mi_token("rotator", "https://management.azure.com/").await;
    let site = h.arm("Microsoft.Web/sites/app1");
    let conn = h.arm("Microsoft.Web/connections/kv-conn");
    let var = h.arm("Microsoft.Automation/automationAccounts/aa1/variables/Plain");
    let urls: Vec<(String, &str)> = vec![
        (format!("https://graph.microsoft.com/v1.0/applications/{PAY_OBJ}/addPassword"), graph.as_str()),
        (format!("https://graph.microsoft.com/v1.0/applications/{PAY_OBJ}/removePassword"), graph.as_str()),
        (format!("https://graph.microsoft.com/v1.0/applications/{PAY_OBJ}/owners/$ref"), graph.as_str()),
        ("https://graph.microsoft.com/v1.0/applications(appId='x')/addPassword".into(), graph.as_str()),
        ("https://graph.microsoft.com/v1.0/applications(displayName='x')".into(), graph.as_str()),
        ("https://graph.microsoft.com/v1.0/applications?$filter=startswith(displayName,".into(), graph.as_str()),
        ("https://graph.microsoft.com/v1.0/applications?$skiptoken=%%%".into(), graph.as_str()),
        ("https://graph.microsoft.com/".into(), graph.as_str()),
        ("https://kv1.vault.azure.net/secrets/payments-secret?api-version=2025-07-01".into(), kv.as_str()),
        ("https://kv1.vault.azure.net/secrets/payments-secret/0123456789abcdef0123456789abcdef?api-version=2025-07-01".into(), kv.as_str()),
        ("https://kv1.vault.azure.net/secrets?api-version=2025-07-01&maxresults=abc&$skiptoken=zz".into(), kv.as_str()),
        ("https://kv1.vault.azure.net/deletedsecrets/%FF%FE/recover?api-version=2025-07-01".into(), kv.as_str()),
        ("https://kv1.vault.azure.net/".into(), kv.as_str()),
        (format!("{site}/config/appsettings?api-version=2024-11-01"), arm.as_str()),
        (format!("{site}/config/appsettings/list?api-version=2024-11-01"), arm.as_str()),
        (format!("{site}/config/configreferences/appsettings/refresh?api-version=2024-11-01"), arm.as_str()),
        (format!("{conn}?api-version=2016-06-01"), arm.as_str()),
        (format!("{var}?api-version=2024-10-23"), arm.as_str()),
        ("https://management.azure.com/subscriptions/x/resourceGroups?api-version=1".into(), arm.as_str()),
        (format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"), "not.a.jwt"),
        ("https://login.microsoftonline.com/".into(), ""),
    ];
    let bodies: [&[u8]; 7] = [
        b"",
        b"{",
        b"null",
        b"[]",
        b"\"text\"",
        br#"{"value": 5, "properties": 3, "passwordCredential": 1, "keyId": {}, "@odata.id": 7, "name": 1, "tags": [1], "attributes": 2}"#,
        b"\xff\xfe\x00garbage",
    ];
    let methods = [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::POST,
        reqwest::Method::PATCH,
        reqwest::Method::DELETE,
    ];
    let mut n = 0;
    for (url, tok) in &urls {
        for m in &methods {
            for b in &bodies {
                for auth in [Some(*tok), Some("e30.e30.e30"), None] {
                    let mut rb =
                        h.c.request(m.clone(), url)
                            .header("content-type", "application/json")
                            .body(b.to_vec());
                    if let Some(t) = auth {
                        rb = rb.bearer_auth(t);
                    }
                    let r = rb.send().await.unwrap_or_else(|e| panic!("{m} {url}: {e}"));
                    let s = r.status().as_u16();
                    assert!(
                        s < 500,
                        "{m} {url} body={:?} -> {s}",
                        String::from_utf8_lossy(b)
                    );
                    let text = r.text().await.unwrap();
                    if !text.is_empty() && s >= 400 {
                        assert!(
                            serde_json::from_str::<Value>(&text).is_ok(),
                            "{m} {url}: non-JSON error {text}"
                        );
                    }
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, urls.len() * methods.len() * bodies.len() * 3);
    // The emulator is still healthy afterwards.
    let (s, _) = json(
        h.c.get("https://kv1.vault.azure.net/secrets?api-version=2025-07-01")
            .bearer_auth(&kv)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
}
