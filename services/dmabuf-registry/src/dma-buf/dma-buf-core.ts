import { errno } from '@p2p/errno';
import type { RegistryEvents } from '../events/registry-events';
import type { FileLayer } from '../files/file-layer';
import { checkOpenFlags } from '../files/open-flags';
import type { OwnerExtent } from '../owners/file-owner';
import type { OwnerRecord } from '../owners/owner-record';
import type { Process } from '../processes/process';
import { checkBufferRange, checkExtents } from '../segments/extents';
import type { SegmentAccess } from '../segments/segment-access';
import { Attachment, type AttachmentMapping } from './attachment';
import { bufInfo, type BufInfo } from './buf-info';
import { DmaBuf, dmaBufAt } from './dma-buf';
import type { DmaMapType, P2pOracle } from './p2p-oracle';

/** dma_buf_export() + dma_buf_fd(): what the exporter asks for. */
export interface ExportRequest {
  /** The process whose fd table receives the fd. */
  readonly pid: number;
  readonly size: number;
  readonly openFlags: number;
  /** Exported while the memory is not decodable: starts revoked. */
  readonly revoked: boolean;
  readonly cpuAccess: boolean;
  readonly providerBdf?: string;
  readonly allowPin: boolean;
  readonly requirePeer2peer: boolean;
  readonly handle: string;
}

export interface ExportResult {
  readonly bufferId: number;
  readonly fd: number;
}

export interface AttachRequest {
  /** The process holding the dma-buf fd. */
  readonly pid: number;
  readonly fd: number;
  /** The process that gets move_notify (the importing driver); default `pid`. */
  readonly importerPid?: number;
  /** The importing PCI function; empty or absent for a CPU importer. */
  readonly importerBdf?: string;
  /** Dynamic importers get move_notify; static ones may pin. */
  readonly dynamic: boolean;
  readonly peer2peer: boolean;
  /** The importer's tmpfs identity: equal to the owner's means the segments can be mapped. */
  readonly shmId?: string;
}

export interface AttachResult {
  readonly attachmentId: number;
  readonly bufferId: number;
  readonly size: number;
}

/** What dma_buf_map_attachment() returns here. */
export interface MapResult extends AttachmentMapping {
  readonly extents: OwnerExtent[];
}

/** What an attachment held when it was taken off its buffer, for the owner to undo. */
interface Unlinked {
  readonly mapping: AttachmentMapping | undefined;
  readonly pins: number;
}

/**
 * The dma-buf core (drivers/dma-buf/dma-buf.c): exported buffers, their
 * attachments, and the exporter ops called for them. Every op on a buffer
 * runs under its reservation lock and re-checks, once it holds the lock,
 * what an await may have changed. Failures throw ErrnoError and leave the
 * registry as it was.
 */
export class DmaBufCore {
  readonly #files: FileLayer;
  readonly #events: RegistryEvents;
  readonly #p2p: P2pOracle;
  readonly #segments: SegmentAccess;
  readonly #buffers = new Map<number, DmaBuf>();
  readonly #attachments = new Map<number, Attachment>();
  #lastAttachmentId = 0;

  constructor(files: FileLayer, events: RegistryEvents, p2p: P2pOracle, segments: SegmentAccess) {
    this.#files = files;
    this.#events = events;
    this.#p2p = p2p;
    this.#segments = segments;
  }

  /* ---- buffers ---- */

