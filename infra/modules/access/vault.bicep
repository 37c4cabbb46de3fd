// The custom Key Vault secret rotator role (customRoles.bicep) for the rotator, on each enrolled
// secret of one vault (the vault must use Azure RBAC).
//
// Secret scope by default: Key Vault RBAC accepts role assignments on a single secret
// (`.../vaults/{vault}/secrets/{name}`; Key Vault RBAC guide, "Secret scope role assignment"),
// so the rotator can touch the enrolled secrets and no other secret in the vault. A secret
// scope needs the secret to exist when this deploys: create each enrolled secret first (its
// current value), or set `wholeVault: true` for this vault (docs/deploy.md, "Key Vault scope"),
// which grants the same actions on every secret in the vault.

param vaultName string

@description('Names of the enrolled secrets in this vault (each must already exist).')
param secretNames array

@description('Assign the role on the whole vault instead of on each secret (operator opt-in).')
param wholeVault bool

@description('Object id of the rotator managed identity.')
param principalId string

@description('Resource id of the custom role (customRoles.bicep keyVaultSecretRotator).')
param roleDefinitionId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource secrets 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = [
  for secretName in secretNames: {
    parent: vault
    name: secretName
  }
]

resource perSecret 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (secretName, i) in secretNames: if (!wholeVault) {
    name: guid(secrets[i].id, principalId, roleDefinitionId)
    scope: secrets[i]
    properties: {
      roleDefinitionId: roleDefinitionId
      principalId: principalId
      // Avoids the replication-delay failure for a freshly created identity.
      principalType: 'ServicePrincipal'
      description: 'secret-rotator: rotate this client secret'
    }
  }
]

resource perVault 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (wholeVault) {
  name: guid(vault.id, principalId, roleDefinitionId)
  scope: vault
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'secret-rotator: rotate client secrets in this vault (whole-vault opt-in)'
  }
}
