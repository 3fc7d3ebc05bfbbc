import { errno, ErrnoError } from '@p2p/errno';
import { dmabuf } from '@p2p/proto';
import { callNotTaken, resendUntilTaken } from '@p2p/rpc';
import { checkRange, SegmentStore } from '@p2p/shm';
import { readAttachmentInto, type StreamTarget, writeAttachmentFrom } from './attachment-stream';
import { asErrnoError } from './errors';
import type { SessionPort } from './session-port';
import { SharedMapping } from './shared-mapping';
import { toSafeNumber } from './u64';

/** A move_notify as the importer's hook sees it: ack `notificationId` before `timeoutMs` or be fenced. */
export type MoveNotice = Readonly<dmabuf.MoveNotify>;

/** RegistrySession.importDmaBuf's options: what ibv_reg_dmabuf_mr() passes down to ib_umem_dmabuf_get(). */
export interface ImportDmaBufOptions {
  /** The dma-buf fd, in the fd table of holderPid. */
  readonly fd: number;
  /** The process holding fd (the caller of ibv_reg_dmabuf_mr); default the importing session's own pid. */
  readonly holderPid?: number;
  /** The importing PCI function, for P2P eligibility; '' for a CPU importer. */
  readonly importerBdf: string;
  /** The importer can reach device memory peer to peer (attach->peer2peer); default true. */
  readonly peer2peer?: boolean;
  /**
   * Runs on every move_notify after the importer stopped and dropped its
   * mapping and before the ack: the driver's chance to quiesce what the
   * library cannot see (queued work requests, say). The ack waits for a
   * returned promise; past notice.timeoutMs the attachment is fenced.
   * It must not access the buffer through this importer and wait for that:
   * the fault would wait for the reservation lock, which the move holds until
   * this very ack (the kernel calls move_notify under dma_resv_lock too), so
   * the importer would be fenced.
   */
  readonly onMoveNotify?: (notice: MoveNotice) => void | Promise<void>;
  /**
   * Ack every move_notify once the hook returned (default true). With false
   * the owner of the importer acks through ackMoveNotify(), or never (and is
   * fenced): a frozen process, for tests.
   */
  readonly autoAck?: boolean;
}

/**
 * Where the importer reaches the bytes: the shared segments (mapped here) or
 * the streamed fallback, how the device would reach them (p2pdma's map type),
 * and the scatter list with the DMA addresses the device would put on the bus.
 */
export interface MappingInfo {
  readonly transport: dmabuf.Transport;
  readonly mapType: dmabuf.DmaMapType;
  /** Bumps on every map of the attachment: a mapping of an older generation is stale. */
  readonly generation: bigint;
  readonly extents: readonly dmabuf.Extent[];
}

/**
 * attached: usable. fenced: it did not ack a move_notify in time; the
 * registry detached it. detached: by detach(). session-ended: its session was
 * lost or closed.
 */
export type ImporterState = 'attached' | 'fenced' | 'detached' | 'session-ended';

interface Mapping {
  readonly info: MappingInfo;
  /** The mapped views; undefined for the streamed fallback. */
  readonly shared: SharedMapping | undefined;
}

/**
 * A dynamic importer of one dma-buf, as the kernel's ib_umem_dmabuf with ODP:
 * attached with move_notify (dma_buf_dynamic_attach), mapped lazily on first
 * access and again after every invalidation (the page-fault path,
 * ib_umem_dmabuf_map_pages), and invalidated by the exporter's
 * dma_buf_move_notify(): stop, unmap, ack. While the buffer is revoked a
 * fault fails with ENODEV.
 *
 * With TRANSPORT_SHARED_MEMORY the segments are opened from this process's
 * own segment directory (equal tmpfs identities mean the same files, even
 * under another path in another container) and every access is one memcpy
 * between the caller's buffer and the mapped views. With TRANSPORT_STREAM
 * (no shared tmpfs) access goes through ReadAttachment and WriteAttachment.
 *
 * Fail-safe: once fenced, detached or its session is gone, the importer
 * holds no view of the memory and every access rejects (ENODEV, EBADF,
 * ESHUTDOWN) without touching it. Every failure is an ErrnoError.
 *
 * Made by RegistrySession.importDmaBuf().
 */
