import { startDmabufRegistry } from '@p2p/dmabuf-registry';
import { startPciEmu } from '@p2p/pci-emu';
import { startVfioPci } from '@p2p/vfio-pci';
import type { RunningServer } from '@p2p/server';

/** The running stack: every service, started in dependency order. */
export interface Stack {
  readonly servers: readonly RunningServer[];
  /** Stops the services in reverse order of start. */
  shutdown(reason?: string): Promise<void>;
}

/**
 * Starts every service in this process, each with its own port and
 * environment settings, as `docker compose up` starts them in containers.
 * A service that fails to start stops the ones already running.
 */
export async function startStack(env: NodeJS.ProcessEnv = process.env): Promise<Stack> {
  const starters: Array<(env: NodeJS.ProcessEnv) => Promise<RunningServer>> = [startPciEmu, startDmabufRegistry, startVfioPci];
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
