import { errno } from '@p2p/errno';
import { pci } from '@p2p/proto';
import type { BarInfo, FunctionInfo } from '../bus/function-info';
import type { DecodeReason, PciEvent, PowerState, ResetKind } from '../bus/pci-events';
import type { BarWritePath } from '../devices/device-model';
import type { NvmeEvent } from '../devices/nvme/nvme-events';
import type { NvmeQueueLocation } from '../devices/nvme/nvme-queue';
import type { P2pMapType } from '../topology/p2p-distance';
import type { Topology } from '../topology/topology';
import { dmaErrorToWire, dmaStatusToWire, faultReasonToWire } from './iommu-wire';

const KINDS: Record<FunctionInfo['kind'], pci.FunctionKind> = {
  nvme: pci.FunctionKind.FUNCTION_KIND_NVME,
  accel: pci.FunctionKind.FUNCTION_KIND_ACCEL,
  nic: pci.FunctionKind.FUNCTION_KIND_NIC,
  generic: pci.FunctionKind.FUNCTION_KIND_GENERIC,
};

const BAR_KINDS: Record<BarInfo['kind'], pci.BarKind> = {
  registers: pci.BarKind.BAR_KIND_REGISTERS,
  memory: pci.BarKind.BAR_KIND_MEMORY,
  io: pci.BarKind.BAR_KIND_IO,
  rom: pci.BarKind.BAR_KIND_ROM,
};

const POWER: Record<PowerState, pci.PowerState> = {
  D0: pci.PowerState.POWER_STATE_D0,
  D3hot: pci.PowerState.POWER_STATE_D3HOT,
};

const MAP_TYPES: Record<P2pMapType, pci.P2pMapType> = {
  NOT_SUPPORTED: pci.P2pMapType.P2P_MAP_TYPE_NOT_SUPPORTED,
  BUS_ADDR: pci.P2pMapType.P2P_MAP_TYPE_BUS_ADDR,
  THRU_HOST_BRIDGE: pci.P2pMapType.P2P_MAP_TYPE_THRU_HOST_BRIDGE,
};

const RESETS: Record<ResetKind, pci.ResetKind> = {
  FLR: pci.ResetKind.RESET_KIND_FLR,
  RESET: pci.ResetKind.RESET_KIND_RESET,
  POWER_ON_RESET: pci.ResetKind.RESET_KIND_POWER_ON,
};

const WRITE_PATHS: Record<BarWritePath, pci.BarWritePath> = {
  mmio: pci.BarWritePath.BAR_WRITE_PATH_MMIO,
  p2p: pci.BarWritePath.BAR_WRITE_PATH_P2P,
};

const REASONS: Record<DecodeReason, pci.DecodeReason> = {
  COMMAND_WRITE: pci.DecodeReason.DECODE_REASON_COMMAND_WRITE,
  POWER: pci.DecodeReason.DECODE_REASON_POWER,
  RESET: pci.DecodeReason.DECODE_REASON_RESET,
  HOTPLUG: pci.DecodeReason.DECODE_REASON_HOTPLUG,
};

const NVME_QUEUE_TYPES: Record<'sq' | 'cq', pci.NvmeQueueType> = {
  sq: pci.NvmeQueueType.NVME_QUEUE_TYPE_SUBMISSION,
  cq: pci.NvmeQueueType.NVME_QUEUE_TYPE_COMPLETION,
};

const NVME_QUEUE_LOCATIONS: Record<NvmeQueueLocation, pci.NvmeQueueLocation> = {
  host: pci.NvmeQueueLocation.NVME_QUEUE_LOCATION_HOST,
  cmb: pci.NvmeQueueLocation.NVME_QUEUE_LOCATION_CMB,
};

const NVME_STATES: Record<Extract<NvmeEvent, { kind: 'state' }>['state'], pci.NvmeControllerState> = {
  ready: pci.NvmeControllerState.NVME_CONTROLLER_STATE_READY,
  reset: pci.NvmeControllerState.NVME_CONTROLLER_STATE_RESET,
  'shutdown-complete': pci.NvmeControllerState.NVME_CONTROLLER_STATE_SHUTDOWN_COMPLETE,
  fatal: pci.NvmeControllerState.NVME_CONTROLLER_STATE_FATAL,
};

export function powerFromWire(state: pci.PowerState): PowerState {
  if (state === pci.PowerState.POWER_STATE_D0) return 'D0';
  if (state === pci.PowerState.POWER_STATE_D3HOT) return 'D3hot';
  throw errno('EINVAL', `power state ${state} is not D0 or D3hot`);
}

export const powerToWire = (state: PowerState): pci.PowerState => POWER[state];
export const mapTypeToWire = (type: P2pMapType): pci.P2pMapType => MAP_TYPES[type];

export function functionToWire(fn: FunctionInfo): pci.FunctionInfo {
  return {
    bdf: fn.bdf,
    name: fn.name,
    kind: KINDS[fn.kind],
    vendorId: fn.vendorId,
    deviceId: fn.deviceId,
    classCode: fn.classCode,
    bars: fn.bars.map((bar) => ({
      index: bar.index,
      size: BigInt(bar.size),
      is64bit: bar.is64Bit,
      prefetchable: bar.prefetchable,
      kind: BAR_KINDS[bar.kind],
      busAddress: BigInt(bar.busAddress),
      ...(bar.window !== undefined ? { window: { offset: BigInt(bar.window.offset), length: BigInt(bar.window.length) } } : {}),
    })),
    powerState: POWER[fn.powerState],
    memoryEnabled: fn.memoryEnabled,
    busMaster: fn.busMaster,
    present: fn.present,
  };
}

