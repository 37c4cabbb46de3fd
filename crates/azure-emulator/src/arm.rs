//! Azure Resource Manager (`management.azure.com`): Microsoft.Web/sites (GET, app settings list
//! and replace, Key Vault reference status and refresh, restart), Microsoft.Web/connections
//! (2016-06-01) and Microsoft.Automation variables; RBAC per scope with ARM's error bodies.
//!
//! Also the site runtime's Key Vault reference cache: a site resolves
//! `@Microsoft.KeyVault(...)` settings with its own identity (RBAC on the vault) when it starts
//! (scenario load), when its settings are replaced, on the refresh call, and when a cached value
//! is older than 24 hours of emulated time — never on plain restart.

use std::collections::BTreeMap;

use axum::http::Method;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::entra::ARM_AUD;
use crate::jwt::{Claims, TokenError, bearer, verify};
use crate::model::{
    AutomationAccount, CachedRef, Connection, SecretVersion, Site, Tenant, Variable, key,
};
use crate::scenario::{ActiveVersion, ConnectionPut};
use crate::server::{Req, Resp, Shared};
use crate::util::{iso7, lock};

/// How long App Service keeps a resolved Key Vault reference before re-reading it.
pub const REFERENCE_TTL_HOURS: i64 = 24;

pub fn error(status: u16, code: &str, message: &str) -> Resp {
    Resp::json(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

/// Microsoft.Web's legacy PascalCase validation error.
fn web_bad_request(message: &str) -> Resp {
    Resp::json(
        400,
        &json!({
            "Code": "BadRequest", "Message": message, "Target": null,
            "Details": [{"Message": message}, {"Code": "BadRequest"}, {"ErrorEntity": {"ExtendedCode": "51008", "MessageTemplate": "{0}", "Parameters": [message], "Code": "BadRequest", "Message": message}}],
            "Innererror": null,
        }),
    )
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Site,
    Conn,
    ConnList,
    ManagedApi,
    Var,
    VarList,
}

struct Parsed {
    op: &'static str,
    kind: Kind,
    rg: String,
    /// site / connection / automation account name.
    name: String,
    /// setting name or variable name.
    child: Option<String>,
    /// ARM id of the addressed resource (RBAC scope check and messages).
    resource: String,
    action: String,
}

enum Route {
    Ok(Parsed),
    /// (status, code, message)
    Err(u16, &'static str, String),
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// `GET /subscriptions/{sub}/providers/Microsoft.Web/locations/{loc}/managedApis/{api}`
/// (`ManagedApis_Get`, logicAppsManagementClient.json 2016-06-01).
fn parse_managed_api(req: &Req, segs: &[&str]) -> Option<Route> {
    let [s, sub, p, ns, l, loc, t, api] = segs else {
        return None;
    };
    if !(eq(s, "subscriptions")
        && eq(p, "providers")
        && eq(ns, "Microsoft.Web")
        && eq(l, "locations")
        && eq(t, "managedApis")
        && req.method == Method::GET)
    {
        return None;
    }
    Some(Route::Ok(Parsed {
        op: "getManagedApi",
        kind: Kind::ManagedApi,
        rg: String::new(),
        name: api.to_string(),
        child: Some(loc.to_string()),
        resource: format!(
            "/subscriptions/{sub}/providers/Microsoft.Web/locations/{loc}/managedApis/{api}"
        ),
        action: "Microsoft.Web/locations/managedApis/read".into(),
    }))
}

/// `sites/{site}/…` or `sites/{site}/slots/{slot}/…`: the name the site is kept under
/// (`model::site_key`), its ARM id and the rest of the path.
fn site_target<'a>(
    base: &str,
    rest: &'a [&'a str],
) -> Option<(String, String, &'static str, &'a [&'a str])> {
    // A deployment slot is a site of its own (its own settings, identity and reference cache)
    // at `sites/{site}/slots/{slot}`, with the same config API (`WebApps_ListApplicationSettingsSlot`,
    // `WebApps_UpdateApplicationSettingsSlot`, `WebApps_GetAppSettingsKeyVaultReferencesSlot`, ...;
    // specification/web/resource-manager/Microsoft.Web/stable/2024-11-01/WebApps.json) and
    // actions under `Microsoft.Web/sites/slots/...`.
    match rest {
        [t, site, s, slot, more @ ..] if eq(t, "sites") && eq(s, "slots") => Some((
            crate::model::site_key(site, Some(slot)),
            format!("{base}/Microsoft.Web/sites/{site}/slots/{slot}"),
            "Microsoft.Web/sites/slots",
            more,
        )),
        [t, site, more @ ..] if eq(t, "sites") => Some((
            site.to_string(),
            format!("{base}/Microsoft.Web/sites/{site}"),
            "Microsoft.Web/sites",
            more,
        )),
        _ => None,
    }
}

/// The resource group an ARM path addresses: what every route under it is built from.
struct GroupScope {
    rg: String,
    /// `/subscriptions/{sub}/resourceGroups/{rg}/providers`
    base: String,
}

impl GroupScope {
    fn route(
        &self,
        op: &'static str,
        kind: Kind,
        name: &str,
        child: Option<&str>,
        resource: String,
        action: &str,
    ) -> Route {
        Route::Ok(Parsed {
            op,
            kind,
            rg: self.rg.clone(),
            name: name.to_string(),
            child: child.map(str::to_string),
            resource,
            action: action.to_string(),
        })
    }
}

fn parse(req: &Req) -> Route {
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let m = &req.method;
    if let Some(r) = parse_managed_api(req, &segs) {
        return r;
    }
    if segs.len() < 6
        || !eq(segs[0], "subscriptions")
        || !eq(segs[2], "resourceGroups")
        || !eq(segs[4], "providers")
    {
        return Route::Err(
            404,
            "InvalidResourceType",
            format!(
                "The emulator serves resources under /subscriptions/{{sub}}/resourceGroups/{{rg}}/providers/...; '{}' is not emulated.",
                req.path
            ),
        );
    }
    let (sub, rg, ns, rest) = (segs[1], segs[3], segs[5], &segs[6..]);
    let g = GroupScope {
        rg: rg.to_string(),
        base: format!("/subscriptions/{sub}/resourceGroups/{rg}/providers"),
    };
    if eq(ns, "Microsoft.Web") {
        if let Some((name, id, ty, more)) = site_target(&g.base, rest) {
            return site_route(&g, m, &name, id, ty, more);
        }
        return connection_route(&g, m, rest);
    }
    if eq(ns, "Microsoft.Automation") {
        return variable_route(&g, m, rest);
    }
    Route::Err(
        400,
        "NoRegisteredProviderFound",
        format!(
            "No registered resource provider found for namespace '{ns}' in the emulator. Emulated: Microsoft.Web (sites, connections), Microsoft.Automation (variables)."
        ),
    )
}

/// A site's (or slot's) operations, `specification/web/resource-manager/Microsoft.Web/stable/
/// 2024-11-01/WebApps.json`: `WebApps_Get`, `WebApps_ListApplicationSettings`,
/// `WebApps_UpdateApplicationSettings`, `WebApps_GetAppSettingsKeyVaultReferences`,
/// `WebApps_GetAppSettingKeyVaultReference`, `WebApps_Restart` (and their `…Slot` forms). The
/// reference refresh is not in the spec: App Service docs "Use Key Vault references" ("force
/// resolution").
fn site_route(
    g: &GroupScope,
    m: &Method,
    name: &str,
    id: String,
    ty: &str,
    more: &[&str],
) -> Route {
    let lower: Vec<String> = more.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let refs = || format!("{id}/config/configreferences");
    let (op, resource, action, child) = match (m, l.as_slice()) {
        (&Method::GET, []) => ("getSite", id.clone(), "read", None),
        (&Method::POST, ["config", "appsettings", "list"]) => (
            "listAppSettings",
            format!("{id}/config/appsettings"),
            "config/list/action",
            None,
        ),
        (&Method::PUT, ["config", "appsettings"]) => (
            "putAppSettings",
            format!("{id}/config/appsettings"),
            "config/write",
            None,
        ),
        (&Method::GET, ["config", "configreferences", "appsettings"]) => {
            ("getConfigReferences", refs(), "config/read", None)
        }
        (&Method::POST, ["config", "configreferences", "appsettings", "refresh"]) => {
            ("refreshConfigReferences", refs(), "config/write", None)
        }
        (&Method::GET, ["config", "configreferences", "appsettings", _]) => {
            ("getConfigReference", refs(), "config/read", Some(more[3]))
        }
        (&Method::POST, ["restart"]) => ("restartSite", id.clone(), "restart/action", None),
        _ => {
            return Route::Err(
                404,
                "InvalidResourceType",
                format!(
                    "The resource type or operation '{} sites/{}' is not emulated for namespace 'Microsoft.Web'.",
                    m,
                    more.join("/")
                ),
            );
        }
    };
    g.route(
        op,
        Kind::Site,
        name,
        child,
        resource,
        &format!("{ty}/{action}"),
    )
}

/// The operation (named in `ops` for GET, PUT, PATCH, DELETE) and RBAC verb of a method on one
/// resource of a collection; `None` for other methods.
fn resource_op(m: &Method, ops: [&'static str; 4]) -> Option<(&'static str, &'static str)> {
    match *m {
        Method::GET => Some((ops[0], "read")),
        Method::PUT => Some((ops[1], "write")),
        Method::PATCH => Some((ops[2], "write")),
        Method::DELETE => Some((ops[3], "delete")),
        _ => None,
    }
}

fn method_not_allowed(m: &Method, collection: &str) -> Route {
    Route::Err(
        405,
        "MethodNotAllowed",
        format!("The method '{m}' is not allowed on {collection}."),
    )
}

/// A resource type of an emulated namespace that is not emulated itself.
fn unknown_type(namespace: &str, rest: &[&str]) -> Route {
    Route::Err(
        404,
        "InvalidResourceType",
        format!(
            "The resource type '{}' could not be found in the namespace '{namespace}' (not emulated).",
            rest.first().unwrap_or(&"")
        ),
    )
}

/// API connections, `specification/web/resource-manager/Microsoft.Web/stable/2016-06-01/
/// logicAppsManagementClient.json`: `Connections_List`, `Connections_Get`,
/// `Connections_CreateOrUpdate`, `Connections_Update`, `Connections_Delete`.
fn connection_route(g: &GroupScope, m: &Method, rest: &[&str]) -> Route {
    let base = &g.base;
    match rest {
        [t] if eq(t, "connections") && m == Method::GET => g.route(
            "listConnections",
            Kind::ConnList,
            "",
            None,
            format!("{base}/Microsoft.Web/connections"),
            "Microsoft.Web/connections/read",
        ),
        [t, name] if eq(t, "connections") => {
            let ops = [
                "getConnection",
                "putConnection",
                "patchConnection",
                "deleteConnection",
            ];
            let Some((op, action)) = resource_op(m, ops) else {
                return method_not_allowed(m, "connections");
            };
            let id = format!("{base}/Microsoft.Web/connections/{name}");
            let action = format!("Microsoft.Web/connections/{action}");
            g.route(op, Kind::Conn, name, None, id, &action)
        }
        _ => unknown_type("Microsoft.Web", rest),
    }
}

/// Automation variables, `specification/automation/resource-manager/Microsoft.Automation/
/// stable/2024-10-23/variable.json`: `Variable_ListByAutomationAccount`, `Variable_Get`,
/// `Variable_CreateOrUpdate`, `Variable_Update`, `Variable_Delete`.
fn variable_route(g: &GroupScope, m: &Method, rest: &[&str]) -> Route {
    let base = &g.base;
    match rest {
        [t, acct, v] if eq(t, "automationAccounts") && eq(v, "variables") && m == Method::GET => g
            .route(
                "listVariables",
                Kind::VarList,
                acct,
                None,
                format!("{base}/Microsoft.Automation/automationAccounts/{acct}/variables"),
                "Microsoft.Automation/automationAccounts/variables/read",
            ),
        [t, acct, v, name] if eq(t, "automationAccounts") && eq(v, "variables") => {
            let id =
                format!("{base}/Microsoft.Automation/automationAccounts/{acct}/variables/{name}");
            let ops = [
                "getVariable",
                "putVariable",
                "patchVariable",
                "deleteVariable",
            ];
            let Some((op, action)) = resource_op(m, ops) else {
                return method_not_allowed(m, "variables");
            };
            g.route(
                op,
                Kind::Var,
                acct,
                Some(name),
                id,
                &format!("Microsoft.Automation/automationAccounts/variables/{action}"),
            )
        }
        _ => unknown_type("Microsoft.Automation", rest),
    }
}

pub fn classify(req: &Req) -> Option<&'static str> {
    match parse(req) {
        Route::Ok(p) => Some(p.op),
        Route::Err(..) => None,
    }
}

/// The stable api-versions of `Microsoft.Web/sites`: the folders of Azure/azure-rest-api-specs
/// `specification/web/resource-manager/Microsoft.Web/stable/{version}/WebApps.json`.
const SITE_API_VERSIONS: &[&str] = &[
    "2016-08-01",
    "2018-02-01",
    "2018-11-01",
    "2019-08-01",
    "2020-06-01",
    "2020-09-01",
    "2020-10-01",
    "2020-12-01",
    "2021-01-01",
    "2021-01-15",
    "2021-02-01",
    "2021-03-01",
    "2022-03-01",
    "2022-09-01",
    "2023-01-01",
    "2023-12-01",
    "2024-04-01",
    "2024-11-01",
    "2025-05-01",
];

fn api_version_ok(kind: Kind, v: &str) -> Result<(), String> {
    match kind {
        Kind::Conn | Kind::ConnList | Kind::ManagedApi => {
            if v == "2016-06-01" || v == "2015-08-01-preview" {
                Ok(())
            } else {
                Err(format!(
                    "No registered resource provider found for location 'westeurope' and API version '{v}' for type 'connections'. The supported api-versions are '2015-08-01-preview, 2016-06-01'."
                ))
            }
        }
        Kind::Var | Kind::VarList => {
            const OK: &[&str] = &[
                "2015-10-31",
                "2018-06-30",
                "2019-06-01",
                "2020-01-13-preview",
                "2022-08-08",
                "2023-05-15-preview",
                "2023-11-01",
                "2024-10-23",
            ];
            if OK.contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "No registered resource provider found for location 'westeurope' and API version '{v}' for type 'automationAccounts/variables'. The supported api-versions are '{}'.",
                    OK.join(", ")
                ))
            }
        }
        Kind::Site => {
            if SITE_API_VERSIONS.contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "No registered resource provider found for location 'westeurope' and API version '{v}' for type 'sites'. The supported api-versions are '{}'.",
                    SITE_API_VERSIONS.join(", ")
                ))
            }
        }
    }
}

