//! Contract between the code and the Bicep in `infra/`: settings and permissions.
//!
//! Both sides are listed in code and compared:
//! - settings: `secret_rotator::settings::SETTING_SPECS` against the app settings the Function
//!   App module sets, evaluated for each plan kind (`flex`, `elasticPremium`);
//! - permissions: `secret_rotator::azure::permissions::REQUIRED_PERMISSIONS` against every role
//!   assignment (role definition -> actions, scope resource -> scope kind) and the Graph app role
//!   assignment found in the templates.
//!
//! The templates are read with the tree-sitter-bicep grammar (the `extension <alias>` line it
//! lacks is blanked first, as in `tests/e2e/bicep_syntax.rs`), and a small evaluator follows
//! variables, parameters across module calls, module outputs, `concat()` and conditions. What it
//! cannot follow is reported as a problem rather than guessed, so the templates stay checkable.
//!
//! Role definitions are mapped to their actions by [`BUILT_IN_ROLES`] (copied from Microsoft's
//! built-in roles reference, cited per entry) and by the custom role definitions in the
//! templates themselves, which must equal [`CUSTOM_ROLES`]: each custom role may allow only
//! actions the code uses on its scope, and a built-in role on a scope the code uses is an
//! over-grant unless [`PLATFORM_GRANTS`] names the platform need. Over-grants (Owner, Contributor,
//! User Access Administrator, RBAC Administrator, Application.ReadWrite.All, Directory.*,
//! assignments at resource-group or subscription scope, custom roles with wildcards, grants no
//! code uses) are reported too. The `checker_*` tests feed deliberately broken templates and
//! check that the problem is reported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use secret_rotator::azure::permissions::{
    CONSUMER_PERMISSIONS, Plane, REQUIRED_PERMISSIONS, ScopeKind,
};
use secret_rotator::settings::{SETTING_SPECS, Source};
use tree_sitter::Node;

use crate::support::bicep::{BicepFile, with_edit};

// ---------------------------------------------------------------------------------------------
// Tables (the "what Azure says" side)
// ---------------------------------------------------------------------------------------------

/// A role definition and what it allows.
struct RoleDef {
    name: &'static str,
    id: &'static str,
    actions: &'static [&'static str],
    not_actions: &'static [&'static str],
    data_actions: &'static [&'static str],
    /// Where the id and the lists were copied from.
    source: &'static str,
}

