// The rotator's own storage account: Functions host storage, the Flex deployment container and
// the rotator's container (blob leases, audit records, run outcomes).
//
// Shared key access is disabled, so no account key or SAS exists to leak: the host and the
// rotator reach it with the managed identity (Storage Blob Data Owner, access/ownStorage.bicep).

param name string
param location string
param tags object

@description('Container the rotator keeps leases, audit records and run outcomes in (ROTATOR_CONTAINER).')
param rotatorContainerName string = 'secret-rotator'

@description('Container the deployment package lives in.')
param deploymentContainerName string = 'app-package'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    // Audit records survive an accidental delete for a while.
    deleteRetentionPolicy: {
      enabled: true
      days: 30
    }
  }
}

resource rotatorContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: rotatorContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
output rotatorContainerName string = rotatorContainer.name
output deploymentContainerName string = deploymentContainer.name
