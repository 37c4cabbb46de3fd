// secret-rotator: the Function App that rotates Entra ID client secrets, and every right it holds.
//
// What lives where:
// - modules/monitoring.bicep   Log Analytics workspace + Application Insights (Entra-only ingestion)
// - modules/storage.bicep      the app's own storage account (no shared keys) and its containers
// - modules/functionApp.bicep  the plan (Flex Consumption or Elastic Premium) and the Linux
//                              custom-handler Function App with its system-assigned identity and
//                              every app setting the binary reads
// - modules/customRoles.bicep  the custom roles: Key Vault secret rotator, Key Vault certificate
//                              rotator and signer, site settings updater, API connection
//                              updater, Automation variable updater
// - modules/access/*.bicep     one role assignment each, scoped to the single resource it is for
// - modules/graphAppRole.bicep the Microsoft Graph app role Application.ReadWrite.OwnedBy
//
// Least privilege: custom roles with exactly the calls the code makes, on each enrolled secret
// (or, where the operator opts in, its whole vault), each enrolled certificate and its key (and
// Key Vault Secrets User on the certificate's secret for the consumer sites that load its PFX,
// nobody else), each consumer site, API connection and
// Automation account; Storage Blob Data Owner on its own storage account (on Elastic Premium
// without write access to its own package); Monitoring Metrics Publisher on its own
// Application Insights; and Application.ReadWrite.OwnedBy in Graph (it can only touch
// applications it owns; see docs/deploy.md for the owner step). Nothing at resource group or
// subscription scope, and no secret of its own: storage, telemetry and Graph are all reached
// with the managed identity. docs/deploy.md lists what each grant still allows.
//
// Deploying needs Microsoft.Resources/deployments/write and roleDefinitions/write on the
// subscription (the custom roles module is subscription-scoped): Owner or User Access
// Administrator there (docs/deploy.md, "Who can deploy").
//
// tests/e2e/infra_contract.rs checks this file against src/settings.rs (SETTING_SPECS) and
// src/azure/permissions.rs (REQUIRED_PERMISSIONS, and CONSUMER_PERMISSIONS for the sites that
// load a certificate's PFX), and main.bicepparam's certificates against the policy;
// tests/e2e/bicep_types.rs type-checks every template (and main.bicepparam) against the Bicep
// type data in ../shared/bicep-types and the Flex Consumption rules.

targetScope = 'resourceGroup'

@description('Name of the Function App (also the prefix of the other resources).')
@minLength(2)
@maxLength(40)
param functionAppName string

@description('Region for every resource this template creates.')
param location string = resourceGroup().location

@description('flex: Flex Consumption (default). elasticPremium: for vaults and consumers behind private endpoints (set subnetId too).')
@allowed([
  'flex'
  'elasticPremium'
])
param planKind string = 'flex'

@description('Subnet for outbound VNet integration, to reach private endpoints: delegated to Microsoft.App/environments (flex) or Microsoft.Web/serverFarms (elasticPremium). Empty: none.')
param subnetId string = ''

@description('Tenant of the enrolled applications; verification tokens are requested there.')
param tenantId string = tenant().tenantId

@description('NCRONTAB schedule (six fields, UTC) of the RotateSecrets timer.')
param rotationSchedule string = '0 0 2 * * *'

@description('Enrolment policy file, relative to the app root (/home/site/wwwroot) or absolute.')
param policyPath string = 'policy.json'

@description('Key Vaults holding enrolled credentials, with the enrolled secret names: the custom Key Vault secret rotator role on each secret (or on the vault with wholeVault).')
param vaults vaultRef[] = []

@description('Key Vault certificates of enrolled certificate credentials: the custom certificate rotator role on each certificate and the signer role on its key; Key Vault Secrets User on its secret for the pfxReaders sites (docs/deploy.md, "Certificate credentials").')
param certificates certificateRef[] = []

@description('Consumer App Service / Function Apps: the custom site settings updater role on each.')
param consumerSites resourceRef[] = []

@description('Consumer Logic Apps API connections (Microsoft.Web/connections): custom updater role on each.')
param apiConnections resourceRef[] = []

@description('Consumer Automation accounts: custom variable-updater role on each.')
param automationAccounts resourceRef[] = []

@description('Grant Application.ReadWrite.OwnedBy through the Graph extension (public cloud only: in Azure Government and Azure China it is skipped and the output manualGraphGrant prints the command). The deploying identity needs AppRoleAssignment.ReadWrite.All + Application.Read.All (or Privileged Role Administrator). false: grant it by hand (docs/deploy.md).')
param grantGraphAppRole bool = true

@description('Credentials rotated at once.')
@minValue(1)
@maxValue(64)
param maxParallel int = 8

@description('Longest a timer pass works before leaving the rest for the next run (seconds, well inside functionTimeout).')
@minValue(30)
@maxValue(540)
param passBudgetSeconds int = 240

@description('How long an on-demand Rotate request waits before answering with a run id (seconds).')
@minValue(1)
@maxValue(200)
param rotateWaitSeconds int = 20

