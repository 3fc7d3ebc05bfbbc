import * as fs from 'node:fs';
import { checkServerIdentity } from 'node:tls';
import { type ChannelCredentials, type ChannelOptions, credentials, ServerCredentials } from '@grpc/grpc-js';
import { errno } from '@p2p/errno';

export const TLS_CERT_ENV = 'P2P_TLS_CERT';
export const TLS_KEY_ENV = 'P2P_TLS_KEY';
export const TLS_CA_ENV = 'P2P_TLS_CA';
export const TLS_SERVER_NAME_ENV = 'P2P_TLS_SERVER_NAME';

/**
 * TLS as the environment configures it, for one process's servers and
 * clients alike:
 * - P2P_TLS_CERT and P2P_TLS_KEY (PEM files): this process's certificate.
 *   Servers serve TLS with it; clients present it.
 * - P2P_TLS_CA (a PEM file): the CA that signs the stack's certificates.
 *   Clients verify servers against it; servers then require and verify a
 *   client certificate (mutual TLS).
 * - P2P_TLS_SERVER_NAME: the name clients check the server's certificate
 *   against, instead of the host they dial. For addresses no certificate can
 *   name in advance: a port docker publishes on whatever address the engine
 *   is reached at, a pod IP.
 * None set: plaintext, as before.
 */
export interface TlsConfig {
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly ca?: Buffer;
  readonly serverName?: string;
}

export const PLAINTEXT: TlsConfig = {};

/** Reads the files P2P_TLS_* name; EINVAL for a certificate without its key (or the reverse), ENOENT for a missing file. */
export function loadTlsConfig(env: NodeJS.ProcessEnv = process.env): TlsConfig {
  const read = (name: string): Buffer | undefined => {
    const file = env[name];
    if (file === undefined || file === '') return undefined;
    try {
      return fs.readFileSync(file);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw errno(code === 'ENOENT' ? 'ENOENT' : code === 'EACCES' ? 'EACCES' : 'EIO', `${name}=${file}: ${(error as Error).message}`);
    }
  };
  const cert = read(TLS_CERT_ENV);
  const key = read(TLS_KEY_ENV);
  if ((cert === undefined) !== (key === undefined)) throw errno('EINVAL', `${TLS_CERT_ENV} and ${TLS_KEY_ENV} go together`);
  const serverName = env[TLS_SERVER_NAME_ENV];
  return { cert, key, ca: read(TLS_CA_ENV), ...(serverName ? { serverName } : {}) };
}

/** Whether servers serve TLS (they hold a certificate). */
export function servesTls(tls: TlsConfig): boolean {
  return tls.cert !== undefined;
}

/**
 * A server's credentials: TLS with its certificate when it has one, and then
 * mutual TLS (a client without a certificate the CA signed is refused during
 * the handshake) when a CA is configured. A CA without a certificate is
 * EINVAL: a server cannot check clients over plaintext.
 */
export function serverCredentials(tls: TlsConfig): ServerCredentials {
  if (tls.cert === undefined || tls.key === undefined) {
    if (tls.ca !== undefined) throw errno('EINVAL', `${TLS_CA_ENV} asks for mutual TLS, but the server has no ${TLS_CERT_ENV}`);
    return ServerCredentials.createInsecure();
  }
  return ServerCredentials.createSsl(tls.ca ?? null, [{ cert_chain: tls.cert, private_key: tls.key }], tls.ca !== undefined);
}

/**
 * A client's channel credentials: TLS verified against the CA (presenting
 * this process's certificate, if any) when a CA is configured, else
 * plaintext. With a serverName, the certificate must name it (whatever host
 * was dialled); the CA check stays.
 */
export function channelCredentials(tls: TlsConfig): ChannelCredentials {
  if (tls.ca === undefined) return credentials.createInsecure();
  const serverName = tls.serverName;
  const verify = serverName === undefined ? {} : { checkServerIdentity: (_host: string, cert: Parameters<typeof checkServerIdentity>[1]) => checkServerIdentity(serverName, cert) };
  return credentials.createSsl(tls.ca, tls.key ?? null, tls.cert ?? null, verify);
}

/**
 * Channel options for a peer whose certificate names `name` rather than the
 * address dialled (the NIC wire dials a GID's IP address, which a container
 * network assigns at run time).
 */
export function tlsTargetName(tls: TlsConfig, name: string): ChannelOptions {
  return tls.ca === undefined ? {} : { 'grpc.ssl_target_name_override': name, 'grpc.default_authority': name };
}