  /** dma_buf_export() and dma_buf_fd(): EINVAL for a size of 0 or flags dma_buf_fd() refuses. */
  export(owner: OwnerRecord, request: ExportRequest): ExportResult {
    const process = this.#files.process(request.pid);
    if (!Number.isSafeInteger(request.size) || request.size <= 0) {
      throw errno('EINVAL', `dma_buf_export: size ${request.size} is not a positive integer`);
    }
    const openFlags = checkOpenFlags(request.openFlags, 'dma_buf_fd');
    const properties = {
      size: request.size,
      cpuAccess: request.cpuAccess,
      providerBdf: request.providerBdf ?? '',
      allowPin: request.allowPin,
      requirePeer2peer: request.requirePeer2peer,
    };
    const { file, fd } = this.#files.create(
      process,
      (fileId) => new DmaBuf(fileId, owner, request.handle, openFlags, properties, request.revoked),
    );
    this.#buffers.set(file.bufferId, file);
    this.#events.emit({
      kind: 'EXPORT',
      bufferId: file.bufferId,
      pid: process.pid,
      detail: `${owner.name} exported ${file.size} bytes${file.providerBdf ? ` of ${file.providerBdf}` : ''} as fd ${fd}${file.revoked ? ', revoked' : ''}`,
    });
    return { bufferId: file.bufferId, fd };
  }

  buffer(bufferId: number): DmaBuf | undefined {
    return this.#buffers.get(bufferId);
  }

  buffersOf(owner: OwnerRecord): DmaBuf[] {
    return [...this.#buffers.values()].filter((buffer) => buffer.owner === owner);
  }

  /** The last reference is gone: the buffer leaves bufinfo. */
  forget(buffer: DmaBuf): void {
    this.#buffers.delete(buffer.bufferId);
  }

  bufInfo(): BufInfo[] {
    return [...this.#buffers.values()].map(bufInfo);
  }

  /** How many buffers bufinfo lists and how many attachments they have: two map sizes, for gauges read at each scrape. */
  counts(): { buffers: number; attachments: number } {
    return { buffers: this.#buffers.size, attachments: this.#attachments.size };
  }

  /* ---- attachments ---- */

  /**
   * An attachment, addressed by its importer: ESRCH for an unknown pid,
   * EINVAL for an id that is unknown (never made, detached, fenced) or
   * another process's.
   */
  attachment(pid: number, attachmentId: number): Attachment {
    this.#files.process(pid);
    const attachment = this.#attachments.get(attachmentId);
    if (attachment === undefined || attachment.importerPid !== pid) {
      throw errno('EINVAL', `pid ${pid} has no attachment ${attachmentId}`);
    }
    return attachment;
  }

  /**
   * dma_buf_get() + dma_buf_dynamic_attach(): the attachment holds a
   * reference to the buffer's file from here until detach or fence.
   */
  async attach(request: AttachRequest): Promise<AttachResult> {
    const buffer = dmaBufAt(this.#files, request.pid, request.fd);
    const importer = this.#files.process(request.importerPid ?? request.pid);
    const params = {
      importerBdf: request.importerBdf ?? '',
      dynamic: request.dynamic,
      peer2peer: request.peer2peer,
      shmId: request.shmId ?? '',
    };
    if (params.dynamic && importer.notifier === undefined) {
      // dma_buf_dynamic_attach(): a dynamic importer must supply importer_ops->move_notify.
      throw errno('EINVAL', `pid ${importer.pid} has no session to receive move_notify: it cannot attach dynamically`);
    }
    if (buffer.requirePeer2peer && !(params.dynamic && params.peer2peer)) {
      // vfio_pci_dma_buf_attach(): BAR memory is for dynamic peer2peer importers only.
      throw errno('EOPNOTSUPP', `dma-buf ${buffer.bufferId} needs a dynamic importer that allows peer2peer`);
    }
    buffer.checkReachable('attach');
    buffer.get();
    try {
      return await buffer.resv.run(async () => {
        buffer.checkReachable('attach');
        checkAlive(importer);
        const attachment = new Attachment(++this.#lastAttachmentId, buffer, importer, params);
        await buffer.owner.owner.attach({ ...attachment.ref, importerPid: importer.pid, dynamic: params.dynamic });
        if (!importer.alive) {
          // It exited while the exporter was deciding: its exit has already detached what it had.
          await buffer.owner.voidCall('detach', (owner) => owner.detach(attachment.ref));
          throw errno('ESRCH', `pid ${importer.pid} exited while attaching`);
        }
        this.#attachments.set(attachment.attachmentId, attachment);
        buffer.attachments.push(attachment);
        this.#events.emit({
          kind: 'ATTACH',
          bufferId: buffer.bufferId,
          attachmentId: attachment.attachmentId,
          pid: importer.pid,
          detail: `${params.dynamic ? 'dynamic' : 'static'}${params.peer2peer ? ' peer2peer' : ''} importer ${params.importerBdf || '(cpu)'}`,
        });
        return { attachmentId: attachment.attachmentId, bufferId: buffer.bufferId, size: buffer.size };
      });
    } catch (error) {
      await this.#files.put(buffer);
      throw error;
    }
  }

  /** dma_buf_detach(): unmaps if mapped, undoes its pins, then the exporter's detach; drops the reference. */
  async detach(attachment: Attachment): Promise<void> {
    const buffer = attachment.buffer;
    await buffer.resv.run(async () => {
      this.#checkAttached(attachment, 'detach');
      await this.#detachLocked(attachment, 'detached by its importer');
    });
    await this.#files.put(buffer);
  }

  /** The importing driver's process died: detach what it had, oldest first. Returns how many. */
  async detachAllOf(importer: Process): Promise<number> {
    const mine = [...this.#attachments.values()].filter((attachment) => attachment.importer === importer);
    let detached = 0;
    for (const attachment of mine) {
      const buffer = attachment.buffer;
      const done = await buffer.resv.run(async () => {
        // A move may have fenced it while this waited for the lock; the fence dropped its reference.
        if (this.#attachments.get(attachment.attachmentId) !== attachment) return false;
        await this.#detachLocked(attachment, 'its importer exited');
        return true;
      });
      if (done) {
        detached++;
        await this.#files.put(buffer);
      }
    }
    return detached;
  }

  async #detachLocked(attachment: Attachment, why: string): Promise<void> {
    const unlinked = this.unlink(attachment);
    if (unlinked.mapping !== undefined) this.#emitFor(attachment, 'UNMAP', `unmapped: ${why}`);
    this.#emitFor(attachment, 'DETACH', `${why}${unlinked.pins > 0 ? `, ${unlinked.pins} pin(s) dropped` : ''}`);
    await this.undoAtOwner(attachment, unlinked);
  }

  /**
   * Takes an attachment off its buffer at once (reservation lock held); the
   * caller then has the owner undo it and drops its file reference.
   */
  unlink(attachment: Attachment): Unlinked {
    const unlinked = { mapping: attachment.mapping, pins: attachment.pins };
    this.#attachments.delete(attachment.attachmentId);
    const list = attachment.buffer.attachments;
    list.splice(list.indexOf(attachment), 1);
    attachment.mapping = undefined;
    attachment.pins = 0;
    return unlinked;
  }

  /** The exporter's unmap, one unpin per pin, and detach, for an unlinked attachment. */
  async undoAtOwner(attachment: Attachment, unlinked: Unlinked): Promise<void> {
    const owner = attachment.buffer.owner;
    const ref = attachment.ref;
    if (unlinked.mapping !== undefined) await owner.voidCall('unmap', (o) => o.unmap(ref));
    for (let pin = 0; pin < unlinked.pins; pin++) await owner.voidCall('unpin', (o) => o.unpin(ref));
    await owner.voidCall('detach', (o) => o.detach(ref));
  }

  /**
   * dma_buf_pin(): EOPNOTSUPP if the exporter has no pin (allowPin false).
   * Pins are counted, as the kernel's are: each pin calls the exporter's pin
   * and is undone by one unpin; dynamic attachments may pin too.
   */
  async pin(attachment: Attachment): Promise<void> {
    const buffer = attachment.buffer;
    await buffer.resv.run(async () => {
      this.#checkAttached(attachment, 'pin');
      if (!buffer.allowPin) throw errno('EOPNOTSUPP', `the exporter of dma-buf ${buffer.bufferId} does not support pinning`);
      if (buffer.orphaned) throw errno('ENODEV', `pin: dma-buf ${buffer.bufferId} is orphaned (its exporter is gone)`);
      await buffer.owner.owner.pin(attachment.ref);
      attachment.pins++;
      this.#emitFor(attachment, 'PIN', `pin count ${attachment.pins}`);
    });
  }

  /** dma_buf_unpin(): EINVAL if the attachment holds no pin. */
  async unpin(attachment: Attachment): Promise<void> {
    const buffer = attachment.buffer;
    await buffer.resv.run(async () => {
      this.#checkAttached(attachment, 'unpin');
      if (attachment.pins === 0) throw errno('EINVAL', `attachment ${attachment.attachmentId} is not pinned`);
      attachment.pins--;
      this.#emitFor(attachment, 'UNPIN', `pin count ${attachment.pins}`);
      await buffer.owner.voidCall('unpin', (owner) => owner.unpin(attachment.ref));
    });
  }

  /**
   * dma_buf_map_attachment(): ENODEV while revoked or orphaned, EBUSY if
   * already mapped (one mapping per attachment here), EINVAL when
   * pci_p2pdma_map_type() says the importer cannot reach the BAR.
   */
  async map(attachment: Attachment): Promise<MapResult> {
    const buffer = attachment.buffer;
    return buffer.resv.run(async () => {
      this.#checkAttached(attachment, 'map');
      buffer.checkReachable('map');
      if (attachment.mapping !== undefined) {
        throw errno('EBUSY', `attachment ${attachment.attachmentId} is already mapped: unmap it first`);
      }
      const mapType = await this.#mapType(attachment);
      // The exporter may have died while the oracle answered.
      buffer.checkReachable('map');
      const owner = buffer.owner.owner;
      const ref = attachment.ref;
      const answer = await owner.map({ ...ref, mapType });
      let extents: OwnerExtent[];
      try {
        extents = checkExtents(answer, buffer.size, `map of dma-buf ${buffer.bufferId}`);
      } catch (error) {
        await buffer.owner.voidCall('unmap', (o) => o.unmap(ref));
        throw error;
      }
      const shared = attachment.params.shmId !== '' && attachment.params.shmId === owner.shmId;
      const mapping = attachment.setMapping({
        transport: shared ? 'shared-memory' : 'stream',
        directory: owner.directory,
        extents,
        mapType,
      });
      this.#emitFor(attachment, 'MAP', `${mapping.mapType} via ${mapping.transport}, generation ${mapping.generation}`);
      return { ...mapping, extents: [...extents] };
    });
  }

  /** dma_buf_unmap_attachment(): EINVAL if not mapped. */
  async unmap(attachment: Attachment): Promise<void> {
    await attachment.buffer.resv.run(async () => {
      this.#checkAttached(attachment, 'unmap');
      if (attachment.mapping === undefined) throw errno('EINVAL', `attachment ${attachment.attachmentId} is not mapped`);
      await this.unmapLocked(attachment, 'unmapped by its importer');
    });
  }

  /** Drops the mapping and tells the exporter (reservation lock held, attachment mapped). */
  async unmapLocked(attachment: Attachment, why: string): Promise<void> {
    attachment.mapping = undefined;
    this.#emitFor(attachment, 'UNMAP', why);
    await attachment.buffer.owner.voidCall('unmap', (owner) => owner.unmap(attachment.ref));
  }

  /** pci_p2pdma_map_type() for BAR memory; host memory otherwise. */
  async #mapType(attachment: Attachment): Promise<DmaMapType> {
    const provider = attachment.buffer.providerBdf;
    if (provider === '') return 'HOST_MEMORY';
    const client = attachment.params.importerBdf;
    if (client === '') {
      throw errno('EINVAL', `dma-buf ${attachment.buffer.bufferId} is BAR memory of ${provider}: a CPU importer cannot map it`);
    }
    const type = await this.#p2p.mapType(provider, client);
    if (type === 'NOT_SUPPORTED') {
      throw errno('EINVAL', `pci_p2pdma_map_type(${provider}, ${client}) is NOT_SUPPORTED: ${client} cannot reach that BAR`);
    }
    return type;
  }

  /* ---- the streamed fallback ---- */

  /** DMA read through the current mapping: ENODEV once revoked, EINVAL if not mapped or out of bounds. */
  readAttachment(attachment: Attachment, offset: number, length: number): Buffer {
    const mapping = this.#liveMapping(attachment, 'read');
    checkBufferRange(offset, length, attachment.buffer.size, `read of attachment ${attachment.attachmentId}`);
    return this.#segments.read(mapping.directory, mapping.extents, offset, length);
  }

  writeAttachment(attachment: Attachment, offset: number, data: Uint8Array): void {
    const mapping = this.#liveMapping(attachment, 'write');
    checkBufferRange(offset, data.length, attachment.buffer.size, `write of attachment ${attachment.attachmentId}`);
    this.#segments.write(mapping.directory, mapping.extents, offset, data);
  }

  /**
   * DMA goes without the reservation lock, as on hardware: an importer keeps
   * streaming until it acks. A revoked buffer takes no DMA (the BAR no longer
   * decodes), and a fenced attachment has no mapping left to use.
   */
  #liveMapping(attachment: Attachment, what: string): AttachmentMapping {
    attachment.buffer.checkReachable(what);
    if (attachment.mapping === undefined) throw errno('EINVAL', `${what}: attachment ${attachment.attachmentId} is not mapped`);
    return attachment.mapping;
  }

  /* ---- helpers ---- */

  /** EINVAL if the attachment was detached or fenced while the caller waited for the lock. */
  #checkAttached(attachment: Attachment, what: string): void {
    if (this.#attachments.get(attachment.attachmentId) !== attachment) {
      throw errno('EINVAL', `${what}: attachment ${attachment.attachmentId} is gone (detached or fenced)`);
    }
  }

  #emitFor(attachment: Attachment, kind: 'MAP' | 'UNMAP' | 'DETACH' | 'PIN' | 'UNPIN', detail: string): void {
    this.#events.emit({
      kind,
      bufferId: attachment.buffer.bufferId,
      attachmentId: attachment.attachmentId,
      pid: attachment.importerPid,
      detail,
    });
  }
}

function checkAlive(process: Process): void {
  if (!process.alive) throw errno('ESRCH', `pid ${process.pid} has exited`);
}
