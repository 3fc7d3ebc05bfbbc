/** @p2p/pci-emu domain: emulated PCIe topology, config space, devices, the bus that owns them and the IOMMU their DMA goes through. */

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
export type { BarKind, BarWritePath } from './devices/device-model';

export {
  DMA_SRC_IOVA,
  DMA_DST_IOVA,
  DMA_LEN,
  DMA_DOORBELL,
  DMA_STATUS,
  DMA_ERROR,
  DMA_FAULT_IOVA,
  DMA_ENGINE_BASE,
  DMA_ENGINE_END,
  DMA_DOORBELL_START,
  DMA_MAX_LENGTH,
  DMA_STATUS_IDLE,
  DMA_STATUS_BUSY,
  DMA_STATUS_DONE,
  DMA_STATUS_ERROR,
  DMA_ERRORS,
  type DmaErrorName,
  type DmaOutcome,
  type DmaRequest,
  type DmaPort,
} from './devices/dma-engine';
export {
  DMA_RING_BASE,
  DMA_RING_SIZE,
  DMA_RING_CTRL,
  DMA_RING_CTRL_ENABLE,
  DMA_RING_HEAD,
  DMA_RING_TAIL,
  DMA_RING_STATUS,
  DMA_RING_ERROR,
  DMA_RING_FAULT_IOVA,
  DMA_RING_STATUS_DISABLED,
  DMA_RING_STATUS_ACTIVE,
  DMA_RING_STATUS_HALTED,
  DMA_RING_MAX_ENTRIES,
  DMA_DESCRIPTOR_SIZE,
  DMA_DESC_COMPLETION,
  DMA_COMPLETION_SIZE,
  encodeDmaDescriptor,
  decodeDmaCompletion,
  type DmaCompletionRecord,
} from './devices/dma-ring';

// IOMMU
export {
  Iommu,
  MAX_IOMMU_DOMAINS,
  MAX_DOMAIN_MAPPINGS,
  MAX_HOST_EXTENTS,
  type DmaAccess,
  type IommuDomainInfo,
  type IommuPiece,
} from './iommu/iommu';
export { IOMMU_PAGE_SIZE, IOMMU_READ, IOMMU_WRITE, IOVA_APERTURE_END, MSI_WINDOW } from './iommu/iova';
export { IommuFault, type IommuFaultReason, type IommuFaultRecord } from './iommu/iommu-fault';
export { HostSegmentCache, type HostMemory, type HostSegment, type HostSegmentCacheOptions } from './iommu/host-memory';
export type { HostExtent, IommuMapping, MappingTarget } from './iommu/iommu-mapping';

// Bus
export { PciBus, type PciBusOptions, type MmioReadResult, type BulkReadResult, type WriteResult, type BarMemorySpan } from './bus/pci-bus';
export type { ConfigWriteMode } from './bus/pci-function';
export type { FunctionInfo, BarInfo } from './bus/function-info';
export { MAX_BULK_LENGTH, type MmioWidth } from './bus/mmio-access';
export type { MmioAccessCount } from './bus/mmio-tally';
export type {
  PciEvent,
  PciEventListener,
  PowerState,
  DecodeReason,
  ResetKind,
} from './bus/pci-events';

// Service
export { startPciEmu, PCI_EMU_DEFAULTS } from './service';

// The NVMe controller's command engine, and the NVMe specification's registers, commands and statuses
export * from './devices/nvme/index';
