//! Every permission the rotator's code uses, listed next to the code that needs it.
//!
//! The Bicep contract test (`tests/e2e/infra_contract.rs`) compares this list with the role
//! assignments and Graph app roles in `infra/`: a call added here without a grant there fails
//! the build, and so does a grant nobody uses.

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