@description('How long a new secret may take to be accepted by Entra (seconds).')
@minValue(10)
@maxValue(900)
param verifyTimeoutSeconds int = 180

@description('Notify about credentials nobody rotates that expire within this many days (0: no scan). Listing every application needs Application.Read.All; without it only the owned ones are scanned.')
@minValue(0)
@maxValue(365)
param warnUnenrolledDays int = 30

@description('Pin host names to addresses, HOST=IP:PORT comma-separated (e.g. a private vault). Empty: not set.')
param resolveOverrides string = ''

@description('Extra trusted CA bundle (PEM path in the package) for a TLS-inspecting proxy. Empty: not set.')
param caFile string = ''

@description('Log filter (tracing EnvFilter syntax).')
param logFilter string = 'info'

@description('App Service authentication (Entra ID) in front of every function, on top of function keys: SelfTest needs the app role Rotator.Probe or Rotator.Operator, every other function Rotator.Operator (docs/deploy.md, "Callers and roles").')
param appServiceAuth bool = false

@description('With appServiceAuth: client id of the Entra app registration that defines the app roles Rotator.Probe and Rotator.Operator (docs/deploy.md).')
param authClientId string = ''

@description('Tags for every resource.')
param tags object = {}

@description('A vault holding enrolled secrets, in this subscription.')
type vaultRef = {
  @description('Vault name.')
  name: string
  @description('Its resource group.')
  resourceGroup: string
  @description('The enrolled secrets in it (each must exist before deploying, unless wholeVault).')
  secrets: string[]
  @description('true: grant on the whole vault instead of on each secret (operator opt-in, docs/deploy.md).')
  wholeVault: bool
}

@description('A Key Vault certificate holding an enrolled certificate credential, in this subscription.')
type certificateRef = {
  @description('Vault name.')
  vault: string
  @description('The vault\'s resource group.')
  resourceGroup: string
  @description('Certificate name (it must exist before deploying).')
  name: string
  @description('Consumer sites whose Key Vault reference loads the certificate\'s PFX (appSettingKeyVaultReference consumers): their system-assigned identity reads the certificate\'s secret. Thumbprint consumers need nothing.')
  pfxReaders: resourceRef[]
}

@description('A resource the rotator acts on, in this subscription.')
type resourceRef = {
  @description('Resource name.')
  name: string
  @description('Its resource group (role assignments there are deployed by a module scoped to it).')
  resourceGroup: string
}

// Storage account names: 3-24 lowercase letters and digits, globally unique. 'st' + at most 9
// characters of the app name + the 13-character uniqueString, so the hash is never cut off.
// Microsoft Graph Bicep deployments are supported for the public cloud only, not Azure
// Government or Azure China ("Microsoft Graph Bicep feature limitations",
// learn.microsoft.com/graph/templates/limitations): elsewhere the app role is granted by hand
// with the command in the output manualGraphGrant.
var graphExtensionAvailable = environment().name == 'AzureCloud'
var useGraphExtension = grantGraphAppRole && graphExtensionAvailable

// Microsoft Graph's endpoint per cloud (Graph "National cloud deployments").
var graphEndpoint = environment().name == 'AzureUSGovernment'
  ? 'https://graph.microsoft.us'
  : (environment().name == 'AzureChinaCloud' ? 'https://microsoftgraph.chinacloudapi.cn' : 'https://graph.microsoft.com')

var storageAccountName = 'st${take(toLower(replace(functionAppName, '-', '')), 9)}${uniqueString(resourceGroup().id, functionAppName)}'

