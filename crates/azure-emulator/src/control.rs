//! The control API (`/_emulator/*` on the plain-HTTP port): clock, scenario, state, faults,
//! request log, replication delay. Not part of the Azure surface; no authentication.

use axum::http::Method;
use serde_json::{Value, json};

use crate::faults::FaultRule;
use crate::scenario::Scenario;
use crate::server::{Req, Resp, Shared};
use crate::util::{iso, lock};

fn bad(msg: impl Into<String>) -> Resp {
    Resp::json(400, &json!({"error": msg.into()}))
}

fn body<T: serde::de::DeserializeOwned>(req: &Req) -> Result<T, Resp> {
    if req.body.is_empty() {
        return Err(bad("the request body is empty"));
    }
    serde_json::from_slice(&req.body).map_err(|e| bad(format!("invalid body: {e}")))
}

pub fn handle(shared: &Shared, req: &Req) -> Resp {
    let path = req.path.trim_end_matches('/');
    let r = (|| -> Result<Resp, Resp> {
        match (&req.method, path) {
            (&Method::GET, "/_emulator/clock") => Ok(Resp::json(
                200,
                &json!({"now": iso(shared.now()), "unix": shared.now().timestamp()}),
            )),
            (&Method::POST, "/_emulator/clock/advance") => {
                let v: Value = body(req)?;
                let secs = v.get("seconds").and_then(Value::as_i64).ok_or_else(|| {
                    bad("body must be {\"seconds\": N} with a non-negative integer N")
                })?;
                if secs < 0 {
                    return Err(bad("the clock only moves forward: seconds must be >= 0"));
                }
                shared.clock.advance(chrono::Duration::seconds(secs));
                Ok(Resp::json(200, &json!({"now": iso(shared.now())})))
            }
            (&Method::POST, "/_emulator/scenario") => {
                let s: Scenario = body(req)?;
                crate::load_scenario(shared, &s).map_err(|e| bad(e.to_string()))?;
                let st = lock(&shared.state);
                let headers: serde_json::Map<String, Value> = st
                    .mis
                    .iter()
                    .map(|m| (m.name.clone(), json!(m.header)))
                    .collect();
                Ok(Resp::json(
                    200,
                    &json!({"loaded": true, "tenantId": st.tenant_id, "subscriptionId": st.subscription_id, "identityHeaders": headers}),
                ))
            }
            (&Method::GET, "/_emulator/state") => {
                let now = shared.now();
                Ok(Resp::json(200, &lock(&shared.state).dump(now)))
            }
            (&Method::POST, "/_emulator/faults") => {
                let rule: FaultRule = body(req)?;
                rule.validate().map_err(bad)?;
                Ok(Resp::json(
                    200,
                    &json!({"id": crate::add_fault(shared, rule)}),
                ))
            }
            (&Method::GET, "/_emulator/faults") => {
                let f = lock(&shared.faults);
                Ok(Resp::json(
                    200,
                    &json!(f.iter().map(|e| e.view()).collect::<Vec<_>>()),
                ))
            }
            (&Method::DELETE, "/_emulator/faults") => {
                lock(&shared.faults).clear();
                Ok(Resp::empty(204))
            }
            (&Method::GET, "/_emulator/requests") => {
                Ok(Resp::json(200, &json!(*lock(&shared.log))))
            }
            (&Method::POST, "/_emulator/replication-delay") => {
                let v: Value = body(req)?;
                let secs = v.get("seconds").and_then(Value::as_u64).ok_or_else(|| {
                    bad("body must be {\"seconds\": N} with a non-negative integer N")
                })?;
                lock(&shared.state).replication_delay = secs;
                Ok(Resp::json(200, &json!({"seconds": secs})))
            }
            _ => Err(Resp::json(
                404,
                &json!({"error": format!("no control route {} {}", req.method, req.path), "routes": [
                "GET /_emulator/clock", "POST /_emulator/clock/advance", "POST /_emulator/scenario", "GET /_emulator/state",
                "POST /_emulator/faults", "GET /_emulator/faults", "DELETE /_emulator/faults", "GET /_emulator/requests",
                "POST /_emulator/replication-delay"]}),
            )),
        }
    })();
    r.unwrap_or_else(|e| e)
}
