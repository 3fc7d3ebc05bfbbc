import * as fs from 'node:fs';
import * as path from 'node:path';
import { ADMIN_TOKEN_ENV, ADMIN_TOKEN_FILE, loadTlsConfig, type TlsConfig } from '@p2p/auth';
import { HOSTS_FILE, type HostEntry } from '@p2p/hosts';
import { DEFAULT_SHM_DIR, SHM_DIR_ENV } from '@p2p/shm';

/** Where `npm start` serves each service: its ports on one host. */
export const DEFAULT_PORTS = { pciEmu: 50051, vfioPci: 50052, registry: 50053, nics: [50054, 50055] } as const;

/** The deployment a command talks to: every service's address, the credential, TLS. */
export interface Target {
  readonly pciEmu: string;
  readonly vfioPci: string;
  readonly registry: string;
  readonly nics: readonly string[];
  /** The administrator's token, when this user can read it; calls go anonymous otherwise. */
  readonly token?: string;
  readonly tls: TlsConfig;
}

export interface TargetOptions {
  /** A host running every service on the default ports (`npm start`'s layout). */
  readonly target?: string;
  /** A file holding the administrator's token. */
  readonly tokenFile?: string;
}

/**
 * The deployment from `--target` and the environment, each service's own
 * address variable (the ones the services read: PCI_EMU_ADDRESS...) winning
 * over the host: `npm start` on this machine by default. The token is
 * P2P_ADMIN_TOKEN, else `--token-file`, else the file the first service
 * wrote into P2P_SHM_DIR; never a command-line argument, which `ps` shows.
 */
export function resolveTarget(options: TargetOptions, env: NodeJS.ProcessEnv = process.env): Target {
  const host = options.target ?? env.P2P_TARGET ?? '127.0.0.1';
  const at = (port: number): string => `${host}:${port}`;
  const nics = env.RDMA_NIC_ADDRESSES?.split(',').map((a) => a.trim()).filter((a) => a !== '');
  return {
    pciEmu: env.PCI_EMU_ADDRESS ?? at(DEFAULT_PORTS.pciEmu),
    vfioPci: env.VFIO_PCI_ADDRESS ?? at(DEFAULT_PORTS.vfioPci),
    registry: env.DMABUF_REGISTRY_ADDRESS ?? at(DEFAULT_PORTS.registry),
    nics: nics !== undefined && nics.length > 0 ? nics : DEFAULT_PORTS.nics.map(at),
    token: readToken(options.tokenFile, env),
    tls: loadTlsConfig(env),
  };
}

/** A host of a hosts file as a deployment: its services, and the token its platform wrote into its own segment directory. */
export function hostTarget(host: HostEntry, env: NodeJS.ProcessEnv = process.env): Target {
  return {
    pciEmu: host.services.pciEmu,
    vfioPci: host.services.vfioPci,
    registry: host.services.registry,
    nics: host.nics.map((nic) => nic.address),
    token: readToken(path.join(host.shmDir, ADMIN_TOKEN_FILE), env),
    tls: loadTlsConfig(env),
  };
}

/**
 * The hosts file a command reads: `--hosts-file`, else the one `npm start
 * --hosts` wrote into P2P_SHM_DIR, if there is one and no `--target` or
 * service address says which deployment this is.
 */
export function hostsFileOf(options: TargetOptions & { readonly hostsFile?: string }, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (options.hostsFile !== undefined) return options.hostsFile;
  const told = options.target ?? env.P2P_TARGET ?? env.PCI_EMU_ADDRESS ?? env.VFIO_PCI_ADDRESS ?? env.DMABUF_REGISTRY_ADDRESS ?? env.RDMA_NIC_ADDRESSES;
  if (told !== undefined) return undefined;
  const file = path.join(env[SHM_DIR_ENV] || DEFAULT_SHM_DIR, HOSTS_FILE);
  return fs.existsSync(file) ? file : undefined;
}

function readToken(tokenFile: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  const configured = env[ADMIN_TOKEN_ENV];
  if (configured !== undefined && configured !== '') return configured;
  const file = tokenFile ?? path.join(env[SHM_DIR_ENV] || DEFAULT_SHM_DIR, ADMIN_TOKEN_FILE);
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    // Not this user's to read, or no stack here: the services answer EACCES where it matters.
    return undefined;
  }
}
