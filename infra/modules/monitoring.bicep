// Log Analytics workspace and workspace-based Application Insights for the rotator.
//
// Local (instrumentation-key) authentication is disabled: the Functions host sends telemetry
// with the app's managed identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING) and holds the
// Monitoring Metrics Publisher role on this component (access/appInsights.bicep), so the
// connection string in app settings grants nothing by itself.

param name string
param location string
param tags object

@description('Days Log Analytics keeps the rotator logs and audit trail.')
param retentionInDays int = 90

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${name}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${name}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

output appInsightsName string = appInsights.name
output connectionString string = appInsights.properties.ConnectionString
