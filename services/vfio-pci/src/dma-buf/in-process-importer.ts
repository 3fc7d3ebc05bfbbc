/**
 * An importer of a vfio dma-buf inside vfio-pci itself (iommufd, whose
 * IOMMU_IOAS_MAP_FILE imports the buffer): it holds the buffer, as
 * dma_buf_get() and dma_buf_dynamic_attach() do, and hears every move
 * directly, not through the registry.
 */
export interface InProcessImporter {
  /**
   * dma_buf_attach_ops.move_notify: resolves once the importer no longer
   * reaches the buffer's memory. Never rejects: the move it answers cannot
   * be undone.
   */
  moveNotify(): Promise<void>;
}
