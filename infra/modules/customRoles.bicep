// Two narrow custom roles, defined once per subscription.
//
// Why not the built-ins: Logic App Contributor covers Microsoft.Logic/* and
// Microsoft.Web/connections/* (delete, list keys, consent links...), and Automation Contributor
// covers Microsoft.Automation/automationAccounts/* (runbooks and jobs: code that runs as the
// account's identity). The rotator only reads and patches a connection and reads and updates a
// variable, so that is all these roles allow. tests/e2e/infra_contract.rs lists the same actions.

targetScope = 'subscription'

resource connectionUpdater 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'secret-rotator', 'api-connection-updater')
  properties: {
    roleName: 'Secret Rotator API Connection Updater (${subscription().subscriptionId})'
    description: 'Read and update Logic Apps API connections (secret-rotator: new client secret in parameterValues).'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Web/connections/read'
          'Microsoft.Web/connections/write'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

resource automationVariableUpdater 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'secret-rotator', 'automation-variable-updater')
  properties: {
    roleName: 'Secret Rotator Automation Variable Updater (${subscription().subscriptionId})'
    description: 'Read and update Azure Automation variables (secret-rotator: new client secret in an encrypted variable).'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Automation/automationAccounts/variables/read'
          'Microsoft.Automation/automationAccounts/variables/write'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

output connectionUpdaterRoleId string = connectionUpdater.id
output automationVariableUpdaterRoleId string = automationVariableUpdater.id
