import * as os from 'node:os';
import * as path from 'node:path';
import { z } from 'zod';
import { Authenticator, loadPlatformSecrets } from '@p2p/auth';
import { OwnerSession, RegistrySession } from '@p2p/dmabuf-client';
import { errno, ErrnoError } from '@p2p/errno';
import { loadServerConfig, retryUntil, type RunningServer } from '@p2p/server';
import { resolveShmDir, WRITE_NOTICE_SOCKET, WriteNoticeClient } from '@p2p/shm';
import { peerUnreachable } from '@p2p/rpc';
import pino from 'pino';
import { gidFromIpv4 } from './codec/gid';
import { deviceAttr } from './context/device-attr';
import { RdmaDevice } from './context/rdma-device';
import { Nic } from './nic';
import { DoorbellServer } from './user-queues/doorbell-server';
import { contextOwnerOps } from './registry/context-owner-ops';
import { MemoryImports } from './registry/memory-imports';
import { peerError } from './registry/peer-error';
import { RegistryFiles } from './registry/registry-files';
import { startRdmaNicServer } from './server';
import type { RemoteFabric } from './link/remote-fabric';
import { type AttachableFabric, startLinkFabric } from './service-fabric';
import { registerWireMetrics } from './wire-metrics';
import { findNicFunction } from './service-pci';

export const RDMA_NIC_DEFAULTS = { port: 50054, metricsPort: 9454 };

/** ibv_device_attr.fw_ver of the model. */
const FW_VER = '0.1.0';

const Settings = z.object({
  // The PCI function this NIC drives, in pci-emu's topology (nic0 of the default one).
  RDMA_NIC_BDF: z
    .string()
    .regex(/^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$/, 'a BDF, DDDD:BB:DD.F')
    .default('0000:04:00.0'),
  // The IPv4 address the wire binds to and the GID is made from; "auto" takes the host's first external one (containers).
  RDMA_NIC_GID_ADDRESS: z.union([z.literal('auto'), z.ipv4()]).default('127.0.0.2'),
  // RoCEv2's UDP port, here the wire's gRPC port on the GID address.
  RDMA_NIC_WIRE_PORT: z.coerce.number().int().min(0).max(65535).default(4791),
  // The TCP port NICs of other hosts dial for the bulk stream of payloads (on the GID address); 0: any free one, told in the
  // link's hello; "off": none, payloads between hosts go inline on the wire's gRPC stream.
  RDMA_NIC_BULK_PORT: z.union([z.literal('off'), z.coerce.number().int().min(0).max(65535)]).default(0),
  RDMA_NIC_RING_BYTES: z.coerce.number().int().min(4096).default(64 * 1024 * 1024),
  PCI_EMU_ADDRESS: z.string().min(1).default('127.0.0.1:50051'),
  DMABUF_REGISTRY_ADDRESS: z.string().min(1).default('127.0.0.1:50053'),
  RDMA_NIC_CONNECT_TIMEOUT_MS: z.coerce.number().int().min(0).default(30_000),
});

export interface RdmaNicDeps {
  /** The fabric to attach the NIC to instead of the link's (tests: one InMemoryFabric for several NICs); whoever made it closes it. */
  readonly fabric?: AttachableFabric;
}

/**
 * rdma-nic as deployed: it claims its PCI function (pci-emu must have it:
 * ENODEV otherwise), registers with the registry as the owner
 * "rdma-nic/<bdf>" (the registry refuses a second live owner of a name, so
 * a second NIC on the same function fails with EBUSY), opens its own
 * registry session to import dma-bufs with that BDF, joins the fabric and
 * serves its verbs. Losing the registry ends this incarnation: its context
 * files and attachments died with the registry's, so it exits rather than
 * serve stale fds.
 */
