// One enrolled certificate credential: the rotator's two custom roles (customRoles.bicep) on the
// Key Vault certificate and on its key, and Key Vault Secrets User on the certificate's secret
// for each consumer site that loads the PFX through a Key Vault reference (the vault must use
// Azure RBAC).
//
// Scopes: a Key Vault certificate is three objects of the same name, each its own RBAC scope
// (Key Vault RBAC guide: "Key vault secret, certificate, key scope role assignments"):
// - /certificates/{name}: create, read, retag versions (Certificate Rotator role);
// - /keys/{name}: sign, for the addKey/removeKey proof and the client assertion (Certificate
//   Signer role); a role on the certificate does not reach its key (vcsjones/AzureSignTool#296);
// - /secrets/{name}: the PFX/PEM with the private key. The rotator never reads it; only the
//   identities of the sites given in pfxReaders do (App Service resolves a Key Vault reference
//   with the site's identity). A site that only holds a thumbprint gets nothing.
// ARM has no vaults/certificates type (Azure/bicep#7354): the certificate is named as an
// `existing` scope only, as the Bicep team shows in Azure/bicep#5630; ARM builds its id and
// reads nothing. The certificate must exist before this deploys (create it with its policy,
// docs/deploy.md "Certificate credentials").

param vaultName string

@description('The Key Vault certificate (its key and secret have the same name).')
param certificateName string

@description('Object id of the rotator managed identity.')
param principalId string

@description('Resource id of the custom role customRoles.bicep keyVaultCertificateRotator.')
param certificateRoleId string

@description('Resource id of the custom role customRoles.bicep keyVaultCertificateSigner.')
param signerRoleId string

@description('Consumer sites whose Key Vault reference loads the PFX (system-assigned identity).')
param pfxReaders siteRef[]

@description('A consumer site, in this subscription.')
type siteRef = {
  @description('Site name.')
  name: string
  @description('Its resource group.')
  resourceGroup: string
}

// Key Vault Secrets User: getSecret and readMetadata on secrets only (built-in-roles/security.md).
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

#disable-next-line BCP081
resource certificate 'Microsoft.KeyVault/vaults/certificates@2023-07-01' existing = {
  parent: vault
  name: certificateName
}

resource key 'Microsoft.KeyVault/vaults/keys@2023-07-01' existing = {
  parent: vault
  name: certificateName
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: certificateName
}

resource readerSites 'Microsoft.Web/sites@2024-04-01' existing = [
  for site in pfxReaders: {
    name: site.name
    scope: resourceGroup(site.resourceGroup)
  }
]

resource onCertificate 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(certificate.id, principalId, certificateRoleId)
  scope: certificate
  properties: {
    roleDefinitionId: certificateRoleId
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'secret-rotator: renew this certificate credential'
  }
}

resource onKey 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(key.id, principalId, signerRoleId)
  scope: key
  properties: {
    roleDefinitionId: signerRoleId
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'secret-rotator: sign proofs and client assertions with this certificate key'
  }
}

resource pfxRead 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (site, i) in pfxReaders: {
    name: guid(secret.id, readerSites[i].id, keyVaultSecretsUser)
    scope: secret
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
      principalId: readerSites[i].identity.principalId
      principalType: 'ServicePrincipal'
      description: 'secret-rotator consumer: load this certificate (PFX) through a Key Vault reference'
    }
  }
]