/// ARM's checks on how a write carries its body: POST needs a length (411 `LengthRequired`,
/// what the front end answers an HTTP/1.1 POST with neither `Content-Length` nor chunking); a
/// body must be JSON (415 `UnsupportedMediaType`, azure-resource-manager-rpc
/// `v1.0/common-api-details.md`: "the request content type ... must be application/json").
fn body_framing(req: &Req) -> Result<(), Resp> {
    let m = &req.method;
    if *m == Method::POST
        && req.header("content-length").is_none()
        && req.header("transfer-encoding").is_none()
    {
        return Err(error(
            411,
            "LengthRequired",
            "The request must have a Content-Length header (an empty body is sent as Content-Length: 0).",
        ));
    }
    let writes = *m == Method::PUT || *m == Method::PATCH || *m == Method::POST;
    if !writes || req.body.is_empty() {
        return Ok(());
    }
    let ct = req.header("content-type").unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(error(
        415,
        "UnsupportedMediaType",
        &format!(
            "The content media type '{media}' is not supported. Only 'application/json' is supported."
        ),
    ))
}

fn managed_api_op(st: &Tenant, p: &Parsed) -> Result<Resp, Resp> {
    let loc = p.child.clone().unwrap_or_default();
    match st.managed_apis.get(&p.name.to_ascii_lowercase()) {
        Some(def) => Ok(Resp::json(
            200,
            &crate::managed_apis::definition_json(
                &st.subscription_id.to_string(),
                &loc,
                &p.name,
                def,
            ),
        )),
        None => Err(error(
            404,
            "ApiNotFound",
            &format!(
                "The API '{}' could not be found in location '{loc}'.",
                p.name
            ),
        )),
    }
}

