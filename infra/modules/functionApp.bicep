// The plan and the Linux custom-handler Function App, with every app setting the binary reads.
//
// Flex Consumption (default): the runtime is declared in functionAppConfig (custom), the package
// lives in the deployment container and is fetched with the system-assigned identity, and
// FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION must not be set.
// Elastic Premium (for private endpoints): FUNCTIONS_WORKER_RUNTIME=custom and
// FUNCTIONS_EXTENSION_VERSION=~4 are required; there is no Azure Files content share (it would
// need an account key, and shared keys are disabled), so the app runs from the package blob,
// fetched with the identity (WEBSITE_RUN_FROM_PACKAGE + WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID).
//
// tests/e2e/infra_contract.rs evaluates `appSettings` below for both plan kinds and compares the
// names with SETTING_SPECS in src/settings.rs: keep it built from array literals, concat() and
// conditions so the checker can follow it.

param name string
param location string

@allowed([
  'flex'
  'elasticPremium'
])
param planKind string

param subnetId string
param storageAccountName string
param blobEndpoint string
param queueEndpoint string
param deploymentContainerName string
param rotatorContainerName string
param appInsightsConnectionString string
param tenantId string
param rotationSchedule string
param policyPath string
param maxParallel int
param passBudgetSeconds int
param rotateWaitSeconds int
param verifyTimeoutSeconds int
param warnUnenrolledDays int
param resolveOverrides string
param caFile string
param logFilter string
param appServiceAuth bool = false
param authClientId string = ''
param tags object

@description('Flex Consumption instance memory (MB).')
@allowed([
  512
  2048
  4096
])
param flexInstanceMemoryMB int = 2048

var isFlex = planKind == 'flex'

// primaryEndpoints end with '/'; the binary wants the bare service URL.
var blobServiceUri = substring(blobEndpoint, 0, length(blobEndpoint) - 1)
var queueServiceUri = substring(queueEndpoint, 0, length(queueEndpoint) - 1)

var packageUrl = '${blobEndpoint}${deploymentContainerName}/secret-rotator.zip'

// AZURE_CLOUD from the cloud this template is deployed to.
var azureCloud = environment().name == 'AzureUSGovernment'
  ? 'usgovernment'
  : (environment().name == 'AzureChinaCloud' ? 'china' : 'public')

// Read by the Functions host (identity-based storage, telemetry, the timer schedule).
var hostSettings = [
  {
    name: 'AzureWebJobsStorage__accountName'
    value: storageAccountName
  }
  {
    name: 'AzureWebJobsStorage__blobServiceUri'
    value: blobServiceUri
  }
  {
    name: 'AzureWebJobsStorage__queueServiceUri'
    value: queueServiceUri
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsightsConnectionString
  }
  {
    // Entra-only ingestion with the system-assigned identity (local auth is disabled).
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'Authorization=AAD'
  }
  {
    // host.json's RotateSecrets timer reads %ROTATION_SCHEDULE%.
    name: 'ROTATION_SCHEDULE'
    value: rotationSchedule
  }
]

// Read by the secret-rotator binary (src/settings.rs). AZURE_CLIENT_ID is deliberately absent:
// the app uses its system-assigned identity.
var rotatorSettings = [
  {
    name: 'AZURE_TENANT_ID'
    value: tenantId
  }
  {
    name: 'ROTATOR_POLICY_PATH'
    value: policyPath
  }
  {
    name: 'ROTATOR_CONTAINER'
    value: rotatorContainerName
  }
  {
    name: 'AZURE_CLOUD'
    value: azureCloud
  }
  {
    name: 'ROTATOR_MAX_PARALLEL'
    value: string(maxParallel)
  }
  {
    name: 'ROTATOR_PASS_BUDGET_SECONDS'
    value: string(passBudgetSeconds)
  }
  {
    name: 'ROTATOR_ROTATE_WAIT_SECONDS'
    value: string(rotateWaitSeconds)
  }
  {
    name: 'ROTATOR_VERIFY_TIMEOUT_SECONDS'
    value: string(verifyTimeoutSeconds)
  }
  {
    name: 'ROTATOR_WARN_UNENROLLED_DAYS'
    value: string(warnUnenrolledDays)
  }
  {
    // The binary trusts X-MS-CLIENT-PRINCIPAL only when App Service authentication is on.
    name: 'ROTATOR_REQUIRE_APP_ROLES'
    value: string(appServiceAuth)
  }
  {
    name: 'ROTATOR_LOG'
    value: logFilter
  }
]

