/**
 * The vfio uAPI this model speaks, named and valued as in
 * include/uapi/linux/vfio.h so code and kernel source read side by side.
 */

/* struct vfio_device_info.flags (VFIO_DEVICE_GET_INFO). */
export const VFIO_DEVICE_FLAGS_RESET = 1 << 0;
export const VFIO_DEVICE_FLAGS_PCI = 1 << 1;

/* vfio-pci region indices (enum { VFIO_PCI_BAR0_REGION_INDEX, ... }). */
export const VFIO_PCI_BAR0_REGION_INDEX = 0;
export const VFIO_PCI_BAR5_REGION_INDEX = 5;
export const VFIO_PCI_ROM_REGION_INDEX = 6;
export const VFIO_PCI_CONFIG_REGION_INDEX = 7;
export const VFIO_PCI_VGA_REGION_INDEX = 8;
export const VFIO_PCI_NUM_REGIONS = 9;

/* vfio-pci IRQ indices: INTX, MSI, MSIX, ERR, REQ. */
export const VFIO_PCI_NUM_IRQS = 5;

/* struct vfio_region_info.flags. */
export const VFIO_REGION_INFO_FLAG_READ = 1 << 0;
export const VFIO_REGION_INFO_FLAG_WRITE = 1 << 1;
export const VFIO_REGION_INFO_FLAG_MMAP = 1 << 2;
export const VFIO_REGION_INFO_FLAG_CAPS = 1 << 3;
/** Capability id of struct vfio_region_info_cap_sparse_mmap. */
export const VFIO_REGION_INFO_CAP_SPARSE_MMAP = 1;

/** drivers/vfio/pci/vfio_pci_priv.h: a region's file offset is its index shifted by 40. */
export const VFIO_PCI_OFFSET_SHIFT = 40n;

/** VFIO_PCI_INDEX_TO_OFFSET(): where region `index` starts in the device fd. */
export function vfioPciIndexToOffset(index: number): bigint {
  return BigInt(index) << VFIO_PCI_OFFSET_SHIFT;
}

/* struct vfio_device_feature.flags (VFIO_DEVICE_FEATURE). */
export const VFIO_DEVICE_FEATURE_MASK = 0xffff;
export const VFIO_DEVICE_FEATURE_GET = 1 << 16;
export const VFIO_DEVICE_FEATURE_SET = 1 << 17;
export const VFIO_DEVICE_FEATURE_PROBE = 1 << 18;
/** offsetofend(struct vfio_device_feature, flags): argsz (u32) + flags (u32). */
export const VFIO_DEVICE_FEATURE_MINSZ = 8;

/* Feature numbers (the low 16 bits of flags). */
export const VFIO_DEVICE_FEATURE_PCI_VF_TOKEN = 0;
export const VFIO_DEVICE_FEATURE_MIGRATION = 1;
export const VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE = 2;
export const VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY = 3;
export const VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP = 4;
export const VFIO_DEVICE_FEATURE_LOW_POWER_EXIT = 5;
export const VFIO_DEVICE_FEATURE_DMA_LOGGING_START = 6;
export const VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP = 7;
export const VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT = 8;
export const VFIO_DEVICE_FEATURE_MIG_DATA_SIZE = 9;
export const VFIO_DEVICE_FEATURE_BUS_MASTER = 10;
export const VFIO_DEVICE_FEATURE_DMA_BUF = 11;

/** sizeof(struct vfio_device_low_power_entry_with_wakeup): s32 wakeup_eventfd, u32 reserved. */
export const VFIO_LOW_POWER_ENTRY_WITH_WAKEUP_SIZE = 8;

/** sizeof(struct vfio_device_feature_dma_buf): region_index, open_flags, flags, nr_ranges (u32 each). */
export const VFIO_DMA_BUF_FEATURE_SIZE = 16;
/** sizeof(struct vfio_region_dma_range): u64 offset, u64 length. */
export const VFIO_REGION_DMA_RANGE_SIZE = 16;
/**
 * sizeof the single-range struct of the series' first revisions (the
 * 'single' layout): u32 region_index, u32 open_flags, u64 offset, u64 length.
 */
export const VFIO_DMA_BUF_SINGLE_FEATURE_SIZE = 24;

/* VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_DETACH_IOMMUFD_PT flags. */
export const VFIO_DEVICE_BIND_FLAG_TOKEN = 1 << 0;
export const VFIO_DEVICE_ATTACH_PASID = 1 << 0;
export const VFIO_DEVICE_DETACH_PASID = 1 << 0;

/** VFIO_GET_API_VERSION's answer. */
export const VFIO_API_VERSION = 0;

/* VFIO_CHECK_EXTENSION / VFIO_SET_IOMMU arguments. */
export const VFIO_TYPE1_IOMMU = 1;
export const VFIO_SPAPR_TCE_IOMMU = 2;
export const VFIO_TYPE1v2_IOMMU = 3;
export const VFIO_DMA_CC_IOMMU = 4;
export const VFIO_EEH = 5;
/** __VFIO_RESERVED_TYPE1_NESTING_IOMMU. */
export const VFIO_RESERVED_TYPE1_NESTING_IOMMU = 6;
export const VFIO_SPAPR_TCE_v2_IOMMU = 7;
export const VFIO_NOIOMMU_IOMMU = 8;
export const VFIO_UNMAP_ALL = 9;
export const VFIO_UPDATE_VADDR = 10;

/* struct vfio_iommu_type1_dma_map.flags. */
export const VFIO_DMA_MAP_FLAG_READ = 1 << 0;
export const VFIO_DMA_MAP_FLAG_WRITE = 1 << 1;
export const VFIO_DMA_MAP_FLAG_VADDR = 1 << 2;
/** sizeof(struct vfio_iommu_type1_dma_map): argsz, flags, vaddr, iova, size. */
export const VFIO_DMA_MAP_MINSZ = 32;

/* struct vfio_iommu_type1_dma_unmap.flags. */
export const VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1 << 0;
export const VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1;
export const VFIO_DMA_UNMAP_FLAG_VADDR = 1 << 2;
/** offsetofend(struct vfio_iommu_type1_dma_unmap, size). */
export const VFIO_DMA_UNMAP_MINSZ = 24;

/* struct vfio_iommu_type1_info. */
export const VFIO_IOMMU_INFO_PGSIZES = 1 << 0;
export const VFIO_IOMMU_INFO_CAPS = 1 << 1;
/** offsetofend(struct vfio_iommu_type1_info, iova_pgsizes). */
export const VFIO_IOMMU_INFO_MINSZ = 16;
/** sizeof(struct vfio_iommu_type1_info): where the capability chain starts. */
export const VFIO_IOMMU_INFO_SIZE = 24;
/** struct vfio_iommu_type1_info_cap_iova_range: header, nr_iovas, reserved, then 16 bytes a range. */
export const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1;
export const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE_HEADER_SIZE = 16;
export const VFIO_IOVA_RANGE_SIZE = 16;
/** struct vfio_iommu_type1_info_dma_avail: header, avail (12 bytes). */
export const VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3;
export const VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL_SIZE = 12;