/// Built-in roles the templates may use. Copied from MicrosoftDocs/azure-docs
/// `articles/role-based-access-control/built-in-roles/*.md` (the JSON block of each role).
const BUILT_IN_ROLES: &[RoleDef] = &[
    RoleDef {
        name: "Key Vault Secrets Officer",
        id: "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
        actions: &[
            "Microsoft.Authorization/*/read",
            "Microsoft.Insights/alertRules/*",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Support/*",
            "Microsoft.KeyVault/checkNameAvailability/read",
            "Microsoft.KeyVault/deletedVaults/read",
            "Microsoft.KeyVault/locations/*/read",
            "Microsoft.KeyVault/vaults/*/read",
            "Microsoft.KeyVault/operations/read",
        ],
        not_actions: &[],
        data_actions: &["Microsoft.KeyVault/vaults/secrets/*"],
        source: "MicrosoftDocs/azure-docs built-in-roles/security.md (commit 03e5750a, ms.date 02/23/2026)",
    },
    RoleDef {
        name: "Key Vault Secrets User",
        id: "4633458b-17de-408a-b874-0445c86b69e6",
        actions: &[],
        not_actions: &[],
        data_actions: &[
            "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
        ],
        source: "MicrosoftDocs/azure-docs built-in-roles/security.md (Key Vault Secrets User); id also in articles/key-vault/general/rbac-guide.md",
    },
    RoleDef {
        name: "Website Contributor",
        id: "de139f84-1756-47ae-9be6-808fbbe84772",
        actions: &[
            "Microsoft.Authorization/*/read",
            "Microsoft.Insights/alertRules/*",
            "Microsoft.Insights/components/*",
            "Microsoft.ResourceHealth/availabilityStatuses/read",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Support/*",
            "Microsoft.Web/certificates/*",
            "Microsoft.Web/listSitesAssignedToHostName/read",
            "Microsoft.Web/serverFarms/join/action",
            "Microsoft.Web/serverFarms/read",
            "Microsoft.Web/sites/*",
        ],
        not_actions: &[],
        data_actions: &[],
        source: "MicrosoftDocs/azure-docs built-in-roles/web-and-mobile.md (commit 085b64ed)",
    },
    RoleDef {
        name: "Storage Blob Data Owner",
        id: "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
        actions: &[
            "Microsoft.Storage/storageAccounts/blobServices/containers/*",
            "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
        ],
        not_actions: &[],
        data_actions: &["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*"],
        source: "MicrosoftDocs/azure-docs built-in-roles/storage.md (commit 1b4e136a)",
    },
    RoleDef {
        name: "Monitoring Metrics Publisher",
        id: "3913510d-42f4-4e42-8a64-420c390055eb",
        actions: &[
            "Microsoft.Insights/Register/Action",
            "Microsoft.Support/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
        ],
        not_actions: &[],
        data_actions: &[
            "Microsoft.Insights/Metrics/Write",
            "Microsoft.Insights/Telemetry/Write",
        ],
        source: "MicrosoftDocs/azure-docs built-in-roles/monitor.md (commit 03e5750a)",
    },
];

/// Built-in roles that must never be assigned to the rotator: they grant everything, or the
/// right to grant anything. Ids from MicrosoftDocs/azure-docs built-in-roles/general.md and
/// privileged.md.
const FORBIDDEN_ROLES: &[(&str, &str)] = &[
    ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner"),
    ("b24988ac-6180-42a0-ab88-20f7382dd24c", "Contributor"),
    (
        "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
        "User Access Administrator",
    ),
    (
        "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
        "Role Based Access Control Administrator",
    ),
];

/// The custom roles the templates define (by Bicep symbol), with exactly these actions.
const CUSTOM_ROLES: &[(&str, &[&str], &[&str])] = &[
    (
        "keyVaultSecretRotator",
        &[],
        &[
            "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            "Microsoft.KeyVault/vaults/secrets/setSecret/action",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
            "Microsoft.KeyVault/vaults/secrets/update/action",
        ],
    ),
    (
        "keyVaultCertificateRotator",
        &[],
        &[
            "Microsoft.KeyVault/vaults/certificates/create/action",
            "Microsoft.KeyVault/vaults/certificates/read",
            "Microsoft.KeyVault/vaults/certificates/update/action",
        ],
    ),
    (
        "keyVaultCertificateSigner",
        &[],
        &["Microsoft.KeyVault/vaults/keys/sign/action"],
    ),
    (
        "siteSettingsUpdater",
        &[
            "Microsoft.Web/sites/config/list/action",
            "Microsoft.Web/sites/config/write",
            "Microsoft.Web/sites/config/read",
            "Microsoft.Web/sites/restart/action",
            "Microsoft.Web/sites/slots/config/list/action",
            "Microsoft.Web/sites/slots/config/write",
            "Microsoft.Web/sites/slots/config/read",
            "Microsoft.Web/sites/slots/restart/action",
        ],
        &[],
    ),
    (
        "connectionUpdater",
        &[
            "Microsoft.Web/connections/read",
            "Microsoft.Web/connections/write",
        ],
        &[],
    ),
    (
        "automationVariableUpdater",
        &[
            "Microsoft.Automation/automationAccounts/variables/read",
            "Microsoft.Automation/automationAccounts/variables/write",
        ],
        &[],
    ),
];

/// Microsoft Graph application permissions (app role ids are the same in every tenant).
/// Source: Microsoft Graph permissions reference (learn.microsoft.com/graph/permissions-reference),
/// "Identifier / Application" rows.
const GRAPH_APP_ROLES: &[(&str, &str)] = &[
    (
        "18a4783c-866b-4cc7-a460-3d5e5662c884",
        "Application.ReadWrite.OwnedBy",
    ),
    (
        "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9",
        "Application.ReadWrite.All",
    ),
    (
        "06b708a9-e830-4db3-a914-8e69da51d44f",
        "AppRoleAssignment.ReadWrite.All",
    ),
    (
        "19dbc75e-c2e2-444c-a770-ec69d8559fc7",
        "Directory.ReadWrite.All",
    ),
    ("7ab1d382-f21e-4acd-a863-ba3e13f7da61", "Directory.Read.All"),
];

/// Graph permissions the rotator must never hold (exact names, or a prefix ending in '.').
const FORBIDDEN_GRAPH_ROLES: &[&str] = &[
    "Application.ReadWrite.All",
    "AppRoleAssignment.ReadWrite.All",
    "Directory.",
    "RoleManagement.",
];

const MICROSOFT_GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// Built-in roles the platform needs, where a custom role with only the code's calls would not
/// do, each with its reason. Any other built-in role on a scope the code uses is reported: it
/// allows more than the code calls (a custom role in customRoles.bicep must be used instead).
const PLATFORM_GRANTS: &[(Scope, &str, &str)] = &[
    (
        Scope::OwnTelemetry,
        "3913510d-42f4-4e42-8a64-420c390055eb",
        "the Functions host sends telemetry with Entra ID (local auth is disabled on the component)",
    ),
    (
        Scope::Code(ScopeKind::CertificateSecret),
        "4633458b-17de-408a-b874-0445c86b69e6",
        "a consumer site's identity resolving a Key Vault reference to the certificate's secret: App Service documents Key Vault Secrets User for it (articles/app-service/app-service-key-vault-references.md)",
    ),
    (
        Scope::Code(ScopeKind::OwnStorage),
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
        "the Functions host's identity-based AzureWebJobsStorage is documented with Storage Blob Data Owner (it creates and manages its own containers and blobs)",
    ),
];

/// App settings from SETTING_SPECS the templates deliberately do not set.
const NOT_SET_ON_PURPOSE: &[(&str, &str)] = &[
    (
        "AZURE_CLIENT_ID",
        "the app uses its system-assigned identity",
    ),
    (
        "ROTATOR_NOTIFY_TEAMS_URL",
        "a webhook URL embeds its signature: operators add it as a Key Vault reference (docs/deploy.md)",
    ),
    (
        "ROTATOR_NOTIFY_SLACK_URL",
        "a webhook URL embeds its signature: operators add it as a Key Vault reference (docs/deploy.md)",
    ),
    (
        "ROTATOR_NOTIFY_WEBHOOK_URL",
        "optional; operators add it after deployment (docs/deploy.md)",
    ),
];

/// Which `main.bicep` parameter names the resources of each scope kind.
const SCOPE_PARAMETERS: &[(Scope, Option<&str>)] = &[
    (Scope::Code(ScopeKind::Vault), Some("vaults")),
    (Scope::Code(ScopeKind::Certificate), Some("certificates")),
    (Scope::Code(ScopeKind::CertificateKey), Some("certificates")),
    (
        Scope::Code(ScopeKind::CertificateSecret),
        Some("certificates"),
    ),
    (Scope::Code(ScopeKind::Site), Some("consumerSites")),
    (Scope::Code(ScopeKind::Connection), Some("apiConnections")),
    (
        Scope::Code(ScopeKind::AutomationAccount),
        Some("automationAccounts"),
    ),
    (Scope::Code(ScopeKind::OwnStorage), None),
    (Scope::OwnTelemetry, None),
];

/// Parameters `main.bicep` must take (the issue's list).
const MAIN_PARAMETERS: &[&str] = &[
    "functionAppName",
    "location",
    "planKind",
    "vaults",
    "certificates",
    "consumerSites",
    "apiConnections",
    "automationAccounts",
    "rotationSchedule",
    "policyPath",
    "tenantId",
];

const PLAN_KINDS: &[&str] = &["flex", "elasticPremium"];

// ---------------------------------------------------------------------------------------------
// Scope kinds
// ---------------------------------------------------------------------------------------------

/// What a role assignment is scoped to, as far as the contract cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// A scope kind the code knows (REQUIRED_PERMISSIONS).
    Code(ScopeKind),
    /// The rotator's own Application Insights component.
    OwnTelemetry,
    /// No `scope:`: the resource group the module is deployed to. Too broad.
    ResourceGroup,
    Subscription,
}

fn scope_of_resource_type(resource_type: &str) -> Option<Scope> {
    let t = resource_type.split('@').next().unwrap_or(resource_type);
    Some(match t.to_ascii_lowercase().as_str() {
        // One vault, or one secret in it (Key Vault RBAC accepts both scopes). A consumer
        // site's grant on a secret is the certificate's secret ([`consumer_scope`]).
        "microsoft.keyvault/vaults" | "microsoft.keyvault/vaults/secrets" => {
            Scope::Code(ScopeKind::Vault)
        }
        // One certificate, or its key: each its own Key Vault RBAC scope.
        "microsoft.keyvault/vaults/certificates" => Scope::Code(ScopeKind::Certificate),
        "microsoft.keyvault/vaults/keys" => Scope::Code(ScopeKind::CertificateKey),
        "microsoft.web/sites" => Scope::Code(ScopeKind::Site),
        "microsoft.web/connections" => Scope::Code(ScopeKind::Connection),
        "microsoft.automation/automationaccounts" => Scope::Code(ScopeKind::AutomationAccount),
        "microsoft.storage/storageaccounts" => Scope::Code(ScopeKind::OwnStorage),
        "microsoft.insights/components" => Scope::OwnTelemetry,
        _ => return None,
    })
}

/// The resource symbol a `scope:` names: `symbol`, or `symbol[index]` for one element of a
/// resource loop.
fn scope_symbol(text: &str) -> Option<&str> {
    let base = match text.split_once('[') {
        Some((base, rest)) if rest.ends_with(']') => base,
        Some(_) => return None,
        None => text,
    };
    let ok = !base.is_empty() && base.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    ok.then_some(base)
}

// ---------------------------------------------------------------------------------------------
// Parsed files
// ---------------------------------------------------------------------------------------------

impl BicepFile {
    /// Parsed, refusing a file with syntax errors (`bicep_syntax.rs` reports where).
    fn parse_checked(rel: &str, source: &str) -> Result<Self, String> {
        let f = BicepFile::parse(rel, source);
        if f.tree.root_node().has_error() {
            return Err(format!(
                "{rel}: syntax errors (run `cargo test --test e2e bicep_syntax::` for positions)"
            ));
        }
        Ok(f)
    }

    /// The value expression of a var/param/output declaration (last named child).
    fn decl_value<'a>(&self, decl: Node<'a>) -> Option<Node<'a>> {
        let mut cursor = decl.walk();
        let children: Vec<Node<'a>> = decl
            .named_children(&mut cursor)
            .filter(|c| !is_comment(*c))
            .collect();
        match decl.kind() {
            "variable_declaration" => children.get(1).copied(),
            "parameter_declaration" | "output_declaration" => {
                // name, type, [default]
                children.get(2).copied()
            }
            _ => None,
        }
    }

    /// The `'Type@version'` / module path string of a resource or module declaration.
    fn decl_target(&self, decl: Node) -> Option<String> {
        let mut cursor = decl.walk();
        let s = decl
            .named_children(&mut cursor)
            .find(|c| c.kind() == "string")?;
        self.string_literal(s)
    }

    /// The body object of a resource/module declaration, through `for` and `if`.
    fn decl_body<'a>(&self, decl: Node<'a>) -> Option<Node<'a>> {
        let mut cursor = decl.walk();
        let last = decl
            .named_children(&mut cursor)
            .filter(|c| !is_comment(*c))
            .last()?;
        unwrap_body(last)
    }

    /// The expression a module's `for` iterates over, as text.
    fn loop_source(&self, decl: Node) -> Option<String> {
        let mut cursor = decl.walk();
        let f = decl
            .named_children(&mut cursor)
            .find(|c| c.kind() == "for_statement")?;
        let init = f.child_by_field_name("initializer").map(|n| n.id());
        let body = f.child_by_field_name("body").map(|n| n.id());
        let mut c2 = f.walk();
        let src = f.named_children(&mut c2).find(|c| {
            Some(c.id()) != init
                && Some(c.id()) != body
                && c.kind() != "for_loop_parameters"
                && !is_comment(*c)
        })?;
        Some(self.text_of(src).to_string())
    }

    /// A plain string literal (no interpolation).
    fn string_literal(&self, n: Node) -> Option<String> {
        if n.kind() != "string" {
            return None;
        }
        let mut out = String::new();
        let mut cursor = n.walk();
        for c in n.named_children(&mut cursor) {
            match c.kind() {
                "string_content" => out.push_str(self.text_of(c)),
                "escape_sequence" => {
                    let e = self.text_of(c);
                    out.push_str(match e {
                        "\\'" => "'",
                        "\\\\" => "\\",
                        "\\n" => "\n",
                        "\\$" => "$",
                        other => other,
                    })
                }
                _ => return None,
            }
        }
        Some(out)
    }

    /// `key: value` in an object node.
    fn prop<'a>(&self, obj: Node<'a>, key: &str) -> Option<Node<'a>> {
        if obj.kind() != "object" {
            return None;
        }
        let mut cursor = obj.walk();
        for p in obj.named_children(&mut cursor) {
            if p.kind() != "object_property" {
                continue;
            }
            let mut c2 = p.walk();
            let parts: Vec<Node<'a>> = p
                .named_children(&mut c2)
                .filter(|c| !is_comment(*c) && c.kind() != "decorators")
                .collect();
            if parts.len() < 2 {
                continue;
            }
            let k = match parts[0].kind() {
                "string" => self.string_literal(parts[0]).unwrap_or_default(),
                _ => self.text_of(parts[0]).to_string(),
            };
            if k == key {
                return parts.last().copied();
            }
        }
        None
    }

    fn path<'a>(&self, obj: Node<'a>, keys: &[&str]) -> Option<Node<'a>> {
        let mut cur = obj;
        for k in keys {
            cur = self.prop(cur, k)?;
        }
        Some(cur)
    }

    /// Items of an array of string literals.
    fn string_array(&self, n: Node) -> Result<Vec<String>, String> {
        if n.kind() != "array" {
            return Err(format!("{}: expected an array of strings", self.at(n)));
        }
        let mut cursor = n.walk();
        n.named_children(&mut cursor)
            .filter(|c| !is_comment(*c))
            .map(|c| {
                self.string_literal(c)
                    .ok_or_else(|| format!("{}: expected a string literal", self.at(c)))
            })
            .collect()
    }
}

fn is_comment(n: Node) -> bool {
    matches!(n.kind(), "comment" | "diagnostic_comment")
}

fn unwrap_body(n: Node) -> Option<Node> {
    match n.kind() {
        "object" => Some(n),
        "for_statement" => unwrap_body(n.child_by_field_name("body")?),
        "if_statement" => {
            let mut cursor = n.walk();
            n.named_children(&mut cursor).find(|c| c.kind() == "object")
        }
        _ => None,
    }
}

/// `dir/../x.bicep` → `x.bicep`, '/' separators.
fn normalize(base_dir: &Path, rel: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in base_dir.join(rel).components() {
        match c {
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    parts.join("/")
}

// ---------------------------------------------------------------------------------------------
// The evaluator
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Bool(bool),
    /// A resource declaration (its symbol or `.id`).
    Resource {
        file: String,
        symbol: String,
    },
    /// `<site>.identity.principalId` of the Function App's own Microsoft.Web/sites declaration.
    Identity {
        file: String,
        symbol: String,
    },
    /// `<site>[i].identity.principalId` of an `existing` site: a consumer's identity.
    ConsumerIdentity {
        file: String,
        symbol: String,
    },
    /// Something the evaluator does not follow, with why.
    Unknown(String),
}

struct Infra {
    files: BTreeMap<String, BicepFile>,
}

/// Parameter values fixed for an evaluation: (file, param) → value.
type Env = BTreeMap<(String, String), String>;

impl Infra {
    fn load(dir: &Path) -> Result<Self, String> {
        let mut sources = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let entries =
                std::fs::read_dir(&d).map_err(|e| format!("cannot list {}: {e}", d.display()))?;
            for entry in entries {
                let path = entry.map_err(|e| e.to_string())?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "bicep") {
                    let rel = path
                        .strip_prefix(dir)
                        .map_err(|e| e.to_string())?
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/");
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    sources.push((rel, text));
                }
            }
        }
        Self::from_sources(sources)
    }

    fn from_sources(sources: Vec<(String, String)>) -> Result<Self, String> {
        let mut files = BTreeMap::new();
        for (rel, text) in sources {
            files.insert(rel.clone(), BicepFile::parse_checked(&rel, &text)?);
        }
        if !files.contains_key("main.bicep") {
            return Err("infra/main.bicep is missing".into());
        }
        Ok(Self { files })
    }

    fn file(&self, rel: &str) -> &BicepFile {
        &self.files[rel]
    }

    /// The file a module declaration in `caller` points at.
    fn module_target(&self, caller: &BicepFile, decl: Node) -> Option<String> {
        let path = caller.decl_target(decl)?;
        let dir = Path::new(&caller.rel)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let rel = normalize(&dir, &path);
        self.files.contains_key(&rel).then_some(rel)
    }

    /// Every module declaration (caller file, node) that deploys `rel`.
    fn callers(&self, rel: &str) -> Vec<(&BicepFile, Node<'_>)> {
        let mut out = Vec::new();
        for f in self.files.values() {
            for m in f.statements("module_declaration") {
                if self.module_target(f, m).as_deref() == Some(rel) {
                    out.push((f, m));
                }
            }
        }
        out
    }

    fn eval(&self, file: &BicepFile, n: Node, env: &Env, depth: usize) -> Vec<Val> {
        if depth > 40 {
            return vec![Val::Unknown(format!("{}: too deep", file.at(n)))];
        }
        let unknown = |why: &str| vec![Val::Unknown(format!("{}: {why}", file.at(n)))];
        match n.kind() {
            "string" => match file.string_literal(n) {
                Some(s) => vec![Val::Str(s)],
                None => unknown("interpolated string"),
            },
            "boolean" => vec![Val::Bool(file.text_of(n) == "true")],
            "parenthesized_expression" => match n.named_child(0) {
                Some(inner) => self.eval(file, inner, env, depth + 1),
                None => unknown("empty parentheses"),
            },
            "identifier" => self.eval_identifier(file, n, env, depth),
            "member_expression" => self.eval_member(file, n, env, depth),
            "call_expression" => {
                let func = n
                    .child_by_field_name("function")
                    .map(|f| file.text_of(f).to_string())
                    .unwrap_or_default();
                let args: Vec<Node> = n
                    .child_by_field_name("arguments")
                    .map(|a| {
                        let mut c = a.walk();
                        a.named_children(&mut c)
                            .filter(|x| !is_comment(*x))
                            .collect()
                    })
                    .unwrap_or_default();
                match func.as_str() {
                    // A role definition id: its last argument is the GUID.
                    "subscriptionResourceId" | "resourceId" | "tenantResourceId" => {
                        match args.last() {
                            Some(last) => self.eval(file, *last, env, depth + 1),
                            None => unknown("resource id without arguments"),
                        }
                    }
                    "resourceGroup" if args.is_empty() => unknown("resourceGroup()"),
                    _ => unknown(&format!("function {func}()")),
                }
            }
            "binary_expression" => {
                let op = n
                    .child_by_field_name("operator")
                    .map(|o| file.text_of(o).to_string())
                    .unwrap_or_default();
                let (Some(l), Some(r)) = (
                    n.child_by_field_name("left"),
                    n.child_by_field_name("right"),
                ) else {
                    return unknown("incomplete binary expression");
                };
                let (lv, rv) = (
                    self.eval(file, l, env, depth + 1),
                    self.eval(file, r, env, depth + 1),
                );
                match (lv.as_slice(), rv.as_slice(), op.as_str()) {
                    ([Val::Str(a)], [Val::Str(b)], "==") => vec![Val::Bool(a == b)],
                    ([Val::Str(a)], [Val::Str(b)], "!=") => vec![Val::Bool(a != b)],
                    ([Val::Bool(a)], [Val::Bool(b)], "&&") => vec![Val::Bool(*a && *b)],
                    ([Val::Bool(a)], [Val::Bool(b)], "||") => vec![Val::Bool(*a || *b)],
                    _ => unknown(&format!("`{}`", file.text_of(n))),
                }
            }
            "unary_expression" => {
                let op = n
                    .child_by_field_name("operator")
                    .map(|o| file.text_of(o).to_string())
                    .unwrap_or_default();
                let Some(arg) = n.child_by_field_name("argument") else {
                    return unknown("incomplete unary expression");
                };
                match (op.as_str(), self.eval(file, arg, env, depth + 1).as_slice()) {
                    ("!", [Val::Bool(b)]) => vec![Val::Bool(!b)],
                    _ => unknown(&format!("`{}`", file.text_of(n))),
                }
            }
            "ternary_expression" => {
                let (Some(c), Some(a), Some(b)) = (
                    n.child_by_field_name("condition"),
                    n.child_by_field_name("consequence"),
                    n.child_by_field_name("alternative"),
                ) else {
                    return unknown("incomplete ternary");
                };
                match self.eval(file, c, env, depth + 1).as_slice() {
                    [Val::Bool(true)] => self.eval(file, a, env, depth + 1),
                    [Val::Bool(false)] => self.eval(file, b, env, depth + 1),
                    _ => {
                        let mut v = self.eval(file, a, env, depth + 1);
                        v.extend(self.eval(file, b, env, depth + 1));
                        v
                    }
                }
            }
            other => unknown(&format!("{other} `{}`", file.text_of(n))),
        }
    }

    fn eval_identifier(&self, file: &BicepFile, n: Node, env: &Env, depth: usize) -> Vec<Val> {
        let name = file.text_of(n).to_string();
        let Some(decl) = file.find_decl(&name) else {
            return vec![Val::Unknown(format!(
                "{}: `{name}` is not declared here (loop variable?)",
                file.at(n)
            ))];
        };
        match decl.kind() {
            "variable_declaration" => match file.decl_value(decl) {
                Some(v) => self.eval(file, v, env, depth + 1),
                None => vec![Val::Unknown(format!("{}: var without value", file.at(n)))],
            },
            "parameter_declaration" => {
                if let Some(v) = env.get(&(file.rel.clone(), name.clone())) {
                    return vec![Val::Str(v.clone())];
                }
                let callers = self.callers(&file.rel);
                if callers.is_empty() {
                    return match file.decl_value(decl) {
                        Some(v) => self.eval(file, v, env, depth + 1),
                        None => vec![Val::Unknown(format!(
                            "{}: parameter `{name}` is supplied at deployment",
                            file.at(n)
                        ))],
                    };
                }
                let mut out = Vec::new();
                for (caller, m) in callers {
                    let arg = caller
                        .decl_body(m)
                        .and_then(|b| caller.path(b, &["params", &name]));
                    match arg {
                        Some(a) => out.extend(self.eval(caller, a, env, depth + 1)),
                        None => match file.decl_value(decl) {
                            Some(v) => out.extend(self.eval(file, v, env, depth + 1)),
                            None => out.push(Val::Unknown(format!(
                                "{}: module call does not pass `{name}`",
                                caller.at(m)
                            ))),
                        },
                    }
                }
                out
            }
            "resource_declaration" => vec![Val::Resource {
                file: file.rel.clone(),
                symbol: name,
            }],
            _ => vec![Val::Unknown(format!(
                "{}: `{name}` is a module",
                file.at(n)
            ))],
        }
    }

    fn eval_member(&self, file: &BicepFile, n: Node, env: &Env, depth: usize) -> Vec<Val> {
        let unknown = |why: &str| vec![Val::Unknown(format!("{}: {why}", file.at(n)))];
        let (Some(obj), Some(prop)) = (
            n.child_by_field_name("object"),
            n.child_by_field_name("property"),
        ) else {
            return unknown("incomplete member expression");
        };
        let prop = file.text_of(prop);
        // <resource>.id
        if prop == "id" && obj.kind() == "identifier" {
            return self.eval(file, obj, env, depth + 1);
        }
        if obj.kind() == "member_expression" {
            let (Some(base), Some(mid)) = (
                obj.child_by_field_name("object"),
                obj.child_by_field_name("property"),
            ) else {
                return unknown("incomplete member expression");
            };
            let base_name = file.text_of(base);
            // <site>.identity.principalId, or <site>[i].identity.principalId of a site loop
            if file.text_of(mid) == "identity"
                && prop == "principalId"
                && let Some(symbol) = scope_symbol(base_name)
                && let Some(d) = file.find_decl(symbol)
                && d.kind() == "resource_declaration"
                && file
                    .decl_target(d)
                    .is_some_and(|t| t.to_ascii_lowercase().starts_with("microsoft.web/sites@"))
            {
                let (file, symbol) = (file.rel.clone(), symbol.to_string());
                return vec![match self.file(&file).is_existing(d) {
                    true => Val::ConsumerIdentity { file, symbol },
                    false => Val::Identity { file, symbol },
                }];
            }
            // <module>.outputs.<name>
            if file.text_of(mid) == "outputs"
                && let Some(m) = file.find_decl(base_name)
                && m.kind() == "module_declaration"
            {
                let Some(target) = self.module_target(file, m) else {
                    return unknown(&format!("module `{base_name}` file not found"));
                };
                let tf = self.file(&target);
                let out = tf
                    .statements("output_declaration")
                    .into_iter()
                    .find(|o| tf.decl_name(*o) == prop);
                return match out.and_then(|o| tf.decl_value(o)) {
                    Some(v) => self.eval(tf, v, env, depth + 1),
                    None => unknown(&format!("{target} has no output `{prop}`")),
                };
            }
        }
        unknown(&format!("`{}`", file.text_of(n)))
    }
}

// ---------------------------------------------------------------------------------------------
// App settings
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct AppSetting {
    name: String,
    /// The literal value, when it is one.
    literal: Option<String>,
    /// Set only under a condition the checker cannot decide (e.g. a parameter being non-empty).
    conditional: bool,
}

impl Infra {
    /// Evaluates an app settings array expression.
    fn eval_settings(
        &self,
        file: &BicepFile,
        n: Node,
        env: &Env,
        conditional: bool,
        out: &mut Vec<AppSetting>,
    ) -> Result<(), String> {
        match n.kind() {
            "array" => {
                let mut cursor = n.walk();
                for item in n.named_children(&mut cursor).filter(|c| !is_comment(*c)) {
                    let name = file
                        .prop(item, "name")
                        .and_then(|v| file.string_literal(v))
                        .ok_or_else(|| {
                            format!("{}: app setting without a literal `name`", file.at(item))
                        })?;
                    let literal = file
                        .prop(item, "value")
                        .and_then(|v| file.string_literal(v));
                    out.push(AppSetting {
                        name,
                        literal,
                        conditional,
                    });
                }
                Ok(())
            }
            "identifier" => {
                let name = file.text_of(n);
                let decl = file
                    .find_decl(name)
                    .filter(|d| d.kind() == "variable_declaration")
                    .and_then(|d| file.decl_value(d))
                    .ok_or_else(|| {
                        format!("{}: app settings `{name}` is not a variable", file.at(n))
                    })?;
                self.eval_settings(file, decl, env, conditional, out)
            }
            "parenthesized_expression" => match n.named_child(0) {
                Some(inner) => self.eval_settings(file, inner, env, conditional, out),
                None => Err(format!("{}: empty parentheses", file.at(n))),
            },
            "ternary_expression" => {
                let (Some(c), Some(a), Some(b)) = (
                    n.child_by_field_name("condition"),
                    n.child_by_field_name("consequence"),
                    n.child_by_field_name("alternative"),
                ) else {
                    return Err(format!("{}: incomplete ternary", file.at(n)));
                };
                match self.eval(file, c, env, 0).as_slice() {
                    [Val::Bool(true)] => self.eval_settings(file, a, env, conditional, out),
                    [Val::Bool(false)] => self.eval_settings(file, b, env, conditional, out),
                    _ => {
                        self.eval_settings(file, a, env, true, out)?;
                        self.eval_settings(file, b, env, true, out)
                    }
                }
            }
            "call_expression" => {
                let func = n
                    .child_by_field_name("function")
                    .map(|f| file.text_of(f))
                    .unwrap_or_default();
                if func != "concat" && func != "union" {
                    return Err(format!(
                        "{}: cannot follow `{func}()` in app settings (use concat)",
                        file.at(n)
                    ));
                }
                let args = n
                    .child_by_field_name("arguments")
                    .ok_or_else(|| format!("{}: concat without arguments", file.at(n)))?;
                let mut cursor = args.walk();
                for a in args.named_children(&mut cursor).filter(|c| !is_comment(*c)) {
                    self.eval_settings(file, a, env, conditional, out)?;
                }
                Ok(())
            }
            other => Err(format!(
                "{}: cannot follow {other} `{}` in app settings",
                file.at(n),
                file.text_of(n)
            )),
        }
    }

    /// The Function App declaration: (file, node). Exactly one non-existing Microsoft.Web/sites.
    fn function_app(&self) -> Result<(&BicepFile, Node<'_>), String> {
        let mut found = Vec::new();
        for f in self.files.values() {
            for r in f.statements("resource_declaration") {
                let t = f.decl_target(r).unwrap_or_default().to_ascii_lowercase();
                if t.starts_with("microsoft.web/sites@") && !f.is_existing(r) {
                    found.push((f, r));
                }
            }
        }
        match found.len() {
            1 => Ok(found[0]),
            0 => Err("no Microsoft.Web/sites resource (the Function App) is declared".into()),
            _ => Err("more than one Microsoft.Web/sites resource is declared".into()),
        }
    }

    fn app_settings(&self, plan_kind: &str) -> Result<Vec<AppSetting>, String> {
        let (file, site) = self.function_app()?;
        let body = file
            .decl_body(site)
            .ok_or_else(|| format!("{}: Function App without a body", file.at(site)))?;
        let settings = file
            .path(body, &["properties", "siteConfig", "appSettings"])
            .ok_or_else(|| {
                format!(
                    "{}: Function App without properties.siteConfig.appSettings",
                    file.at(site)
                )
            })?;
        let mut env = Env::new();
        env.insert((file.rel.clone(), "planKind".into()), plan_kind.into());
        let mut out = Vec::new();
        self.eval_settings(file, settings, &env, false, &mut out)?;
        Ok(out)
    }
}

/// Everything wrong with the app settings for one plan kind.
fn check_app_settings(infra: &Infra, plan_kind: &str) -> Vec<String> {
    let settings = match infra.app_settings(plan_kind) {
        Ok(s) => s,
        Err(e) => return vec![format!("[{plan_kind}] {e}")],
    };
    let mut problems = Vec::new();
    let mut p = |m: String| problems.push(format!("[{plan_kind}] {m}"));
    let always = |name: &str| settings.iter().any(|s| s.name == name && !s.conditional);
    let ever = |name: &str| settings.iter().any(|s| s.name == name);

    let mut seen = BTreeSet::new();
    for s in &settings {
        if !s.conditional && !seen.insert(s.name.as_str()) {
            p(format!("app setting {} is set twice", s.name));
        }
    }
    for spec in SETTING_SPECS {
        match spec.source {
            Source::Platform => {
                if ever(spec.name) {
                    p(format!(
                        "{} is set by the platform and must not be an app setting",
                        spec.name
                    ));
                }
            }
            Source::AppSetting => {
                if spec.required && !always(spec.name) {
                    p(format!(
                        "required app setting {} is not set ({})",
                        spec.name, spec.meaning
                    ));
                } else if !ever(spec.name)
                    && !NOT_SET_ON_PURPOSE.iter().any(|(n, _)| *n == spec.name)
                {
                    p(format!(
                        "app setting {} is never set; set it or list it in NOT_SET_ON_PURPOSE with the reason",
                        spec.name
                    ));
                }
            }
        }
    }
    for (name, _) in NOT_SET_ON_PURPOSE {
        if ever(name) {
            p(format!("{name} is listed as not set on purpose but is set"));
        }
    }
    for s in &settings {
        if s.name.starts_with("ROTATOR_") && !SETTING_SPECS.iter().any(|spec| spec.name == s.name) {
            p(format!(
                "app setting {} is not a setting the binary reads (SETTING_SPECS)",
                s.name
            ));
        }
        if s.name == "AzureWebJobsStorage" || s.name.contains("CONNECTIONSTRING") {
            p(format!(
                "{} would hold a storage account key; the app uses identity-based storage",
                s.name
            ));
        }
    }
    if !always("ROTATION_SCHEDULE") {
        p("ROTATION_SCHEDULE (read by the host for the RotateSecrets timer) is not set".into());
    }
    let literal = |name: &str| {
        settings
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.literal.clone())
    };
    match plan_kind {
        "flex" => {
            for name in ["FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION"] {
                if ever(name) {
                    p(format!("{name} must not be set on Flex Consumption"));
                }
            }
        }
        _ => {
            for (name, value) in [
                ("FUNCTIONS_WORKER_RUNTIME", "custom"),
                ("FUNCTIONS_EXTENSION_VERSION", "~4"),
            ] {
                if !always(name) {
                    p(format!("{name} must be set on Elastic Premium"));
                } else if literal(name).as_deref() != Some(value) {
                    p(format!("{name} must be '{value}'"));
                }
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// Permissions
// ---------------------------------------------------------------------------------------------

/// What a role assignment grants, resolved.
#[derive(Debug, Clone)]
struct Grant {
    at: String,
    file: String,
    scope: Scope,
    role_name: String,
    role_id: Option<String>,
    actions: Vec<String>,
    not_actions: Vec<String>,
    data_actions: Vec<String>,
    /// `(main parameter it loops over)` for modules in main.bicep; None = not looped.
    deployed_for: Vec<Option<String>>,
}

#[derive(Debug, Clone)]
struct GraphGrant {
    at: String,
    role: String,
}

/// Azure RBAC action matching: case-insensitive, `*` matches any run of characters.
fn action_matches(pattern: &str, action: &str) -> bool {
    fn go(p: &[u8], a: &[u8]) -> bool {
        match p.split_first() {
            None => a.is_empty(),
            Some((b'*', rest)) => (0..=a.len()).any(|i| go(rest, &a[i..])),
            Some((c, rest)) => a
                .split_first()
                .is_some_and(|(d, arest)| c.eq_ignore_ascii_case(d) && go(rest, arest)),
        }
    }
    go(pattern.as_bytes(), action.as_bytes())
}

fn grants_action(g: &Grant, plane: Plane, action: &str) -> bool {
    let (allowed, denied): (&[String], &[String]) = match plane {
        Plane::ArmAction => (&g.actions, &g.not_actions),
        Plane::DataAction => (&g.data_actions, &[]),
        Plane::GraphAppRole => return false,
    };
    allowed.iter().any(|p| action_matches(p, action))
        && !denied.iter().any(|p| action_matches(p, action))
}

/// A custom role defined in the templates: (roleName expression, actions, notActions,
/// dataActions), keyed elsewhere by (file, symbol).
type CustomRole = (String, Vec<String>, Vec<String>, Vec<String>);

struct Collected {
    grants: Vec<Grant>,
    graph: Vec<GraphGrant>,
    problems: Vec<String>,
}

impl Infra {
    /// How `rel` is deployed from main.bicep: the loop source of each module call.
    fn deployments_from_main(&self, rel: &str) -> Vec<Option<String>> {
        let main = self.file("main.bicep");
        main.statements("module_declaration")
            .into_iter()
            .filter(|m| self.module_target(main, *m).as_deref() == Some(rel))
            .map(|m| main.loop_source(m))
            .collect()
    }

    fn collect(&self) -> Collected {
        let mut grants = Vec::new();
        let mut graph = Vec::new();
        let mut problems = Vec::new();
        let env = Env::new();

        // Custom role definitions, by (file, symbol).
        let mut custom: BTreeMap<(String, String), CustomRole> = BTreeMap::new();
        for f in self.files.values() {
            for r in f.statements("resource_declaration") {
                let t = f.decl_target(r).unwrap_or_default().to_ascii_lowercase();
                if !t.starts_with("microsoft.authorization/roledefinitions@") || f.is_existing(r) {
                    continue;
                }
                let sym = f.decl_name(r);
                let body = f.decl_body(r);
                let props = body.and_then(|b| f.prop(b, "properties"));
                let role_name = props
                    .and_then(|p| f.prop(p, "roleName"))
                    .map(|n| f.text_of(n).to_string())
                    .unwrap_or_else(|| sym.clone());
                let perms = props.and_then(|p| f.prop(p, "permissions"));
                let first = perms.and_then(|a| {
                    let mut c = a.walk();
                    let items: Vec<Node> = a
                        .named_children(&mut c)
                        .filter(|x| !is_comment(*x))
                        .collect();
                    if items.len() == 1 {
                        Some(items[0])
                    } else {
                        None
                    }
                });
                let Some(first) = first else {
                    problems.push(format!(
                        "{}: custom role `{sym}` must have exactly one permissions entry",
                        f.at(r)
                    ));
                    continue;
                };
                let list = |key: &str| -> Vec<String> {
                    match f.prop(first, key) {
                        None => Vec::new(),
                        Some(n) => f
                            .string_array(n)
                            .unwrap_or_else(|e| vec![format!("<unreadable: {e}>")]),
                    }
                };
                let (actions, not_actions, data_actions) =
                    (list("actions"), list("notActions"), list("dataActions"));
                for a in actions.iter().chain(&data_actions) {
                    let provider_wide = a.split('/').count() <= 2 && a.ends_with('*');
                    if a == "*"
                        || provider_wide
                        || action_matches(a, "Microsoft.Authorization/roleAssignments/write")
                    {
                        problems.push(format!(
                            "{}: custom role `{sym}` grants `{a}`: far more than the rotator needs",
                            f.at(r)
                        ));
                    }
                }
                custom.insert(
                    (f.rel.clone(), sym),
                    (role_name, actions, not_actions, data_actions),
                );
            }
        }
        // The templates' custom roles equal the test's list.
        let defined: BTreeMap<&str, (&Vec<String>, &Vec<String>)> = custom
            .iter()
            .map(|((_, s), (_, a, _, d))| (s.as_str(), (a, d)))
            .collect();
        for (sym, actions, data) in CUSTOM_ROLES {
            match defined.get(sym) {
                None => problems.push(format!(
                    "custom role `{sym}` (listed in CUSTOM_ROLES) is not defined in infra/"
                )),
                Some((a, d)) => {
                    let want_a: BTreeSet<&str> = actions.iter().copied().collect();
                    let got_a: BTreeSet<&str> = a.iter().map(String::as_str).collect();
                    let want_d: BTreeSet<&str> = data.iter().copied().collect();
                    let got_d: BTreeSet<&str> = d.iter().map(String::as_str).collect();
                    if want_a != got_a || want_d != got_d {
                        problems.push(format!(
                            "custom role `{sym}` grants actions {got_a:?} / data actions {got_d:?}, CUSTOM_ROLES lists {want_a:?} / {want_d:?}"
                        ));
                    }
                }
            }
        }
        for sym in defined.keys() {
            if !CUSTOM_ROLES.iter().any(|(s, _, _)| s == sym) {
                problems.push(format!(
                    "custom role `{sym}` is defined in infra/ but not listed in CUSTOM_ROLES"
                ));
            }
        }

        // Role assignments.
        for f in self.files.values() {
            for r in f.statements("resource_declaration") {
                let t = f.decl_target(r).unwrap_or_default().to_ascii_lowercase();
                let at = f.at(r);
                if t.starts_with("microsoft.authorization/roleassignments@") {
                    if f.rel != "main.bicep" && self.deployments_from_main(&f.rel).is_empty() {
                        problems.push(format!("{at}: {} is not deployed by main.bicep", f.rel));
                    }
                    let Some(body) = f.decl_body(r) else {
                        problems.push(format!("{at}: role assignment without a body"));
                        continue;
                    };
                    // Scope.
                    let scope = match f.prop(body, "scope") {
                        None => Some(Scope::ResourceGroup),
                        // `symbol` or `symbol[i]` (one element of a resource loop).
                        Some(s) if scope_symbol(f.text_of(s)).is_some() => f
                            .find_decl(scope_symbol(f.text_of(s)).unwrap_or_default())
                            .filter(|d| d.kind() == "resource_declaration")
                            .and_then(|d| f.decl_target(d))
                            .and_then(|ty| scope_of_resource_type(&ty)),
                        Some(s) => match f.text_of(s) {
                            "resourceGroup()" => Some(Scope::ResourceGroup),
                            "subscription()" => Some(Scope::Subscription),
                            _ => None,
                        },
                    };
                    let Some(scope) = scope else {
                        problems.push(format!(
                            "{at}: role assignment scope is not a resource the contract knows"
                        ));
                        continue;
                    };
                    if matches!(scope, Scope::ResourceGroup | Scope::Subscription) {
                        problems.push(format!(
                            "{at}: role assignment at {scope:?} scope; scope it to the one resource it is for"
                        ));
                    }
                    let props = f.prop(body, "properties");
                    // Principal: the Function App's system-assigned identity, or a consumer
                    // site's on a certificate's secret ([`consumer_scope`]).
                    let principal = props
                        .and_then(|p| f.prop(p, "principalId"))
                        .map(|n| self.eval(f, n, &env, 0))
                        .unwrap_or_default();
                    let scope = match consumer_scope(&principal, scope) {
                        Ok(s) => s,
                        Err(why) => {
                            problems.push(format!("{at}: {why}"));
                            scope
                        }
                    };
                    if props
                        .and_then(|p| f.prop(p, "principalType"))
                        .and_then(|n| f.string_literal(n))
                        .as_deref()
                        != Some("ServicePrincipal")
                    {
                        problems.push(format!(
                            "{at}: set principalType: 'ServicePrincipal' (replication delay of new identities)"
                        ));
                    }
                    // Role.
                    let roles = props
                        .and_then(|p| f.prop(p, "roleDefinitionId"))
                        .map(|n| self.eval(f, n, &env, 0))
                        .unwrap_or_default();
                    if roles.is_empty() {
                        problems.push(format!("{at}: role assignment without roleDefinitionId"));
                    }
                    let deployed_for = self.deployments_from_main(&f.rel);
                    for role in roles {
                        let grant =
                            |name: String,
                             id: Option<String>,
                             actions: Vec<String>,
                             not_actions: Vec<String>,
                             data_actions: Vec<String>| Grant {
                                at: at.clone(),
                                file: f.rel.clone(),
                                scope,
                                role_name: name,
                                role_id: id,
                                actions,
                                not_actions,
                                data_actions,
                                deployed_for: deployed_for.clone(),
                            };
                        match role {
                            Val::Str(id) => {
                                let id = id.to_ascii_lowercase();
                                if let Some((_, name)) =
                                    FORBIDDEN_ROLES.iter().find(|(g, _)| *g == id)
                                {
                                    problems.push(format!(
                                        "{at}: assigns {name} ({id}): forbidden for the rotator"
                                    ));
                                } else if let Some(def) = BUILT_IN_ROLES.iter().find(|d| d.id == id)
                                {
                                    let v = |s: &[&str]| {
                                        s.iter().map(|x| x.to_string()).collect::<Vec<_>>()
                                    };
                                    grants.push(grant(
                                        def.name.to_string(),
                                        Some(id),
                                        v(def.actions),
                                        v(def.not_actions),
                                        v(def.data_actions),
                                    ));
                                } else {
                                    problems.push(format!(
                                        "{at}: role definition {id} is not in BUILT_IN_ROLES; add it with its actions and source"
                                    ));
                                }
                            }
                            Val::Resource { file, symbol } => {
                                match custom.get(&(file.clone(), symbol.clone())) {
                                    Some((name, a, na, d)) => grants.push(grant(
                                        name.clone(),
                                        None,
                                        a.clone(),
                                        na.clone(),
                                        d.clone(),
                                    )),
                                    None => problems.push(format!(
                                        "{at}: roleDefinitionId points at {file}:{symbol}, which is not a custom role definition"
                                    )),
                                }
                            }
                            other => problems
                                .push(format!("{at}: cannot resolve roleDefinitionId: {other:?}")),
                        }
                    }
                } else if t.starts_with("microsoft.graph/approleassignedto@") {
                    let Some(body) = f.decl_body(r) else {
                        problems.push(format!("{at}: app role assignment without a body"));
                        continue;
                    };
                    let principal = f
                        .prop(body, "principalId")
                        .map(|n| self.eval(f, n, &env, 0))
                        .unwrap_or_default();
                    if principal.is_empty()
                        || !principal.iter().all(|v| matches!(v, Val::Identity { .. }))
                    {
                        problems.push(format!(
                            "{at}: principalId is not the Function App's managed identity ({principal:?})"
                        ));
                    }
                    // resourceId: Microsoft Graph's service principal.
                    let resource = f
                        .prop(body, "resourceId")
                        .map(|n| self.eval(f, n, &env, 0))
                        .unwrap_or_default();
                    let is_graph = resource.iter().all(|v| match v {
                        Val::Resource { file, symbol } => {
                            let rf = self.file(file);
                            rf.find_decl(symbol)
                                .and_then(|d| rf.decl_body(d))
                                .and_then(|b| rf.prop(b, "appId"))
                                .map(|n| self.eval(rf, n, &env, 0))
                                .is_some_and(|v| v == vec![Val::Str(MICROSOFT_GRAPH_APP_ID.into())])
                        }
                        _ => false,
                    }) && !resource.is_empty();
                    if !is_graph {
                        problems.push(format!(
                            "{at}: resourceId is not Microsoft Graph's service principal (appId {MICROSOFT_GRAPH_APP_ID})"
                        ));
                    }
                    let Some(role_node) = f.prop(body, "appRoleId") else {
                        problems.push(format!("{at}: app role assignment without appRoleId"));
                        continue;
                    };
                    let mut names = Vec::new();
                    for v in self.eval(f, role_node, &env, 0) {
                        match v {
                            Val::Str(id) => match GRAPH_APP_ROLES
                                .iter()
                                .find(|(g, _)| g.eq_ignore_ascii_case(&id))
                            {
                                Some((_, name)) => names.push(name.to_string()),
                                None => problems.push(format!(
                                    "{at}: Graph app role {id} is not in GRAPH_APP_ROLES"
                                )),
                            },
                            // filter(graphSp.appRoles, r => r.value == '<name>')[0].id
                            Val::Unknown(_) => {
                                let text = f.text_of(role_node);
                                match GRAPH_APP_ROLES
                                    .iter()
                                    .find(|(_, n)| text.contains(&format!("'{n}'")))
                                {
                                    Some((_, name)) => names.push(name.to_string()),
                                    None => problems.push(format!(
                                        "{at}: cannot tell which Graph app role `{text}` is"
                                    )),
                                }
                            }
                            other => {
                                problems.push(format!("{at}: cannot resolve appRoleId: {other:?}"))
                            }
                        }
                    }
                    for role in names {
                        if FORBIDDEN_GRAPH_ROLES.iter().any(|fbd| {
                            role == *fbd || (fbd.ends_with('.') && role.starts_with(fbd))
                        }) {
                            problems.push(format!(
                                "{at}: grants Graph {role}: forbidden (use Application.ReadWrite.OwnedBy and owner grants)"
                            ));
                        }
                        graph.push(GraphGrant {
                            at: at.clone(),
                            role,
                        });
                    }
                    if self.deployments_from_main(&f.rel).is_empty() && f.rel != "main.bicep" {
                        problems.push(format!("{at}: {} is not deployed by main.bicep", f.rel));
                    }
                }
            }
        }
        Collected {
            grants,
            graph,
            problems,
        }
    }
}

/// Everything wrong with the permissions: missing grants, over-grants, undeployed grants.
fn check_permissions(infra: &Infra) -> Vec<String> {
    let Collected {
        grants,
        graph,
        mut problems,
    } = infra.collect();

    // Every permission the code (or a consumer) uses is granted on its scope kind.
    for perm in REQUIRED_PERMISSIONS.iter().chain(CONSUMER_PERMISSIONS) {
        let ok = match perm.plane {
            Plane::GraphAppRole => graph.iter().any(|g| g.role == perm.action),
            plane => grants.iter().any(|g| {
                g.scope == Scope::Code(perm.scope) && grants_action(g, plane, perm.action)
            }),
        };
        if !ok {
            problems.push(format!(
                "missing grant: {:?} {} on {:?} (used by {})",
                perm.plane, perm.action, perm.scope, perm.used_by
            ));
        }
    }

    for g in &grants {
        // A grant nobody uses: no required permission on its scope is covered by it.
        let used = REQUIRED_PERMISSIONS
            .iter()
            .chain(CONSUMER_PERMISSIONS)
            .any(|perm| {
                g.scope == Scope::Code(perm.scope) && grants_action(g, perm.plane, perm.action)
            });
        let platform = PLATFORM_GRANTS
            .iter()
            .any(|(scope, id, _)| *scope == g.scope && g.role_id.as_deref() == Some(*id));
        if !used && !platform {
            problems.push(format!(
                "{}: {} on {:?} grants nothing the code uses (REQUIRED_PERMISSIONS) nor the platform needs (PLATFORM_GRANTS)",
                g.at, g.role_name, g.scope
            ));
        }
        // A built-in role comes with everything it allows: only the platform's own needs justify one.
        if used && !platform && g.role_id.is_some() {
            problems.push(format!(
                "{}: built-in {} on {:?} allows more than the code calls; assign the custom role with exactly REQUIRED_PERMISSIONS",
                g.at, g.role_name, g.scope
            ));
        }
        // Custom roles: every action they allow is used (built-ins come as they are).
        if g.role_id.is_none() {
            for (plane, list) in [
                (Plane::ArmAction, &g.actions),
                (Plane::DataAction, &g.data_actions),
            ] {
                for a in list {
                    let needed =
                        REQUIRED_PERMISSIONS
                            .iter()
                            .chain(CONSUMER_PERMISSIONS)
                            .any(|perm| {
                                perm.plane == plane
                                    && g.scope == Scope::Code(perm.scope)
                                    && action_matches(a, perm.action)
                            });
                    if !needed {
                        problems.push(format!(
                            "{}: custom role {} allows `{a}` on {:?}, which no code uses",
                            g.at, g.role_name, g.scope
                        ));
                    }
                }
            }
        }
        // Deployed from main.bicep, once per resource the parameters name.
        if g.file != "main.bicep" {
            let expected = SCOPE_PARAMETERS
                .iter()
                .find(|(s, _)| *s == g.scope)
                .map(|(_, p)| p.map(str::to_string));
            if let Some(expected) = expected {
                for d in &g.deployed_for {
                    if *d != expected {
                        problems.push(format!(
                            "{}: {} is deployed for {:?} but the {:?} resources come from {:?}",
                            g.at, g.file, d, g.scope, expected
                        ));
                    }
                }
            }
        }
    }
    problems
}

/// The remaining structural promises: main's parameters, keyless storage, identity.
fn check_structure(infra: &Infra) -> Vec<String> {
    let mut problems = Vec::new();
    let main = infra.file("main.bicep");
    let params: BTreeSet<String> = main
        .statements("parameter_declaration")
        .into_iter()
        .map(|p| main.decl_name(p))
        .collect();
    for p in MAIN_PARAMETERS {
        if !params.contains(*p) {
            problems.push(format!("main.bicep does not take the parameter `{p}`"));
        }
    }
    // planKind defaults to flex.
    if let Some(pk) = main.find_decl("planKind")
        && main
            .decl_value(pk)
            .and_then(|v| main.string_literal(v))
            .as_deref()
            != Some("flex")
    {
        problems.push("main.bicep: planKind must default to 'flex'".into());
    }
    // Storage: no shared keys.
    for f in infra.files.values() {
        for r in f.statements("resource_declaration") {
            let t = f.decl_target(r).unwrap_or_default().to_ascii_lowercase();
            if t.starts_with("microsoft.storage/storageaccounts@") && !f.is_existing(r) {
                let shared = f
                    .decl_body(r)
                    .and_then(|b| f.path(b, &["properties", "allowSharedKeyAccess"]))
                    .map(|n| f.text_of(n).to_string());
                if shared.as_deref() != Some("false") {
                    problems.push(format!(
                        "{}: storage account must set allowSharedKeyAccess: false",
                        f.at(r)
                    ));
                }
            }
        }
    }
    // The Function App has a system-assigned identity.
    match infra.function_app() {
        Err(e) => problems.push(e),
        Ok((f, site)) => {
            let identity = f
                .decl_body(site)
                .and_then(|b| f.path(b, &["identity", "type"]))
                .and_then(|n| f.string_literal(n));
            if identity.as_deref() != Some("SystemAssigned") {
                problems.push(format!(
                    "{}: the Function App must have identity type 'SystemAssigned'",
                    f.at(site)
                ));
            }
        }
    }
    problems
}

fn check_all(infra: &Infra) -> Vec<String> {
    let mut problems = Vec::new();
    for kind in PLAN_KINDS {
        problems.extend(check_app_settings(infra, kind));
    }
    problems.extend(check_permissions(infra));
    problems.extend(check_structure(infra));
    problems
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

fn infra_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("infra")
}

fn real_sources() -> Vec<(String, String)> {
    let infra = Infra::load(&infra_dir()).unwrap_or_else(|e| panic!("{e}"));
    infra
        .files
        .keys()
        .map(|rel| {
            let text = std::fs::read_to_string(infra_dir().join(rel))
                .unwrap_or_else(|e| panic!("cannot read {rel}: {e}"));
            (rel.clone(), text)
        })
        .collect()
}

/// The real templates with one file edited; the edit must apply.
fn edited(rel: &str, from: &str, to: &str) -> Infra {
    Infra::from_sources(with_edit(real_sources(), rel, from, to)).unwrap_or_else(|e| panic!("{e}"))
}

fn assert_reports(problems: &[String], needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "expected a problem containing `{needle}`, got:\n{}",
        problems.join("\n")
    );
}

#[test]
fn templates_satisfy_the_settings_and_permissions_contract() {
    let infra = Infra::load(&infra_dir()).unwrap_or_else(|e| panic!("{e}"));
    let problems = check_all(&infra);
    assert!(
        problems.is_empty(),
        "infra/ breaks the contract:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_required_permission_is_granted_on_its_scope() {
    // Also a readable inventory when run with --nocapture.
    let infra = Infra::load(&infra_dir()).unwrap_or_else(|e| panic!("{e}"));
    let c = infra.collect();
    for perm in REQUIRED_PERMISSIONS {
        let by: Vec<String> = match perm.plane {
            Plane::GraphAppRole => c
                .graph
                .iter()
                .filter(|g| g.role == perm.action)
                .map(|g| format!("Graph app role at {}", g.at))
                .collect(),
            plane => c
                .grants
                .iter()
                .filter(|g| {
                    g.scope == Scope::Code(perm.scope) && grants_action(g, plane, perm.action)
                })
                .map(|g| format!("{} at {}", g.role_name, g.at))
                .collect(),
        };
        println!(
            "{:?} {} on {:?} <- {by:?}",
            perm.plane, perm.action, perm.scope
        );
        assert!(
            !by.is_empty(),
            "{} on {:?} is not granted",
            perm.action,
            perm.scope
        );
    }
}

#[test]
fn app_settings_differ_by_plan_kind_as_the_platform_requires() {
    let infra = Infra::load(&infra_dir()).unwrap_or_else(|e| panic!("{e}"));
    let flex = infra.app_settings("flex").unwrap();
    let premium = infra.app_settings("elasticPremium").unwrap();
    let names = |s: &[AppSetting]| s.iter().map(|x| x.name.clone()).collect::<BTreeSet<_>>();
    let only_premium: BTreeSet<String> =
        names(&premium).difference(&names(&flex)).cloned().collect();
    assert!(
        only_premium.contains("FUNCTIONS_WORKER_RUNTIME"),
        "{only_premium:?}"
    );
    assert!(
        only_premium.contains("FUNCTIONS_EXTENSION_VERSION"),
        "{only_premium:?}"
    );
    assert!(names(&flex).is_subset(&names(&premium)));
    // The optional pins are conditional on their parameters, not always set empty.
    for name in ["ROTATOR_RESOLVE", "ROTATOR_CA_FILE"] {
        let s = flex.iter().find(|s| s.name == name).unwrap();
        assert!(s.conditional, "{name} should be set only when given");
    }
}

#[test]
fn role_tables_are_well_formed_and_cited() {
    let is_guid = |s: &str| {
        s.len() == 36
            && s.chars().enumerate().all(|(i, c)| {
                if [8, 13, 18, 23].contains(&i) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit() && !c.is_ascii_uppercase()
                }
            })
    };
    for r in BUILT_IN_ROLES {
        assert!(is_guid(r.id), "{}: bad id {}", r.name, r.id);
        assert!(r.source.contains("built-in-roles"), "{}: no source", r.name);
        assert!(!r.actions.is_empty() || !r.data_actions.is_empty());
        assert!(
            !FORBIDDEN_ROLES.iter().any(|(id, _)| *id == r.id),
            "{} is both allowed and forbidden",
            r.name
        );
    }
    for (id, name) in FORBIDDEN_ROLES.iter().chain(GRAPH_APP_ROLES) {
        assert!(is_guid(id), "{name}: bad id {id}");
    }
}

#[test]
fn action_wildcards_match_like_azure_rbac() {
    assert!(action_matches(
        "Microsoft.Web/sites/*",
        "Microsoft.Web/sites/config/list/action"
    ));
    assert!(action_matches(
        "Microsoft.KeyVault/vaults/secrets/*",
        "microsoft.keyvault/vaults/secrets/getSecret/action"
    ));
    assert!(action_matches(
        "Microsoft.KeyVault/vaults/*/read",
        "Microsoft.KeyVault/vaults/secrets/read"
    ));
    assert!(!action_matches(
        "Microsoft.Web/sites/*",
        "Microsoft.Web/connections/write"
    ));
    assert!(!action_matches(
        "Microsoft.Web/connections/read",
        "Microsoft.Web/connections/write"
    ));
}

