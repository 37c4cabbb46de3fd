// Website Contributor for the rotator on one consumer App Service / Function App.
//
// Site scope: the rotator lists and replaces this site's app settings, refreshes its Key Vault
// references and restarts it after a plain-value change.

param siteName string

@description('Object id of the rotator managed identity.')
param principalId string

// Website Contributor (built-in).
var websiteContributor = 'de139f84-1756-47ae-9be6-808fbbe84772'

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: siteName
}

resource siteContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(site.id, principalId, websiteContributor)
  scope: site
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', websiteContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'secret-rotator: carry rotated client secrets into this site'
  }
}
