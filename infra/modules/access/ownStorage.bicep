// Storage Blob Data Owner for the rotator on its own storage account.
//
// Needed by the Functions host (identity-based AzureWebJobsStorage; the Flex deployment
// container) and by the rotator (blob leases, audit records, run outcomes). Owner rather than
// Contributor because the host's identity-based storage is documented with Owner.

param storageAccountName string

@description('Object id of the rotator managed identity.')
param principalId string

// Storage Blob Data Owner (built-in).
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, storageBlobDataOwner)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'secret-rotator: host storage, deployment package, leases and audit records'
  }
}
