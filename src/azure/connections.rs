//! Logic Apps API connections (`Microsoft.Web/connections`, api-version [`API_VERSION`], the only
//! stable one): read a connection's status and replace one of its secret parameter values.
//!
//! Why a full PUT and not PATCH: ARM refuses a PATCH that touches `properties` (400
//! `PatchApiConnectionPropertiesNotSupported`, "None of the fields inside the properties object
//! can be patched", recorded in hashicorp/terraform-provider-azurerm; the 2016-06-01 spec's only
//! PATCH example changes tags). A PUT replaces the whole resource, write-only `parameterValues`
//! included, so it must carry every parameter the connection needs. What goes in it comes from
//! honest sources only: the connection's own GET (location, kind, tags, displayName, `api.id`,
//! `nonSecretParameterValues`), the managed API's definition (`ManagedApis_Get`: which
//! parameters exist and which are `securestring`), and the new value. A secret parameter other
//! than ours cannot be read back: such a connection is refused ([`ErrorKind::Blocked`]) rather
//! than wiped. The definition is read once per process (Microsoft's, the same for every
//! connection to that API), alongside the PUT's fresh GET when an earlier GET already named the
//! API; it cannot be skipped: no GET says which secret parameters a connection has. Whether ARM accepts a PUT that changes an existing connection's parameters is
//! itself not settled by the evidence (the terraform note says the error came "for both
//! CreateOrUpdate and Update"); a refusal is [`ErrorKind::Blocked`] with the manual step.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use reqwest::Method;
use serde::Deserialize;

use super::arm::Arm;
use super::common::{Failure, Idempotency, Reply, ServiceOptions, parse_json};
use super::error::{Error, ErrorKind, Service};
use crate::cloud::Cloud;
use crate::policy::model::ArmResource;
use crate::secret::SecretValue;

pub const API_VERSION: &str = "2016-06-01";

fn failed(f: &Failure, operation: &'static str, conn: &ArmResource) -> Error {
    Error::from_failure(Service::ApiConnection, operation, f).on(ConnectionsClient::describe(conn))
}

fn bad(operation: &'static str) -> impl Fn(String) -> Error {
    move |m| Error::bad_answer(Service::ApiConnection, operation, m)
}

/// Azure will not take the change as the rotator can make it: `why` says what a person must do.
fn blocked(conn: &ArmResource, why: String) -> Error {
    Error::new(ErrorKind::Blocked, Service::ApiConnection, REPLACE)
        .on(ConnectionsClient::describe(conn))
        .with_detail(why)
}

const GET: &str = "read the connection";
const REPLACE: &str = "replace a secret parameter";
const API: &str = "read the managed API definition";

/// The connection's health as ARM computes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionHealth {
    Connected,
    /// `Error` (or any other status) with Azure's message, e.g. the AADSTS text.
    Error {
        status: String,
        message: Option<String>,
    },
    /// No `statuses` in the answer.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub display_name: Option<String>,
    pub api_id: Option<String>,
    pub health: ConnectionHealth,
    /// The non-secret parameters ARM does return (e.g. `token:clientId`).
    pub non_secret_parameters: BTreeMap<String, String>,
}

#[derive(Clone)]
pub struct ConnectionsClient {
    arm: Arm,
    /// Managed API definitions by `api.id`, read once per process: they are Microsoft's, the
    /// same for every connection to that API in that region.
    definitions: Arc<std::sync::Mutex<std::collections::HashMap<String, BTreeMap<String, String>>>>,
    /// Each connection's `api.id` as its last GET said: a replace reads the API's definition
    /// alongside its fresh GET instead of after it (and checks the GET still names that API).
    api_ids: Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
}

impl fmt::Debug for ConnectionsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionsClient").finish_non_exhaustive()
    }
}

impl ConnectionsClient {
    pub fn new(
        cloud: Cloud,
        credential: Arc<dyn TokenCredential>,
        options: ServiceOptions,
    ) -> Self {
        Self {
            arm: Arm::new(cloud, credential, options),
            definitions: Default::default(),
            api_ids: Default::default(),
        }
    }

    fn path(c: &ArmResource) -> String {
        Arm::resource_id(c, "Microsoft.Web/connections")
    }

    fn describe(c: &ArmResource) -> String {
        format!("connection {}/{}", c.resource_group, c.name)
    }