fn authenticate(
    shared: &Shared,
    req: &Req,
    tenant: Uuid,
    now: DateTime<Utc>,
) -> Result<Claims, Resp> {
    let tok = match bearer(&req.headers) {
        None => {
            return Err(error(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            ));
        }
        Some(Err(_)) => {
            return Err(error(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            ));
        }
        Some(Ok(t)) => t,
    };
    verify(&shared.key, &tok, &[ARM_AUD, "https://management.core.windows.net/"], tenant, now).map_err(|e| match e {
        TokenError::Expired { exp } => error(401, "ExpiredAuthenticationToken", &format!(
            "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
            DateTime::from_timestamp(exp, 0).map(|d| d.format("%-m/%-d/%Y %-I:%M:%S %p").to_string()).unwrap_or_default(),
            now.format("%-m/%-d/%Y %-I:%M:%S %p"))),
        TokenError::WrongAudience(a) => error(401, "InvalidAuthenticationTokenAudience", &format!("The access token has been obtained for wrong audience or resource '{a}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'.")),
        TokenError::WrongTenant => error(401, "InvalidAuthenticationTokenTenant", "The access token is from the wrong issuer. It must match the tenant associated with this subscription."),
        _ => error(401, "InvalidAuthenticationToken", "The access token is invalid."),
    })
}

pub fn handle(shared: &Shared, req: &Req, _op: Option<&'static str>) -> Resp {
    let now = shared.now();
    let mut st = lock(&shared.state);
    let claims = match authenticate(shared, req, st.tenant_id, now) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(api) = req.q("api-version").map(str::to_string) else {
        return error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    };
    let p = match parse(req) {
        Route::Ok(p) => p,
        Route::Err(s, c, m) => return error(s, c, &m),
    };
    if let Err(r) = body_framing(req) {
        return r;
    }
    if let Err(m) = api_version_ok(p.kind, &api) {
        return error(400, "NoRegisteredProviderFound", &m);
    }
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    if !segs[1].eq_ignore_ascii_case(&st.subscription_id.to_string()) {
        return error(
            404,
            "SubscriptionNotFound",
            &format!("The subscription '{}' could not be found.", segs[1]),
        );
    }
    // ARM authorizes before the resource provider looks for the resource.
    let resource = p
        .resource
        .replacen(segs[1], &st.subscription_id.to_string(), 1);
    // The managed API catalogue is read without a role check (UNCONFIRMED, README).
    if p.kind != Kind::ManagedApi && !st.authorized(claims.oid, &resource, &p.action, false) {
        return error(
            403,
            "AuthorizationFailed",
            &format!(
                "The client '{}' with object id '{}' does not have authorization to perform action '{}' over scope '{}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
                claims.appid, claims.oid, p.action, resource
            ),
        );
    }
    let r = match p.kind {
        Kind::Site => site_op(&mut st, req, &p, now),
        Kind::Conn | Kind::ConnList => connection_op(&mut st, req, &p, now),
        Kind::ManagedApi => managed_api_op(&st, &p),
        Kind::Var | Kind::VarList => variable_op(&mut st, req, &p, now),
    };
    let r = r.unwrap_or_else(|e| e);
    if req.method == Method::GET {
        r.header("x-ms-ratelimit-remaining-subscription-reads", "249")
    } else {
        r.header("x-ms-ratelimit-remaining-subscription-writes", "199")
    }
}

fn rg_exists(st: &Tenant, rg: &str) -> bool {
    st.sites.keys().any(|k| k.0 == rg.to_ascii_lowercase())
        || st
            .connections
            .keys()
            .any(|k| k.0 == rg.to_ascii_lowercase())
        || st.automation.keys().any(|k| k.0 == rg.to_ascii_lowercase())
        || st
            .vaults
            .values()
            .any(|v| v.resource_group.eq_ignore_ascii_case(rg))
}

