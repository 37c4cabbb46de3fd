//! Typed settings, read once at start through an injectable lookup.
//!
//! [`SETTING_SPECS`] is the single list of every setting the binary reads: the README's
//! configuration table, `local.settings.sample.json` and the Bicep contract test are all checked
//! against it.

/// Who provides a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Set by the Functions platform itself; never in app settings.
    Platform,
    /// An app setting the deployment (Bicep) must set.
    AppSetting,
}

/// One setting the binary reads.
#[derive(Debug, Clone, Copy)]
pub struct SettingSpec {
    pub name: &'static str,
    /// `true`: the process stops at start, naming it, when it is missing.
    pub required: bool,
    pub source: Source,
    pub example: &'static str,
    pub meaning: &'static str,
}

pub const SETTING_SPECS: &[SettingSpec] = &[
    SettingSpec {
        name: "FUNCTIONS_CUSTOMHANDLER_PORT",
        required: true,
        source: Source::Platform,
        example: "34567",
        meaning: "Loopback port the Functions host forwards invocations to (set by the host).",
    },
    SettingSpec {
        name: "IDENTITY_ENDPOINT",
        required: false,
        source: Source::Platform,
        example: "http://localhost:4141/msi/token",
        meaning: "Managed identity token endpoint (set by App Service; read by azure_identity).",
    },
    SettingSpec {
        name: "IDENTITY_HEADER",
        required: false,
        source: Source::Platform,
        example: "(platform secret)",
        meaning: "Managed identity request header (set by App Service; read by azure_identity).",
    },
    SettingSpec {
        name: "AZURE_TENANT_ID",
        required: true,
        source: Source::AppSetting,
        example: "72f988bf-86f1-41af-91ab-2d7cd011db47",
        meaning: "Tenant of the enrolled applications; verification tokens are requested there.",
    },
    SettingSpec {
        name: "ROTATOR_POLICY_PATH",
        required: true,
        source: Source::AppSetting,
        example: "policy.json",
        meaning: "Enrolment policy file; relative paths are under the app root.",
    },
    SettingSpec {
        name: "AzureWebJobsStorage__accountName",
        required: true,
        source: Source::AppSetting,
        example: "stsecretrotator",
        meaning: "The app's own storage account (identity-based): leases, audit records, run outcomes.",
    },
    SettingSpec {
        name: "AzureWebJobsStorage__blobServiceUri",
        required: false,
        source: Source::AppSetting,
        example: "https://stsecretrotator.blob.core.windows.net",
        meaning: "Blob endpoint, when it is not https://{accountName}.blob.{cloud suffix}.",
    },
    SettingSpec {
        name: "ROTATOR_CONTAINER",
        required: false,
        source: Source::AppSetting,
        example: "secret-rotator",
        meaning: "Blob container for leases, audit records and run outcomes.",
    },
    SettingSpec {
        name: "AZURE_CLOUD",
        required: false,
        source: Source::AppSetting,
        example: "public",
        meaning: "public, usgovernment or china: picks every Azure endpoint.",
    },
    SettingSpec {
        name: "AZURE_CLIENT_ID",
        required: false,
        source: Source::AppSetting,
        example: "5e29463d-71da-4fe0-8e69-999b57db23b0",
        meaning: "Client id of a user-assigned managed identity; unset = system-assigned.",
    },
    SettingSpec {
        name: "ROTATOR_MAX_PARALLEL",
        required: false,
        source: Source::AppSetting,
        example: "8",
        meaning: "Credentials rotated at once (bounded also by Graph's write quota).",
    },
    SettingSpec {
        name: "ROTATOR_PASS_BUDGET_SECONDS",
        required: false,
        source: Source::AppSetting,
        example: "240",
        meaning: "Longest a timer pass works before leaving the rest for the next run.",
    },
    SettingSpec {
        name: "ROTATOR_ROTATE_WAIT_SECONDS",
        required: false,
        source: Source::AppSetting,
        example: "20",
        meaning: "How long an on-demand Rotate request waits before answering with a run id.",
    },
    SettingSpec {
        name: "ROTATOR_VERIFY_TIMEOUT_SECONDS",
        required: false,
        source: Source::AppSetting,
        example: "180",
        meaning: "How long a new secret may take to be accepted by Entra (replication delay).",
    },
    SettingSpec {
        name: "ROTATOR_RESOLVE",
        required: false,
        source: Source::AppSetting,
        example: "*.vault.azure.net=10.0.0.5:443",
        meaning: "Pin host names to addresses (HOST=IP:PORT, comma-separated; '*.' suffix allowed).",
    },
    SettingSpec {
        name: "ROTATOR_CA_FILE",
        required: false,
        source: Source::AppSetting,
        example: "/home/site/wwwroot/proxy-ca.pem",
        meaning: "Extra trusted CA certificates (PEM) for a TLS-inspecting proxy or an emulator.",
    },
    SettingSpec {
        name: "ROTATOR_LOG",
        required: false,
        source: Source::AppSetting,
        example: "info",
        meaning: "Log filter (tracing EnvFilter syntax).",
    },
];