    pub async fn get(&self, conn: &ArmResource) -> Result<ConnectionInfo, Error> {
        let reply = self.get_reply(conn).await?;
        let info = parse_connection(&reply.body).map_err(bad(GET))?;
        if let (Some(id), Ok(mut ids)) = (&info.api_id, self.api_ids.lock()) {
            ids.insert(Self::path(conn).to_ascii_lowercase(), id.clone());
        }
        Ok(info)
    }

    /// The connection's fresh GET and its managed API's definition: together when an earlier
    /// GET named the API and this one still does, else one after the other (the definition is
    /// only ever the one of the API the fresh GET names).
    async fn read_for_replace(
        &self,
        conn: &ArmResource,
    ) -> Result<(serde_json::Value, String, BTreeMap<String, String>), Error> {
        let known = self
            .api_ids
            .lock()
            .ok()
            .and_then(|ids| ids.get(&Self::path(conn).to_ascii_lowercase()).cloned());
        let (current, early) = match known {
            Some(id) => {
                let (current, definition) =
                    futures::join!(self.get_raw(conn), self.managed_api_parameters(&id, conn));
                (current?, Some((id, definition)))
            }
            None => (self.get_raw(conn).await?, None),
        };
        let api_id = current
            .pointer("/properties/api/id")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| bad(GET)("API connection: properties.api.id is missing".into()))?
            .to_string();
        let definition = match early {
            Some((id, definition)) if id.eq_ignore_ascii_case(&api_id) => definition?,
            _ => self.managed_api_parameters(&api_id, conn).await?,
        };
        Ok((current, api_id, definition))
    }

    async fn get_reply(&self, conn: &ArmResource) -> Result<Reply, Error> {
        self.arm
            .call(
                Method::GET,
                &Self::path(conn),
                API_VERSION,
                None,
                Idempotency::Idempotent,
            )
            .await
            .map_err(|f| failed(&f, GET, conn))
    }

    /// Replaces `properties.parameterValues[parameter]` with `value` by a full PUT built from
    /// the connection's GET and its managed API's definition (see the module doc); returns the
    /// connection as the PUT answered it (with its status).
    pub async fn replace_secret_parameter(
        &self,
        conn: &ArmResource,
        parameter: &str,
        value: &SecretValue,
    ) -> Result<ConnectionInfo, Error> {
        let (current, api_id, definition) = self.read_for_replace(conn).await?;
        check_parameters(&definition, &api_id, parameter).map_err(|why| blocked(conn, why))?;
        let body = put_body(&current, &api_id, parameter, value);
        match self
            .arm
            .call(
                Method::PUT,
                &Self::path(conn),
                API_VERSION,
                Some(&body),
                Idempotency::Idempotent,
            )
            .await
        {
            Ok(reply) => parse_connection(&reply.body).map_err(bad(REPLACE)),
            Err(f) => Err(put_failure(failed(&f, REPLACE, conn), conn, parameter)),
        }
    }

    async fn get_raw(&self, conn: &ArmResource) -> Result<serde_json::Value, Error> {
        let reply = self.get_reply(conn).await?;
        parse_json("API connection", &reply.body).map_err(bad(GET))
    }

    /// Parameter name → type, from `GET {api.id}` (`ManagedApis_Get`), once per process.
    async fn managed_api_parameters(
        &self,
        api_id: &str,
        conn: &ArmResource,
    ) -> Result<BTreeMap<String, String>, Error> {
        let key = api_id.to_ascii_lowercase();
        if let Some(known) = self
            .definitions
            .lock()
            .ok()
            .and_then(|d| d.get(&key).cloned())
        {
            return Ok(known);
        }
        let read = self.read_managed_api_parameters(api_id, conn).await?;
        if let Ok(mut d) = self.definitions.lock() {
            d.insert(key, read.clone());
        }
        Ok(read)
    }

    async fn read_managed_api_parameters(
        &self,
        api_id: &str,
        conn: &ArmResource,
    ) -> Result<BTreeMap<String, String>, Error> {
        let reply = self
            .arm
            .call(
                Method::GET,
                api_id,
                API_VERSION,
                None,
                Idempotency::Idempotent,
            )
            .await
            .map_err(
                |f| match Error::from_failure(Service::ApiConnection, API, &f).on(api_id) {
                    e if e.is_access_denied() || e.is_not_found() => blocked(
                        conn,
                        format!(
                            "{}: the definition of its managed API {api_id} cannot be read \
                             ({e}), so it cannot be told which other secret parameters a full \
                             PUT would wipe",
                            Self::describe(conn)
                        ),
                    ),
                    e => e,
                },
            )?;
        parse_parameters(&reply.body).map_err(bad(API))
    }
}