fn not_found(st: &Tenant, rg: &str, ty: &str, name: &str) -> Resp {
    if !rg_exists(st, rg) {
        return error(
            404,
            "ResourceGroupNotFound",
            &format!("Resource group '{rg}' could not be found."),
        );
    }
    error(
        404,
        "ResourceNotFound",
        &format!(
            "The Resource '{ty}/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
        ),
    )
}

fn site_id(st: &Tenant, s: &Site) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Web/sites/{}",
        st.subscription_id,
        s.resource_group,
        crate::model::site_key(&s.name, s.slot.as_deref())
    )
}

fn settings_envelope(st: &Tenant, s: &Site) -> Value {
    json!({
        "id": format!("{}/config/appsettings", site_id(st, s)),
        "name": "appsettings",
        "type": "Microsoft.Web/sites/config",
        "kind": "functionapp",
        "location": "West Europe",
        "properties": s.settings,
    })
}

fn ref_json(st: &Tenant, s: &Site, name: &str, r: &CachedRef) -> Value {
    let mut v = ref_json_full(st, s, name, r);
    // Uncertainty `referenceActiveVersion: absent`: the spec's examples lack the field.
    if st.uncertainties.reference_active_version == ActiveVersion::Absent
        && let Some(p) = v.get_mut("properties").and_then(Value::as_object_mut)
    {
        p.remove("activeVersion");
    }
    v
}

fn ref_json_full(st: &Tenant, s: &Site, name: &str, r: &CachedRef) -> Value {
    json!({
        "id": format!("{}/config/configreferences/appsettings/{}", site_id(st, s), name),
        "name": name,
        "type": "Microsoft.Web/sites/config/configreferences",
        "location": "West Europe",
        "properties": {
            "reference": r.reference,
            "status": r.status,
            "vaultName": r.vault_name,
            "secretName": r.secret_name,
            "secretVersion": r.secret_version,
            "identityType": {"type": if s.identity.is_some() { "SystemAssigned" } else { "None" }},
            "details": r.details,
            "source": "KeyVault",
            "activeVersion": r.active_version,
        }
    })
}

/// The site operations (routes in `site_route`), on a site that exists.
fn site_op(st: &mut Tenant, req: &Req, p: &Parsed, now: DateTime<Utc>) -> Result<Resp, Resp> {
    let k = key(&p.rg, &p.name);
    if !st.sites.contains_key(&k) {
        return Err(not_found(st, &p.rg, "Microsoft.Web/sites", &p.name));
    }
    match p.op {
        "getSite" => Ok(get_site(st, &st.sites[&k])),
        "listAppSettings" => Ok(Resp::json(200, &settings_envelope(st, &st.sites[&k]))),
        "putAppSettings" => put_app_settings(st, req, &k, now),
        "getConfigReferences" => Ok(get_config_references(st, &k, now)),
        "getConfigReference" => get_config_reference(st, &k, p.child.as_deref(), now),
        "refreshConfigReferences" => Ok(refresh_config_references(st, &k, now)),
        "restartSite" => Ok(restart_site(st, &k)),
        _ => Err(error(404, "InvalidResourceType", "not emulated")),
    }
}

/// WebApps.json `WebApps_Get` / `WebApps_GetSlot`: the site with its system-assigned identity.
fn get_site(st: &Tenant, s: &Site) -> Resp {
    let mi = s.identity.as_ref().and_then(|n| st.mi_by_name(n));
    Resp::json(
        200,
        &json!({
            "id": site_id(st, s),
            "name": s.slot.as_ref().map(|slot| format!("{}/{slot}", s.name)).unwrap_or_else(|| s.name.clone()),
            "type": if s.slot.is_some() { "Microsoft.Web/sites/slots" } else { "Microsoft.Web/sites" }, "kind": "functionapp,linux",
            "location": "West Europe",
            "identity": match mi {
                Some(m) => json!({"type": "SystemAssigned", "principalId": m.principal_id, "tenantId": st.tenant_id}),
                None => json!({"type": "None"}),
            },
            "properties": {
                "name": s.name, "state": "Running", "enabled": true,
                "defaultHostName": format!("{}.azurewebsites.net", s.name.to_ascii_lowercase()),
                "resourceGroup": s.resource_group,
                "keyVaultReferenceIdentity": "SystemAssigned",
                "httpsOnly": true,
            },
        }),
    )
}

/// The settings of a `WebApps_UpdateApplicationSettings` body: `properties`, string values
/// under non-empty names (Microsoft.Web's PascalCase 400 otherwise).
fn settings_body(req: &Req) -> Result<BTreeMap<String, String>, Resp> {
    let body = req.json_body().map_err(|m| web_bad_request(&m))?;
    let Some(props) = body.get("properties").and_then(Value::as_object) else {
        return Err(web_bad_request(
            "The parameter properties has an invalid value.",
        ));
    };
    let mut settings = BTreeMap::new();
    for (n, v) in props {
        let Some(s) = v.as_str() else {
            return Err(web_bad_request(&format!(
                "The parameter properties.{n} has an invalid value: app setting values must be strings."
            )));
        };
        if n.is_empty() {
            return Err(web_bad_request("App setting names cannot be empty."));
        }
        settings.insert(n.clone(), s.to_string());
    }
    Ok(settings)
}

/// WebApps.json `WebApps_UpdateApplicationSettings` (`…Slot`): replaces the whole set.
fn put_app_settings(
    st: &mut Tenant,
    req: &Req,
    k: &(String, String),
    now: DateTime<Utc>,
) -> Result<Resp, Resp> {
    let settings = settings_body(req)?;
    if let Some(s) = st.sites.get_mut(k) {
        s.settings = settings;
        s.restarts += 1;
    }
    // A configuration change restarts the app: every reference is fetched again.
    resolve_all(st, k, now);
    Ok(Resp::json(200, &settings_envelope(st, &st.sites[k])))
}

/// WebApps.json `WebApps_GetAppSettingsKeyVaultReferences` (`…Slot`).
fn get_config_references(st: &mut Tenant, k: &(String, String), now: DateTime<Utc>) -> Resp {
    refresh_stale(st, k, now);
    let s = &st.sites[k];
    let value: Vec<Value> = s.refs.iter().map(|(n, r)| ref_json(st, s, n, r)).collect();
    Resp::json(200, &json!({"value": value, "nextLink": null}))
}

/// WebApps.json `WebApps_GetAppSettingKeyVaultReference` (`…Slot`): one setting's reference.
fn get_config_reference(
    st: &mut Tenant,
    k: &(String, String),
    child: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Resp, Resp> {
    refresh_stale(st, k, now);
    let s = &st.sites[k];
    let name = child.unwrap_or_default();
    match s.refs.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
        Some((n, r)) => Ok(Resp::json(200, &ref_json(st, s, n, r))),
        None => Err(error(
            404,
            "ResourceNotFound",
            &format!(
                "The app setting '{name}' of site '{}' is not a Key Vault reference or does not exist.",
                s.name
            ),
        )),
    }
}

