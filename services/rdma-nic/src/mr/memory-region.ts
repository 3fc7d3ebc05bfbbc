import type { DmaBufMemory, LocalGrant, MemoryWindow } from '../memory/memory';
import type { ProtectionDomain } from './protection-domain';

/**
 * What an MTT lookup gives: the views were pushed (true), the pages cannot
 * be had (false: a dma-buf revoked under the MR), or a page fault is under
 * way and the access must wait for it (the promise, which never rejects).
 */
export type Translation = boolean | Promise<void>;

/**
 * An ibv_mr: [iova, iova + length) of some memory under one lkey/rkey
 * (equal, as mlx5 hands them out). `translate` is the NIC's MTT lookup.
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

  /** Push views of [addr, addr + length), already bounds-checked, onto `out`. */
  abstract translate(addr: number, length: number, out: Uint8Array[]): Translation;

  /**
   * The NIC has written [addr, addr + length) through views translate()
   * gave, and the bytes are in place. Host memory has nobody to tell; a
   * dma-buf MR tells the exporter's device (DmaBufMemory.written).
   */
  written(_addr: number, _length: number): void {}

  /**
   * Where [addr, addr + length), already bounds-checked and translated, lies
   * in a dma-buf a peer NIC may be given; undefined when the memory is not
   * one (memory of tests, a dma-buf MR not mapped now).
   */
  grantRef(_addr: number): LocalGrant | undefined {
    return undefined;
  }
}

/** ibv_reg_mr_iova() on host memory: pinned at registration, always translatable. */
export class HostMemoryRegion extends MemoryRegion {
  readonly #memory: MemoryWindow;

  constructor(handle: number, pd: ProtectionDomain, key: number, iova: number, length: number, access: number, memory: MemoryWindow) {
    super(handle, pd, key, iova, length, access);
    this.#memory = memory;
  }

  /** The pinned memory the region covers. */
  get memory(): MemoryWindow {
    return this.#memory;
  }

  override translate(addr: number, length: number, out: Uint8Array[]): Translation {
    this.#memory.views(addr - this.iova, length, out);
    return true;
  }

  override grantRef(addr: number): LocalGrant | undefined {
    const grant = this.#memory.grant;
    return grant !== undefined ? { source: grant.source, offset: grant.base + (addr - this.iova) } : undefined;
  }
}

/**
 * ibv_reg_dmabuf_mr(): a dynamic importer, as mlx5's dma-buf MRs are ODP
 * MRs. Registration maps (ib_umem_dmabuf_map_pages()); move_notify
 * (mlx5_ib_dmabuf_invalidate_cb()) zaps the translation; the next access
 * faults (pagefault_dmabuf_mr()) and waits while the NIC maps again. A
 * fault that fails (the exporter revoked the buffer) fails every access
 * until the next move_notify, which is how an exporter announces that the
 * buffer is back.
 */
export class DmabufMemoryRegion extends MemoryRegion {
  readonly #dmabuf: DmaBufMemory;
  readonly #offset: number;
  #mapped = false;
  #maps = 0;
  /** Bumps on every invalidation: a fault that an invalidation overtook installs nothing. */
  #epoch = 0;
  #failedEpoch = -1;
  #fault: Promise<void> | undefined;

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

  /** ib_umem_dmabuf_map_pages() at registration; rejects with the exporter's error. */
  async mapAtRegistration(): Promise<void> {
    this.#maps++;
    await this.#dmabuf.map();
    this.#mapped = true;
  }

  /** move_notify: zap the MTT (mlx5r_umr_update_mr_pas(.., MLX5_IB_UPD_XLT_ZAP)); nothing reaches the memory from here on. */
  invalidate(): void {
    this.#mapped = false;
    this.#epoch++;
  }

  override written(addr: number, length: number): void {
    if (this.#mapped) this.#dmabuf.written(this.#offset + (addr - this.iova), length);
  }

  override grantRef(addr: number): LocalGrant | undefined {
    const source = this.#dmabuf.grant;
    return this.#mapped && source !== undefined ? { source, offset: this.#offset + (addr - this.iova) } : undefined;
  }

  override translate(addr: number, length: number, out: Uint8Array[]): Translation {
    if (this.#mapped) {
      this.#dmabuf.views(this.#offset + (addr - this.iova), length, out);
      return true;
    }
    if (this.#fault !== undefined) {
      return this.#fault;
    }
    if (this.#failedEpoch === this.#epoch) {
      return false;
    }
    return this.#startFault();
  }

  /** pagefault_dmabuf_mr(): map again; any refusal (ENODEV while revoked) fails the fault. */
  #startFault(): Promise<void> {
    const epoch = this.#epoch;
    this.#maps++;
    const fault = this.#dmabuf.map().then(
      () => {
        if (epoch === this.#epoch) {
          this.#mapped = true;
        }
      },
      () => {
        if (epoch === this.#epoch) {
          this.#failedEpoch = epoch;
        }
      },
    );
    this.#fault = fault.finally(() => {
      this.#fault = undefined;
    });
    return this.#fault;
  }
}
