import { shutdownOnSignals } from '@p2p/server';
import { startVfioPci } from './service';

startVfioPci().then(
  (server) => shutdownOnSignals((reason) => server.shutdown(reason), server.logger),
  (error: unknown) => {
    console.error(`vfio-pci failed to start: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
