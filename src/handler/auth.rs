//! App roles from App Service authentication (an optional second lock after function keys).
//!
//! With App Service authentication on, the platform sends each request's caller as
//! `X-MS-CLIENT-PRINCIPAL`: Base64-encoded JSON `{"auth_typ","claims":[{"typ","val"}],
//! "name_typ","role_typ"}` — the roles are the claims whose `typ` is `role_typ` ("Work with user
//! identities in Azure App Service authentication", learn.microsoft.com). External requests
//! cannot set that header, so it is trusted only when `ROTATOR_REQUIRE_APP_ROLES` says the
//! deployment has authentication on (`infra/` `appServiceAuth`); then:
//!
//! - `SelfTest` (the probe) needs [`PROBE_ROLE`] or [`OPERATOR_ROLE`];
//! - `Operate`, `Rotate` and `StatusPage` (the inventory and rotations) need [`OPERATOR_ROLE`].

use base64::Engine as _;
use serde::Deserialize;

use super::protocol::HttpRequestData;

/// App role for monitoring: the probe only.
pub const PROBE_ROLE: &str = "Rotator.Probe";
/// App role for people and automation that read the inventory or rotate.
pub const OPERATOR_ROLE: &str = "Rotator.Operator";
const HEADER: &str = "x-ms-client-principal";

#[derive(Deserialize)]
struct Principal {
    #[serde(default)]
    claims: Vec<Claim>,
    role_typ: Option<String>,
}

#[derive(Deserialize)]
struct Claim {
    typ: String,
    val: String,
}

/// The roles that may call `function`.
pub fn roles_for(function: &str) -> &'static [&'static str] {
    if function == super::functions::SELF_TEST {
        &[PROBE_ROLE, OPERATOR_ROLE]
    } else {
        &[OPERATOR_ROLE]
    }
}

/// The caller's app roles from the platform's header; an error names what is wrong with it.
pub fn caller_roles(http: &HttpRequestData) -> Result<Vec<String>, String> {
    let raw = http.headers.get(HEADER).and_then(|v| v.first()).ok_or(
        "no caller identity (X-MS-CLIENT-PRINCIPAL): sign in through App Service authentication",
    )?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .map_err(|_| "X-MS-CLIENT-PRINCIPAL is not Base64")?;
    let p: Principal = serde_json::from_slice(&bytes)
        .map_err(|e| format!("X-MS-CLIENT-PRINCIPAL is not the platform's JSON ({e})"))?;
    let role_typ = p.role_typ.unwrap_or_else(|| "roles".into());
    Ok(p.claims
        .into_iter()
        .filter(|c| c.typ == role_typ)
        .map(|c| c.val)
        .collect())
}

/// `Ok` when the caller holds one of the roles `function` needs; else why not (no claim value
/// beyond the role names is repeated).
pub fn authorize(function: &str, http: &HttpRequestData) -> Result<(), String> {
    let needed = roles_for(function);
    let roles = caller_roles(http)?;
    if roles.iter().any(|r| needed.contains(&r.as_str())) {
        return Ok(());
    }
    Err(format!(
        "{function} needs the app role {}; the caller has {}",
        needed.join(" or "),
        if roles.is_empty() {
            "none".to_string()
        } else {
            roles.join(", ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(principal: Option<&str>) -> HttpRequestData {
        let mut h = HttpRequestData::default();
        if let Some(p) = principal {
            h.headers.insert(HEADER.into(), vec![p.into()]);
        }
        h
    }

    fn encoded(v: serde_json::Value) -> String {
        base64::engine::general_purpose::STANDARD.encode(v.to_string())
    }

    #[test]
    fn roles_are_the_claims_of_role_typ() {
        let role_typ = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role";
        let p = encoded(serde_json::json!({
            "auth_typ": "aad", "name_typ": "name", "role_typ": role_typ,
            "claims": [{"typ": "name", "val": "Rotator.Operator"},
                       {"typ": role_typ, "val": "Rotator.Probe"}]
        }));
        let req = request(Some(&p));
        assert_eq!(caller_roles(&req).unwrap(), vec!["Rotator.Probe"]);
        assert!(authorize("SelfTest", &req).is_ok());
        let e = authorize("Operate", &req).unwrap_err();
        assert!(
            e.contains("Rotator.Operator") && e.contains("Rotator.Probe"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_or_forged_header_is_refused() {
        assert!(
            authorize("SelfTest", &request(None))
                .unwrap_err()
                .contains("X-MS-CLIENT-PRINCIPAL")
        );
        assert!(authorize("SelfTest", &request(Some("%%%"))).is_err());
        assert!(authorize("SelfTest", &request(Some(&encoded(serde_json::json!([]))))).is_err());
    }
}
