export { type Caller, ANONYMOUS, PLATFORM, ADMIN, actingPid, isPrivileged, maySee, requireAdmin, requirePrivileged, describe } from './caller';
export { type PlatformSecrets, loadPlatformSecrets, readAdminToken, newToken, tokenDigest, ADMIN_TOKEN_ENV, PLATFORM_TOKEN_ENV, ADMIN_TOKEN_FILE, PLATFORM_TOKEN_FILE } from './tokens';
export { AUTHORIZATION_KEY, bearerOf, bearerMetadata, bearerInterceptor } from './metadata';
export { Authenticator, type CredentialResolver, type Access, accessInterceptor } from './authenticator';
export {
  type TlsConfig,
  PLAINTEXT,
  loadTlsConfig,
  servesTls,
  serverCredentials,
  channelCredentials,
  tlsTargetName,
  TLS_CERT_ENV,
  TLS_KEY_ENV,
  TLS_CA_ENV,
} from './tls';