export async function startRdmaNic(env: NodeJS.ProcessEnv = process.env, deps: RdmaNicDeps = {}): Promise<RunningServer> {
  const config = loadServerConfig('RDMA_NIC', RDMA_NIC_DEFAULTS, env);
  const parsed = Settings.safeParse(env);
  if (!parsed.success) throw errno('EINVAL', `bad configuration: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const settings = parsed.data;
  const gid = gidFromIpv4(settings.RDMA_NIC_GID_ADDRESS === 'auto' ? firstExternalIpv4() : settings.RDMA_NIC_GID_ADDRESS);
  const shmDir = resolveShmDir(env);
  const secrets = loadPlatformSecrets(shmDir, env);
  const registryAddress = settings.DMABUF_REGISTRY_ADDRESS;
  const timeoutMs = settings.RDMA_NIC_CONNECT_TIMEOUT_MS;

  const fn = await retryUntil(timeoutMs, () => findNicFunction(settings.PCI_EMU_ADDRESS, settings.RDMA_NIC_BDF, config.tls), unreachable).catch((error: unknown) => {
    throw peerError(error, `asking pci-emu at ${settings.PCI_EMU_ADDRESS} for ${settings.RDMA_NIC_BDF}`);
  });
  const name = `rdma-nic/${fn.bdf}`;
  const logger = pino({ level: config.logLevel, base: { service: 'rdma-nic', bdf: fn.bdf } });
  const cleanups: Array<() => unknown> = [];
  const cleanUp = async (): Promise<void> => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  };
  let device: RdmaDevice | undefined;
  try {
    const owner = await retryUntil(
      timeoutMs,
      () =>
        OwnerSession.open(registryAddress, {
          name,
          credential: secrets.platformToken,
          tls: config.tls,
          shmDir,
          ops: contextOwnerOps(() => {
            if (device === undefined) throw errno('EAGAIN', `${name} is still starting`);
            return device;
          }),
        }),
      unreachable,
    ).catch((error: unknown) => {
      const failure = peerError(error, `registering ${name} with the registry`);
      throw failure.errno === 'EBUSY' ? errno('EBUSY', `${fn.bdf} is claimed already: a live rdma-nic is registered as ${name}`) : failure;
    });
    cleanups.push(() => owner.close());
    // The NIC driver imports dma-bufs from its users' fd tables: the platform's right.
    const session = await RegistrySession.open(registryAddress, { name, shmDir, privilegedCredential: secrets.platformToken, tls: config.tls }).catch((error: unknown) => {
      throw peerError(error, `opening the registry session of ${name}`);
    });
    cleanups.push(() => session.close());
    const files = new RegistryFiles(owner);

    let fabric = deps.fabric;
    let wire: RemoteFabric | undefined;
    if (fabric === undefined) {
      const link = await startLinkFabric({
        gid,
        wirePort: settings.RDMA_NIC_WIRE_PORT,
        bulkPort: settings.RDMA_NIC_BULK_PORT,
        registry: session, ringBytes: settings.RDMA_NIC_RING_BYTES, logger, tls: config.tls });
      cleanups.push(() => link.close());
      fabric = link;
      wire = link;
    }
    const nic = new Nic({ gid, fabric });
    fabric.attach(nic);
    // Writes into BAR memory are told to pci-emu on the socket in the directory the BAR segments are mapped from.
    const notices = new WriteNoticeClient(path.join(shmDir, WRITE_NOTICE_SOCKET));
    cleanups.push(() => notices.close());
    // Processes ring their user queues' doorbells on a socket beside the segments they share with the NIC.
    // Without one (a directory whose path is too long for a Unix socket, say) processes post through calls.
    const doorbellPath = path.join(shmDir, `rdma-nic-${fn.bdf.replace(/[:.]/g, '-')}.doorbell.sock`);
    const doorbells = await DoorbellServer.listen(doorbellPath).catch((error: unknown) => {
      logger.warn({ err: error, path: doorbellPath }, 'no doorbell socket: user queues are off (OpenUserQueues is EOPNOTSUPP), posting goes through calls');
      return undefined;
    });
    if (doorbells !== undefined) cleanups.push(() => doorbells.close());
    const running = new RdmaDevice({
      doorbells,
      nic,
      attr: deviceAttr(fn, FW_VER),
      files,
      imports: new MemoryImports(session, files, fn.bdf, notices),
      report: (error, what) => logger.warn({ err: error }, what),
    });
    device = running;

    const server = await startRdmaNicServer(config, fn.bdf, running, logger, new Authenticator(secrets, owner.credentials));
    if (wire !== undefined) registerWireMetrics(server.metrics.registry, () => wire.counters);
    const lost = (error: ErrnoError): void => {
      logger.error({ err: error }, 'the registry was lost: every context file and attachment is gone; shutting down');
      void server.shutdown('registry lost').then(() => process.exit(1));
    };
    owner.on('lost', lost);
    session.on('lost', lost);
    session.on('error', (error) => logger.warn({ err: error }, 'registry session background failure'));
    server.onShutdown(async () => {
      await running.close();
      await cleanUp();
    });
    logger.info({ gid, name: running.attr.name, owner: name }, 'rdma-nic up');
    return server;
  } catch (error) {
    await cleanUp();
    throw error;
  }
}

/** The host's first non-internal IPv4 address: a container's address on its network. */
function firstExternalIpv4(): string {
  for (const addresses of Object.values(os.networkInterfaces())) {
    const found = addresses?.find((a) => a.family === 'IPv4' && !a.internal);
    if (found !== undefined) return found.address;
  }
  throw errno('ENODEV', 'RDMA_NIC_GID_ADDRESS=auto, but this host has no external IPv4 address');
}

/**
 * Whether a failure to reach a peer is worth retrying: it could not be
 * reached (a failure with no errno, or ETIMEDOUT), as pci-emu and the
 * registry may still be starting under compose. A refusal (ENODEV, EBUSY)
 * is final.
 */
function unreachable(error: unknown): boolean {
  return peerUnreachable(error) || (error instanceof ErrnoError && error.errno === 'ETIMEDOUT');
}
