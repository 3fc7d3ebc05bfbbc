import type { Authenticator } from '@p2p/auth';
import { iommufd, PROTO_FILES, vfio as wire } from '@p2p/proto';
import { MessageLimit, type RunningServer, type ServerConfig, startServer } from '@p2p/server';
import { deviceIommufdHandlers } from './handlers/device-iommufd-handlers';
import { iommufdHandlers } from './handlers/iommufd-handlers';
import { vfioHandlers } from './handlers/vfio-handlers';
import { registerRevokeMetrics } from './revoke-metrics';
import type { VfioPci } from './vfio-pci';

const SERVICE = 'p2p.vfio.v1.VfioPciService';
const IOMMUFD_SERVICE = 'p2p.vfio.v1.IommufdService';

/**
 * Binding a driver to a device is root's (writing sysfs's bind and
 * driver_override): the administrator's, not the platform's, whose services
 * act in a process's context but never choose which driver owns a device.
 * Every process's iommufd contexts, listed, are the administrator's to see.
 */
const ADMIN_ONLY = new Set([...['Bind', 'Unbind'].map((m) => `/${SERVICE}/${m}`), `/${IOMMUFD_SERVICE}/ListIommufds`]);
const access = (method: string): 'admin' | 'any' => (ADMIN_ONLY.has(method) ? 'admin' : 'any');

/** Serves one vfio-pci driver model over gRPC: the device uAPI, the device fd's iommufd ioctls, and /dev/iommu. */
export async function startVfioPciServer(config: ServerConfig, vfio: VfioPci, authenticator: Authenticator): Promise<RunningServer> {
  const server = await startServer({
    name: 'vfio-pci',
    config,
    services: [
      {
        name: SERVICE,
        definition: wire.VfioPciServiceService,
        implementation: vfioHandlers(vfio, MessageLimit.of(config), authenticator),
        access,
      },
      {
        name: 'p2p.vfio.v1.VfioDeviceIommufdService',
        definition: wire.VfioDeviceIommufdServiceService,
        implementation: deviceIommufdHandlers(vfio, authenticator),
        access,
      },
      {
        name: IOMMUFD_SERVICE,
        definition: iommufd.IommufdServiceService,
        implementation: iommufdHandlers(vfio.iommufd, authenticator),
        access,
      },
    ],
    protoFiles: [PROTO_FILES.vfio, PROTO_FILES.iommufd],
    authenticator,
  });
  server.onShutdown(registerRevokeMetrics(server.metrics.registry, vfio));
  return server;
}
