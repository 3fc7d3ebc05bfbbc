import { ErrnoError } from '@p2p/errno';
import type { DmaBufMemory, MemoryWindow } from '../memory/memory';
import type { ProtectionDomain } from './protection-domain';

/**
 * An ibv_mr: [iova, iova + length) of some memory under one lkey/rkey
 * (equal, as mlx5 hands them out). `translate` is the NIC's MTT lookup;
 * it returns undefined when the translation cannot be had (a dma-buf
 * revoked under it), which the caller turns into a completion error.
 */
export abstract class MemoryRegion {
  constructor(
    readonly handle: number,
    readonly pd: ProtectionDomain,
    readonly key: number,
    readonly iova: number,
    readonly length: number,
    readonly access: number,
  ) {}

  get lkey(): number {
    return this.key;
  }

  get rkey(): number {
    return this.key;
  }

  /** [addr, addr + length) lies within the region. */
  contains(addr: number, length: number): boolean {
    return addr >= this.iova && length >= 0 && addr + length <= this.iova + this.length;
  }

  /** A view of [addr, addr + length), already bounds-checked; undefined when the pages cannot be had. */
  abstract translate(addr: number, length: number): Uint8Array | undefined;
}

/** ibv_reg_mr_iova() on host memory: pinned at registration, always translatable. */
export class HostMemoryRegion extends MemoryRegion {
  readonly #memory: MemoryWindow;

  constructor(handle: number, pd: ProtectionDomain, key: number, iova: number, length: number, access: number, memory: MemoryWindow) {
    super(handle, pd, key, iova, length, access);
    this.#memory = memory;
  }

  override translate(addr: number, length: number): Uint8Array {
    return this.#memory.bytes(addr - this.iova, length);
  }
}

/**
 * ibv_reg_dmabuf_mr(): a dynamic importer, as mlx5's dma-buf MRs are ODP
 * MRs. Registration maps (ib_umem_dmabuf_map_pages()); move_notify
 * (mlx5_ib_dmabuf_invalidate_cb()) zaps the translation; the next access
 * faults (pagefault_dmabuf_mr()) and maps again, which fails while the
 * exporter has the buffer revoked.
 */
export class DmabufMemoryRegion extends MemoryRegion {
  readonly #dmabuf: DmaBufMemory;
  readonly #offset: number;
  #mapped = false;
  #maps = 0;

  constructor(
    handle: number,
    pd: ProtectionDomain,
    key: number,
    iova: number,
    length: number,
    access: number,
    dmabuf: DmaBufMemory,
    offset: number,
  ) {
    super(handle, pd, key, iova, length, access);
    this.#dmabuf = dmabuf;
    this.#offset = offset;
  }

  /** Whether the MTT currently holds a translation. */
  get mapped(): boolean {
    return this.#mapped;
  }

  /** dma_buf_map_attachment() calls made: the one at registration plus one per fault. */
  get maps(): number {
    return this.#maps;
  }

  /** ib_umem_dmabuf_map_pages() at registration; throws the exporter's error (ib_umem_dmabuf_get_pinned-style failure). */
  mapAtRegistration(): void {
    this.#maps++;
    this.#dmabuf.map();
    this.#mapped = true;
  }

  /** move_notify: zap the MTT (mlx5r_umr_update_mr_pas(.., MLX5_IB_UPD_XLT_ZAP)) and unmap. */
  invalidate(): void {
    this.#mapped = false;
  }

  override translate(addr: number, length: number): Uint8Array | undefined {
    if (!this.#mapped && !this.#fault()) {
      return undefined;
    }
    return this.#dmabuf.bytes(this.#offset + (addr - this.iova), length);
  }

  /** pagefault_dmabuf_mr(): map again; a revoked buffer fails the fault. */
  #fault(): boolean {
    this.#maps++;
    try {
      this.#dmabuf.map();
    } catch (error) {
      if (error instanceof ErrnoError) {
        return false;
      }
      throw error;
    }
    this.#mapped = true;
    return true;
  }
}