#[test]
fn checker_reports_a_vault_granted_the_wrong_role() {
    // The site settings role on the vault's secrets instead of the Key Vault role.
    let infra = edited(
        "main.bicep",
        "roleDefinitionId: customRoles.outputs.keyVaultSecretRotatorRoleId",
        "roleDefinitionId: customRoles.outputs.siteSettingsUpdaterRoleId",
    );
    let problems = check_permissions(&infra);
    assert_reports(
        &problems,
        "missing grant: DataAction Microsoft.KeyVault/vaults/secrets/getSecret/action on Vault",
    );
    assert_reports(&problems, "grants nothing the code uses");
    assert_reports(
        &problems,
        "allows `Microsoft.Web/sites/config/write` on Code(Vault), which no code uses",
    );
}

#[test]
fn checker_reports_a_missing_connection_grant() {
    // The connection module no longer deployed by main.bicep.
    let infra = edited(
        "main.bicep",
        "module connectionAccess 'modules/access/connection.bicep'",
        "module connectionAccess 'modules/access/site.bicep'",
    );
    let problems = check_permissions(&infra);
    assert_reports(
        &problems,
        "modules/access/connection.bicep is not deployed by main.bicep",
    );
}

#[test]
fn checker_reports_a_custom_role_missing_an_action() {
    let infra = edited(
        "modules/customRoles.bicep",
        "          'Microsoft.Web/connections/write'\n",
        "",
    );
    let problems = check_permissions(&infra);
    assert_reports(
        &problems,
        "missing grant: ArmAction Microsoft.Web/connections/write on Connection",
    );
    assert_reports(&problems, "CUSTOM_ROLES lists");
}

