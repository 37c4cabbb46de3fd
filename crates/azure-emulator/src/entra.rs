//! Entra ID (`login.microsoftonline.com`): the v2 token endpoint (client credentials with a
//! client secret, in the form body or HTTP Basic), OpenID discovery and instance discovery; and
//! the App Service managed-identity endpoint (`/msi/token` on the plain-HTTP port).
//!
//! Token minting for both lives here; verification is in jwt.rs.

use axum::http::Method;
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::caller::CallerAbsence;
use crate::jwt::{Claims, sign};
use crate::server::{Req, Resp, Shared};
use crate::util::{b64_decode, lock};

/// Default token lifetime for both endpoints (Entra's client-credentials tokens: 3599 s);
/// a scenario may change it (`tokenLifetimeSeconds`).
pub const TOKEN_SECONDS: i64 = 3599;

pub const GRAPH_AUD: &str = "https://graph.microsoft.com";
pub const VAULT_AUD: &str = "https://vault.azure.net";
pub const ARM_AUD: &str = "https://management.azure.com/";
pub const STORAGE_AUD: &str = "https://storage.azure.com";
/// RFC 7523 section 2.2, as the certificate credentials doc names it.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Maps a resource (MI) or the resource part of a `/.default` scope to the token audience.
pub fn audience_for(resource: &str) -> Option<&'static str> {
    match crate::jwt::norm_aud(resource).as_str() {
        "https://graph.microsoft.com" | "00000003-0000-0000-c000-000000000000" => Some(GRAPH_AUD),
        "https://vault.azure.net"
        | "https://vault.azure.net/"
        | "cfa8b339-82a2-471a-a3c9-0fc0be7a4093" => Some(VAULT_AUD),
        "https://management.azure.com" | "https://management.core.windows.net" => Some(ARM_AUD),
        "https://storage.azure.com" => Some(STORAGE_AUD),
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
pub fn mint(
    key: &[u8],
    tenant: Uuid,
    oid: Uuid,
    appid: Uuid,
    aud: &str,
    roles: &[String],
    _emulated_now: DateTime<Utc>,
    lifetime: i64,
) -> (String, i64) {
    // Access tokens live on the wall clock, not the emulated one: every real token cache (the
    // SDKs', Azurite's validation) compares `exp` with the machine's clock, and advancing the
    // emulated clock by days must not turn cached tokens into 401s that real Azure never sends.
    // The emulated clock governs the tenant's data: password validity, reference caches.
    let iat = Utc::now().timestamp();
    let exp = iat + lifetime;
    let claims = Claims {
        aud: aud.to_string(),
        iss: format!("https://sts.windows.net/{tenant}/"),
        iat,
        nbf: iat,
        exp,
        oid,
        sub: oid,
        appid,
        azp: appid,
        tid: tenant,
        idtyp: "app".into(),
        roles: if aud == GRAPH_AUD {
            roles.to_vec()
        } else {
            vec![]
        },
    };
    (sign(key, &claims), exp)
}

pub fn classify(req: &Req) -> Option<&'static str> {
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match (&req.method, segs.as_slice()) {
        (&Method::POST, [_, "oauth2", "v2.0", "token"]) => Some("token"),
        (&Method::GET, [_, "v2.0", ".well-known", "openid-configuration"]) => {
            Some("openidConfiguration")
        }
        (&Method::GET, ["common", "discovery", "instance"]) => Some("instanceDiscovery"),
        _ => None,
    }
}

