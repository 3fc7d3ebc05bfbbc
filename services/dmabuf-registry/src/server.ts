import { Authenticator, type PlatformSecrets } from '@p2p/auth';
import { dmabuf, PROTO_FILES } from '@p2p/proto';
import { MessageLimit, type RunningServer, type ServerConfig, startServer } from '@p2p/server';
import type { Registry } from './registry';
import type { OwnerSessionOptions } from './handlers/owner-session-handler';
import { type LiveStreams, registryHandlers } from './handlers/registry-handlers';
import { registerRegistryMetrics } from './registry-metrics';

const SERVICE = 'p2p.dmabuf.v1.DmaBufRegistryService';

/**
 * The platform's side of the registry: owning files (vfio-pci, the NICs),
 * resolving credentials, pinning processes' pages (vfio's DMA mapping), and
 * the views debugfs and tracing give root.
 */
const PRIVILEGED = new Set(
  ['OpenOwnerSession', 'ResolveCredential', 'PinUserPages', 'UnpinUserPages', 'GetBufInfo', 'WatchEvents'].map((m) => `/${SERVICE}/${m}`),
);

/**
 * Serves one registry over gRPC. On shutdown the registry's own streams end
 * first: every session's end is its process's exit and every owner's end its
 * death, so nothing outlives the registry silently.
 */
export async function startDmabufRegistryServer(
  config: ServerConfig,
  registry: Registry,
  options: OwnerSessionOptions,
  secrets: PlatformSecrets,
): Promise<RunningServer> {
  const live: LiveStreams = { sessions: new Set(), owners: new Set(), watchers: new Set() };
  const authenticator = new Authenticator(secrets, { resolve: (credential) => registry.resolveCredential(credential) });
  const server = await startServer({
    name: 'dmabuf-registry',
    config,
    services: [
      {
        name: SERVICE,
        definition: dmabuf.DmaBufRegistryServiceService,
        implementation: registryHandlers(registry, options, live, MessageLimit.of(config), authenticator),
        access: (method) => (PRIVILEGED.has(method) ? 'privileged' : 'any'),
      },
    ],
    protoFiles: [PROTO_FILES.dmabuf],
    authenticator,
  });
  const stopMetrics = registerRegistryMetrics(server.metrics.registry, registry);
  server.onShutdown(() => {
    stopMetrics();
    for (const stream of [...live.sessions, ...live.owners, ...live.watchers]) stream.end();
  });
  return server;
}