#[test]
fn checker_reports_over_grants() {
    // Contributor on the resource group.
    let infra = edited("modules/access/site.bicep", "  scope: site\n", "");
    let infra_contrib = edited(
        "modules/access/site.bicep",
        "    roleDefinitionId: roleDefinitionId\n",
        "    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b24988ac-6180-42a0-ab88-20f7382dd24c')\n",
    );
    // The built-in roles the custom ones replace: each allows more than the code calls.
    let website_contributor = edited(
        "modules/access/site.bicep",
        "    roleDefinitionId: roleDefinitionId\n",
        "    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'de139f84-1756-47ae-9be6-808fbbe84772')\n",
    );
    assert_reports(
        &check_permissions(&website_contributor),
        "built-in Website Contributor on Code(Site) allows more than the code calls",
    );
    let secrets_officer = edited(
        "modules/access/vault.bicep",
        "  scope: vault\n  properties: {\n    roleDefinitionId: roleDefinitionId\n",
        "  scope: vault\n  properties: {\n    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7')\n",
    );
    assert_reports(
        &check_permissions(&secrets_officer),
        "built-in Key Vault Secrets Officer on Code(Vault) allows more than the code calls",
    );
    assert_reports(
        &check_permissions(&infra),
        "role assignment at ResourceGroup scope",
    );
    assert_reports(&check_permissions(&infra_contrib), "assigns Contributor");
    // A custom role with a provider-wide wildcard.
    let wide = edited(
        "modules/customRoles.bicep",
        "'Microsoft.Automation/automationAccounts/variables/write'",
        "'Microsoft.Automation/*'",
    );
    assert_reports(&check_permissions(&wide), "far more than the rotator needs");
}