module monitoring 'modules/monitoring.bicep' = {
  name: '${functionAppName}-monitoring'
  params: {
    name: functionAppName
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: '${functionAppName}-storage'
  params: {
    name: storageAccountName
    location: location
    tags: tags
  }
}

module functionApp 'modules/functionApp.bicep' = {
  name: '${functionAppName}-app'
  params: {
    name: functionAppName
    location: location
    planKind: planKind
    subnetId: subnetId
    storageAccountName: storage.outputs.name
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    rotatorContainerName: storage.outputs.rotatorContainerName
    appInsightsConnectionString: monitoring.outputs.connectionString
    tenantId: tenantId
    rotationSchedule: rotationSchedule
    policyPath: policyPath
    maxParallel: maxParallel
    passBudgetSeconds: passBudgetSeconds
    rotateWaitSeconds: rotateWaitSeconds
    verifyTimeoutSeconds: verifyTimeoutSeconds
    warnUnenrolledDays: warnUnenrolledDays
    resolveOverrides: resolveOverrides
    caFile: caFile
    logFilter: logFilter
    appServiceAuth: appServiceAuth
    authClientId: authClientId
    tags: tags
  }
}

// The host (AzureWebJobsStorage, Flex deployment container) and the rotator (leases, audit
// records, run outcomes) both use the app's own storage through the identity.
module ownStorageAccess 'modules/access/ownStorage.bicep' = {
  name: '${functionAppName}-access-storage'
  params: {
    storageAccountName: storage.outputs.name
    principalId: functionApp.outputs.principalId
    packageContainerName: storage.outputs.deploymentContainerName
    protectPackage: planKind == 'elasticPremium'
  }
}

// Entra-only telemetry ingestion (local auth is disabled on the component).
module telemetryAccess 'modules/access/appInsights.bicep' = {
  name: '${functionAppName}-access-telemetry'
  params: {
    appInsightsName: monitoring.outputs.appInsightsName
    principalId: functionApp.outputs.principalId
  }
}

module customRoles 'modules/customRoles.bicep' = {
  name: '${functionAppName}-custom-roles'
  scope: subscription()
}

module vaultAccess 'modules/access/vault.bicep' = [
  for vault in vaults: {
    name: take('${functionAppName}-kv-${vault.name}', 64)
    scope: resourceGroup(vault.resourceGroup)
    params: {
      vaultName: vault.name
      secretNames: vault.secrets
      wholeVault: vault.wholeVault
      principalId: functionApp.outputs.principalId
      roleDefinitionId: customRoles.outputs.keyVaultSecretRotatorRoleId
    }
  }
]

module certificateAccess 'modules/access/certificate.bicep' = [
  for cert in certificates: {
    name: take('${functionAppName}-cert-${cert.vault}-${cert.name}', 64)
    scope: resourceGroup(cert.resourceGroup)
    params: {
      vaultName: cert.vault
      certificateName: cert.name
      principalId: functionApp.outputs.principalId
      certificateRoleId: customRoles.outputs.keyVaultCertificateRotatorRoleId
      signerRoleId: customRoles.outputs.keyVaultCertificateSignerRoleId
      pfxReaders: cert.pfxReaders
    }
  }
]

module siteAccess 'modules/access/site.bicep' = [
  for site in consumerSites: {
    name: take('${functionAppName}-site-${site.name}', 64)
    scope: resourceGroup(site.resourceGroup)
    params: {
      siteName: site.name
      principalId: functionApp.outputs.principalId
      roleDefinitionId: customRoles.outputs.siteSettingsUpdaterRoleId
    }
  }
]

module connectionAccess 'modules/access/connection.bicep' = [
  for connection in apiConnections: {
    name: take('${functionAppName}-conn-${connection.name}', 64)
    scope: resourceGroup(connection.resourceGroup)
    params: {
      connectionName: connection.name
      principalId: functionApp.outputs.principalId
      roleDefinitionId: customRoles.outputs.connectionUpdaterRoleId
    }
  }
]

module automationAccess 'modules/access/automationAccount.bicep' = [
  for account in automationAccounts: {
    name: take('${functionAppName}-aa-${account.name}', 64)
    scope: resourceGroup(account.resourceGroup)
    params: {
      automationAccountName: account.name
      principalId: functionApp.outputs.principalId
      roleDefinitionId: customRoles.outputs.automationVariableUpdaterRoleId
    }
  }
]

// On a first deployment this can fail once with "Not a valid reference update" (BadRequest) while
// the new identity replicates in Entra ID (microsoftgraph/msgraph-bicep-types#193); rerunning the
// deployment succeeds (docs/deploy.md, "First deployment").
module graphAppRole 'modules/graphAppRole.bicep' = if (useGraphExtension) {
  name: '${functionAppName}-graph-approle'
  params: {
    principalId: functionApp.outputs.principalId
  }
}

// Outputs are named after what they feed.

@description('--owner-object-id of `az ad app owner add` for each enrolled application.')
output ownerObjectIdForEnrolledApps string = functionApp.outputs.principalId

@description('--name of `az functionapp deployment source config-zip` / `az functionapp keys list`.')
output functionAppNameForDeploy string = functionApp.outputs.name

@description('Base URL of the HTTP functions (SelfTest, Rotate) for the verify step.')
output selfTestBaseUrl string = 'https://${functionApp.outputs.defaultHostName}/api'

@description('--account-name for `az storage blob upload --auth-mode login` of the package (Elastic Premium) and for reading audit records.')
output storageAccountNameForPackageAndAudit string = storage.outputs.name

@description('--container-name the Elastic Premium package goes to (Flex: its deployment container).')
output packageContainerName string = storage.outputs.deploymentContainerName

@description('Blob URL WEBSITE_RUN_FROM_PACKAGE points at on Elastic Premium (upload the zip here).')
output elasticPremiumPackageUrl string = functionApp.outputs.packageUrl

@description('Empty when the Graph extension granted Application.ReadWrite.OwnedBy; otherwise the command that grants it (run it before publishing, docs/deploy.md).')
output manualGraphGrant string = useGraphExtension
  ? ''
  : 'az rest --method POST --uri ${graphEndpoint}/v1.0/servicePrincipals/${functionApp.outputs.principalId}/appRoleAssignments --headers Content-Type=application/json --body "{\\"principalId\\":\\"${functionApp.outputs.principalId}\\",\\"resourceId\\":\\"$(az ad sp show --id 00000003-0000-0000-c000-000000000000 --query id -o tsv)\\",\\"appRoleId\\":\\"18a4783c-866b-4cc7-a460-3d5e5662c884\\"}"'

@description('Application Insights resource to query the rotator logs in.')
output appInsightsNameForLogs string = monitoring.outputs.appInsightsName
