// The rotator's custom roles, defined once per subscription: each allows exactly the calls the
// code makes (src/azure/permissions.rs lists them next to the code; tests/e2e/infra_contract.rs
// compares the two and fails on any action nobody uses).
//
// Why not the built-ins:
// - Key Vault Secrets Officer is `Microsoft.KeyVault/vaults/secrets/*`: it also deletes, purges,
//   backs up and restores secrets. The rotator reads a value, writes a new version, reads
//   version metadata (list versions, the deleted-secret lookup) and updates tags/attributes.
// - Website Contributor is `Microsoft.Web/sites/*`: it also deletes the site, lists its
//   publishing credentials and function keys and deploys code. The rotator lists and replaces
//   app settings, reads Key Vault reference status, refreshes references and restarts.
// - Logic App Contributor covers Microsoft.Logic/* and Microsoft.Web/connections/* (delete,
//   list keys, consent links...), and Automation Contributor covers
//   Microsoft.Automation/automationAccounts/* (runbooks and jobs: code that runs as the
//   account's identity).
//
// Action names: Key Vault data actions from the Key Vault RBAC guide ("Azure built-in roles for
// Key Vault data plane operations" / Microsoft.KeyVault data actions in "Azure permissions for
// Security"); Microsoft.Web actions from "Azure permissions for Web and Mobile". The mapping of
// each REST call to its action is in src/azure/permissions.rs. docs/deploy.md ("What each grant
// still allows") says what these rights can still do.
//
// A role assigned right after it is defined can fail once on a first deployment
// (RoleDefinitionDoesNotExist while the definition replicates); rerunning succeeds
// (docs/deploy.md, "First deployment").

targetScope = 'subscription'

resource keyVaultSecretRotator 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'secret-rotator', 'key-vault-secret-rotator')
  properties: {
    roleName: 'Secret Rotator Key Vault Secret Rotator (${subscription().subscriptionId})'
    description: 'Read, add versions to and retag Key Vault secrets; no delete, purge, backup or restore (secret-rotator).'
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          'Microsoft.KeyVault/vaults/secrets/getSecret/action'
          'Microsoft.KeyVault/vaults/secrets/setSecret/action'
          'Microsoft.KeyVault/vaults/secrets/readMetadata/action'
          'Microsoft.KeyVault/vaults/secrets/update/action'
        ]
        notDataActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

// Certificate credentials: Key Vault Certificates Officer is `certificates/*` (delete, purge,
// import, backup, issuers, contacts) and Key Vault Crypto User also encrypts, decrypts, wraps,
// unwraps and updates keys. The rotator asks for versions, reads them (versions, pending
// operation, policy), tags a version, and signs with the certificate's key; it never reads the
// certificate's secret (the PFX). Two roles because the certificate and its key are two RBAC
// scopes (access/certificate.bicep).
resource keyVaultCertificateRotator 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'secret-rotator', 'key-vault-certificate-rotator')
  properties: {
    roleName: 'Secret Rotator Key Vault Certificate Rotator (${subscription().subscriptionId})'
    description: 'Create, read and retag versions of a Key Vault certificate; no delete, purge, import, backup or restore, no secret or key access (secret-rotator).'
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          'Microsoft.KeyVault/vaults/certificates/create/action'
          'Microsoft.KeyVault/vaults/certificates/read'
          'Microsoft.KeyVault/vaults/certificates/update/action'
        ]
        notDataActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

resource keyVaultCertificateSigner 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'secret-rotator', 'key-vault-certificate-signer')
  properties: {
    roleName: 'Secret Rotator Key Vault Certificate Signer (${subscription().subscriptionId})'
    description: 'Sign a digest with a Key Vault certificate\'s key (proofs for Graph addKey/removeKey, client assertions); the key never leaves the vault (secret-rotator).'
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          'Microsoft.KeyVault/vaults/keys/sign/action'
        ]
        notDataActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

resource siteSettingsUpdater 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'secret-rotator', 'site-settings-updater')
  properties: {
    roleName: 'Secret Rotator Site Settings Updater (${subscription().subscriptionId})'
    description: 'List and replace app settings, read and refresh Key Vault references, restart; sites and their slots (secret-rotator).'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Web/sites/config/list/action'
          'Microsoft.Web/sites/config/write'
          'Microsoft.Web/sites/config/read'
          'Microsoft.Web/sites/restart/action'
          'Microsoft.Web/sites/slots/config/list/action'
          'Microsoft.Web/sites/slots/config/write'
          'Microsoft.Web/sites/slots/config/read'
          'Microsoft.Web/sites/slots/restart/action'
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

output keyVaultSecretRotatorRoleId string = keyVaultSecretRotator.id
output keyVaultCertificateRotatorRoleId string = keyVaultCertificateRotator.id
output keyVaultCertificateSignerRoleId string = keyVaultCertificateSigner.id
output siteSettingsUpdaterRoleId string = siteSettingsUpdater.id
output connectionUpdaterRoleId string = connectionUpdater.id
output automationVariableUpdaterRoleId string = automationVariableUpdater.id
