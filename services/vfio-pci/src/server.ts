import type { Authenticator } from '@p2p/auth';
import { PROTO_FILES, vfio as wire } from '@p2p/proto';
import { MessageLimit, type RunningServer, type ServerConfig, startServer } from '@p2p/server';
import { vfioHandlers } from './handlers/vfio-handlers';
import type { VfioPci } from './vfio-pci';

const SERVICE = 'p2p.vfio.v1.VfioPciService';

/**
 * Binding a driver to a device is root's (writing sysfs's bind and
 * driver_override): the administrator's, not the platform's, whose services
 * act in a process's context but never choose which driver owns a device.
 */
const ADMIN_ONLY = new Set(['Bind', 'Unbind'].map((m) => `/${SERVICE}/${m}`));

/** Serves one vfio-pci driver model over gRPC. */
export function startVfioPciServer(config: ServerConfig, vfio: VfioPci, authenticator: Authenticator): Promise<RunningServer> {
  return startServer({
    name: 'vfio-pci',
    config,
    services: [
      {
        name: SERVICE,
        definition: wire.VfioPciServiceService,
        implementation: vfioHandlers(vfio, MessageLimit.of(config), authenticator),
        access: (method) => (ADMIN_ONLY.has(method) ? 'admin' : 'any'),
      },
    ],
    protoFiles: [PROTO_FILES.vfio],
    authenticator,
  });
}
