//! Azure Automation variables (`Microsoft.Automation/automationAccounts/{a}/variables/{v}`,
//! api-version [`API_VERSION`]): read a variable's metadata, set an encrypted value.
//!
//! Values travel JSON-encoded: the string `text` is sent as `"\"text\""` (runbooks read it with
//! `Get-AutomationVariable`, which decodes it). An encrypted value is never returned by ARM, so
//! reading gives only `isEncrypted` and the timestamps. Updates use PATCH (only `value`), which
//! keeps `isEncrypted` and the description; a missing variable is created with PUT and
//! `isEncrypted: true`. A variable with `isEncrypted: false` is never written: anyone with Reader
//! on the account could read the secret there.

use std::fmt;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use reqwest::Method;
use serde::Deserialize;

use super::arm::{Arm, esc};
use super::common::{Failure, Idempotency, ServiceOptions, parse_json};
use super::error::{Error, Service};
use crate::cloud::Cloud;
use crate::domain::SetVariableOutcome;
use crate::policy::model::ArmResource;
use crate::secret::SecretValue;

pub const API_VERSION: &str = "2024-10-23";

/// An Automation failure of `operation` on variable `name` as an [`Error`].
fn failed(f: &Failure, operation: &'static str, account: &ArmResource, name: &str) -> Error {
    Error::from_failure(Service::Automation, operation, f)
        .on(AutomationClient::describe(account, name))
}

fn bad(operation: &'static str) -> impl Fn(String) -> Error {
    move |m| Error::bad_answer(Service::Automation, operation, m)
}

const GET: &str = "read a variable";
const UPDATE: &str = "update a variable";
const CREATE: &str = "create a variable";

/// A variable's metadata (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableInfo {
    pub name: String,
    pub is_encrypted: bool,
    pub description: Option<String>,
    pub last_modified: Option<String>,
}

#[derive(Clone)]
pub struct AutomationClient {
    arm: Arm,
}

impl fmt::Debug for AutomationClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AutomationClient").finish_non_exhaustive()
    }
}

impl AutomationClient {
    pub fn new(
        cloud: Cloud,
        credential: Arc<dyn TokenCredential>,
        options: ServiceOptions,
    ) -> Self {
        Self {
            arm: Arm::new(cloud, credential, options),
        }
    }

    fn path(account: &ArmResource, name: &str) -> String {
        format!(
            "{}/variables/{}",
            Arm::resource_id(account, "Microsoft.Automation/automationAccounts"),
            esc(name)
        )
    }

    fn describe(account: &ArmResource, name: &str) -> String {
        format!(
            "variable {name} in Automation account {}/{}",
            account.resource_group, account.name
        )
    }

    /// The variable's metadata; `None` when the variable does not exist (the account must).
    pub async fn get_variable(
        &self,
        account: &ArmResource,
        name: &str,
    ) -> Result<Option<VariableInfo>, Error> {
        match self
            .arm
            .call(
                Method::GET,
                &Self::path(account, name),
                API_VERSION,
                None,
                Idempotency::Idempotent,
            )
            .await
        {
            Ok(reply) => parse_variable(&reply.body).map(Some).map_err(bad(GET)),
            Err(f) => match failed(&f, GET, account, name) {
                // A missing account or group has its own code; any other 404 is the variable.
                // (If ARM ever says plain ResourceNotFound for a missing account, the PUT
                // that follows in `set_value` fails with NotFound and says so.)
                e if e.is_not_found()
                    && !matches!(
                        e.code(),
                        Some("ParentResourceNotFound" | "ResourceGroupNotFound")
                    ) =>
                {
                    Ok(None)
                }
                e => Err(e),
            },
        }
    }

