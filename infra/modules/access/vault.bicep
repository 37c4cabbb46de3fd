// Key Vault Secrets Officer for the rotator on one vault (the vault must use Azure RBAC).
//
// Vault scope, not resource group: the rotator reads, writes new versions of and tags the
// secrets of enrolled credentials in this vault and nowhere else.

param vaultName string

@description('Object id of the rotator managed identity.')
param principalId string

// Key Vault Secrets Officer (built-in): secrets/* data actions, no key or certificate access.
var keyVaultSecretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource secretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficer)
    principalId: principalId
    // Avoids the replication-delay failure for a freshly created identity.
    principalType: 'ServicePrincipal'
    description: 'secret-rotator: rotate client secrets stored in this vault'
  }
}
