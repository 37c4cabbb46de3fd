//! Every permission the rotator's code uses, listed next to the code that needs it
//! ([`REQUIRED_PERMISSIONS`]); the one right a consumer needs from the rotator's deployment
//! ([`CONSUMER_PERMISSIONS`]: a site whose Key Vault reference loads a certificate's PFX); and
//! [`advise_denied`], which turns an access-denied answer into the role, action and scope to
//! grant.
//!
//! The Bicep contract test (`tests/e2e/infra_contract.rs`) compares these lists with the role
//! assignments and Graph app roles in `infra/`: a call added here without a grant there fails
//! the build, and so does a grant nobody uses.
//!
//! Key Vault data actions: "Azure permissions for Security" (MicrosoftDocs/azure-docs
//! articles/role-based-access-control/permissions/security.md, Microsoft.KeyVault DataActions).
//! Certificate, key and secret of one Key Vault certificate are three objects with three RBAC
//! scopes (`/certificates/{n}`, `/keys/{n}`, `/secrets/{n}`; Key Vault RBAC guide: "Key vault
//! secret, certificate, key scope role assignments"): a role on the certificate does not reach
//! its key's `sign` nor its secret (vcsjones/AzureSignTool#296, Azure/azure-sdk-for-python#19919),
//! hence one scope kind each.

/// Which authorization system grants the permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// Microsoft Graph application permission (app role on the managed identity).
    GraphAppRole,
    /// Azure RBAC control-plane action (ARM).
    ArmAction,
    /// Azure RBAC data action (Key Vault, Storage data planes).
    DataAction,
}

/// What the permission is checked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    Tenant,
    /// Each enrolled application's Key Vault.
    Vault,
    /// Each enrolled certificate credential's Key Vault certificate (`/certificates/{name}`).
    Certificate,
    /// The key of each enrolled certificate (`/keys/{name}`, Key Vault's managed key of the
    /// certificate, same name).
    CertificateKey,
    /// The secret of an enrolled certificate (`/secrets/{name}`, the PFX/PEM with the private
    /// key), for a consumer site's identity only: the rotator never reads it.
    CertificateSecret,
    /// Each consumer site (App Service / Function App).
    Site,
    /// Each consumer API connection.
    Connection,
    /// Each consumer Automation account.
    AutomationAccount,
    /// The rotator's own storage account.
    OwnStorage,
}

#[derive(Debug, Clone, Copy)]
pub struct Permission {
    pub plane: Plane,
    pub scope: ScopeKind,
    /// The app role value or RBAC (data) action, as Azure spells it.
    pub action: &'static str,
    /// The client function(s) that need it.
    pub used_by: &'static str,
}

