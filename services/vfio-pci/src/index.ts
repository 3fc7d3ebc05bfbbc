/** @p2p/vfio-pci domain: the vfio-pci uAPI over injected PCI and dma-buf ports, and dma-buf export of BAR ranges with revocation. */

export {
  VfioPci,
  NO_FD,
  type VfioPciOptions,
  type FeaturePayload,
  type DeviceFeatureRequest,
  type DeviceFeatureResult,
  type DeviceListing,
  type DmaBufListing,
} from './vfio-pci';
export { DEFAULT_VARIANTS, type VfioPciVariants } from './variants';
export { Iommufd, type IommufdListing, type IommufdObjectListing, type AreaListing, type BindIommufdCmd, type AttachPtCmd } from './iommufd/iommufd';
export type { IommufdNode, IommufdPorts } from './iommufd/iommufd-ctx';
export { canonicalBdf, busOf } from './bdf';

// Ports
export type { PciPort, PciBar, PciFunctionInfo, BarKind, BarExtent, PowerState, ConfigWidth, MmioWidth } from './ports/pci-port';
export type { DmaBufPort, ExportDmaBufRequest, ExportedDmaBuf, MoveResult, CreatedFile, ResolvedFile } from './ports/dma-buf-port';
export { IOMMU_READ, IOMMU_WRITE, type IommuPort, type IommuTarget, type HostExtent } from './ports/iommu-port';
export type { UserMemoryPort, PinnedUserMemory, PinnedExtent } from './ports/user-memory-port';

// Results and arguments
export type { DeviceInfo, RegionInfo, SparseMmapArea } from './core/region-info';
export type { DmaBufExtent } from './dma-buf/exporter-ops';
export type { RevokeTrigger, DmaBufRevoke, RevokeListener } from './dma-buf/revoke-trigger';
export { encodeDmaBufFeature, KMALLOC_MAX_SIZE, type DmaBufFeature, type DmaRange } from './dma-buf/dma-buf-feature';
export { DMA_IOVA_USE_SWIOTLB } from './dma-buf/validate-ranges';

// uAPI constants
export * as vfioUapi from './uapi/vfio';
export * as pciRegs from './uapi/pci-regs';
export * as iommufdUapi from './uapi/iommufd';
export { O_RDONLY, O_WRONLY, O_RDWR, O_ACCMODE, O_NONBLOCK, O_CLOEXEC, DMA_BUF_KEPT_OPEN_FLAGS } from './uapi/fcntl';
export { PAGE_SIZE, U64_MAX } from './uapi/u64';

// Service
export { startVfioPci, VFIO_PCI_DEFAULTS } from './service';
