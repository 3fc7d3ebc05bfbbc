import { PROTO_FILES, vfio as wire } from '@p2p/proto';
import { type RunningServer, type ServerConfig, startServer } from '@p2p/server';
import { vfioHandlers } from './handlers/vfio-handlers';
import type { VfioPci } from './vfio-pci';

/** Serves one vfio-pci driver model over gRPC. */
export function startVfioPciServer(config: ServerConfig, vfio: VfioPci): Promise<RunningServer> {
  return startServer({
    name: 'vfio-pci',
    config,
    services: [{ name: 'p2p.vfio.v1.VfioPciService', definition: wire.VfioPciServiceService, implementation: vfioHandlers(vfio) }],
    protoFiles: [PROTO_FILES.vfio],
  });
}