// Set only when given: an empty value is not the same as "not set" to the binary.
var resolveSetting = empty(resolveOverrides)
  ? []
  : [
      {
        name: 'ROTATOR_RESOLVE'
        value: resolveOverrides
      }
    ]
var caFileSetting = empty(caFile)
  ? []
  : [
      {
        name: 'ROTATOR_CA_FILE'
        value: caFile
      }
    ]

var elasticPremiumSettings = [
  {
    name: 'FUNCTIONS_EXTENSION_VERSION'
    value: '~4'
  }
  {
    name: 'FUNCTIONS_WORKER_RUNTIME'
    value: 'custom'
  }
  {
    name: 'WEBSITE_RUN_FROM_PACKAGE'
    value: packageUrl
  }
  {
    name: 'WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID'
    value: 'SystemAssigned'
  }
]

var appSettings = isFlex
  ? concat(hostSettings, rotatorSettings, resolveSetting, caFileSetting)
  : concat(hostSettings, rotatorSettings, resolveSetting, caFileSetting, elasticPremiumSettings)

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${name}'
  location: location
  tags: tags
  kind: isFlex ? 'functionapp' : 'elastic'
  sku: isFlex
    ? {
        name: 'FC1'
        tier: 'FlexConsumption'
      }
    : {
        name: 'EP1'
        tier: 'ElasticPremium'
      }
  properties: {
    // Linux.
    reserved: true
    maximumElasticWorkerCount: isFlex ? null : 3
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    // Linux. Flex Consumption refuses the site's reserved (isReserved) and vnetRouteAllEnabled
    // ("Flex Consumption plan deprecations" in the Functions app settings reference: "Not
    // valid", "Not used for networking in Flex Consumption"); there the plan's reserved and the
    // integrated subnet carry them.
    reserved: isFlex ? null : true
    httpsOnly: true
    virtualNetworkSubnetId: empty(subnetId) ? null : subnetId
    vnetRouteAllEnabled: isFlex || empty(subnetId) ? null : true
    functionAppConfig: isFlex
      ? {
          deployment: {
            storage: {
              type: 'blobContainer'
              value: '${blobEndpoint}${deploymentContainerName}'
              authentication: {
                type: 'SystemAssignedIdentity'
              }
            }
          }
          scaleAndConcurrency: {
            instanceMemoryMB: flexInstanceMemoryMB
            maximumInstanceCount: 40
          }
          runtime: {
            name: 'custom'
            version: '1.0'
          }
        }
      : null
    siteConfig: {
      appSettings: appSettings
      minTlsVersion: '1.2'
      // Flex Consumption has no FTPS and refuses the property (same deprecations table:
      // "FTPS not supported"; ARM answers 51021 "site configuration properties ... for Flex
      // Consumption sites is invalid"). Basic publishing credentials are off on both plans below.
      ftpsState: isFlex ? null : 'Disabled'
      http20Enabled: true
      // Custom handler stack on Linux Elastic Premium: empty linuxFxVersion (Functions stacks API).
      linuxFxVersion: isFlex ? null : ''
    }
  }
}

// No publishing passwords: deployments authenticate with Entra ID.
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

// Optional: Entra ID sign-in in front of every function (function keys still apply). The
// platform then sends the caller's app roles as X-MS-CLIENT-PRINCIPAL and strips that header
// from outside requests; the binary checks the roles (ROTATOR_REQUIRE_APP_ROLES).
resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = if (appServiceAuth) {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
    }
    httpSettings: {
      requireHttps: true
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${authClientId}'
            authClientId
          ]
        }
      }
    }
  }
}

output name string = site.name
output principalId string = site.identity.principalId
output defaultHostName string = site.properties.defaultHostName
output packageUrl string = packageUrl
