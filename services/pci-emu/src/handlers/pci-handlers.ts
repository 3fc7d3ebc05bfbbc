import type { ServerWritableStream } from '@grpc/grpc-js';
import { errno } from '@p2p/errno';
import { pci } from '@p2p/proto';
import { type MessageLimit, serverStream, unary } from '@p2p/server';
import type { PciBus } from '../bus/pci-bus';
import { canonicalBdf } from '../topology/bdf';
import { iommuHandlers } from './iommu-handlers';
import { toNumber } from './u64';
import { eventConcerns, eventToWire, functionToWire, mapTypeToWire, powerFromWire, powerToWire, topologyToWire } from './wire';

/** Where the segments of BAR memory are, for GetBarSegments (offsets into the memory, not the BAR). */
export interface BarSegments {
  readonly directory: string;
  extents(memoryName: string, offset: number, length: number): pci.SegmentExtent[];
  /** Moves the BAR to fresh segment files; returns the new generation. */
  relocate(memoryName: string): number;
}

/**
 * The PciEmuService handlers: decode the request, call the bus, encode the
 * result. Every rule lives in the bus; a thrown ErrnoError becomes the status.
 * `limit` is the server's message limit: a BulkRead whose answer cannot fit
 * it is refused before the bus reads a byte.
 */
export function pciEmuHandlers(
  bus: PciBus,
  segments: BarSegments,
  streams: Set<ServerWritableStream<unknown, unknown>>,
  limit: MessageLimit,
): pci.PciEmuServiceServer {
  return {
    getTopology: unary(() => topologyToWire(bus.topology, bus.listFunctions())),
    listFunctions: unary(() => ({ functions: bus.listFunctions().map(functionToWire) })),
    getFunction: unary((req: pci.GetFunctionRequest) => ({ function: functionToWire(bus.getFunction(req.bdf)) })),
    getP2PDistance: unary((req: pci.GetP2pDistanceRequest) => {
      const result = bus.p2pDistance(req.providerBdf, req.clientBdf);
      return { mapType: mapTypeToWire(result.mapType), distance: result.distance, path: result.path.map((hop) => `${hop.role}:${hop.id}`) };
    }),

    configRead: unary((req: pci.ConfigReadRequest) => ({ value: bus.configRead(req.bdf, req.offset, req.width) })),
    configWrite: unary((req: pci.ConfigWriteRequest) => {
      bus.configWrite(req.bdf, req.offset, req.width, req.value, req.hardware ? 'hardware' : 'strict');
      return {};
    }),

    mmioRead: unary((req: pci.MmioReadRequest) => {
      const result = bus.mmioRead(req.bdf, req.bar, toNumber(req.offset, 'offset'), req.width);
      return { value: BigInt(result.value), decoded: result.decoded };
    }),
    mmioWrite: unary((req: pci.MmioWriteRequest) => bus.mmioWrite(req.bdf, req.bar, toNumber(req.offset, 'offset'), req.width, req.value)),
    bulkRead: unary((req: pci.BulkReadRequest) => {
      limit.checkAnswer(req.length, 'BulkRead', 'map the BAR with GetBarSegments, or read it in pieces');
      return bus.bulkRead(req.bdf, req.bar, toNumber(req.offset, 'offset'), toNumber(req.length, 'length'));
    }),
    bulkWrite: unary((req: pci.BulkWriteRequest) => bus.bulkWrite(req.bdf, req.bar, toNumber(req.offset, 'offset'), req.data)),
    getBarSegments: unary((req: pci.GetBarSegmentsRequest) => {
      const length = req.length === 0n ? undefined : toNumber(req.length, 'length');
      const span = bus.barMemorySpan(req.bdf, req.bar, toNumber(req.offset, 'offset'), length);
      return { directory: segments.directory, extents: segments.extents(span.memoryName, span.offset, span.length) };
    }),
    relocateBar: unary((req: pci.RelocateBarRequest) => ({ generation: BigInt(segments.relocate(barMemoryName(bus, req.bdf, req.bar))) })),

    functionLevelReset: unary((req: pci.FunctionLevelResetRequest) => {
      bus.functionLevelReset(req.bdf);
      return {};
    }),
    resetFunction: unary((req: pci.ResetFunctionRequest) => {
      bus.resetFunction(req.bdf);
      return {};
    }),
    setPowerState: unary((req: pci.SetPowerStateRequest) => ({ previous: powerToWire(bus.setPowerState(req.bdf, powerFromWire(req.state))) })),
    unplug: unary((req: pci.UnplugRequest) => {
      bus.unplug(req.bdf);
      return {};
    }),
    replug: unary((req: pci.ReplugRequest) => {
      bus.replug(req.bdf);
      return {};
    }),

    watchEvents: serverStream((req: pci.WatchEventsRequest, call: ServerWritableStream<pci.WatchEventsRequest, pci.WatchEventsResponse>) => {
      const wanted = new Set(req.bdfs.map(canonicalBdf));
      const generic = call as unknown as ServerWritableStream<unknown, unknown>;
      streams.add(generic);
      const unsubscribe = bus.onEvent(
        (event) => {
          if (eventConcerns(event, wanted)) call.write(eventToWire(event));
        },
        { nvme: req.nvme === true },
      );
      return () => {
        unsubscribe();
        streams.delete(generic);
      };
    }),

    ...iommuHandlers(bus),
  };
}

/** The memory of a BAR backed by segments (a memory BAR, a register BAR's window), or EINVAL naming why not. */
function barMemoryName(bus: PciBus, bdf: string, index: number): string {
  const bar = bus.getFunction(bdf).bars.find((b) => b.index === index);
  if (!bar) throw errno('EINVAL', `${bdf} has no BAR ${index}`);
  if (bar.memoryName === undefined) {
    throw errno('EINVAL', `BAR ${index} of ${bdf} holds ${bar.kind}, not memory: it has no segments`);
  }
  return bar.memoryName;
}
