//! Which Azure cloud the rotator talks to, and every base URL and audience that follows from it.
//!
//! Product code builds real Azure URLs only, from here. Tests and dev mode do not change these
//! URLs: they redirect the host names at the transport (`secret_rotator::transport`, in the main crate).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    #[default]
    Public,
    UsGovernment,
    China,
}

impl std::str::FromStr for Cloud {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "public" | "azurecloud" | "azurepubliccloud" => Ok(Cloud::Public),
            "usgovernment" | "azureusgovernment" | "usgov" => Ok(Cloud::UsGovernment),
            "china" | "azurechinacloud" => Ok(Cloud::China),
            other => Err(format!(
                "unknown cloud '{other}': expected one of public, usgovernment, china"
            )),
        }
    }
}

impl Cloud {
    /// Entra authority host, e.g. `https://login.microsoftonline.com`.
    pub fn authority_host(self) -> &'static str {
        match self {
            Cloud::Public => "https://login.microsoftonline.com",
            Cloud::UsGovernment => "https://login.microsoftonline.us",
            Cloud::China => "https://login.chinacloudapi.cn",
        }
    }

    /// Microsoft Graph base, without the version segment.
    pub fn graph_endpoint(self) -> &'static str {
        match self {
            Cloud::Public => "https://graph.microsoft.com",
            Cloud::UsGovernment => "https://graph.microsoft.us",
            Cloud::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }

    /// Azure Resource Manager base.
    pub fn arm_endpoint(self) -> &'static str {
        match self {
            Cloud::Public => "https://management.azure.com",
            Cloud::UsGovernment => "https://management.usgovcloudapi.net",
            Cloud::China => "https://management.chinacloudapi.cn",
        }
    }

    /// Key Vault DNS suffix: a vault named `kv1` lives at `https://kv1.{suffix}`.
    pub fn keyvault_suffix(self) -> &'static str {
        match self {
            Cloud::Public => "vault.azure.net",
            Cloud::UsGovernment => "vault.usgovcloudapi.net",
            Cloud::China => "vault.azure.cn",
        }
    }

    /// Storage blob DNS suffix: account `st1` is at `https://st1.{suffix}`.
    pub fn blob_suffix(self) -> &'static str {
        match self {
            Cloud::Public => "blob.core.windows.net",
            Cloud::UsGovernment => "blob.core.usgovcloudapi.net",
            Cloud::China => "blob.core.chinacloudapi.cn",
        }
    }

    pub fn vault_url(self, vault: &str) -> String {
        format!("https://{vault}.{}", self.keyvault_suffix())
    }

    pub fn blob_url(self, account: &str) -> String {
        format!("https://{account}.{}", self.blob_suffix())
    }

    /// Scope for an Entra v2 token request (`/.default` form).
    pub fn graph_scope(self) -> String {
        format!("{}/.default", self.graph_endpoint())
    }
    pub fn arm_scope(self) -> String {
        format!("{}/.default", self.arm_endpoint())
    }
    pub fn keyvault_scope(self) -> String {
        format!("https://{}/.default", self.keyvault_suffix())
    }
    pub fn storage_scope(self) -> &'static str {
        "https://storage.azure.com/.default"
    }
}