#[test]
fn checker_reports_application_readwrite_all() {
    let infra = edited(
        "modules/graphAppRole.bicep",
        "var applicationReadWriteOwnedBy = '18a4783c-866b-4cc7-a460-3d5e5662c884'",
        "var applicationReadWriteOwnedBy = '1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9'",
    );
    let problems = check_permissions(&infra);
    assert_reports(
        &problems,
        "grants Graph Application.ReadWrite.All: forbidden",
    );
    assert_reports(
        &problems,
        "missing grant: GraphAppRole Application.ReadWrite.OwnedBy",
    );
}

#[test]
fn checker_reports_a_grant_to_another_principal() {
    let infra = edited(
        "main.bicep",
        "      wholeVault: vault.wholeVault\n      principalId: functionApp.outputs.principalId\n",
        "      wholeVault: vault.wholeVault\n      principalId: '11111111-1111-1111-1111-111111111111'\n",
    );
    assert_reports(
        &check_permissions(&infra),
        "principalId is not the Function App's managed identity",
    );
}

#[test]
fn checker_reports_missing_and_unknown_app_settings() {
    let infra = edited(
        "modules/functionApp.bicep",
        "    name: 'AZURE_TENANT_ID'\n",
        "    name: 'ROTATOR_TENANT'\n",
    );
    let problems = check_app_settings(&infra, "flex");
    assert_reports(&problems, "required app setting AZURE_TENANT_ID is not set");
    assert_reports(
        &problems,
        "ROTATOR_TENANT is not a setting the binary reads",
    );
}