pub const REQUIRED_PERMISSIONS: &[Permission] = &[
    Permission {
        plane: Plane::GraphAppRole,
        scope: ScopeKind::Tenant,
        action: "Application.ReadWrite.OwnedBy",
        used_by: "graph: get application, addPassword, removePassword, ownedObjects",
    },
    Permission {
        plane: Plane::DataAction,
        scope: ScopeKind::Vault,
        action: "Microsoft.KeyVault/vaults/secrets/getSecret/action",
        used_by: "keyvault: get latest value",
    },
    Permission {
        plane: Plane::DataAction,
        scope: ScopeKind::Vault,
        action: "Microsoft.KeyVault/vaults/secrets/setSecret/action",
        used_by: "keyvault: set new version",
    },
    Permission {
        plane: Plane::DataAction,
        scope: ScopeKind::Vault,
        action: "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
        used_by: "keyvault: list versions, get the deleted secret of that name",
    },
    Permission {
        plane: Plane::DataAction,
        scope: ScopeKind::Vault,
        action: "Microsoft.KeyVault/vaults/secrets/update/action",
        used_by: "keyvault: update tags and attributes",
    },
    Permission {
        plane: Plane::DataAction,
        scope: ScopeKind::Certificate,
        action: "Microsoft.KeyVault/vaults/certificates/create/action",
        used_by: "certificates: create a certificate version (CreateCertificate)",
    },
    Permission {
        plane: Plane::DataAction,
        scope: ScopeKind::Certificate,
        action: "Microsoft.KeyVault/vaults/certificates/read",
        used_by: "certificates: get a version, list versions, the pending operation, the policy",
    },
    Permission {
        plane: Plane::DataAction,
        scope: ScopeKind::Certificate,
        action: "Microsoft.KeyVault/vaults/certificates/update/action",
        used_by: "certificates: tag a version (the rotation's bookkeeping, UpdateCertificate)",
    },
    Permission {
        plane: Plane::DataAction,
        scope: ScopeKind::CertificateKey,
        action: "Microsoft.KeyVault/vaults/keys/sign/action",
        used_by: "certificates: sign the addKey/removeKey proof and the client assertion (Sign)",
    },
    Permission {
        plane: Plane::ArmAction,
        scope: ScopeKind::Site,
        action: "Microsoft.Web/sites/config/list/action",
        used_by: "web: list app settings",
    },
    Permission {
        plane: Plane::ArmAction,
        scope: ScopeKind::Site,
        action: "Microsoft.Web/sites/config/write",
        used_by: "web: put app settings, refresh Key Vault references",
    },
    Permission {
        plane: Plane::ArmAction,
        scope: ScopeKind::Site,
        action: "Microsoft.Web/sites/config/read",
        used_by: "web: read Key Vault reference status",
    },
    Permission {
        plane: Plane::ArmAction,
        scope: ScopeKind::Site,
        action: "Microsoft.Web/sites/restart/action",
        used_by: "web: restart after a plain-value change",
    },
    Permission {
        plane: Plane::ArmAction,
        scope: ScopeKind::Site,
        action: "Microsoft.Web/sites/slots/config/list/action",
        used_by: "web: list app settings of a deployment slot",
    },
    Permission {
        plane: Plane::ArmAction,
        scope: ScopeKind::Site,
        action: "Microsoft.Web/sites/slots/config/write",
        used_by: "web: put app settings of a slot, refresh its Key Vault references",
    },
    Permission {
        plane: Plane::ArmAction,
        scope: ScopeKind::Site,
        action: "Microsoft.Web/sites/slots/config/read",
        used_by: "web: read a slot's Key Vault reference status",
    },
    Permission {
        plane: Plane::ArmAction,
        scope: ScopeKind::Site,
        action: "Microsoft.Web/sites/slots/restart/action",
        used_by: "web: restart a slot after a plain-value change",
    },
    Permission {
        plane: Plane::ArmAction,
        scope: ScopeKind::Connection,
        action: "Microsoft.Web/connections/read",
        used_by: "connections: get status",
    },
    Permission {
        plane: Plane::ArmAction,
        scope: ScopeKind::Connection,
        action: "Microsoft.Web/connections/write",
        used_by: "connections: patch parameterValues",
    },
    Permission {
        plane: Plane::ArmAction,
        scope: ScopeKind::AutomationAccount,
        action: "Microsoft.Automation/automationAccounts/variables/read",
        used_by: "automation: get variable",
    },
    Permission {
        plane: Plane::ArmAction,
        scope: ScopeKind::AutomationAccount,
        action: "Microsoft.Automation/automationAccounts/variables/write",
        used_by: "automation: update variable",
    },
    Permission {
        plane: Plane::ArmAction,
        scope: ScopeKind::OwnStorage,
        action: "Microsoft.Storage/storageAccounts/blobServices/containers/write",
        used_by: "storage: create the rotator's container when it is missing",
    },
    Permission {
        plane: Plane::DataAction,
        scope: ScopeKind::OwnStorage,
        action: "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
        used_by: "storage: read run outcomes and audit",
    },
    Permission {
        plane: Plane::DataAction,
        scope: ScopeKind::OwnStorage,
        action: "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
        used_by: "storage: leases, audit records, run outcomes",
    },
];

/// Rights the deployment grants to others than the rotator: the identity of a consumer site
/// whose Key Vault reference loads a certificate's PFX reads that one secret (App Service
/// resolves references with the site's identity: "Use Key Vault references", MicrosoftDocs/
/// azure-docs articles/app-service/app-service-key-vault-references.md). Sites that only hold
/// a thumbprint get nothing.
pub const CONSUMER_PERMISSIONS: &[Permission] = &[Permission {
    plane: Plane::DataAction,
    scope: ScopeKind::CertificateSecret,
    action: "Microsoft.KeyVault/vaults/secrets/getSecret/action",
    used_by: "App Service: resolve the site's Key Vault reference to the certificate's secret",
}];

