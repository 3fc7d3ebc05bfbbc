import { shutdownOnSignals } from '@p2p/server';
import { startPciEmu } from './service';

startPciEmu().then(
  (server) => shutdownOnSignals((reason) => server.shutdown(reason), server.logger),
  (error: unknown) => {
    console.error(`pci-emu failed to start: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
