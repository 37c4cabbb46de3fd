// Sample parameters for infra/main.bicep: copy, rename, and replace the names with yours.
using './main.bicep'

param functionAppName = 'func-secret-rotator-prod'

param location = 'westeurope'

// 'flex' (default) or 'elasticPremium' when vaults or consumers sit behind private endpoints
// (then also set subnetId: a subnet delegated to Microsoft.Web/serverFarms; on flex,
// Microsoft.App/environments).
param planKind = 'flex'

// tenantId defaults to the tenant of the deployment (tenant()); set it only when the enrolled
// applications live in another tenant.

// Daily at 02:00 UTC (NCRONTAB, six fields; Flex timers are always UTC).
param rotationSchedule = '0 0 2 * * *'

param policyPath = 'policy.json'

param vaults = [
  {
    name: 'kv-provisionassist'
    resourceGroup: 'rg-provisionassist'
    // Granted per secret: each must exist before deploying.
    secrets: [
      'provisionassist-graph-client-secret'
    ]
    wholeVault: false
  }
  {
    name: 'kv-integration'
    resourceGroup: 'rg-telephony'
    secrets: [
      'teams-integration-client-secret'
      'teams-integration-bot-secret'
    ]
    wholeVault: false
  }
]

// Certificate credentials (policy entries of type certificate): the certificate and its key for
// the rotator; the certificate's secret (the PFX) only for the sites whose Key Vault reference
// loads it. Each certificate must exist before deploying.
param certificates = [
  {
    vault: 'kv-provisionassist'
    resourceGroup: 'rg-provisionassist'
    name: 'provision-assist'
    pfxReaders: [
      {
        name: 'func-teams-integration'
        resourceGroup: 'rg-telephony'
      }
    ]
  }
]

param consumerSites = [
  {
    name: 'func-teams-integration'
    resourceGroup: 'rg-telephony'
  }
]

param apiConnections = [
  {
    name: 'provisionassist-kv'
    resourceGroup: 'rg-provisionassist'
  }
]

param automationAccounts = [
  {
    name: 'aa-provisionassist'
    resourceGroup: 'rg-provisionassist'
  }
]

param tags = {
  workload: 'secret-rotator'
}