#[test]
fn checker_reports_worker_runtime_on_flex() {
    let infra = edited(
        "modules/functionApp.bicep",
        "  ? concat(hostSettings, rotatorSettings, resolveSetting, caFileSetting)\n",
        "  ? concat(hostSettings, rotatorSettings, resolveSetting, caFileSetting, elasticPremiumSettings)\n",
    );
    assert_reports(
        &check_app_settings(&infra, "flex"),
        "FUNCTIONS_WORKER_RUNTIME must not be set on Flex Consumption",
    );
    let infra = edited(
        "modules/functionApp.bicep",
        "  : concat(hostSettings, rotatorSettings, resolveSetting, caFileSetting, elasticPremiumSettings)\n",
        "  : concat(hostSettings, rotatorSettings, resolveSetting, caFileSetting)\n",
    );
    assert_reports(
        &check_app_settings(&infra, "elasticPremium"),
        "FUNCTIONS_WORKER_RUNTIME must be set on Elastic Premium",
    );
}

#[test]
fn checker_reports_shared_key_storage() {
    let infra = edited(
        "modules/storage.bicep",
        "allowSharedKeyAccess: false",
        "allowSharedKeyAccess: true",
    );
    assert_reports(&check_structure(&infra), "allowSharedKeyAccess: false");
}

