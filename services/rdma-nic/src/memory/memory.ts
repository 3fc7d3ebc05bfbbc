/**
 * Host memory behind an ibv_reg_mr(): pinned, always present. `views`
 * pushes views of the backing store (no copy) so that each DMA is exactly
 * one copy between such views.
 */
export interface MemoryWindow {
  readonly length: number;
  /** The dma-buf the window lies in, from offset `base`, when a peer NIC may be given it. */
  readonly grant?: { readonly source: GrantSource; readonly base: number };
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
  /** The dma-buf itself, when a peer NIC may be given it. */
  readonly grant?: GrantSource;
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

/**
 * The dma-buf behind an MR, as a peer NIC on the same registry may be given
 * it so that the payload of a transfer moves once, straight between the two
 * MRs' memory (see link/grants.ts): the registry passes the holder's fd to
 * the peer (SCM_RIGHTS, a token only the peer can redeem), and the peer
 * attaches it as this NIC did, with this NIC's BDF, so that it reaches
 * exactly what this NIC reaches and hears every move_notify itself.
 */
export interface GrantSource {
  /** The process whose fd the MR was registered from, and that fd. */
  readonly holderPid: number;
  readonly fd: number;
  /** The buffer the fd must still name when the peer attaches it. */
  readonly bufferId: bigint;
  readonly size: number;
  /** The importing function: this NIC's BDF. */
  readonly importerBdf: string;
  /** The MR's memory was released (deregistered): nothing may be offered from it again. */
  readonly released: boolean;
  /** Calls `listener` once, when the memory is released; returns the unsubscribe. */
  onRelease(listener: () => void): () => void;
}

/** Where [addr, addr + length) of an MR lies in a grantable dma-buf. */
export interface LocalGrant {
  readonly source: GrantSource;
  readonly offset: number;
}
