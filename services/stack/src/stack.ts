import { startDmabufRegistry } from '@p2p/dmabuf-registry';
import { type HostLayout, hostLayout, nicEnv, serviceEnv } from '@p2p/hosts';
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
 * The embedded stack is one machine's: its servers listen on loopback unless
 * the environment says otherwise (containers keep 0.0.0.0, their default).
 */
const LOOPBACK: NodeJS.ProcessEnv = Object.fromEntries(['PCI_EMU', 'DMABUF_REGISTRY', 'VFIO_PCI', 'RDMA_NIC'].map((prefix) => [`${prefix}_HOST`, '127.0.0.1']));

/**
 * Starts every service of one host in this process, each with its own port
 * and environment settings, as `docker compose up` starts them in
 * containers. `host` places them (host 0, `npm start`'s ports, unless
 * told): its ports are defaults the environment may override, as for a
 * service started alone; its two NICs (nic0 beside nvme0, nic1 beside
 * accel0 in pci-emu's default topology) take the layout's ports and GID
 * addresses over the environment's RDMA_NIC_* values, which one process
 * cannot give two NICs. A service that fails to start stops the ones
 * already running.
 */
export async function startStack(env: NodeJS.ProcessEnv = process.env, host: HostLayout = hostLayout(0)): Promise<Stack> {
  env = { ...LOOPBACK, ...serviceEnv(host), ...env };
  const starters: Starter[] = [startPciEmu, startDmabufRegistry, startVfioPci, ...host.nics.map((nic): Starter => (base) => startRdmaNic({ ...base, ...nicEnv(nic) }))];
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
