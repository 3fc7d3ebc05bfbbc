import * as fs from 'node:fs';
import { startDmabufRegistry } from '@p2p/dmabuf-registry';
import { tempShmDir } from '@p2p/testing';

/** A dmabuf-registry served from the test process, with its own segment directory. */
export interface InProcessRegistry {
  readonly address: string;
  /** Its P2P_SHM_DIR, removed by stop(). */
  readonly shmDir: string;
  stop(): Promise<void>;
}

export async function startRegistryInProcess(): Promise<InProcessRegistry> {
  const shmDir = tempShmDir('p2p-rdma-wire-');
  const server = await startDmabufRegistry({
    DMABUF_REGISTRY_HOST: '127.0.0.1',
    DMABUF_REGISTRY_PORT: '0',
    DMABUF_REGISTRY_METRICS_PORT: '-1',
    DMABUF_REGISTRY_LOG_LEVEL: 'silent',
    P2P_SHM_DIR: shmDir,
  });
  return {
    address: `127.0.0.1:${server.port}`,
    shmDir,
    stop: async () => {
      await server.shutdown('test done');
      fs.rmSync(shmDir, { recursive: true, force: true });
    },
  };
}