fn secret_type(ty: &str) -> bool {
    ty.eq_ignore_ascii_case("securestring") || ty.eq_ignore_ascii_case("secureobject")
}

/// Our parameter must be one of the API's secret parameters, and the only one: any other
/// cannot be read back and a PUT would wipe it.
fn check_parameters(
    definition: &BTreeMap<String, String>,
    api_id: &str,
    parameter: &str,
) -> Result<(), String> {
    let api = api_id.rsplit('/').next().unwrap_or(api_id);
    match definition.get(parameter) {
        None => {
            return Err(format!(
                "'{parameter}' is not a connection parameter of managed API {api} (it has: {}); \
                 fix the policy's parameter name",
                definition.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        Some(ty) if !secret_type(ty) => {
            return Err(format!(
                "'{parameter}' of managed API {api} is of type {ty}, not a secret; fix the \
                 policy's parameter name"
            ));
        }
        Some(_) => {}
    }
    let others: Vec<&str> = definition
        .iter()
        .filter(|(k, ty)| k.as_str() != parameter && secret_type(ty))
        .map(|(k, _)| k.as_str())
        .collect();
    if others.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "managed API {api} also has the secret parameter(s) {}, which ARM never returns; a \
             full PUT would wipe them, so the rotator does not write this connection",
            others.join(", ")
        ))
    }
}

