//! Managed API definitions (`Microsoft.Web/locations/managedApis`): which connection parameters
//! a connector has and which of them are secret (`securestring`, write-only on the connection).
//!
//! Source: `ManagedApis_Get` in Azure/azure-rest-api-specs
//! `specification/web/resource-manager/Microsoft.Web/stable/2016-06-01/logicAppsManagementClient.json`
//! (`ApiEntity.properties.connectionParameters`, `ConnectionParameter.type`: `string`,
//! `securestring`, `secureobject`, `int`, `bool`, `object`, `array`, `oauthSetting`,
//! `connection`). The built-in `keyvault` parameters are the ones ARM templates set for a
//! service principal (`token:clientId`, `token:clientSecret`, `token:TenantId`,
//! `token:grantType`) plus `vaultName`; a scenario adds others (`managedApis`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::scenario::ManagedApiSpec;

/// Parameter name → value.
type Values = BTreeMap<String, String>;

/// The catalogue a tenant serves: the built-in `keyvault` plus the scenario's.
pub fn catalogue(extra: &[ManagedApiSpec]) -> BTreeMap<String, BTreeMap<String, String>> {
    let keyvault: BTreeMap<String, String> = [
        ("vaultName", "string"),
        ("token", "oauthSetting"),
        ("token:clientId", "string"),
        ("token:clientSecret", "securestring"),
        ("token:TenantId", "string"),
        ("token:grantType", "string"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut all = BTreeMap::from([("keyvault".to_string(), keyvault)]);
    for a in extra {
        all.insert(a.name.to_ascii_lowercase(), a.connection_parameters.clone());
    }
    all
}

fn is_secret(ty: &str) -> bool {
    ty.eq_ignore_ascii_case("securestring") || ty.eq_ignore_ascii_case("secureobject")
}

/// Splits parameter values into (secret, non-secret) by the API's definition. A name the API
/// does not define is refused with ARM's message (Azure/LogicAppsUX issue 2662 quotes
/// "Parameter '…' is not allowed on the connection since it was not defined as a connection
/// parameter when the API was registered."). An API the catalogue lacks keeps every value
/// secret (nothing is known about it).
pub fn split(
    catalogue: &BTreeMap<String, BTreeMap<String, String>>,
    api: &str,
    values: BTreeMap<String, String>,
) -> Result<(Values, Values), String> {
    let Some(def) = catalogue.get(&api.to_ascii_lowercase()) else {
        return Ok((values, BTreeMap::new()));
    };
    let mut secret = BTreeMap::new();
    let mut plain = BTreeMap::new();
    for (k, v) in values {
        match def.get(&k) {
            None => return Err(not_defined(&k)),
            Some(ty) if is_secret(ty) => {
                secret.insert(k, v);
            }
            Some(_) => {
                plain.insert(k, v);
            }
        }
    }
    Ok((secret, plain))
}

/// ARM's message for a parameter the managed API does not define.
pub fn not_defined(name: &str) -> String {
    format!(
        "Parameter '{name}' is not allowed on the connection since it was not defined as a connection parameter when the API was registered."
    )
}

/// The `ManagedApis_Get` answer (trimmed to what clients read: `connectionParameters`).
pub fn definition_json(
    sub: &str,
    location: &str,
    name: &str,
    def: &BTreeMap<String, String>,
) -> Value {
    let params: serde_json::Map<String, Value> = def
        .iter()
        .map(|(k, ty)| {
            (
                k.clone(),
                json!({"type": ty, "uiDefinition": {"displayName": k}}),
            )
        })
        .collect();
    json!({
        "id": format!("/subscriptions/{sub}/providers/Microsoft.Web/locations/{location}/managedApis/{name}"),
        "name": name,
        "type": "Microsoft.Web/locations/managedApis",
        "location": location,
        "properties": {
            "name": name,
            "connectionParameters": params,
            "generalInformation": {"displayName": name},
            "capabilities": ["actions"],
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyvault_client_secret_is_the_only_secret() {
        let c = catalogue(&[]);
        let values = BTreeMap::from([
            ("token:clientId".to_string(), "a".to_string()),
            ("token:clientSecret".to_string(), "s".to_string()),
        ]);
        let (secret, plain) = split(&c, "keyvault", values).unwrap();
        assert_eq!(secret.keys().collect::<Vec<_>>(), ["token:clientSecret"]);
        assert_eq!(plain.keys().collect::<Vec<_>>(), ["token:clientId"]);
        let typo = BTreeMap::from([("token:clientSecert".to_string(), "s".to_string())]);
        assert!(
            split(&c, "keyvault", typo)
                .unwrap_err()
                .contains("token:clientSecert")
        );
    }
}
