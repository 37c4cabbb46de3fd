//! Logic Apps API connections (`Microsoft.Web/connections`, api-version [`API_VERSION`], the only
//! stable one): read a connection's status and set one of its parameter values.
//!
//! Why PATCH and not PUT: `properties.parameterValues` is write-only — ARM never returns it, so
//! a read-modify-write PUT would have to resend values we cannot read back (the other
//! parameters, e.g. `token:clientId`, `token:TenantId`) and would wipe them if we did not.
//! PATCH with only `{"properties":{"parameterValues":{"<param>":"<value>"}}}` changes the one
//! value and leaves the others as they are (the emulator implements PATCH as a merge of
//! `parameterValues`; for real Azure this merge is UNCONFIRMED in the docs (contracts §8.2) and
//! is checked by the status that follows: a connection whose token parameters were wiped reports
//! `Error`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use reqwest::Method;
use serde::Deserialize;

use super::arm::Arm;
use super::common::{Idempotency, ServiceOptions, arm_error_enum, parse_json};
use crate::cloud::Cloud;
use crate::policy::model::ArmResource;
use crate::secret::SecretValue;

pub const API_VERSION: &str = "2016-06-01";

arm_error_enum!(ConnectionError, "API connection");

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
        }
    }

    fn path(c: &ArmResource) -> String {
        Arm::resource_id(c, "Microsoft.Web/connections")
    }

    fn describe(c: &ArmResource) -> String {
        format!("connection {}/{}", c.resource_group, c.name)
    }

    pub async fn get(&self, conn: &ArmResource) -> Result<ConnectionInfo, ConnectionError> {
        let reply = self
            .arm
            .call(
                Method::GET,
                &Self::path(conn),
                API_VERSION,
                None,
                Idempotency::Idempotent,
            )
            .await
            .map_err(|f| ConnectionError::from_failure(&f, || Self::describe(conn)))?;
        parse_connection(&reply.body).map_err(ConnectionError::BadAnswer)
    }

    /// Sets `properties.parameterValues[parameter]` and nothing else (see the module doc).
    pub async fn set_parameter(
        &self,
        conn: &ArmResource,
        parameter: &str,
        value: &SecretValue,
    ) -> Result<(), ConnectionError> {
        let body = serde_json::json!({
            "properties": { "parameterValues": { parameter: value.expose() } }
        });
        let reply = self
            .arm
            .call(
                Method::PATCH,
                &Self::path(conn),
                API_VERSION,
                Some(&body),
                Idempotency::Idempotent,
            )
            .await
            .map_err(|f| ConnectionError::from_failure(&f, || Self::describe(conn)))?;
        parse_connection(&reply.body)
            .map(|_| ())
            .map_err(ConnectionError::BadAnswer)
    }
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