/// Who grants what, per scope kind: the role (as `infra/modules/customRoles.bicep` names it,
/// or the built-in) and the `infra/main.bicep` parameter that lists the resources.
pub fn grant_of(scope: ScopeKind) -> (&'static str, &'static str) {
    match scope {
        ScopeKind::Tenant => (
            "the Graph app role Application.ReadWrite.OwnedBy",
            "grantGraphAppRole",
        ),
        ScopeKind::Vault => ("the Secret Rotator Key Vault Secret Rotator role", "vaults"),
        ScopeKind::Certificate => (
            "the Secret Rotator Key Vault Certificate Rotator role",
            "certificates",
        ),
        ScopeKind::CertificateKey => (
            "the Secret Rotator Key Vault Certificate Signer role",
            "certificates",
        ),
        ScopeKind::CertificateSecret => (
            "Key Vault Secrets User (for the consumer site's identity)",
            "certificates[].pfxReaders",
        ),
        ScopeKind::Site => (
            "the Secret Rotator Site Settings Updater role",
            "consumerSites",
        ),
        ScopeKind::Connection => (
            "the Secret Rotator API Connection Updater role",
            "apiConnections",
        ),
        ScopeKind::AutomationAccount => (
            "the Secret Rotator Automation Variable Updater role",
            "automationAccounts",
        ),
        ScopeKind::OwnStorage => (
            "Storage Blob Data Owner",
            "(the rotator's own storage account)",
        ),
    }
}

/// The data action each certificate operation needs (the operation names of
/// [`super::certificates::CertificatesClient`]; one row per REST operation, Key Vault REST 7.5).
const OPERATION_ACTIONS: &[(&str, &str)] = &[
    (
        "create a certificate version",
        "Microsoft.KeyVault/vaults/certificates/create/action",
    ),
    (
        "get a certificate operation",
        "Microsoft.KeyVault/vaults/certificates/read",
    ),
    (
        "get a certificate",
        "Microsoft.KeyVault/vaults/certificates/read",
    ),
    (
        "list certificate versions",
        "Microsoft.KeyVault/vaults/certificates/read",
    ),
    (
        "get a certificate policy",
        "Microsoft.KeyVault/vaults/certificates/read",
    ),
    (
        "update a certificate version",
        "Microsoft.KeyVault/vaults/certificates/update/action",
    ),
    ("sign", "Microsoft.KeyVault/vaults/keys/sign/action"),
];

/// The permission a Key Vault operation of the rotator needs, by its operation name.
pub fn needed_for(operation: &str) -> Option<&'static Permission> {
    let (_, action) = OPERATION_ACTIONS.iter().find(|(op, _)| *op == operation)?;
    REQUIRED_PERMISSIONS.iter().find(|p| p.action == *action)
}

/// What to grant after Key Vault refused `operation` on `object` (`certificate 'n' in vault
/// 'v'`): the action, the scope, the role and the deployment parameter. `None` for operations
/// this table does not know.
pub fn advise_denied(operation: &str, vault: &str, name: &str) -> Option<String> {
    let p = needed_for(operation)?;
    let (role, parameter) = grant_of(p.scope);
    let scope = match p.scope {
        ScopeKind::CertificateKey => {
            format!("the key '{name}' of vault '{vault}' (.../vaults/{vault}/keys/{name})")
        }
        _ => format!(
            "the certificate '{name}' of vault '{vault}' (.../vaults/{vault}/certificates/{name})"
        ),
    };
    Some(format!(
        "the rotator's identity needs {} on {scope}: {role}, granted by listing the certificate in infra/main.bicep's `{parameter}` (docs/deploy.md, \"Certificate credentials\")",
        p.action
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_certificate_operation_names_a_required_permission() {
        for (op, action) in OPERATION_ACTIONS {
            let p = needed_for(op).unwrap_or_else(|| panic!("{op}: {action} not required"));
            assert!(matches!(
                p.scope,
                ScopeKind::Certificate | ScopeKind::CertificateKey
            ));
        }
    }

    #[test]
    fn a_refused_sign_names_the_key_scope_and_the_signer_role() {
        let a = advise_denied("sign", "kv-a", "app-cert").unwrap();
        assert!(
            a.contains("Microsoft.KeyVault/vaults/keys/sign/action"),
            "{a}"
        );
        assert!(a.contains(".../vaults/kv-a/keys/app-cert"), "{a}");
        assert!(a.contains("Certificate Signer role"), "{a}");
        let c = advise_denied("create a certificate version", "kv-a", "app-cert").unwrap();
        assert!(c.contains("certificates/create/action"), "{c}");
        assert!(c.contains(".../vaults/kv-a/certificates/app-cert"), "{c}");
        assert!(c.contains("Certificate Rotator role"), "{c}");
        assert_eq!(advise_denied("get the latest value", "kv-a", "x"), None);
    }
}
