import type { ServerWritableStream } from '@grpc/grpc-js';
import { Authenticator, type PlatformSecrets } from '@p2p/auth';
import { pci, PROTO_FILES } from '@p2p/proto';
import { MessageLimit, type RunningServer, type ServerConfig, startServer } from '@p2p/server';
import type { PciBus } from './bus/pci-bus';
import { type BarSegments, pciEmuHandlers } from './handlers/pci-handlers';
import { registerNvmeMetrics } from './nvme-metrics';
import { registerPciMetrics } from './pci-metrics';
import { registerPlatformMetrics } from './platform-metrics';

const SERVICE = 'p2p.pci.v1.PciEmuService';

/**
 * What anyone may ask of the platform: its shape, as `lspci -t` shows it.
 * Everything else is the hardware itself (MMIO, bulk, config space, segments,
 * relocation, resets, power, hot-plug, the IOMMU, its event stream): the
 * platform's (vfio-pci, the NICs as bus masters, the registry) and the
 * administrator's.
 */
const PUBLIC = new Set(['GetTopology', 'ListFunctions', 'GetFunction', 'GetP2pDistance'].map((m) => `/${SERVICE}/${m}`));

/** Serves one bus over gRPC; on shutdown it ends every event stream so the drain completes. */
export async function startPciEmuServer(config: ServerConfig, bus: PciBus, segments: BarSegments, secrets: PlatformSecrets): Promise<RunningServer> {
  const streams = new Set<ServerWritableStream<unknown, unknown>>();
  const server = await startServer({
    name: 'pci-emu',
    config,
    services: [
      {
        name: SERVICE,
        definition: pci.PciEmuServiceService,
        implementation: pciEmuHandlers(bus, segments, streams, MessageLimit.of(config)),
        access: (method) => (PUBLIC.has(method) ? 'any' : 'privileged'),
      },
    ],
    protoFiles: [PROTO_FILES.pci],
    // pci-emu knows no processes: a caller is the administrator, the platform or anonymous.
    authenticator: new Authenticator(secrets),
  });
  const stopMetrics = registerPlatformMetrics(server.metrics.registry, bus);
  const stopNvmeMetrics = registerNvmeMetrics(server.metrics.registry, bus);
  const stopPciMetrics = registerPciMetrics(server.metrics.registry, bus);
  // Few, and what an administrator looks for when a driver's controller stops answering.
  const stopNvmeLog = bus.onNvmeEvent((bdf, event) => {
    if (event.kind === 'state') server.logger.info({ bdf, state: event.state, reason: event.reason }, 'NVMe controller state changed');
  });
  server.onShutdown(() => {
    stopMetrics();
    stopNvmeMetrics();
    stopPciMetrics();
    stopNvmeLog();
    for (const stream of streams) stream.end();
  });
  return server;
}
