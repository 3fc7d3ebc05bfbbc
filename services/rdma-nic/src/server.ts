import type { Authenticator } from '@p2p/auth';
import { PROTO_FILES, rdma } from '@p2p/proto';
import { type RunningServer, type ServerConfig, startServer } from '@p2p/server';
import type { Logger } from 'pino';
import type { RdmaDevice } from './context/rdma-device';
import { OpenStreams } from './handlers/open-streams';
import { VerbsCallers } from './handlers/verbs-callers';
import { rdmaHandlers } from './handlers/verbs-handlers';

/**
 * Serves one NIC's verbs over gRPC. Its streams end when shutdown begins.
 * Every metric carries `nic` (the NIC's BDF): `npm start` runs two NICs in
 * one process, each with its own registry and port, and a dashboard that
 * sums over `service` must still tell them apart.
 */
export async function startRdmaNicServer(
  config: ServerConfig,
  nic: string,
  device: RdmaDevice,
  logger: Logger,
  authenticator: Authenticator,
): Promise<RunningServer> {
  const streams = new OpenStreams();
  const server = await startServer({
    name: 'rdma-nic',
    config,
    logger,
    services: [
      {
        name: 'p2p.rdma.v1.RdmaNicService',
        definition: rdma.RdmaNicServiceService,
        implementation: rdmaHandlers(device, streams, new VerbsCallers(device, authenticator)),
      },
    ],
    protoFiles: [PROTO_FILES.rdma],
    authenticator,
    metricLabels: { nic },
  });
  server.onShutdown(() => streams.endAll());
  return server;
}
