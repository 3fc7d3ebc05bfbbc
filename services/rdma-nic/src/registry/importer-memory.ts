import type { DmaBufImporter } from '@p2p/dmabuf-client';
import { errno } from '@p2p/errno';
import { dmabuf } from '@p2p/proto';
import { PCI_EMU_SEGMENT_PREFIX, type WriteNoticeClient } from '@p2p/shm';
import type { DmaBufMemory, GrantSource, MemoryWindow } from '../memory/memory';

/**
 * Host memory behind an ibv_reg_mr(): [base, base + length) of a mapped
 * system-heap dma-buf. The heap never moves its buffers, so the mapping made
 * at registration stays (ib_umem_get()'s pinned pages); only the loss of the
 * registry session drops it, and then no view is handed out.
 */
export class ImporterWindow implements MemoryWindow {
  readonly length: number;
  readonly grant: { readonly source: GrantSource; readonly base: number } | undefined;
  readonly #importer: DmaBufImporter;
  readonly #base: number;

  constructor(importer: DmaBufImporter, base: number, length: number, grant?: GrantSource) {
    this.#importer = importer;
    this.#base = base;
    this.length = length;
    this.grant = grant !== undefined ? { source: grant, base } : undefined;
  }

  views(offset: number, length: number, out: Uint8Array[]): void {
    if (!this.#importer.views(this.#base + offset, length, out)) {
      throw errno('ENODEV', `host memory of buffer ${this.#importer.bufferId} is no longer mapped (the registry session ended)`);
    }
  }
}

/**
 * The NIC's dynamic attachment to a dma-buf (ib_umem_dmabuf): map() is the
 * fault path's dma_buf_map_attachment(), which the exporter refuses while it
 * has the buffer revoked (ENODEV); views() reads the mapping the importer
 * holds, which move_notify drops; written() sends a write notice for each
 * BAR segment the NIC wrote into.
 */
export class ImporterDmaBuf implements DmaBufMemory {
  readonly size: number;
  readonly grant: GrantSource | undefined;
  readonly #importer: DmaBufImporter;
  readonly #notices: WriteNoticeClient;

  constructor(importer: DmaBufImporter, notices: WriteNoticeClient, grant?: GrantSource) {
    this.#importer = importer;
    this.#notices = notices;
    this.size = importer.size;
    this.grant = grant;
  }

  /**
   * The NIC moves bytes by memcpy between mapped segments; the streamed
   * fallback (no tmpfs shared with the exporter) gives it nothing to copy
   * between, so such a mapping is refused.
   */
  async map(): Promise<void> {
    const mapping = await this.#importer.map();
    if (mapping.transport !== dmabuf.Transport.TRANSPORT_SHARED_MEMORY) {
      throw errno(
        'EOPNOTSUPP',
        `buffer ${this.#importer.bufferId} is reachable only through the registry's streamed fallback: ` +
          "this NIC shares no tmpfs with the buffer's exporter, and it DMAs only between shared-memory mappings (set P2P_SHM_DIR to the exporter's segment directory)",
      );
    }
  }

  /**
   * The domain asks only between a resolved map() and the next invalidation;
   * a mapping gone anyway (fenced, session lost) is ENODEV rather than a view
   * of memory the exporter may have moved.
   */
  views(offset: number, length: number, out: Uint8Array[]): void {
    if (!this.#importer.views(offset, length, out)) {
      throw errno('ENODEV', `buffer ${this.#importer.bufferId} is not mapped (revoked, fenced or detached)`);
    }
  }

  /**
   * A posted write's notice to pci-emu, for each piece of the range in a
   * BAR's segments (a dma-buf of device memory), so the device notices a
   * doorbell rung by RDMA WRITE as it notices an MmioWrite. Other
   * exporters' segments (a heap buffer, say) have no device to tell.
   */
  written(offset: number, length: number): void {
    this.#importer.segments(offset, length, this.#notify);
  }

  readonly #notify = (segment: string, segmentOffset: number, length: number): void => {
    if (segment.startsWith(PCI_EMU_SEGMENT_PREFIX)) this.#notices.notify(segment, segmentOffset, length);
  };
}

/**
 * An MR's dma-buf as a peer NIC may be given it (GrantSource): the holder's
 * fd as it was registered, released when the MR is.
 */
export class ImportGrant implements GrantSource {
  readonly holderPid: number;
  readonly fd: number;
  readonly bufferId: bigint;
  readonly size: number;
  readonly importerBdf: string;
  #released = false;
  readonly #listeners = new Set<() => void>();

  constructor(holderPid: number, fd: number, importer: DmaBufImporter, importerBdf: string) {
    this.holderPid = holderPid;
    this.fd = fd;
    this.bufferId = importer.bufferId;
    this.size = importer.size;
    this.importerBdf = importerBdf;
  }

  get released(): boolean {
    return this.#released;
  }

  onRelease(listener: () => void): () => void {
    if (this.#released) {
      listener();
      return () => undefined;
    }
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    for (const listener of [...this.#listeners]) listener();
    this.#listeners.clear();
  }
}
