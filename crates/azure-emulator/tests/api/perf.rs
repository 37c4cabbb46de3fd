//! Rough measurements (printed; bounds are loose so a slow CI box does not fail): start-up with
//! CA generation, and sequential round trips over one keep-alive HTTPS connection.

use std::time::{Duration, Instant};

use crate::support::*;

#[tokio::test]
async fn measure_startup_and_round_trips() {
    let t0 = Instant::now();
    let h = start().await;
    let startup = t0.elapsed();
    let tok = h.mi_token("rotator", "https://vault.azure.net").await;
    let n = 300;
    let t1 = Instant::now();
    for _ in 0..n {
        let r =
            h.c.get("https://kv1.vault.azure.net/secrets/payments-secret?api-version=2025-07-01")
                .bearer_auth(&tok)
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let kv = t1.elapsed() / n;
    let t2 = Instant::now();
    for _ in 0..n {
        let r = h
            .sp_token(
                PAY_APP,
                "pay-secret-1",
                "https://graph.microsoft.com/.default",
            )
            .await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let entra = t2.elapsed() / n;
    eprintln!("MEASURE startup={startup:?} kv_get_avg={kv:?} entra_token_avg={entra:?} (n={n})");
    assert!(startup < Duration::from_secs(10));
    assert!(kv < Duration::from_millis(200));
    assert!(entra < Duration::from_millis(200));
    assert_eq!(h.emu.control().requests().len() as u32, 2 * n + 1);
}