    /// Replaces the value of an existing variable (PATCH; `isEncrypted` is kept).
    pub async fn update_value(
        &self,
        account: &ArmResource,
        name: &str,
        value: &SecretValue,
    ) -> Result<(), Error> {
        let body = serde_json::json!({
            "name": name,
            "properties": { "value": json_encode(value) }
        });
        let reply = self
            .arm
            .call(
                Method::PATCH,
                &Self::path(account, name),
                API_VERSION,
                Some(&body),
                Idempotency::Idempotent,
            )
            .await
            .map_err(|f| failed(&f, UPDATE, account, name))?;
        parse_variable(&reply.body).map(|_| ()).map_err(bad(UPDATE))
    }

    /// Creates the variable encrypted (PUT). A PUT on an existing variable replaces it, so call
    /// [`Self::set_value`] unless you know it is missing.
    pub async fn create_encrypted(
        &self,
        account: &ArmResource,
        name: &str,
        value: &SecretValue,
        description: &str,
    ) -> Result<(), Error> {
        let body = serde_json::json!({
            "name": name,
            "properties": {
                "value": json_encode(value),
                "description": description,
                "isEncrypted": true,
            }
        });
        let reply = self
            .arm
            .call(
                Method::PUT,
                &Self::path(account, name),
                API_VERSION,
                Some(&body),
                Idempotency::Idempotent,
            )
            .await
            .map_err(|f| failed(&f, CREATE, account, name))?;
        parse_variable(&reply.body).map(|_| ()).map_err(bad(CREATE))
    }

    /// Updates an encrypted variable, creating it encrypted when it does not exist; never
    /// writes into a plain-text one.
    pub async fn set_value(
        &self,
        account: &ArmResource,
        name: &str,
        value: &SecretValue,
        description: &str,
    ) -> Result<SetVariableOutcome, Error> {
        match self.get_variable(account, name).await? {
            Some(v) if !v.is_encrypted => Ok(SetVariableOutcome::RefusedUnencrypted),
            Some(_) => {
                self.update_value(account, name, value).await?;
                Ok(SetVariableOutcome::Updated)
            }
            None => {
                self.create_encrypted(account, name, value, description)
                    .await?;
                Ok(SetVariableOutcome::Created)
            }
        }
    }
}

/// The string as ARM carries a string variable: JSON-encoded (`text` → `"text"`).
fn json_encode(value: &SecretValue) -> String {
    serde_json::Value::String(value.expose().to_string()).to_string()
}

pub(crate) fn parse_variable(body: &[u8]) -> Result<VariableInfo, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Props {
        is_encrypted: Option<bool>,
        description: Option<String>,
        last_modified_time: Option<String>,
    }
    #[derive(Deserialize)]
    struct Var {
        name: Option<String>,
        properties: Option<Props>,
    }
    let v: Var = parse_json("Automation variable", body)?;
    let p = v
        .properties
        .ok_or("Automation variable: field 'properties' is missing")?;
    Ok(VariableInfo {
        name: v
            .name
            .ok_or("Automation variable: field 'name' is missing")?,
        is_encrypted: p
            .is_encrypted
            .ok_or("Automation variable: field 'properties.isEncrypted' is missing")?,
        description: p.description,
        last_modified: p.last_modified_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_json_encoded() {
        assert_eq!(json_encode(&SecretValue::new("a\"b")), r#""a\"b""#);
        assert_eq!(json_encode(&SecretValue::new("text")), "\"text\"");
    }

    #[test]
    fn parses_variables() {
        let v = parse_variable(br#"{"id":"x","name":"V","properties":{"isEncrypted":true,"description":null,"lastModifiedTime":"2025-01-15T02:00:03.3+00:00"}}"#).unwrap();
        assert!(v.is_encrypted);
        assert_eq!(v.name, "V");
        assert!(
            parse_variable(br#"{"name":"V","properties":{}}"#)
                .unwrap_err()
                .contains("isEncrypted")
        );
        assert!(parse_variable(br#"{"name":"V","properties":{"isEncrypted":"yes"}}"#).is_err());
        assert!(
            parse_variable(br#"{"properties":{"isEncrypted":true}}"#)
                .unwrap_err()
                .contains("name")
        );
        assert!(parse_variable(b"").is_err());
    }
}
