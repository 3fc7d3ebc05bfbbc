/**
 * Host memory behind an ibv_reg_mr(): pinned, always present. `bytes`
 * returns a view of the backing store (no copy) so that each DMA is exactly
 * one copy, `target.set(source)`, between two such views.
 */
export interface MemoryWindow {
  readonly length: number;
  /** A view of [offset, offset + length); the caller checked the bounds. */
  bytes(offset: number, length: number): Uint8Array;
}

/**
 * The NIC's dynamic attachment to a dma-buf (ib_umem_dmabuf with
 * dma_buf_dynamic_attach_ops): `map` is dma_buf_map_attachment(), which
 * throws an ErrnoError (ENODEV) while the exporter has the buffer revoked;
 * `bytes` views the mapped memory and is called only after a successful map.
 */
export interface DmaBufMemory {
  readonly size: number;
  map(): void;
  bytes(offset: number, length: number): Uint8Array;
}
