// Monitoring Metrics Publisher for the rotator on its own Application Insights component, so
// the host can send telemetry with Entra ID (the component's local auth is disabled).

param appInsightsName string

@description('Object id of the rotator managed identity.')
param principalId string

// Monitoring Metrics Publisher (built-in).
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'secret-rotator: Entra-authenticated telemetry'
  }
}