export function topologyToWire(topology: Topology, functions: readonly FunctionInfo[]): pci.GetTopologyResponse {
  return {
    hostBridges: topology.hostBridges.map((bridge) => ({
      name: bridge.name,
      domain: bridge.domain,
      p2pAllowed: bridge.p2pAllowed,
      rootPortBdfs: [...bridge.rootPortBdfs],
    })),
    switches: topology.switches.map((sw) => ({
      name: sw.name,
      upstreamBdf: sw.upstreamBdf,
      acsSourceValidation: sw.acs.sourceValidation,
      acsRequestRedirect: sw.acs.requestRedirect,
      acsCompletionRedirect: sw.acs.completionRedirect,
      acsUpstreamForwarding: sw.acs.upstreamForwarding,
      downstreamBdfs: [...sw.downstreamBdfs],
    })),
    nodes: topology.nodes.map((node) => ({ bdf: node.bdf, role: node.role, parentBdf: node.parentBdf ?? '' })),
    functions: functions.map(functionToWire),
  };
}

export function eventToWire(event: PciEvent): pci.WatchEventsResponse {
  const header = { sequence: BigInt(event.sequence), bdf: event.bdf, monotonicNs: event.time.monotonicNs, unixNanos: event.time.unixNanos };
  switch (event.type) {
    case 'decode-changed':
      return { ...header, event: { $case: 'decodeChanged', value: { memoryEnabled: event.memoryEnabled, busMaster: event.busMaster, reason: REASONS[event.reason] } } };
    case 'reset':
      return { ...header, event: { $case: 'reset', value: { kind: RESETS[event.kind] } } };
    case 'power-changed':
      return { ...header, event: { $case: 'powerChanged', value: { from: POWER[event.from], to: POWER[event.to] } } };
    case 'unplugged':
      return { ...header, event: { $case: 'unplugged', value: {} } };
    case 'replugged':
      return { ...header, event: { $case: 'replugged', value: {} } };
    case 'iommu-fault':
      return {
        ...header,
        event: { $case: 'iommuFault', value: { domainId: event.domainId, iova: event.iova, write: event.write, reason: faultReasonToWire(event.reason) } },
      };
    case 'iommu-mapped':
      return {
        ...header,
        event: {
          $case: 'iommuMapped',
          value: { domainId: event.domainId, iova: BigInt(event.iova), length: BigInt(event.length), prot: event.prot, bdfs: [...event.devices] },
        },
      };
    case 'iommu-unmapped':
      return {
        ...header,
        event: {
          $case: 'iommuUnmapped',
          value: { domainId: event.domainId, iova: BigInt(event.iova), length: BigInt(event.length), unmapped: BigInt(event.unmapped), bdfs: [...event.devices] },
        },
      };
    case 'bar-written':
      return {
        ...header,
        event: { $case: 'barWritten', value: { bar: event.bar, offset: BigInt(event.offset), length: BigInt(event.length), path: WRITE_PATHS[event.path] } },
      };
    case 'dma-completed':
      return {
        ...header,
        event: {
          $case: 'dmaCompleted',
          value: {
            status: dmaStatusToWire(event.status),
            error: dmaErrorToWire(event.error),
            bytes: BigInt(event.bytes),
            srcIova: event.srcIova,
            dstIova: event.dstIova,
            faultIova: event.faultIova,
          },
        },
      };
    case 'nvme':
      return { ...header, event: nvmeEventToWire(event.nvme) };
  }
}

function nvmeEventToWire(event: NvmeEvent): pci.WatchEventsResponse['event'] {
  switch (event.kind) {
    case 'command':
      return { $case: 'nvmeCommand', value: { qid: event.qid, cid: event.cid, opcode: event.opcode, status: event.status, bytes: BigInt(event.bytes) } };
    case 'doorbell':
      return { $case: 'nvmeDoorbell', value: { index: event.index, value: event.value >>> 0, path: WRITE_PATHS[event.path], accepted: event.accepted } };
    case 'queue-created':
      return {
        $case: 'nvmeQueueCreated',
        value: { type: NVME_QUEUE_TYPES[event.queue], qid: event.qid, entries: event.entries, location: NVME_QUEUE_LOCATIONS[event.location] },
      };
    case 'queue-deleted':
      return { $case: 'nvmeQueueDeleted', value: { type: NVME_QUEUE_TYPES[event.queue], qid: event.qid } };
    case 'state':
      return { $case: 'nvmeStateChanged', value: { state: NVME_STATES[event.state], reason: event.reason } };
  }
}

/**
 * Whether a watch of `wanted` functions (empty: all) sees `event`: one of
 * them is its function, or, for a domain event, attached to the domain.
 */
export function eventConcerns(event: PciEvent, wanted: ReadonlySet<string>): boolean {
  if (wanted.size === 0 || wanted.has(event.bdf)) return true;
  return 'devices' in event && event.devices.some((bdf) => wanted.has(bdf));
}
