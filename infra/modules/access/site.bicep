// The custom site settings updater role (customRoles.bicep) for the rotator on one consumer
// App Service / Function App.
//
// Site scope: the rotator lists and replaces this site's app settings, reads and refreshes its
// Key Vault references and restarts it after a plain-value change; the same on its deployment
// slots (a slot is a child of the site, so the assignment covers it).

param siteName string

@description('Object id of the rotator managed identity.')
param principalId string

@description('Resource id of the custom role (customRoles.bicep siteSettingsUpdater).')
param roleDefinitionId string

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: siteName
}

resource settingsUpdater 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(site.id, principalId, roleDefinitionId)
  scope: site
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'secret-rotator: carry rotated client secrets into this site'
  }
}
