import { shutdownOnSignals } from '@p2p/server';
import { startDmabufRegistry } from './service';

startDmabufRegistry().then(
  (server) => shutdownOnSignals((reason) => server.shutdown(reason), server.logger),
  (error: unknown) => {
    console.error(`dmabuf-registry failed to start: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