/// `POST …/config/configreferences/appsettings/refresh`.
fn refresh_config_references(st: &mut Tenant, k: &(String, String), now: DateTime<Utc>) -> Resp {
    // Not in the REST spec; documented in the KV references article. Answer: 200, empty
    // body (decision, see README). Uncertainty `late`: resolved some seconds on.
    if st.uncertainties.reference_active_version == ActiveVersion::Late {
        let secs = st.uncertainties.reference_resolve_seconds.unwrap_or(60);
        if let Some(s) = st.sites.get_mut(k) {
            s.resolve_due = Some(now + Duration::seconds(secs as i64));
        }
    } else {
        resolve_all(st, k, now);
    }
    Resp::empty(200)
}

/// WebApps.json `WebApps_Restart` (`…Slot`).
fn restart_site(st: &mut Tenant, k: &(String, String)) -> Resp {
    // A plain restart does not re-read references (App Service keeps its cache).
    if let Some(s) = st.sites.get_mut(k) {
        s.restarts += 1;
    }
    Resp::empty(200)
}

pub fn is_reference(v: &str) -> bool {
    v.trim_start()
        .to_ascii_lowercase()
        .starts_with("@microsoft.keyvault(")
}

/// (vault, secret, version) of a reference, or None when the syntax is invalid.
pub fn parse_reference(v: &str) -> Option<(String, String, Option<String>)> {
    let t = v.trim();
    let head = t.get(..20)?;
    if !head.eq_ignore_ascii_case("@Microsoft.KeyVault(") {
        return None;
    }
    let inner = t.get(20..)?.strip_suffix(')')?;
    let mut parts: BTreeMap<String, String> = BTreeMap::new();
    for kv in inner.split(';').filter(|s| !s.trim().is_empty()) {
        let (k, v) = kv.split_once('=')?;
        parts.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    if let Some(uri) = parts.get("secreturi") {
        let u = url::Url::parse(uri).ok()?;
        let host = u.host_str()?.to_ascii_lowercase();
        let vault = host.strip_suffix(".vault.azure.net")?.to_string();
        let segs: Vec<&str> = u.path().trim_matches('/').split('/').collect();
        return match segs.as_slice() {
            ["secrets", n] => Some((vault, n.to_string(), None)),
            ["secrets", n, ver] => Some((vault, n.to_string(), Some(ver.to_string()))),
            _ => None,
        };
    }
    let vault = parts.get("vaultname")?.clone();
    let name = parts.get("secretname")?.clone();
    Some((
        vault,
        name,
        parts
            .get("secretversion")
            .cloned()
            .filter(|s| !s.is_empty()),
    ))
}

/// One resolution of a Key Vault reference at `now`: the cache entry the site keeps.
fn resolve(st: &Tenant, site: &Site, reference: &str, now: DateTime<Utc>) -> CachedRef {
    let mut r = CachedRef {
        reference: reference.to_string(),
        status: "Resolved".into(),
        details: String::new(),
        vault_name: String::new(),
        secret_name: String::new(),
        secret_version: String::new(),
        active_version: None,
        value: None,
        fetched_at: now,
    };
    let Some((vault, name, version)) = parse_reference(reference) else {
        r.status = "InvalidSyntax".into();
        r.details = "The Key Vault reference syntax is invalid.".into();
        return r;
    };
    r.vault_name = vault.clone();
    r.secret_name = name.clone();
    r.secret_version = version.clone().unwrap_or_default();
    match referenced_version(st, site, &vault, &name, version.as_deref()) {
        Ok(sv) => {
            r.active_version = Some(sv.version.clone());
            r.value = Some(sv.value.clone());
        }
        Err((status, details)) => {
            r.status = status.into();
            r.details = details;
        }
    }
    r
}

/// The secret version a reference names, read with the site's identity as App Service does;
/// or the reference status and details that say why not (WebApps.json model `ApiKVReference`,
/// statuses as in App Service docs "Use Key Vault references", troubleshooting section).
fn referenced_version<'t>(
    st: &'t Tenant,
    site: &Site,
    vault: &str,
    name: &str,
    version: Option<&str>,
) -> Result<&'t SecretVersion, (&'static str, String)> {
    let Some(mi) = site.identity.as_ref().and_then(|n| st.mi_by_name(n)) else {
        return Err((
            "MSINotEnabled",
            "The app has no managed identity to access Key Vault.".into(),
        ));
    };
    let Some(v) = st.vaults.get(&vault.to_ascii_lowercase()) else {
        return Err((
            "VaultNotFound",
            format!("Key Vault '{vault}' was not found."),
        ));
    };
    let res = format!("{}/secrets/{}", st.vault_scope(v), name);
    if !st.authorized(
        mi.principal_id,
        &res,
        "Microsoft.KeyVault/vaults/secrets/getSecret/action",
        true,
    ) {
        return Err((
            "AccessToKeyVaultDenied",
            format!(
                "Key Vault reference was not able to be resolved because site was denied access to Key Vault reference's vault '{vault}'."
            ),
        ));
    }
    let Some(e) = v.secrets.get(&name.to_ascii_lowercase()) else {
        return Err((
            "SecretNotFound",
            format!("Secret '{name}' was not found in vault '{vault}'."),
        ));
    };
    let sv = match version {
        None => e.versions.last(),
        Some(ver) => e
            .versions
            .iter()
            .find(|x| x.version.eq_ignore_ascii_case(ver)),
    };
    let Some(sv) = sv else {
        return Err((
            "SecretVersionNotFound",
            format!(
                "Secret version '{}' was not found.",
                version.unwrap_or_default()
            ),
        ));
    };
    if !sv.enabled {
        return Err(("OtherReasons", "The secret version is disabled.".into()));
    }
    Ok(sv)
}

/// Resolves every reference of a site afresh (start, settings change, refresh).
pub fn resolve_all(st: &mut Tenant, k: &(String, String), now: DateTime<Utc>) {
    settle_vaults(st, now);
    let Some(site) = st.sites.get(k) else { return };
    let refs: BTreeMap<String, CachedRef> = site
        .settings
        .iter()
        .filter(|(_, v)| is_reference(v))
        .map(|(n, v)| (n.clone(), resolve(st, site, v, now)))
        .collect();
    if let Some(s) = st.sites.get_mut(k) {
        s.refs = refs;
        s.resolve_due = None;
    }
}

