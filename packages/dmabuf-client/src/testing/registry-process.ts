import * as fs from 'node:fs';
import { type ServiceProcess, startServiceProcess, tempShmDir } from '@p2p/testing';

/** A dmabuf-registry running as its own process, with its own segment directory. */
export interface RegistryProcess extends Omit<ServiceProcess, 'stop'> {
  /** Its P2P_SHM_DIR: a fresh directory under /dev/shm, removed by stop(). */
  readonly shmDir: string;
  /** Sends `signal` (default SIGTERM), waits for exit, removes shmDir. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts the registry with `ackTimeoutMs` (DMABUF_REGISTRY_ACK_TIMEOUT_MS, default 2000) and metrics off. */
export async function startRegistry(options: { ackTimeoutMs?: number } = {}): Promise<RegistryProcess> {
  const shmDir = tempShmDir('p2p-dmabuf-client-');
  const service = await startServiceProcess('dmabuf-registry', 'DMABUF_REGISTRY', {
    env: { DMABUF_REGISTRY_METRICS_PORT: '-1', DMABUF_REGISTRY_ACK_TIMEOUT_MS: String(options.ackTimeoutMs ?? 2000), P2P_SHM_DIR: shmDir },
  });
  return {
    ...service,
    shmDir,
    stop: async (signal) => {
      await service.stop(signal);
      fs.rmSync(shmDir, { recursive: true, force: true });
    },
  };
}
