/** @p2p/pci-emu domain: emulated PCIe topology, config space, devices and the bus that owns them. */

// Topology
export { parseBdf, formatBdf, canonicalBdf, type Bdf } from './topology/bdf';
export {
  Topology,
  type AddressWindow,
  type HostBridge,
  type PcieSwitch,
  type NodeRole,
  type TopologyNode,
} from './topology/topology';
export {
  TopologySchema,
  MAX_BAR_SIZE,
  type TopologyInput,
  type TopologySpec,
  type FunctionSpec,
  type FunctionSpecOf,
  type FunctionKind,
  type GenericBarSpec,
  type AcsFlags,
} from './topology/topology-schema';
export { buildTopology } from './topology/build-topology';
export { parseTopology, loadTopologyFile, topologyFromObject, type TopologyFormat } from './topology/load-topology';
export { defaultTopology, DEFAULT_TOPOLOGY } from './topology/default-topology';
export { p2pDistance, type P2pDistance, type P2pHop, type P2pMapType } from './topology/p2p-distance';

// Config space
export * as pciRegs from './config-space/pci-regs';
export type { ConfigWidth } from './config-space/config-access';
export type { PciIds } from './config-space/type0-header';

// Devices
export type { BarMemory, BarMemoryFactory } from './devices/bar-memory';
export { HeapBarMemory, heapBarMemoryFactory } from './devices/heap-bar-memory';
export type { BarKind } from './devices/device-model';

// Bus
export { PciBus, type MmioReadResult, type BulkReadResult, type WriteResult } from './bus/pci-bus';
export type { ConfigWriteMode } from './bus/pci-function';
export type { FunctionInfo, BarInfo } from './bus/function-info';
export { MAX_BULK_LENGTH, type MmioWidth } from './bus/mmio-access';
export type {
  PciEvent,
  PciEventListener,
  PowerState,
  DecodeReason,
  ResetKind,
} from './bus/pci-events';

// Service
export { startPciEmu, PCI_EMU_DEFAULTS } from './service';