/// Completes the certificate operations due by `now` in every vault before App Service reads a
/// reference: a completed certificate's secret exists for every reader, not only once a Key
/// Vault request has passed ([`crate::certificates::settle`] runs there too).
fn settle_vaults(st: &mut Tenant, now: DateTime<Utc>) {
    let issue = crate::certificates::issue_seconds(st);
    for v in st.vaults.values_mut() {
        crate::certificates::settle(v, now, issue);
    }
}

/// Re-reads references whose cached value is older than the TTL.
pub fn refresh_stale(st: &mut Tenant, k: &(String, String), now: DateTime<Utc>) {
    settle_vaults(st, now);
    let Some(site) = st.sites.get(k) else { return };
    if site.resolve_due.is_some_and(|due| due <= now) {
        resolve_all(st, k, now);
        return;
    }
    let stale: Vec<(String, CachedRef)> = site
        .refs
        .iter()
        .filter(|(_, r)| r.fetched_at + Duration::hours(REFERENCE_TTL_HOURS) <= now)
        .map(|(n, r)| (n.clone(), resolve(st, site, &r.reference, now)))
        .collect();
    if let Some(s) = st.sites.get_mut(k) {
        for (n, r) in stale {
            s.refs.insert(n, r);
        }
    }
}

/// What the app sees for a setting: the cached resolution of a reference (the literal
/// reference text when resolution failed), else the raw value.
pub fn effective(
    st: &mut Tenant,
    rg: &str,
    site: &str,
    name: &str,
    now: DateTime<Utc>,
) -> Option<String> {
    let k = key(rg, site);
    refresh_stale(st, &k, now);
    let s = st.sites.get(&k)?;
    let raw = s.settings.get(name)?;
    if !is_reference(raw) {
        return Some(raw.clone());
    }
    match s.refs.get(name) {
        Some(r) if r.reference == *raw => Some(r.value.clone().unwrap_or_else(|| raw.clone())),
        _ => Some(raw.clone()),
    }
}

/// ("Connected" | "Error", error object) computed now from the stored token parameters.
pub fn connection_status(
    st: &Tenant,
    c: &Connection,
    now: DateTime<Utc>,
) -> (String, Option<Value>) {
    let client_id = c
        .parameter_values
        .get("token:clientId")
        .or_else(|| c.non_secret.get("token:clientId"));
    let secret = c.parameter_values.get("token:clientSecret");
    if client_id.is_none() && secret.is_none() {
        // No service-principal credentials (managed identity or other auth): nothing to test.
        return ("Connected".into(), None);
    }
    let tenant = c
        .parameter_values
        .get("token:TenantId")
        .or_else(|| c.non_secret.get("token:TenantId"))
        .cloned()
        .unwrap_or_else(|| st.tenant_id.to_string());
    let app_id = client_id.and_then(|s| Uuid::parse_str(s).ok());
    let verdict = if !st.is_tenant(&tenant) {
        Err(90002)
    } else {
        match (app_id, secret) {
            (Some(a), Some(s)) => st.check_secret(a, s, now),
            (None, _) => Err(700016),
            (Some(_), None) => Err(7000215),
        }
    };
    match verdict {
        Ok(()) => ("Connected".into(), None),
        Err(code) => {
            let (_, e, text) =
                crate::entra::verdict_text(code, app_id.unwrap_or(Uuid::nil()), &tenant);
            (
                "Error".into(),
                Some(json!({
                    "code": "Unauthorized",
                    "message": format!("Failed to refresh access token for service: {}. Correlation Id={}, UTC TimeStamp={}, Error: AADSTS{code}: {text} ({e})", c.api, Uuid::new_v4(), now.format("%-m/%-d/%Y %-I:%M:%S %p")),
                })),
            )
        }
    }
}

fn connection_json(st: &Tenant, c: &Connection, now: DateTime<Utc>) -> Value {
    let (status, err) = connection_status(st, c, now);
    let mut s = json!({"status": status});
    if let Some(e) = err {
        s["target"] = json!("token");
        s["error"] = e;
    }
    let id = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Web/connections/{}",
        st.subscription_id, c.resource_group, c.name
    );
    json!({
        "id": id, "name": c.name, "type": "Microsoft.Web/connections", "location": c.location,
        "tags": c.tags,
        "properties": {
            "displayName": c.display_name,
            "statuses": [s],
            "nonSecretParameterValues": c.non_secret,
            "customParameterValues": {},
            "createdTime": iso7(c.created),
            "changedTime": iso7(c.changed),
            "api": {
                "name": c.api, "displayName": c.api,
                "id": format!("/subscriptions/{}/providers/Microsoft.Web/locations/{}/managedApis/{}", st.subscription_id, c.location, c.api),
                "type": "Microsoft.Web/locations/managedApis",
            },
            "testLinks": [{"requestUri": format!("https://management.azure.com:443{id}/extensions/proxy/testconnection?api-version=2016-06-01"), "method": "get"}],
        }
    })
}

fn string_map(v: Option<&Value>, what: &str) -> Result<Option<BTreeMap<String, String>>, Resp> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        },
                    )
                })
                .collect(),
        )),
        Some(_) => Err(error(
            400,
            "InvalidRequestContent",
            &format!(
                "The request content was invalid and could not be deserialized: '{what}' must be an object."
            ),
        )),
    }
}

/// ARM's refusal of a connection PATCH that touches `properties` (recorded in
/// hashicorp/terraform-provider-azurerm `internal/services/connections/api_connection_resource.go`).
fn patch_not_supported(name: &str) -> Resp {
    error(
        400,
        "PatchApiConnectionPropertiesNotSupported",
        &format!(
            "The request to patch API connection '{name}' is not supported. None of the fields inside the properties object can be patched."
        ),
    )
}

/// PATCH: only `tags` (the 2016-06-01 spec's one PATCH example, `connectionsUpdate.json`,
/// changes tags); anything inside `properties` is refused.
fn patch_connection(
    st: &mut Tenant,
    p: &Parsed,
    props: &Map<String, Value>,
    tags: Option<BTreeMap<String, String>>,
    now: DateTime<Utc>,
) -> Result<Resp, Resp> {
    let k = key(&p.rg, &p.name);
    if !st.connections.contains_key(&k) {
        return Err(not_found(st, &p.rg, "Microsoft.Web/connections", &p.name));
    }
    if !props.is_empty() {
        return Err(patch_not_supported(&p.name));
    }
    if let Some(c) = st.connections.get_mut(&k) {
        if let Some(t) = tags {
            c.tags = t;
        }
        c.changed = now;
    }
    let c = st.connections[&k].clone();
    Ok(Resp::json(200, &connection_json(st, &c, now)))
}

