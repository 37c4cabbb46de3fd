// The custom Automation variable updater role for the rotator on one Automation account.
//
// Account scope: variables are the narrowest scope Automation documents for role assignments.

param automationAccountName string

@description('Object id of the rotator managed identity.')
param principalId string

@description('Resource id of the custom role (customRoles.bicep automationVariableUpdater).')
param roleDefinitionId string

resource account 'Microsoft.Automation/automationAccounts@2023-11-01' existing = {
  name: automationAccountName
}

resource variableUpdater 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, roleDefinitionId)
  scope: account
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'secret-rotator: carry rotated client secrets into this account variables'
  }
}
