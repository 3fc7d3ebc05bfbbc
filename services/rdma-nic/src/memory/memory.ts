/**
 * Host memory behind an ibv_reg_mr(): pinned, always present. `views`
 * pushes views of the backing store (no copy) so that each DMA is exactly
 * one copy between such views.
 */
export interface MemoryWindow {
  readonly length: number;
  /** Push views covering [offset, offset + length) onto `out`; the caller checked the bounds. */
  views(offset: number, length: number, out: Uint8Array[]): void;
}

/**
 * The NIC's dynamic attachment to a dma-buf (ib_umem_dmabuf with
 * dma_buf_dynamic_attach_ops): `map` is dma_buf_map_attachment(), which
 * rejects with an ErrnoError (ENODEV) while the exporter has the buffer
 * revoked; `views` reaches the mapped memory and is called only between a
 * resolved map() and the next invalidation of the MR.
 */
export interface DmaBufMemory {
  readonly size: number;
  map(): Promise<void>;
  views(offset: number, length: number, out: Uint8Array[]): void;
  /**
   * The NIC wrote [offset, offset + length) through the views and the bytes
   * are in place: the exporter's device hears of it, as a device hears the
   * posted writes a NIC's DMA makes into its BAR (a write notice, for BAR
   * memory in pci-emu's segments). Never throws, never waits.
   */
  written(offset: number, length: number): void;
}