/// The PUT body: the resource as read, the non-secret values, and the new secret.
fn put_body(
    current: &serde_json::Value,
    api_id: &str,
    parameter: &str,
    value: &SecretValue,
) -> serde_json::Value {
    let props = &current["properties"];
    let mut values = props["nonSecretParameterValues"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    values.insert(parameter.to_string(), value.expose().into());
    let mut body = serde_json::json!({
        "location": current["location"],
        "tags": current.get("tags").cloned().unwrap_or_else(|| serde_json::json!({})),
        "properties": {
            "displayName": props["displayName"],
            "api": { "id": api_id },
            "parameterValues": values,
        }
    });
    if let Some(kind) = current.get("kind").filter(|k| !k.is_null()) {
        body["kind"] = kind.clone();
    }
    body
}

/// A refused PUT becomes the manual step; other failures stay ARM failures.
fn put_failure(e: Error, conn: &ArmResource, parameter: &str) -> Error {
    if e.kind() != &ErrorKind::Rejected {
        return e;
    }
    let why = format!(
        "ARM refused to update {} ({}: {}). Manual step: in the Azure portal open the API \
         connection, choose Edit API connection, enter the current value of the Key Vault \
         secret as '{parameter}' and save (or redeploy the connection's template with it). The \
         previous password is kept until the connection is updated.",
        ConnectionsClient::describe(conn),
        e.code().unwrap_or("(no code)"),
        e.message().unwrap_or("(no message)"),
    );
    blocked(conn, why)
}

pub(crate) fn parse_parameters(body: &[u8]) -> Result<BTreeMap<String, String>, String> {
    #[derive(Deserialize)]
    struct Param {
        #[serde(rename = "type")]
        ty: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Props {
        connection_parameters: Option<BTreeMap<String, Param>>,
    }
    #[derive(Deserialize)]
    struct Api {
        properties: Option<Props>,
    }
    let a: Api = parse_json("managed API", body)?;
    Ok(a.properties
        .and_then(|p| p.connection_parameters)
        .ok_or("managed API: properties.connectionParameters is missing")?
        .into_iter()
        .map(|(k, p)| (k, p.ty.unwrap_or_default()))
        .collect())
}

pub(crate) fn parse_connection(body: &[u8]) -> Result<ConnectionInfo, String> {
    #[derive(Deserialize)]
    struct StatusErr {
        message: Option<String>,
    }
    #[derive(Deserialize)]
    struct Status {
        status: Option<String>,
        error: Option<StatusErr>,
    }
    #[derive(Deserialize)]
    struct Api {
        id: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Props {
        display_name: Option<String>,
        api: Option<Api>,
        statuses: Option<Vec<Status>>,
        non_secret_parameter_values: Option<BTreeMap<String, serde_json::Value>>,
    }
    #[derive(Deserialize)]
    struct Conn {
        properties: Option<Props>,
    }
    let c: Conn = parse_json("API connection", body)?;
    let p = c
        .properties
        .ok_or("API connection: field 'properties' is missing")?;
    let health = match p.statuses.as_deref() {
        None | Some([]) => ConnectionHealth::Unknown,
        Some(list) => {
            if let Some(bad) = list
                .iter()
                .find(|s| s.status.as_deref() != Some("Connected"))
            {
                ConnectionHealth::Error {
                    status: bad.status.clone().unwrap_or_else(|| "(none)".into()),
                    message: bad.error.as_ref().and_then(|e| e.message.clone()),
                }
            } else {
                ConnectionHealth::Connected
            }
        }
    };
    let non_secret_parameters = p
        .non_secret_parameter_values
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let s = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, s)
        })
        .collect();
    Ok(ConnectionInfo {
        display_name: p.display_name,
        api_id: p.api.and_then(|a| a.id),
        health,
        non_secret_parameters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_secret_parameter_may_be_written() {
        let def: BTreeMap<String, String> = [
            ("token:clientId", "string"),
            ("token:clientSecret", "securestring"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let api = "/subscriptions/s/providers/Microsoft.Web/locations/w/managedApis/keyvault";
        assert!(check_parameters(&def, api, "token:clientSecret").is_ok());
        let typo = check_parameters(&def, api, "token:clientSecert").unwrap_err();
        assert!(
            typo.contains("not a connection parameter of managed API keyvault"),
            "{typo}"
        );
        assert!(
            check_parameters(&def, api, "token:clientId")
                .unwrap_err()
                .contains("not a secret")
        );
        let mut two = def.clone();
        two.insert("token:otherSecret".into(), "securestring".into());
        let other = check_parameters(&two, api, "token:clientSecret").unwrap_err();
        assert!(other.contains("token:otherSecret"), "{other}");
    }

    #[test]
    fn put_body_keeps_what_get_returned_and_adds_the_secret() {
        let current = serde_json::json!({"location": "westeurope", "kind": "V1", "tags": {"a": "b"},
            "properties": {"displayName": "kv", "api": {"id": "/x/managedApis/keyvault"},
            "nonSecretParameterValues": {"token:clientId": "abc", "vaultName": "v"}}});
        let b = put_body(
            &current,
            "/x/managedApis/keyvault",
            "token:clientSecret",
            &SecretValue::new("s3cret"),
        );
        assert_eq!(b["kind"], "V1");
        assert_eq!(b["tags"]["a"], "b");
        assert_eq!(b["properties"]["parameterValues"]["token:clientId"], "abc");
        assert_eq!(
            b["properties"]["parameterValues"]["token:clientSecret"],
            "s3cret"
        );
        assert_eq!(b["properties"]["api"]["id"], "/x/managedApis/keyvault");
    }

    #[test]
    fn parses_statuses() {
        let ok = br#"{"properties":{"displayName":"kv","statuses":[{"status":"Connected"}],"nonSecretParameterValues":{"token:clientId":"abc"},"api":{"id":"/x/managedApis/keyvault"}}}"#;
        let c = parse_connection(ok).unwrap();
        assert_eq!(c.health, ConnectionHealth::Connected);
        assert_eq!(c.non_secret_parameters["token:clientId"], "abc");
        let bad = br#"{"properties":{"statuses":[{"status":"Error","target":"token","error":{"code":"Unauthorized","message":"AADSTS7000215: Invalid client secret"}}]}}"#;
        assert_eq!(
            parse_connection(bad).unwrap().health,
            ConnectionHealth::Error {
                status: "Error".into(),
                message: Some("AADSTS7000215: Invalid client secret".into())
            }
        );
        assert_eq!(
            parse_connection(br#"{"properties":{}}"#).unwrap().health,
            ConnectionHealth::Unknown
        );
        assert!(parse_connection(b"{}").unwrap_err().contains("properties"));
        assert!(parse_connection(br#"{"properties":{"statuses":"x"}}"#).is_err());
        assert!(parse_connection(b"[").is_err());
    }
}