export class DmaBufImporter {
  readonly attachmentId: bigint;
  readonly bufferId: bigint;
  readonly size: number;
  readonly #port: SessionPort;
  readonly #onMoveNotify: ImportDmaBufOptions['onMoveNotify'];
  readonly #autoAck: boolean;
  readonly #unroute: () => void;
  #store: SegmentStore | undefined;
  #state: 'attached' | 'fenced' | 'detached' = 'attached';
  /** Why every access fails once fenced or detached. */
  #ended: ErrnoError | undefined;
  #mapping: Mapping | undefined;
  #faulting: Promise<void> | undefined;
  /** Bumps on every invalidation, so a map answer that an invalidation overtook is not installed. */
  #epoch = 0;

  constructor(port: SessionPort, attached: dmabuf.AttachResponse, options: ImportDmaBufOptions) {
    this.#port = port;
    this.attachmentId = attached.attachmentId;
    this.bufferId = attached.bufferId;
    this.size = toSafeNumber(attached.size, `size of buffer ${attached.bufferId}`);
    this.#onMoveNotify = options.onMoveNotify;
    this.#autoAck = options.autoAck ?? true;
    this.#unroute = port.route(this.attachmentId, {
      moveNotify: (notice) => this.#moveNotify(notice),
      fenced: () => this.#fenced(),
      sessionEnded: () => this.#invalidate(),
    });
  }

  get state(): ImporterState {
    return this.#port.usable() ? this.#state : 'session-ended';
  }

  /** True while a mapping is installed (between a fault and the next invalidation). */
  get mapped(): boolean {
    return this.#mapping !== undefined;
  }

  /** Maps now if not mapped (MapAttachment) and describes the mapping. */
  map(): Promise<MappingInfo> {
    return this.#access((mapping) => mapping.info);
  }

  /** A copy of [offset, offset + length) of the buffer. */
  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(offset, length, this.size, `read of buffer ${this.bufferId}`);
    // Unsafe is fine: copyToBuffer fills every byte or fails, and then out is dropped.
    const out = Buffer.allocUnsafe(length);
    await this.copyToBuffer(offset, out);
    return out;
  }

  /** Writes data into the buffer at offset. */
  write(offset: number, data: Uint8Array): Promise<void> {
    return this.copyFromBuffer(offset, data);
  }

  /**
   * memcpy of `length` bytes from the buffer at `offset` into `target` at
   * `targetOffset`: with shared memory, one copy straight out of the mapped
   * views, made synchronously right after the mapping was checked valid.
   */
  async copyToBuffer(offset: number, target: Uint8Array, targetOffset = 0, length = target.length - targetOffset): Promise<void> {
    checkRange(targetOffset, length, target.length, 'copy into the target buffer');
    checkRange(offset, length, this.size, `copy from buffer ${this.bufferId}`);
    const into = target.subarray(targetOffset, targetOffset + length);
    await this.#access((mapping) =>
      mapping.shared !== undefined ? mapping.shared.copyOut(offset, into) : this.#streamed(readAttachmentInto(this.#streamTarget(), offset, into, 0, length), 'ReadAttachment'),
    );
  }

  /** memcpy of `length` bytes from `source` at `sourceOffset` into the buffer at `offset` (see copyToBuffer). */
  async copyFromBuffer(offset: number, source: Uint8Array, sourceOffset = 0, length = source.length - sourceOffset): Promise<void> {
    checkRange(sourceOffset, length, source.length, 'copy from the source buffer');
    checkRange(offset, length, this.size, `copy into buffer ${this.bufferId}`);
    const from = source.subarray(sourceOffset, sourceOffset + length);
    await this.#access((mapping) =>
      mapping.shared !== undefined ? mapping.shared.copyIn(offset, from) : this.#streamed(writeAttachmentFrom(this.#streamTarget(), offset, from), 'WriteAttachment'),
    );
  }

  /**
   * The mapped shared-memory views of [offset, offset + length), pushed onto
   * `out` in buffer order, without faulting and without yielding: false, with
   * nothing pushed, when no mapping is installed (never mapped, invalidated
   * by move_notify, fenced, detached, session gone) or the mapping is the
   * streamed fallback. For a device's synchronous DMA out of the mapping it
   * already holds (an RDMA NIC's MTT, ib_umem_dmabuf's sg_table): the views
   * stay valid until the next move_notify, which the device hears in its
   * onMoveNotify hook. A range past the buffer throws (ERANGE).
   */
  views(offset: number, length: number, out: Uint8Array[]): boolean {
    // The range is checked inline, and the message built only for a bad one: this runs for every DMA.
    if (!(offset >= 0 && length >= 0 && offset + length <= this.size && Number.isSafeInteger(offset) && Number.isSafeInteger(length))) {
      checkRange(offset, length, this.size, `views of buffer ${this.bufferId}`);
    }
    const shared = this.#mapping?.shared;
    if (shared === undefined || this.state !== 'attached') return false;
    shared.views(offset, length, out);
    return true;
  }

  /**
   * The segment files behind [offset, offset + length) of the installed
   * mapping, as visit(segment, segmentOffset, length) in buffer order,
   * without faulting: false, with no visit, when no shared-memory mapping is
   * installed (as for views()). For a device that wrote through its views
   * and tells the segments' owner so (a write notice). A range past the
   * buffer throws (ERANGE).
   */
  segments(offset: number, length: number, visit: (segment: string, segmentOffset: number, length: number) => void): boolean {
    checkRange(offset, length, this.size, `segments of buffer ${this.bufferId}`);
    const shared = this.#mapping?.shared;
    if (shared === undefined || this.state !== 'attached') return false;
    shared.segments(offset, length, visit);
    return true;
  }

  /** Drops the mapping here and in the registry (UnmapAttachment); the next access maps again. */
  async unmap(): Promise<void> {
    // Let a map in flight land first, so that this unmap is the last word.
    await this.#faulting?.catch(() => undefined);
    this.#check();
    if (this.#mapping === undefined) return;
    this.#invalidate();
    await this.#unmapInRegistry();
  }

  /**
   * Drops the mapping and detaches (Detach, ib_umem_dmabuf_release). A fenced
   * importer was detached by the registry already: this only retires it.
   */
  async detach(): Promise<void> {
    this.#port.check();
    const wasFenced = this.#state === 'fenced';
    // A second detach is EBADF.
    if (!wasFenced) this.#check();
    this.#state = 'detached';
    this.#ended = errno('EBADF', `attachment ${this.attachmentId} of buffer ${this.bufferId} was detached`);
    this.#invalidate();
    this.#unroute();
    if (wasFenced) return;
    try {
      await this.#detachCall();
    } catch (error) {
      if (!callNotTaken(error)) throw error;
      // dma_buf_detach() cannot fail: a registry that did not take it hears it again until it does (or the
      // session ends, which releases every attachment of it).
      void resendUntilTaken(() => this.#detachCall(), () => this.#port.usable());
    }
  }

  #detachCall(): Promise<unknown> {
    return this.#call('detach', () => this.#port.registry.detach({ pid: this.#port.pid, attachmentId: this.attachmentId }));
  }

  /**
   * dma_buf_pin(): the exporter keeps the memory where it is until unpin()
   * (counted). EOPNOTSUPP unless the exporter allows pinning.
   */
  async pin(): Promise<void> {
    this.#check();
    await this.#call('pin', () => this.#port.registry.pinAttachment({ pid: this.#port.pid, attachmentId: this.attachmentId }));
  }

  /** dma_buf_unpin(): undoes one pin(). EINVAL if not pinned. */
  async unpin(): Promise<void> {
    this.#check();
    await this.#call('unpin', () => this.#port.registry.unpinAttachment({ pid: this.#port.pid, attachmentId: this.attachmentId }));
  }

  /** AckMoveNotify: the mapping of `notice` is gone. Done by the importer itself unless autoAck is false. */
  async ackMoveNotify(notice: MoveNotice): Promise<void> {
    this.#check();
    await this.#call('ack move_notify', () => this.#port.registry.ackMoveNotify({ pid: this.#port.pid, notificationId: notice.notificationId }));
  }

  /**
   * Runs `use` on a valid mapping, faulting one in first if needed. Nothing
   * yields between the validity check and `use` (for shared memory a
   * synchronous memcpy), so no move_notify can land in between: JS's single
   * thread stands in for the dma_resv lock the kernel's fault path holds.
   */
  async #access<T>(use: (mapping: Mapping) => T): Promise<T> {
    for (;;) {
      this.#check();
      const mapping = this.#mapping;
      if (mapping !== undefined) return use(mapping);
      await (this.#faulting ??= this.#fault());
    }
  }

  /** MapAttachment and install the result: ib_umem_dmabuf_map_pages(). */
  async #fault(): Promise<void> {
    const epoch = this.#epoch;
    try {
      const response = await this.#mapAttachment();
      // A notice that arrived while the map was in flight may have made its
      // extents stale (the answer comes on its own call, the notice on the
      // session stream): install nothing and let #access fault again.
      if (epoch === this.#epoch) this.#mapping = this.#install(response);
    } finally {
      this.#faulting = undefined;
    }
  }

  /**
   * MapAttachment. The registry keeps one mapping per attachment and refuses
   * a second with EBUSY; since this importer holds none while it faults, a
   * mapping the registry still has is one it discarded (see #fault) or could
   * not install, and it is given back before mapping again.
   */
  async #mapAttachment(): Promise<dmabuf.MapAttachmentResponse> {
    const map = (): Promise<dmabuf.MapAttachmentResponse> =>
      this.#call('map', () => this.#port.registry.mapAttachment({ pid: this.#port.pid, attachmentId: this.attachmentId }));
    try {
      return await map();
    } catch (error) {
      if (!(error instanceof ErrnoError && error.errno === 'EBUSY')) throw error;
      await this.#unmapInRegistry();
      return map();
    }
  }

  async #unmapInRegistry(): Promise<void> {
    await this.#call('unmap', () => this.#port.registry.unmapAttachment({ pid: this.#port.pid, attachmentId: this.attachmentId }));
  }

  #install(response: dmabuf.MapAttachmentResponse): Mapping {
    const info: MappingInfo = { transport: response.transport, mapType: response.mapType, generation: response.generation, extents: response.extents };
    switch (response.transport) {
      case dmabuf.Transport.TRANSPORT_SHARED_MEMORY:
        // Our own directory, not response.directory: that is the owner's
        // path, which may differ from ours across containers.
        this.#store ??= new SegmentStore({ dir: this.#port.shmDir });
        return { info, shared: SharedMapping.open(this.#store, response.extents, this.size) };
      case dmabuf.Transport.TRANSPORT_STREAM:
        return { info, shared: undefined };
      default:
        throw errno('EIO', `map of attachment ${this.attachmentId} answered unknown transport ${response.transport}`);
    }
  }

  /**
   * dma_buf_move_notify() reaching the importer (ib_umem_dmabuf's
   * invalidate): stop and drop the mapping now, synchronously, so no access
   * starts on it; then the hook, then the ack.
   */
  #moveNotify(notice: MoveNotice): void {
    this.#invalidate();
    void this.#finishMove(notice);
  }

  async #finishMove(notice: MoveNotice): Promise<void> {
    if (this.#onMoveNotify !== undefined) {
      try {
        await this.#onMoveNotify(notice);
      } catch (error) {
        this.#port.reportError(error);
      }
    }
    // Once fenced, detached or cut off, the ack is moot.
    if (this.#autoAck && this.state === 'attached') this.#port.ackOnStream(notice.notificationId);
  }

  /** The registry fenced this attachment: it is detached and its memory moved elsewhere. */
  #fenced(): void {
    this.#state = 'fenced';
    this.#ended = errno(
      'ENODEV',
      `attachment ${this.attachmentId} of buffer ${this.bufferId} was fenced: it did not ack move_notify in time, ` +
        'so the registry detached it and moved the memory; import the buffer again',
    );
    this.#invalidate();
    this.#unroute();
  }

  /** Drops the mapping: no view of the memory remains, and a map in flight will not be installed. */
  #invalidate(): void {
    this.#epoch++;
    const mapping = this.#mapping;
    this.#mapping = undefined;
    mapping?.shared?.close();
  }

  #check(): void {
    this.#port.check();
    if (this.#ended !== undefined) throw this.#ended;
  }

  async #call<Res>(what: string, call: () => Promise<Res>): Promise<Res> {
    try {
      return await this.#port.call<Res>(call);
    } catch (error) {
      throw asErrnoError(error, `${what} of attachment ${this.attachmentId}`);
    }
  }

  async #streamed(transfer: Promise<void>, what: string): Promise<void> {
    try {
      await transfer;
    } catch (error) {
      throw asErrnoError(error, `${what} of attachment ${this.attachmentId}`);
    }
    // An answer that arrives after the session ended is not acted on.
    this.#port.check();
  }

  #streamTarget(): StreamTarget {
    return { client: this.#port.client, pid: this.#port.pid, attachmentId: this.attachmentId };
  }
}
