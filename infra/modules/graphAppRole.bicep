// The Microsoft Graph app role Application.ReadWrite.OwnedBy for the rotator identity.
//
// OwnedBy, never Application.ReadWrite.All: the identity can add and remove passwords only on
// applications it owns, so enrolling an application is an explicit owner grant
// (`az ad app owner add`, docs/deploy.md). The deploying identity needs Graph
// AppRoleAssignment.ReadWrite.All and Application.Read.All (or Privileged Role Administrator).

extension microsoftGraphV1

@description('Object id of the rotator managed identity (its service principal).')
param principalId string

// Microsoft Graph's well-known application id.
var microsoftGraphAppId = '00000003-0000-0000-c000-000000000000'

// Application.ReadWrite.OwnedBy: the same id in every tenant (Microsoft Graph permissions reference).
var applicationReadWriteOwnedBy = '18a4783c-866b-4cc7-a460-3d5e5662c884'

resource microsoftGraph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: microsoftGraphAppId
}

resource ownedByAssignment 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  appRoleId: applicationReadWriteOwnedBy
  principalId: principalId
  resourceId: microsoftGraph.id
}

output appRoleAssignmentId string = ownedByAssignment.id