#[test]
fn bicepparam_sets_only_declared_parameters_and_every_required_one() {
    let infra = Infra::load(&infra_dir()).unwrap_or_else(|e| panic!("{e}"));
    let main = infra.file("main.bicep");
    let declared: BTreeMap<String, bool> = main
        .statements("parameter_declaration")
        .into_iter()
        .map(|p| (main.decl_name(p), main.decl_value(p).is_some()))
        .collect();
    let text = std::fs::read_to_string(infra_dir().join("main.bicepparam"))
        .expect("infra/main.bicepparam exists");
    assert!(
        text.lines().any(|l| l.trim() == "using './main.bicep'"),
        "main.bicepparam must start with using './main.bicep'"
    );
    let set: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("param "))
        .filter_map(|l| l.split('=').next())
        .map(|n| n.trim().to_string())
        .collect();
    for name in &set {
        assert!(
            declared.contains_key(name),
            "main.bicepparam sets `{name}`, which main.bicep does not declare"
        );
    }
    for (name, has_default) in &declared {
        assert!(
            *has_default || set.contains(name),
            "main.bicep parameter `{name}` has no default and main.bicepparam does not set it"
        );
    }
}

#[test]
fn checker_reports_plan_kind_default_and_missing_parameters() {
    let infra = edited(
        "main.bicep",
        "param planKind string = 'flex'",
        "param planKind string = 'elasticPremium'",
    );
    assert_reports(&check_structure(&infra), "planKind must default to 'flex'");
    let infra = edited(
        "main.bicep",
        "param policyPath string = 'policy.json'",
        "param policyFile string = 'policy.json'",
    );
    assert_reports(
        &check_structure(&infra),
        "does not take the parameter `policyPath`",
    );
}

/// The emulator keeps its own copy of the built-in roles (trimmed to the providers it serves);
/// both copies come from the same docs, so wherever a role is in both, the emulator's may
/// leave actions out but never add one, and the data actions agree exactly.
#[test]
fn the_emulators_built_in_roles_agree_with_this_table() {
    let mut compared = 0;
    for (name, grants) in azure_emulator::model::ROLES {
        let Some(def) = BUILT_IN_ROLES.iter().find(|d| d.name == *name) else {
            continue;
        };
        compared += 1;
        for a in grants.actions {
            assert!(
                def.actions.contains(a),
                "{name}: the emulator grants {a}, the docs do not"
            );
        }
        for a in grants.not_actions {
            assert!(
                def.not_actions.contains(a),
                "{name}: the emulator's notAction {a} is not in the docs"
            );
        }
        let (mut ours, mut docs) = (grants.data_actions.to_vec(), def.data_actions.to_vec());
        ours.sort_unstable();
        docs.sort_unstable();
        assert_eq!(
            ours, docs,
            "{name}: data actions differ between the emulator and the docs"
        );
    }
    assert!(
        compared > 0,
        "no role is in both tables: the comparison compared nothing"
    );
}

