// The custom API-connection updater role for the rotator on one Logic Apps API connection.

param connectionName string

@description('Object id of the rotator managed identity.')
param principalId string

@description('Resource id of the custom role (customRoles.bicep connectionUpdater).')
param roleDefinitionId string

resource connection 'Microsoft.Web/connections@2016-06-01' existing = {
  name: connectionName
}

resource connectionUpdater 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(connection.id, principalId, roleDefinitionId)
  scope: connection
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'secret-rotator: carry rotated client secrets into this API connection'
  }
}
