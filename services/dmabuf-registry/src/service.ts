import { randomInt, randomUUID } from 'node:crypto';
import { z } from 'zod';
import { loadPlatformSecrets } from '@p2p/auth';
import { errno } from '@p2p/errno';
import { loadServerConfig, type RunningServer } from '@p2p/server';
import { claimShmDir, resolveShmDir, SegmentStore, shmIdentity } from '@p2p/shm';
import { PciEmuP2pOracle } from './clients/pci-emu-p2p';
import { DEFAULT_MAX_MAP_COUNT } from './mm/layout';
import { DEFAULT_MAX_PIN_PAGES } from './mm/user-page-pins';
import { Registry } from './registry';
import { SegmentFileAccess } from './segments/segment-file-access';
import { startDmabufRegistryServer } from './server';

export const DMABUF_REGISTRY_DEFAULTS = { port: 50053, metricsPort: 9453 };

/** Prefix of the system heap's segment files; the incarnation follows it. */
const HEAP_PREFIX = 'dmabuf-heap';

/** What one process's heap buffers may hold when DMABUF_REGISTRY_HEAP_PROCESS_MAX_BYTES is unset (or the heap's cap, if lower). */
const DEFAULT_HEAP_PROCESS_MAX_BYTES = 2 * 1024 ** 3;

const Settings = z
  .object({
    DMABUF_REGISTRY_ACK_TIMEOUT_MS: z.coerce.number().int().min(1).max(60_000).default(1000),
    DMABUF_REGISTRY_OWNER_CALL_TIMEOUT_MS: z.coerce.number().int().min(1).max(60_000).default(5000),
    DMABUF_REGISTRY_HEAP_MAX_BYTES: z.coerce.number().int().min(4096).default(8 * 1024 ** 3),
    DMABUF_REGISTRY_HEAP_PROCESS_MAX_BYTES: z.coerce.number().int().min(4096).optional(),
    DMABUF_REGISTRY_MAX_MAP_COUNT: z.coerce.number().int().min(1).max(2 ** 31 - 1).default(DEFAULT_MAX_MAP_COUNT),
    DMABUF_REGISTRY_MAX_PIN_PAGES: z.coerce.number().int().min(1).max(2 ** 31 - 1).default(DEFAULT_MAX_PIN_PAGES),
    PCI_EMU_ADDRESS: z.string().min(1).default('127.0.0.1:50051'),
  })
  .refine((s) => s.DMABUF_REGISTRY_HEAP_PROCESS_MAX_BYTES === undefined || s.DMABUF_REGISTRY_HEAP_PROCESS_MAX_BYTES <= s.DMABUF_REGISTRY_HEAP_MAX_BYTES, {
    path: ['DMABUF_REGISTRY_HEAP_PROCESS_MAX_BYTES'],
    message: 'must not exceed DMABUF_REGISTRY_HEAP_MAX_BYTES',
  })
  .transform((s) => ({
    ...s,
    DMABUF_REGISTRY_HEAP_PROCESS_MAX_BYTES: s.DMABUF_REGISTRY_HEAP_PROCESS_MAX_BYTES ?? Math.min(DEFAULT_HEAP_PROCESS_MAX_BYTES, s.DMABUF_REGISTRY_HEAP_MAX_BYTES),
  }));

export type RegistrySettings = z.output<typeof Settings>;

/** The registry's own settings from the environment: EINVAL naming each bad variable. */
export function loadRegistrySettings(env: NodeJS.ProcessEnv): RegistrySettings {
  const parsed = Settings.safeParse(env);
  if (!parsed.success) throw errno('EINVAL', `bad configuration: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/**
 * dmabuf-registry as deployed. Each start is a new incarnation: fds, pids and
 * buffers of an earlier one are gone, so its heap segments are unlinked at
 * start (a mapping an importer still holds then points at an orphaned file,
 * and the client library drops such mappings when its session breaks). One
 * registry per segment directory: a second one fails with EBUSY before it
 * touches any file.
 */
export async function startDmabufRegistry(env: NodeJS.ProcessEnv = process.env): Promise<RunningServer> {
  const config = loadServerConfig('DMABUF_REGISTRY', DMABUF_REGISTRY_DEFAULTS, env);
  const settings = loadRegistrySettings(env);
  const directory = resolveShmDir(env);
  // The claim comes before the sweep: without it, the sweep would unlink the
  // heap buffers of a registry still serving from this directory.
  const claim = await claimShmDir(directory, 'dmabuf-registry');
  let oracle: PciEmuP2pOracle | undefined;
  try {
    const store = new SegmentStore({ dir: directory });
    const incarnation = randomUUID().slice(0, 8);
    for (const segment of store.list()) {
      if (segment.name.startsWith(`${HEAP_PREFIX}.`)) store.unlink(segment.name);
    }
    oracle = new PciEmuP2pOracle(settings.PCI_EMU_ADDRESS, config.tls);
    const registry = new Registry({
      // pids are u32 on the wire; a random base per incarnation keeps an old
      // incarnation's pids from naming a new process.
      firstPid: randomInt(1, 2 ** 20) * 1000,
      ackTimeoutMs: settings.DMABUF_REGISTRY_ACK_TIMEOUT_MS,
      maxMapCount: settings.DMABUF_REGISTRY_MAX_MAP_COUNT,
      maxPinPages: settings.DMABUF_REGISTRY_MAX_PIN_PAGES,
      p2p: oracle,
      segments: new SegmentFileAccess(),
      heap: {
        store,
        directory,
        shmId: shmIdentity(directory),
        prefix: `${HEAP_PREFIX}.${incarnation}`,
        maxBytes: settings.DMABUF_REGISTRY_HEAP_MAX_BYTES,
        processMaxBytes: settings.DMABUF_REGISTRY_HEAP_PROCESS_MAX_BYTES,
      },
    });
    const server = await startDmabufRegistryServer(
      config,
      registry,
      { directory, incarnation, callTimeoutMs: settings.DMABUF_REGISTRY_OWNER_CALL_TIMEOUT_MS },
      loadPlatformSecrets(directory, env),
    );
    server.onShutdown(async () => {
      try {
        await registry.shutdown();
      } finally {
        oracle?.close();
        await claim.release();
      }
    });
    server.logger.info({ incarnation, directory, ackTimeoutMs: settings.DMABUF_REGISTRY_ACK_TIMEOUT_MS }, 'registry incarnation');
    return server;
  } catch (error) {
    oracle?.close();
    await claim.release();
    throw error;
  }
}
