import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { Authenticator, loadPlatformSecrets } from '@p2p/auth';
import { OwnerSession, RegistrySession } from '@p2p/dmabuf-client';
import { errno, type ErrnoError } from '@p2p/errno';
import type { Logger } from 'pino';
import { loadServerConfig, retryUntil, type RunningServer } from '@p2p/server';
import { resolveShmDir } from '@p2p/shm';
import { PciEmuIommuPort } from './clients/pci-emu-iommu-port';
import { PciEmuPort } from './clients/pci-emu-port';
import { RegistryPort } from './clients/registry-port';
import { RegistryUserMemory } from './clients/registry-user-memory';
import { vfioOwnerOps } from './owner-ops';
import { startVfioPciServer } from './server';
import { VfioPci } from './vfio-pci';

export const VFIO_PCI_DEFAULTS = { port: 50052, metricsPort: 9452 };

const flag = z.enum(['0', '1', 'false', 'true']).transform((v) => v === '1' || v === 'true');
const Settings = z.object({
  PCI_EMU_ADDRESS: z.string().min(1).default('127.0.0.1:50051'),
  DMABUF_REGISTRY_ADDRESS: z.string().min(1).default('127.0.0.1:50053'),
  // The seed's variants, for every bound device unless Bind says otherwise.
  VFIO_PCI_DMABUF_LAYOUT: z.enum(['ranges', 'single']).default('ranges'),
  VFIO_PCI_ALLOW_PIN: flag.default(false),
  VFIO_PCI_CPU_MMAP: flag.default(false),
  VFIO_PCI_CONNECT_TIMEOUT_MS: z.coerce.number().int().min(0).default(30_000),
});

/**
 * vfio-pci as deployed: pci-emu is its hardware, the registry its file layer
 * (an owner session named "vfio-pci") and the keeper of processes' memory (a
 * registry session with the platform's credential, which pins the pages
 * iommufd maps for DMA). Losing either session ends this incarnation of the
 * driver: its device files and dma-bufs died with the registry's, and so did
 * its pins while the IOMMU may still map those pages, so it shuts down rather
 * than serve stale fds or DMA into memory it no longer holds.
 */
export async function startVfioPci(env: NodeJS.ProcessEnv = process.env): Promise<RunningServer> {
  const config = loadServerConfig('VFIO_PCI', VFIO_PCI_DEFAULTS, env);
  const parsed = Settings.safeParse(env);
  if (!parsed.success) throw errno('EINVAL', `bad configuration: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const settings = parsed.data;

  const shmDir = resolveShmDir(env);
  const secrets = loadPlatformSecrets(shmDir, env);
  const pci = new PciEmuPort(settings.PCI_EMU_ADDRESS, secrets.platformToken, config.tls);
  const iommu = new PciEmuIommuPort(settings.PCI_EMU_ADDRESS, secrets.platformToken, config.tls);
  let driver: VfioPci | undefined;
  // The registry may still be starting (compose): retry until the timeout.
  const owner = await retryUntil(settings.VFIO_PCI_CONNECT_TIMEOUT_MS, () =>
    OwnerSession.open(settings.DMABUF_REGISTRY_ADDRESS, {
      name: 'vfio-pci',
      credential: secrets.platformToken,
      tls: config.tls,
      shmDir,
      ops: vfioOwnerOps(() => {
        if (!driver) throw errno('EAGAIN', 'vfio-pci is still starting');
        return driver;
      }),
    }),
  );
  // pin_user_pages() of processes' memory is the platform's right at the registry.
  const memory = await retryUntil(settings.VFIO_PCI_CONNECT_TIMEOUT_MS, () =>
    RegistrySession.open(settings.DMABUF_REGISTRY_ADDRESS, { name: 'vfio-pci', shmDir, privilegedCredential: secrets.platformToken, tls: config.tls }),
  ).catch(async (error: unknown) => {
    await owner.close().catch(() => undefined);
    throw error;
  });
  const registry = new RegistryPort(() => owner);
  const vfio = new VfioPci(pci, registry, { iommu, userMemory: new RegistryUserMemory(memory) }, {
    instance: `${randomBytes(4).toString('hex')}/`,
    variants: { dmaBufLayout: settings.VFIO_PCI_DMABUF_LAYOUT, allowPin: settings.VFIO_PCI_ALLOW_PIN, cpuMmap: settings.VFIO_PCI_CPU_MMAP },
  });
  driver = vfio;

  const server = await startVfioPciServer(config, vfio, new Authenticator(secrets, owner.credentials));
  iommu.logTo(server.logger);
  const stopWatching = watchHardware(pci, iommu, vfio, server.logger);
  const lost = (error: ErrnoError): void => {
    server.logger.error({ err: error }, 'a registry session was lost: every vfio file and every pin of process memory is gone; shutting down');
    void server.shutdown('registry lost').then(() => process.exit(1));
  };
  owner.on('lost', lost);
  memory.on('lost', lost);
  memory.on('error', (error) => server.logger.warn({ err: error }, 'registry session background failure'));
  server.onShutdown(async () => {
    stopWatching();
    await owner.close().catch(() => undefined);
    await memory.close().catch(() => undefined);
    pci.close();
    iommu.close();
  });
  return server;
}

/**
 * Follows pci-emu's hot-plug events: an unplug revokes the function's
 * buffers for good (vfio_pci_remove). Losing pci-emu itself is losing every
 * function at once: a restarted pci-emu is new hardware with new memory, so
 * every bound device is treated as surprise-removed, and the watch is
 * re-established for what comes next.
 */
function watchHardware(pci: PciEmuPort, iommu: PciEmuIommuPort, vfio: VfioPci, logger: Logger): () => void {
  let stopped = false;
  let stopCurrent: () => void = () => undefined;
  const unplug = (bdf: string): void => {
    vfio.unplugged(bdf).catch((error: unknown) => logger.warn({ err: error, bdf }, 'unplug handling failed'));
  };
  const subscribe = (): void => {
    iommu.reclaimStale().then(
      (freed) => freed.forEach(({ domainId, bdfs }) => logger.warn({ domainId, bdfs }, 'freed an IOMMU domain an earlier vfio-pci left attached')),
      (error: unknown) => logger.debug({ err: error }, 'the platform IOMMU is not reachable yet: stale domains are reclaimed at the next watch'),
    );
    stopCurrent = pci.watchUnplugs(unplug, (error) => {
      if (stopped) return;
      logger.warn({ err: error }, 'pci-emu is gone: every bound function counts as surprise-removed');
      for (const device of vfio.devices()) unplug(device.bdf);
      setTimeout(() => {
        if (!stopped) subscribe();
      }, 500);
    });
  };
  subscribe();
  return () => {
    stopped = true;
    stopCurrent();
  };
}
