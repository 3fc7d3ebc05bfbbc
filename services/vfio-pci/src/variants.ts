/**
 * The behaviours that differ between the revisions of the dma-buf series and
 * the seed's patches. Chosen for the whole service at start and per device at
 * bind.
 */
export interface VfioPciVariants {
  /**
   * The VFIO_DEVICE_FEATURE_DMA_BUF argument: 'ranges' (the merged uAPI,
   * struct vfio_device_feature_dma_buf with nr_ranges dma_ranges[]) or
   * 'single' (the first revisions: region_index, open_flags, one u64 offset
   * and length; offset and length both 0 mean the whole BAR).
   */
  readonly dmaBufLayout: 'ranges' | 'single';
  /**
   * Pinned (static) importers: false is upstream (no ->pin: EOPNOTSUPP);
   * true is the seed's patch 4, where they may pin and VFIO_DEVICE_RESET and
   * the hot reset fail with EINVAL while any buffer is pinned.
   */
  readonly allowPin: boolean;
  /** CPU access (dma-buf mmap) to exported buffers: off upstream. */
  readonly cpuMmap: boolean;
  /**
   * The driver can export (pci_ops->get_dmabuf_phys is set): true for
   * vfio-pci; false models a variant driver that cannot (EOPNOTSUPP).
   */
  readonly dmaBufExport: boolean;
}

export const DEFAULT_VARIANTS: VfioPciVariants = {
  dmaBufLayout: 'ranges',
  allowPin: false,
  cpuMmap: false,
  dmaBufExport: true,
};