/// The connection operations (routes in `connection_route`).
fn connection_op(st: &mut Tenant, req: &Req, p: &Parsed, now: DateTime<Utc>) -> Result<Resp, Resp> {
    if p.kind == Kind::ConnList {
        return list_connections(st, p, now);
    }
    let k = key(&p.rg, &p.name);
    match p.op {
        "getConnection" => match st.connections.get(&k) {
            Some(c) => Ok(Resp::json(200, &connection_json(st, c, now))),
            None => Err(not_found(st, &p.rg, "Microsoft.Web/connections", &p.name)),
        },
        "deleteConnection" => match st.connections.remove(&k) {
            Some(_) => Ok(Resp::empty(200)),
            None => Ok(Resp::empty(204)),
        },
        "putConnection" | "patchConnection" => {
            let b = connection_body(req)?;
            if p.op == "patchConnection" {
                return patch_connection(st, p, &b.props, b.tags, now);
            }
            put_connection(st, p, b, now)
        }
        _ => Err(error(404, "InvalidResourceType", "not emulated")),
    }
}

fn resource_group_not_found(rg: &str) -> Resp {
    error(
        404,
        "ResourceGroupNotFound",
        &format!("Resource group '{rg}' could not be found."),
    )
}

/// `Connections_List`: the connections of one resource group.
fn list_connections(st: &Tenant, p: &Parsed, now: DateTime<Utc>) -> Result<Resp, Resp> {
    if !rg_exists(st, &p.rg) {
        return Err(resource_group_not_found(&p.rg));
    }
    let v: Vec<Value> = st
        .connections
        .values()
        .filter(|c| c.resource_group.eq_ignore_ascii_case(&p.rg))
        .map(|c| connection_json(st, c, now))
        .collect();
    Ok(Resp::json(200, &json!({"value": v})))
}

/// A connection PUT / PATCH body (logicAppsManagementClient.json model `ApiConnectionDefinition`).
struct ConnectionBody {
    props: Map<String, Value>,
    /// `properties.parameterValues`: write-only, never read back.
    pv: Option<BTreeMap<String, String>>,
    /// `properties.nonSecretParameterValues`.
    nspv: Option<BTreeMap<String, String>>,
    tags: Option<BTreeMap<String, String>>,
    /// The managed API's name, the last segment of `properties.api.id`.
    api: Option<String>,
    display: Option<String>,
    location: Option<String>,
}

fn connection_body(req: &Req) -> Result<ConnectionBody, Resp> {
    let body = req.json_body().map_err(|m| {
        error(
            400,
            "InvalidRequestContent",
            &format!("The request content was invalid and could not be deserialized: {m}"),
        )
    })?;
    let Some(obj) = body.as_object() else {
        return Err(error(
            400,
            "InvalidRequestContent",
            "The request content must be a JSON object.",
        ));
    };
    let props: Map<String, Value> = match obj.get("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(error(
                400,
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: 'properties' must be an object.",
            ));
        }
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    Ok(ConnectionBody {
        pv: string_map(props.get("parameterValues"), "properties.parameterValues")?,
        nspv: string_map(
            props.get("nonSecretParameterValues"),
            "properties.nonSecretParameterValues",
        )?,
        tags: string_map(obj.get("tags"), "tags")?,
        api: text(props.get("api").and_then(|a| a.get("id"))).map(|id| {
            id.trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string()
        }),
        display: text(props.get("displayName")),
        location: text(obj.get("location")),
        props,
    })
}

/// `Connections_CreateOrUpdate`: a full PUT, 201 on create and 200 on replace. Replacing the
/// parameter values of an existing connection is refused under uncertainty `connectionPut:
/// refused` (see README, "Connection PUT of an existing connection").
fn put_connection(
    st: &mut Tenant,
    p: &Parsed,
    b: ConnectionBody,
    now: DateTime<Utc>,
) -> Result<Resp, Resp> {
    let k = key(&p.rg, &p.name);
    let old = st.connections.get(&k).cloned();
    let existed = old.is_some();
    if existed
        && b.pv.as_ref().is_some_and(|m| !m.is_empty())
        && st.uncertainties.connection_put == ConnectionPut::Refused
    {
        return Err(patch_not_supported(&p.name));
    }
    if !existed && !rg_exists(st, &p.rg) {
        return Err(resource_group_not_found(&p.rg));
    }
    let Some(api) = b.api.or_else(|| old.as_ref().map(|c| c.api.clone())) else {
        return Err(error(
            400,
            "InvalidRequestContent",
            "The request content was invalid: properties.api.id is required when creating a connection.",
        ));
    };
    let mut values = b.nspv.unwrap_or_default();
    values.extend(b.pv.unwrap_or_default());
    let (secret, plain) = crate::managed_apis::split(&st.managed_apis, &api, values)
        .map_err(|m| error(400, "ParameterNotDefined", &m))?;
    // PUT replaces the whole resource, write-only parameterValues included.
    let c = Connection {
        resource_group: old
            .as_ref()
            .map(|o| o.resource_group.clone())
            .unwrap_or_else(|| p.rg.clone()),
        name: old
            .as_ref()
            .map(|o| o.name.clone())
            .unwrap_or_else(|| p.name.clone()),
        location: b
            .location
            .or_else(|| old.as_ref().map(|o| o.location.clone()))
            .unwrap_or_else(|| "westeurope".into()),
        api,
        display_name: b.display.unwrap_or_else(|| p.name.clone()),
        parameter_values: secret,
        non_secret: plain,
        tags: b.tags.unwrap_or_default(),
        created: old.as_ref().map(|o| o.created).unwrap_or(now),
        changed: now,
    };
    st.connections.insert(k, c.clone());
    Ok(Resp::json(
        if existed { 200 } else { 201 },
        &connection_json(st, &c, now),
    ))
}

fn variable_json(st: &Tenant, rg: &str, acct: &str, v: &Variable) -> Value {
    let mut props = json!({
        "creationTime": iso7(v.created).replace('Z', "+00:00"),
        "lastModifiedTime": iso7(v.modified).replace('Z', "+00:00"),
        "isEncrypted": v.is_encrypted,
        "description": v.description,
    });
    if !v.is_encrypted {
        props["value"] = json!(v.value);
    }
    json!({
        "id": format!("/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Automation/automationAccounts/{}/variables/{}", st.subscription_id, rg, acct, v.name),
        "name": v.name,
        "properties": props,
    })
}

fn automation_bad(message: &str) -> Resp {
    error(400, "BadRequest", message)
}

