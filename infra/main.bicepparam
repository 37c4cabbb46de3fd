// Sample parameters for infra/main.bicep: copy, rename, and replace the names with yours.
using './main.bicep'

param functionAppName = 'func-secret-rotator-prod'

param location = 'westeurope'

// 'flex' (default) or 'elasticPremium' when vaults or consumers sit behind private endpoints
// (then also set subnetId: a subnet delegated to Microsoft.Web/serverFarms; on flex,
// Microsoft.App/environments).
param planKind = 'flex'

param tenantId = '00000000-0000-0000-0000-000000000000'

// Daily at 02:00 UTC (NCRONTAB, six fields; Flex timers are always UTC).
param rotationSchedule = '0 0 2 * * *'

param policyPath = 'policy.json'

param vaults = [
  {
    name: 'kv-provisionassist'
    resourceGroup: 'rg-provisionassist'
  }
  {
    name: 'kv-integration'
    resourceGroup: 'rg-telephony'
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
