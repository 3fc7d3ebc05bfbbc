import { dmabuf, PROTO_FILES } from '@p2p/proto';
import { type RunningServer, type ServerConfig, startServer } from '@p2p/server';
import type { Registry } from './registry';
import type { OwnerSessionOptions } from './handlers/owner-session-handler';
import { type LiveStreams, registryHandlers } from './handlers/registry-handlers';

/**
 * Serves one registry over gRPC. On shutdown the registry's own streams end
 * first: every session's end is its process's exit and every owner's end its
 * death, so nothing outlives the registry silently.
 */
export async function startDmabufRegistryServer(config: ServerConfig, registry: Registry, options: OwnerSessionOptions): Promise<RunningServer> {
  const live: LiveStreams = { sessions: new Set(), owners: new Set(), watchers: new Set() };
  const server = await startServer({
    name: 'dmabuf-registry',
    config,
    services: [{ name: 'p2p.dmabuf.v1.DmaBufRegistryService', definition: dmabuf.DmaBufRegistryServiceService, implementation: registryHandlers(registry, options, live) }],
    protoFiles: [PROTO_FILES.dmabuf],
  });
  server.onShutdown(() => {
    for (const stream of [...live.sessions, ...live.owners, ...live.watchers]) stream.end();
  });
  return server;
}
