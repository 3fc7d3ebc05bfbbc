import { shutdownOnSignals } from '@p2p/server';
import { startRdmaNic } from './service';

startRdmaNic().then(
  (server) => shutdownOnSignals((reason) => server.shutdown(reason), server.logger),
  (error: unknown) => {
    console.error(`rdma-nic failed to start: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