/// The AADSTS error body (section 3.3 of the contracts).
pub fn aadsts(status: u16, error: &str, code: u64, text: &str, now: DateTime<Utc>) -> Resp {
    let trace = Uuid::new_v4();
    let corr = Uuid::new_v4();
    let ts = now.format("%Y-%m-%d %H:%M:%SZ").to_string();
    Resp::json(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\nTimestamp: {ts}"),
            "error_codes": [code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": corr,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

/// The (status, error, message text) Entra answers for a client-secret verdict code.
pub fn verdict_text(code: u64, app_id: Uuid, tenant: &str) -> (u16, &'static str, String) {
    match code {
        7000222 => (
            401,
            "invalid_client",
            format!(
                "The provided client secret keys for app '{app_id}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds."
            ),
        ),
        7000215 => (
            401,
            "invalid_client",
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{app_id}'."
            ),
        ),
        700016 => (
            400,
            "unauthorized_client",
            format!(
                "Application with identifier '{app_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        ),
        90002 => (
            400,
            "invalid_tenant",
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        ),
        _ => (
            400,
            "invalid_request",
            "The request could not be processed.".to_string(),
        ),
    }
}

pub fn handle(shared: &Shared, req: &Req, op: Option<&'static str>) -> Resp {
    let now = shared.now();
    let tenant_seg = req
        .path
        .trim_matches('/')
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    match op {
        Some("token") => token(shared, req, &tenant_seg, now),
        Some("openidConfiguration") => {
            let st = lock(&shared.state);
            if !st.is_tenant(&tenant_seg) {
                let (s, e, m) = verdict_text(90002, Uuid::nil(), &tenant_seg);
                return aadsts(s, e, 90002, &m, now);
            }
            let base = format!("https://{}/{}", req.host_raw, tenant_seg);
            let tid = st.tenant_id;
            Resp::json(
                200,
                &json!({
                    "token_endpoint": format!("{base}/oauth2/v2.0/token"),
                    "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
                    "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
                    "end_session_endpoint": format!("{base}/oauth2/v2.0/logout"),
                    "jwks_uri": format!("https://{}/{tid}/discovery/v2.0/keys", req.host_raw),
                    "issuer": format!("https://{}/{tid}/v2.0", req.host_raw),
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                    "scopes_supported": ["openid", "profile", "email", "offline_access"],
                    "subject_types_supported": ["pairwise"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "oid"],
                    "tenant_region_scope": "EU",
                    "cloud_instance_name": "microsoftonline.com",
                    "cloud_graph_host_name": "graph.windows.net",
                    "msgraph_host": "graph.microsoft.com",
                    "request_uri_parameter_supported": false,
                    "http_logout_supported": true,
                    "frontchannel_logout_supported": true,
                }),
            )
        }
        Some("instanceDiscovery") => {
            // MSAL passes the authority it wants (…/{tenant}/oauth2/v2.0/authorize); point the
            // discovery document at that tenant so the next request resolves.
            let tenant = req
                .q("authorization_endpoint")
                .and_then(|u| url::Url::parse(u).ok())
                .and_then(|u| {
                    u.path_segments()
                        .and_then(|mut s| s.next().map(str::to_string))
                })
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| lock(&shared.state).tenant_id.to_string());
            Resp::json(
                200,
                &json!({
                    "tenant_discovery_endpoint": format!("https://{}/{tenant}/v2.0/.well-known/openid-configuration", req.host_raw),
                    "api-version": "1.1",
                    "metadata": [{
                        "preferred_network": "login.microsoftonline.com",
                        "preferred_cache": "login.windows.net",
                        "aliases": ["login.microsoftonline.com", "login.windows.net", "login.microsoft.com", "sts.windows.net"],
                    }],
                }),
            )
        }
        _ => Resp::json(
            404,
            &json!({
                "error": "not_found",
                "error_description": format!("The emulated token service has no route {} {}.", req.method, req.path),
            }),
        ),
    }
}

/// HTTP Basic client credentials: base64(urlencode(id):urlencode(secret)) (RFC 6749 2.3.1).
/// `None` without a Basic Authorization header; `Some(Err)` when the header does not decode.
fn basic_credentials(req: &Req) -> Option<Result<(String, String), ()>> {
    let h = req.header("authorization")?;
    let rest = h
        .strip_prefix("Basic ")
        .or_else(|| h.strip_prefix("basic "))?;
    let decoded = b64_decode(rest.trim()).and_then(|b| String::from_utf8(b).ok());
    let Some((id, sec)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        return Some(Err(()));
    };
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some(Ok((dec(id), dec(sec))))
}

/// The client id a token request presents (the Basic user, else the form's `client_id`), for
/// the request log; refused when its credentials do not parse or the id is not a GUID (Entra
/// refuses both, AADSTS7000216 / AADSTS700038).
pub fn presented_client_id(req: &Req) -> Result<Uuid, CallerAbsence> {
    let id = match basic_credentials(req) {
        Some(r) => r.map_err(|()| CallerAbsence::CredentialsRefused)?.0,
        None => url::form_urlencoded::parse(&req.body)
            .find(|(k, _)| k == "client_id")
            .map(|(_, v)| v.into_owned())
            .ok_or(CallerAbsence::NoCredentials)?,
    };
    Uuid::parse_str(&id).map_err(|_| CallerAbsence::CredentialsRefused)
}

/// A token request's form body (`application/x-www-form-urlencoded`).
struct TokenForm(Vec<(String, String)>);

impl TokenForm {
    fn parse(req: &Req) -> TokenForm {
        TokenForm(
            url::form_urlencoded::parse(&req.body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn get(&self, n: &str) -> Option<String> {
        self.0.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
    }
}

/// The v2 token endpoint, client credentials grant (identity platform docs "OAuth 2.0 client
/// credentials flow"; refusals as in "Microsoft Entra authentication and authorization error
/// codes"). Checks in Entra's order: tenant, grant, client, scope, application, credential.
fn token(shared: &Shared, req: &Req, tenant_seg: &str, now: DateTime<Utc>) -> Resp {
    let form = TokenForm::parse(req);
    let st = lock(&shared.state);
    if !st.is_tenant(tenant_seg) {
        let (s, e, m) = verdict_text(90002, Uuid::nil(), tenant_seg);
        return aadsts(s, e, 90002, &m, now);
    }
    let answer = (|| -> Result<Resp, Resp> {
        check_grant_type(&form, now)?;
        let (app_id, basic) = client_identity(req, &form, now)?;
        let aud = token_audience(&st, &form.get("scope").unwrap_or_default(), now)?;
        let secret = basic.map(|b| b.1).or_else(|| form.get("client_secret"));
        let Some(app) = st.app_by_app_id(app_id) else {
            let (s, e, m) = verdict_text(700016, app_id, tenant_seg);
            return Err(aadsts(s, e, 700016, &m, now));
        };
        client_verdict(
            &st,
            app,
            form.get("client_assertion"),
            form.get("client_assertion_type"),
            secret,
            tenant_seg,
            now,
        )?;
        let (tok, _) = mint(
            &shared.key,
            st.tenant_id,
            app.sp_id,
            app.app_id,
            aud,
            &app.graph_roles,
            now,
            st.token_lifetime,
        );
        Ok(Resp::json(
            200,
            &json!({
                "token_type": "Bearer",
                "expires_in": st.token_lifetime,
                "ext_expires_in": st.token_lifetime,
                "access_token": tok,
            }),
        ))
    })();
    answer.unwrap_or_else(|refusal| refusal)
}

/// Only the client credentials grant is emulated.
fn check_grant_type(form: &TokenForm, now: DateTime<Utc>) -> Result<(), Resp> {
    match form.get("grant_type").as_deref() {
        Some("client_credentials") => Ok(()),
        Some(other) => Err(aadsts(
            400,
            "unsupported_grant_type",
            70003,
            &format!(
                "The app requested an unsupported grant type '{other}'. Only client_credentials is emulated."
            ),
            now,
        )),
        None => Err(aadsts(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
            now,
        )),
    }
}

/// The client's application id (the Basic user, else the form's `client_id`) and the HTTP
/// Basic credentials when the request used them.
fn client_identity(
    req: &Req,
    form: &TokenForm,
    now: DateTime<Utc>,
) -> Result<(Uuid, Option<(String, String)>), Resp> {
    let basic = match basic_credentials(req) {
        Some(Err(())) => {
            return Err(aadsts(
                401,
                "invalid_client",
                7000216,
                "The Authorization header is not valid HTTP Basic credentials.",
                now,
            ));
        }
        other => other.and_then(Result::ok),
    };
    let client_id = basic
        .as_ref()
        .map(|b| b.0.clone())
        .or_else(|| form.get("client_id"));
    let Some(client_id) = client_id else {
        return Err(aadsts(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
            now,
        ));
    };
    let Ok(app_id) = Uuid::parse_str(&client_id) else {
        return Err(aadsts(
            400,
            "unauthorized_client",
            700038,
            &format!("{client_id} is not a valid application identifier."),
            now,
        ));
    };
    Ok((app_id, basic))
}

/// The token's audience: the client credentials flow takes exactly one `{resource}/.default`.
fn token_audience(
    st: &crate::model::Tenant,
    scope: &str,
    now: DateTime<Utc>,
) -> Result<&'static str, Resp> {
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    match scopes.as_slice() {
        [] => Err(aadsts(
            400,
            "invalid_scope",
            70011,
            "The provided request must include a 'scope' input parameter.",
            now,
        )),
        [one] if one.ends_with("/.default") => {
            let res = one.trim_end_matches("/.default");
            audience_for(res).ok_or_else(|| {
                aadsts(
                    400,
                    "invalid_resource",
                    500011,
                    &format!(
                        "The resource principal named {res} was not found in the tenant named {}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
                        st.tenant_domain
                    ),
                    now,
                )
            })
        }
        _ => Err(aadsts(
            400,
            "invalid_scope",
            70011,
            &format!(
                "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid. For the client credentials flow the scope must be a single resource followed by /.default."
            ),
            now,
        )),
    }
}

/// Entra's verdict on the client's credential: a client assertion (certificate credentials,
/// keycreds.rs) or a client secret.
fn client_verdict(
    st: &crate::model::Tenant,
    app: &crate::model::App,
    assertion: Option<String>,
    assertion_type: Option<String>,
    secret: Option<String>,
    tenant_seg: &str,
    now: DateTime<Utc>,
) -> Result<(), Resp> {
    if let Some(assertion) = assertion {
        // Certificate credentials (keycreds.rs has the checks and their sources).
        if assertion_type.as_deref() != Some(ASSERTION_TYPE) {
            return Err(aadsts(
                400,
                "invalid_request",
                50027,
                &format!("client_assertion_type must be '{ASSERTION_TYPE}'."),
                now,
            ));
        }
        if let Err((code, text)) =
            crate::keycreds::check_assertion(st, app, &assertion, tenant_seg, now)
        {
            return Err(aadsts(401, "invalid_client", code, &text, now));
        }
    } else {
        let Some(secret) = secret else {
            return Err(aadsts(
                401,
                "invalid_client",
                7000216,
                "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
                now,
            ));
        };
        if let Err(code) = st.check_secret(app.app_id, &secret, now) {
            let (s, e, m) = verdict_text(code, app.app_id, tenant_seg);
            return Err(aadsts(s, e, code, &m, now));
        }
    }
    Ok(())
}

fn msi_error(status: u16, error: &str, msg: &str) -> Resp {
    Resp::json(
        status,
        &json!({"error": error, "error_description": msg, "statusCode": status, "message": msg}),
    )
}

/// The managed identity a `/msi/token` request selects by its X-IDENTITY-HEADER, for the request
/// log; refused when the header matches no identity.
pub fn msi_client_id(shared: &Shared, req: &Req) -> Result<Uuid, CallerAbsence> {
    let header = req
        .header("x-identity-header")
        .ok_or(CallerAbsence::NoCredentials)?;
    let st = lock(&shared.state);
    let mi = st.mis.iter().find(|m| m.header == header);
    mi.map(|m| m.client_id)
        .ok_or(CallerAbsence::CredentialsRefused)
}

/// App Service managed identity endpoint, api-version 2019-08-01 (App Service docs "How to use
/// managed identities for App Service and Azure Functions", REST endpoint reference). The
/// identity header selects the identity (each site has its own header value).
pub fn handle_msi(shared: &Shared, req: &Req) -> Resp {
    let now = shared.now();
    let header = match msi_protocol(req) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let st = lock(&shared.state);
    let Some(mi) = st.mis.iter().find(|m| m.header == header) else {
        return msi_error(
            400,
            "invalid_request",
            "The X-IDENTITY-HEADER value does not match any identity of this app.",
        );
    };
    let Some(resource) = req.q("resource") else {
        return msi_error(
            400,
            "invalid_request",
            "The resource query parameter is required.",
        );
    };
    if let Err(r) = check_identity_selectors(req, mi) {
        return r;
    }
    let Some(aud) = audience_for(resource) else {
        return msi_error(
            400,
            "invalid_resource",
            &format!(
                "AADSTS500011: The resource principal named {resource} was not found in the tenant."
            ),
        );
    };
    let (tok, exp) = mint(
        &shared.key,
        st.tenant_id,
        mi.principal_id,
        mi.client_id,
        aud,
        &mi.graph_roles,
        now,
        st.token_lifetime,
    );
    Resp::json(
        200,
        &json!({
            "access_token": tok,
            "expires_on": exp.to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": mi.client_id,
        }),
    )
}

/// The endpoint's protocol: GET, api-version 2019-08-01 and an X-IDENTITY-HEADER, whose value
/// is returned.
fn msi_protocol(req: &Req) -> Result<&str, Resp> {
    if req.method != Method::GET {
        return Err(msi_error(
            405,
            "method_not_allowed",
            "Only GET is supported on the managed identity endpoint.",
        ));
    }
    match req.q("api-version") {
        Some("2019-08-01") => {}
        Some(v) => {
            return Err(msi_error(
                400,
                "invalid_request",
                &format!(
                    "api-version '{v}' is not supported; the App Service identity endpoint of the emulator speaks 2019-08-01."
                ),
            ));
        }
        None => {
            return Err(msi_error(
                400,
                "invalid_request",
                "The api-version query parameter is required (2019-08-01).",
            ));
        }
    }
    req.header("x-identity-header").ok_or_else(|| {
        msi_error(
            400,
            "invalid_request",
            "The X-IDENTITY-HEADER header is missing.",
        )
    })
}

/// A user-assigned selector must name this identity (one identity per site here); selection
/// by resource id is not emulated.
fn check_identity_selectors(req: &Req, mi: &crate::model::Mi) -> Result<(), Resp> {
    for sel in ["client_id", "principal_id", "object_id"] {
        if let Some(v) = req.q(sel) {
            let ok = Uuid::parse_str(v)
                .ok()
                .is_some_and(|u| u == mi.client_id || u == mi.principal_id);
            if !ok {
                return Err(msi_error(
                    400,
                    "invalid_request",
                    "Unable to load the proper Managed Identity.",
                ));
            }
        }
    }
    if req.q("mi_res_id").is_some() || req.q("msi_res_id").is_some() {
        return Err(msi_error(
            400,
            "invalid_request",
            "Unable to load the proper Managed Identity. (User-assigned identities by resource id are not emulated.)",
        ));
    }
    Ok(())
}