/// The scope a grant counts for, given its principal: the Function App's identity keeps the
/// resource's scope; a consumer site's identity may only be granted on a secret, which is then
/// a certificate's secret (CONSUMER_PERMISSIONS: the site loads the PFX through a Key Vault
/// reference). Anyone else is refused.
fn consumer_scope(principal: &[Val], scope: Scope) -> Result<Scope, String> {
    let all = |f: fn(&Val) -> bool| !principal.is_empty() && principal.iter().all(f);
    if all(|v| matches!(v, Val::Identity { .. })) {
        Ok(scope)
    } else if all(|v| matches!(v, Val::ConsumerIdentity { .. })) {
        match scope {
            Scope::Code(ScopeKind::Vault) => Ok(Scope::Code(ScopeKind::CertificateSecret)),
            other => Err(format!(
                "a consumer site's identity is granted on {other:?}: consumers may only read a certificate's secret"
            )),
        }
    } else {
        Err(format!(
            "principalId is not the Function App's managed identity ({principal:?})"
        ))
    }
}

#[test]
fn checker_reports_certificate_grants_on_the_wrong_object() {
    // The signer role on the certificate instead of its key: sign is missing where Key Vault
    // checks it, and the role allows on the certificate what no code does there.
    let infra = edited(
        "modules/access/certificate.bicep",
        "  scope: key\n",
        "  scope: certificate\n",
    );
    let problems = check_permissions(&infra);
    assert_reports(
        &problems,
        "missing grant: DataAction Microsoft.KeyVault/vaults/keys/sign/action on CertificateKey",
    );
    assert_reports(
        &problems,
        "allows `Microsoft.KeyVault/vaults/keys/sign/action` on Code(Certificate), which no code uses",
    );
    // The rotator's certificate role given to a consumer site instead.
    let infra = edited(
        "modules/access/certificate.bicep",
        "    roleDefinitionId: certificateRoleId\n    principalId: principalId\n",
        "    roleDefinitionId: certificateRoleId\n    principalId: readerSites[0].identity.principalId\n",
    );
    assert_reports(
        &check_permissions(&infra),
        "a consumer site's identity is granted on Code(Certificate)",
    );
}

#[test]
fn checker_reports_the_pfx_read_missing_or_given_to_the_rotator() {
    // No consumer grant at all: the sites that load the PFX could not resolve their reference.
    let infra = edited(
        "modules/access/certificate.bicep",
        "      principalId: readerSites[i].identity.principalId\n",
        "      principalId: principalId\n",
    );
    let problems = check_permissions(&infra);
    assert_reports(
        &problems,
        "missing grant: DataAction Microsoft.KeyVault/vaults/secrets/getSecret/action on CertificateSecret",
    );
    // ...and the rotator itself would hold a built-in read of the private key.
    assert_reports(
        &problems,
        "built-in Key Vault Secrets User on Code(Vault) allows more than the code calls",
    );
}

// ---------------------------------------------------------------------------------------------
// The deployment's certificates against the policy
// ---------------------------------------------------------------------------------------------

/// One entry of main.bicep's `certificates` parameter: (vault, name) → pfxReaders (rg, site),
/// lower-cased as Azure compares names.
type CertificateList = BTreeMap<(String, String), BTreeSet<(String, String)>>;

/// The elements of an array node (through `array_item` wrappers), comments left out.
fn array_items(n: Node<'_>) -> Vec<Node<'_>> {
    let mut c = n.walk();
    n.named_children(&mut c)
        .filter(|x| !is_comment(*x))
        .map(|x| match x.kind() {
            "array_item" => x.named_child(0).unwrap_or(x),
            _ => x,
        })
        .collect()
}

/// The `certificates` value of a `.bicepparam` text.
fn listed_certificates(bicepparam: &str) -> Result<CertificateList, String> {
    let f = BicepFile::parse(
        "main.bicepparam",
        &crate::bicep_syntax::bicepparam_as_bicep(bicepparam),
    );
    let mut out = CertificateList::new();
    let Some(value) = f.find_decl("certificates").and_then(|d| f.decl_value(d)) else {
        return Ok(out);
    };
    let text = |obj: Node, key: &str| -> Result<String, String> {
        f.prop(obj, key)
            .and_then(|n| f.string_literal(n))
            .map(|s| s.to_ascii_lowercase())
            .ok_or_else(|| format!("{}: `{key}` is not a plain string", f.at(obj)))
    };
    for cert in array_items(value) {
        let mut readers = BTreeSet::new();
        if let Some(list) = f.prop(cert, "pfxReaders") {
            for r in array_items(list) {
                readers.insert((text(r, "resourceGroup")?, text(r, "name")?));
            }
        }
        out.insert((text(cert, "vault")?, text(cert, "name")?), readers);
    }
    Ok(out)
}

/// What the policy's certificate credentials need from `certificates`: each certificate listed,
/// and as pfxReaders exactly the sites whose Key Vault reference loads its PFX (a site that only
/// holds a thumbprint reads nothing; a slot has its own identity, which the template does not
/// grant: reported so a person grants it).
fn check_certificates_against_policy(
    listed: &CertificateList,
    policy: &secret_rotator::policy::Policy,
) -> Vec<String> {
    use secret_rotator::policy::CertificateConsumer;
    let mut problems = Vec::new();
    let mut wanted = CertificateList::new();
    for c in &policy.certificates {
        let key = (
            c.certificate.vault.to_ascii_lowercase(),
            c.certificate.name.to_ascii_lowercase(),
        );
        let readers = wanted.entry(key).or_default();
        for consumer in &c.consumers {
            if let CertificateConsumer::AppSettingKeyVaultRef { site, .. } = consumer {
                match &site.slot {
                    Some(slot) => problems.push(format!(
                        "{}: slot '{slot}' of site '{}' loads the PFX with its own identity: grant it Key Vault Secrets User on the certificate's secret by hand",
                        c.name, site.name
                    )),
                    None => {
                        readers.insert((
                            site.resource_group.to_ascii_lowercase(),
                            site.name.to_ascii_lowercase(),
                        ));
                    }
                }
            }
        }
    }
    for ((vault, name), readers) in &wanted {
        match listed.get(&(vault.clone(), name.clone())) {
            None => problems.push(format!(
                "certificate '{name}' of vault '{vault}' is enrolled but not in `certificates`: the rotator could neither renew it nor sign with its key"
            )),
            Some(got) => {
                for (rg, site) in readers.difference(got) {
                    problems.push(format!(
                        "certificate '{name}': site '{site}' ({rg}) loads its PFX but is not in pfxReaders: its Key Vault reference would fail"
                    ));
                }
                for (rg, site) in got.difference(readers) {
                    problems.push(format!(
                        "certificate '{name}': site '{site}' ({rg}) is in pfxReaders but no consumer loads the PFX there: it would read the private key for nothing"
                    ));
                }
            }
        }
    }
    for (vault, name) in listed.keys() {
        if !wanted.contains_key(&(vault.clone(), name.clone())) {
            problems.push(format!(
                "certificate '{name}' of vault '{vault}' is in `certificates` but no policy entry enrols it: a grant nobody uses"
            ));
        }
    }
    problems
}

/// The policy the sample `main.bicepparam` goes with (README's certificate example, with
/// the sample's sites).
const SAMPLE_CERTIFICATE_POLICY: &str = r#"{"credentials": [{
    "type": "certificate",
    "name": "provision-assist-cert",
    "application": { "appId": "4a6c8e0f-1b3d-4f5a-8c7e-9f1b3d5e7a20" },
    "certificate": { "vault": "kv-provisionassist", "name": "provision-assist" },
    "consumers": [
      { "type": "appSettingThumbprint", "site": "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-provisionassist/providers/Microsoft.Web/sites/func-provisionassist", "setting": "WEBSITE_LOAD_CERTIFICATES" },
      { "type": "appSettingKeyVaultReference", "site": "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-telephony/providers/Microsoft.Web/sites/func-teams-integration", "setting": "ClientCertificate" }
    ]
}]}"#;

fn sample_policy(text: &str) -> secret_rotator::policy::Policy {
    secret_rotator::policy::parse("policy.json", text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_sample_deployment_grants_what_its_policy_needs() {
    let text = std::fs::read_to_string(infra_dir().join("main.bicepparam")).unwrap();
    let listed = listed_certificates(&text).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let problems =
        check_certificates_against_policy(&listed, &sample_policy(SAMPLE_CERTIFICATE_POLICY));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn checker_reports_certificates_the_deployment_and_the_policy_disagree_on() {
    let text = std::fs::read_to_string(infra_dir().join("main.bicepparam")).unwrap();
    let listed = listed_certificates(&text).unwrap();
    // The thumbprint site made a PFX reader, the PFX site left out, another certificate enrolled.
    let policy = SAMPLE_CERTIFICATE_POLICY
        .replace("appSettingThumbprint", "appSettingKeyVaultReferenceX")
        .replace("appSettingKeyVaultReference\"", "appSettingThumbprint\"")
        .replace(
            "appSettingKeyVaultReferenceX",
            "appSettingKeyVaultReference",
        )
        .replace(
            "\"setting\": \"WEBSITE_LOAD_CERTIFICATES\"",
            "\"setting\": \"ClientPfx\"",
        )
        .replace(
            "\"setting\": \"ClientCertificate\"",
            "\"setting\": \"WEBSITE_LOAD_CERTIFICATES\"",
        );
    let problems = check_certificates_against_policy(&listed, &sample_policy(&policy));
    assert_reports(
        &problems,
        "site 'func-provisionassist' (rg-provisionassist) loads its PFX but is not in pfxReaders",
    );
    assert_reports(
        &problems,
        "site 'func-teams-integration' (rg-telephony) is in pfxReaders but no consumer loads the PFX",
    );
    let other = SAMPLE_CERTIFICATE_POLICY.replace(
        "\"name\": \"provision-assist\" }",
        "\"name\": \"other-cert\" }",
    );
    let problems = check_certificates_against_policy(&listed, &sample_policy(&other));
    assert_reports(
        &problems,
        "certificate 'other-cert' of vault 'kv-provisionassist' is enrolled but not in `certificates`",
    );
    assert_reports(
        &problems,
        "certificate 'provision-assist' of vault 'kv-provisionassist' is in `certificates` but no policy entry enrols it",
    );
}