/// The variable operations (routes in `variable_route`), in an account that exists.
fn variable_op(st: &mut Tenant, req: &Req, p: &Parsed, now: DateTime<Utc>) -> Result<Resp, Resp> {
    let ak = key(&p.rg, &p.name);
    let Some(acct) = st.automation.get(&ak).cloned() else {
        return Err(not_found(
            st,
            &p.rg,
            "Microsoft.Automation/automationAccounts",
            &p.name,
        ));
    };
    if p.kind == Kind::VarList {
        let v: Vec<Value> = acct
            .variables
            .values()
            .map(|v| variable_json(st, &acct.resource_group, &acct.name, v))
            .collect();
        return Ok(Resp::json(200, &json!({"value": v})));
    }
    let vname = p.child.clone().unwrap_or_default();
    let t = VariableTarget {
        vk: vname.to_ascii_lowercase(),
        vname,
        ak,
        acct,
    };
    match p.op {
        "getVariable" => match t.existing() {
            Some(v) => Ok(Resp::json(200, &t.json(st, v))),
            None => Err(t.not_found()),
        },
        "deleteVariable" => {
            let removed = st
                .automation
                .get_mut(&t.ak)
                .and_then(|a| a.variables.remove(&t.vk));
            Ok(Resp::empty(if removed.is_some() { 200 } else { 204 }))
        }
        "putVariable" | "patchVariable" => {
            let b = variable_body(req, &t.vname)?;
            if p.op == "patchVariable" {
                return patch_variable(st, &t, b, now);
            }
            put_variable(st, &t, b, now)
        }
        _ => Err(error(404, "InvalidResourceType", "not emulated")),
    }
}

/// One variable a request addresses: its account as read before any write, and its keys.
struct VariableTarget {
    ak: (String, String),
    acct: AutomationAccount,
    vname: String,
    vk: String,
}

impl VariableTarget {
    fn existing(&self) -> Option<&Variable> {
        self.acct.variables.get(&self.vk)
    }

    fn json(&self, st: &Tenant, v: &Variable) -> Value {
        variable_json(st, &self.acct.resource_group, &self.acct.name, v)
    }

    fn not_found(&self) -> Resp {
        error(
            404,
            "NotFound",
            &format!("Variable not found: '{}'.", self.vname),
        )
    }

    /// Stores `v` and answers with it.
    fn store(&self, st: &mut Tenant, v: Variable, status: u16) -> Resp {
        let out = self.json(st, &v);
        if let Some(a) = st.automation.get_mut(&self.ak) {
            a.variables.insert(self.vk.clone(), v);
        }
        Resp::json(status, &out)
    }
}

/// A variable PUT / PATCH body (variable.json models `VariableCreateOrUpdateParameters`,
/// `VariableUpdateParameters`): the name must match the URL's.
struct VariableBody {
    props: Map<String, Value>,
    /// The JSON serialisation of the variable's value.
    value: Option<String>,
    /// Absent (keep), null (clear) or a string.
    description: Option<Option<String>>,
}

fn variable_body(req: &Req, vname: &str) -> Result<VariableBody, Resp> {
    let body = req.json_body().map_err(|m| automation_bad(&m))?;
    let Some(name) = body.get("name").and_then(Value::as_str) else {
        return Err(automation_bad(
            "The 'name' property is required in the request body.",
        ));
    };
    if !name.eq_ignore_ascii_case(vname) {
        return Err(automation_bad(&format!(
            "The name in the body ('{name}') does not match the name in the URL ('{vname}')."
        )));
    }
    let props = body.get("properties").and_then(Value::as_object).cloned();
    let Some(props) = props else {
        return Err(automation_bad(
            "The 'properties' object is required in the request body.",
        ));
    };
    let value = variable_value(&props)?;
    let description = match props.get("description") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => return Err(automation_bad("properties.description must be a string.")),
    };
    Ok(VariableBody {
        props,
        value,
        description,
    })
}

/// `properties.value`: a string holding JSON, as the Automation service stores values.
fn variable_value(props: &Map<String, Value>) -> Result<Option<String>, Resp> {
    match props.get("value") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            // The value is the JSON serialisation of the variable's value.
            if serde_json::from_str::<Value>(s).is_err() {
                // Never echo the value: it may be a secret.
                return Err(automation_bad(
                    "Invalid variable value: it must be JSON-encoded (a string is sent as \"\\\"text\\\"\"); the value sent is not valid JSON.",
                ));
            }
            Ok(Some(s.clone()))
        }
        Some(_) => Err(automation_bad(
            "properties.value must be a string holding JSON.",
        )),
    }
}

/// variable.json `Variable_Update`: value and description of an existing variable; its
/// encryption state cannot change.
fn patch_variable(
    st: &mut Tenant,
    t: &VariableTarget,
    b: VariableBody,
    now: DateTime<Utc>,
) -> Result<Resp, Resp> {
    let Some(mut v) = t.existing().cloned() else {
        return Err(t.not_found());
    };
    if b.props.get("isEncrypted").is_some() {
        return Err(automation_bad("isEncrypted cannot be changed by PATCH."));
    }
    if let Some(val) = b.value {
        v.value = Some(val);
    }
    if let Some(d) = b.description {
        v.description = d;
    }
    v.modified = now;
    Ok(t.store(st, v, 200))
}

/// variable.json `Variable_CreateOrUpdate`: 201 on create, 200 on replace; the encryption
/// state of an existing variable cannot change.
fn put_variable(
    st: &mut Tenant,
    t: &VariableTarget,
    b: VariableBody,
    now: DateTime<Utc>,
) -> Result<Resp, Resp> {
    let existing = t.existing();
    let enc = match b.props.get("isEncrypted") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(automation_bad("properties.isEncrypted must be a boolean.")),
    };
    if let (Some(old), Some(e)) = (existing, enc)
        && old.is_encrypted != e
    {
        return Err(automation_bad(
            "The encryption state of a variable cannot be changed. Delete the variable and create it again.",
        ));
    }
    let v = Variable {
        name: existing.map(|o| o.name.clone()).unwrap_or(t.vname.clone()),
        value: b.value,
        is_encrypted: existing.map(|o| o.is_encrypted).or(enc).unwrap_or(false),
        description: b.description.unwrap_or(None),
        created: existing.map(|o| o.created).unwrap_or(now),
        modified: now,
    };
    let status = if existing.is_some() { 200 } else { 201 };
    Ok(t.store(st, v, status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        assert_eq!(
            parse_reference(
                "@Microsoft.KeyVault(SecretUri=https://kv1.vault.azure.net/secrets/s1)"
            ),
            Some(("kv1".into(), "s1".into(), None))
        );
        assert_eq!(
            parse_reference(
                "@Microsoft.KeyVault(SecretUri=https://kv1.vault.azure.net/secrets/s1/abc/)"
            ),
            Some(("kv1".into(), "s1".into(), Some("abc".into())))
        );
        assert_eq!(
            parse_reference("@Microsoft.KeyVault(VaultName=kv1;SecretName=s1;SecretVersion=v)"),
            Some(("kv1".into(), "s1".into(), Some("v".into())))
        );
        assert_eq!(parse_reference("@Microsoft.KeyVault(VaultName=kv1)"), None);
        assert_eq!(
            parse_reference("@Microsoft.KeyVault(SecretUri=https://x.example.com/secrets/a)"),
            None
        );
        assert_eq!(parse_reference("@Microsoft.KeyVault("), None);
    }
}
