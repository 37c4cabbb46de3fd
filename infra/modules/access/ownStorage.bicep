// Storage Blob Data Owner for the rotator on its own storage account, and what it may not write.
//
// Needed by the Functions host (identity-based AzureWebJobsStorage: it creates and writes its own
// containers) and by the rotator (blob leases, audit records, run outcomes). Owner rather than
// Contributor because the host's identity-based storage is documented with Owner.
//
// The package container is split off where the platform allows it:
// - Elastic Premium: the app only reads its package (WEBSITE_RUN_FROM_PACKAGE with the identity)
//   and the operator uploads it with their own sign-in. A role assignment condition (Azure ABAC,
//   "Azure role assignment condition format and syntax"; blob actions and the
//   `containers:name` attribute from "Actions and attributes for Azure role assignment
//   conditions for Azure Blob Storage") denies writing, appending to or deleting blobs in the
//   package container, so the rotator cannot replace the code it runs.
// - Flex Consumption: the platform writes the deployment package into the deployment container
//   with the identity named in functionAppConfig.deployment.storage.authentication, which can
//   only be an identity of this app (system- or user-assigned) or a connection string (needs
//   shared keys, which are off). Code in the app can get a token for every identity attached to
//   it, so no split is possible there; docs/deploy.md ("What each grant still allows") says so.

param storageAccountName string

@description('Object id of the rotator managed identity.')
param principalId string

@description('The container the deployment package lives in.')
param packageContainerName string

@description('Deny blob writes in the package container (Elastic Premium: the app only reads it).')
param protectPackage bool

// Storage Blob Data Owner (built-in).
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'

// Every blob action that changes a blob's content or removes it, allowed everywhere except in
// the package container.
var packageReadOnly = '((!(ActionMatches{\'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write\'}) AND !(ActionMatches{\'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action\'}) AND !(ActionMatches{\'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete\'})) OR (@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] StringNotEquals \'${packageContainerName}\'))'

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
    description: 'secret-rotator: host storage, leases and audit records'
    condition: protectPackage ? packageReadOnly : null
    conditionVersion: protectPackage ? '2.0' : null
  }
}
