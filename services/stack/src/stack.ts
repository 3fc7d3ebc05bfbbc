import { startDmabufRegistry } from '@p2p/dmabuf-registry';
import { startPciEmu } from '@p2p/pci-emu';
import { startRdmaNic } from '@p2p/rdma-nic';
import { startVfioPci } from '@p2p/vfio-pci';
import type { RunningServer } from '@p2p/server';

/** The running stack: every service, started in dependency order. */
export interface Stack {
  readonly servers: readonly RunningServer[];
  /** Stops the services in reverse order of start. */
  shutdown(reason?: string): Promise<void>;
}

type Starter = (env: NodeJS.ProcessEnv) => Promise<RunningServer>;

/**
 * The two hosts' NICs on pci-emu's default topology: nic0 beside nvme0 and
 * nic1 beside accel0, each with its own ports and its own address (RoCEv2:
 * the GID is the port's IP address; both wires listen on the same port of
 * their own loopback address). These override the environment's RDMA_NIC_*
 * values, which one process cannot give two NICs.
 */
const NICS: readonly NodeJS.ProcessEnv[] = [
  { RDMA_NIC_BDF: '0000:04:00.0', RDMA_NIC_PORT: '50054', RDMA_NIC_METRICS_PORT: '9454', RDMA_NIC_GID_ADDRESS: '127.0.0.2' },
  { RDMA_NIC_BDF: '0000:09:00.0', RDMA_NIC_PORT: '50055', RDMA_NIC_METRICS_PORT: '9455', RDMA_NIC_GID_ADDRESS: '127.0.0.3' },
];

/**
 * The embedded stack is one machine's: its servers listen on loopback unless
 * the environment says otherwise (containers keep 0.0.0.0, their default).
 */
const LOOPBACK: NodeJS.ProcessEnv = Object.fromEntries(['PCI_EMU', 'DMABUF_REGISTRY', 'VFIO_PCI', 'RDMA_NIC'].map((prefix) => [`${prefix}_HOST`, '127.0.0.1']));

/**
 * Starts every service in this process, each with its own port and
 * environment settings, as `docker compose up` starts them in containers.
 * A service that fails to start stops the ones already running.
 */
export async function startStack(env: NodeJS.ProcessEnv = process.env): Promise<Stack> {
  env = { ...LOOPBACK, ...env };
  const starters: Starter[] = [startPciEmu, startDmabufRegistry, startVfioPci, ...NICS.map((nic): Starter => (base) => startRdmaNic({ ...base, ...nic }))];
  const servers: RunningServer[] = [];
  const shutdown = async (reason?: string): Promise<void> => {
    for (const server of [...servers].reverse()) await server.shutdown(reason);
  };
  try {
    for (const start of starters) servers.push(await start(env));
  } catch (error) {
    await shutdown('a service failed to start');
    throw error;
  }
  return { servers, shutdown };
}
