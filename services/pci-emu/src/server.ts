import type { ServerWritableStream } from '@grpc/grpc-js';
import { pci, PROTO_FILES } from '@p2p/proto';
import { type RunningServer, type ServerConfig, startServer } from '@p2p/server';
import type { PciBus } from './bus/pci-bus';
import { type BarSegments, pciEmuHandlers } from './handlers/pci-handlers';

/** Serves one bus over gRPC; on shutdown it ends every event stream so the drain completes. */
export async function startPciEmuServer(config: ServerConfig, bus: PciBus, segments: BarSegments): Promise<RunningServer> {
  const streams = new Set<ServerWritableStream<unknown, unknown>>();
  const server = await startServer({
    name: 'pci-emu',
    config,
    services: [{ name: 'p2p.pci.v1.PciEmuService', definition: pci.PciEmuServiceService, implementation: pciEmuHandlers(bus, segments, streams) }],
    protoFiles: [PROTO_FILES.pci],
  });
  server.onShutdown(() => {
    for (const stream of streams) stream.end();
  });
  return server;
}
