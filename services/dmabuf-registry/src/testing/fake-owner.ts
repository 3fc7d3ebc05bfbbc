import type { ErrnoError } from '@p2p/errno';
import type { ExportRequest, ExportResult } from '../dma-buf/dma-buf-core';
import { O_CLOEXEC, O_RDWR } from '../files/open-flags';
import type { ClosedFd, FileOwner, OwnedFileRef, OwnerAttach, OwnerAttachmentRef, OwnerExtent, OwnerMap } from '../owners/file-owner';
import type { Registry } from '../registry';
import type { MemorySegments } from './memory-segments';

export type FakeOwnerOp = 'release' | 'fdClosed' | 'attach' | 'detach' | 'map' | 'unmap' | 'pin' | 'unpin' | 'fence' | 'cpuExtents';

/**
 * An exporter for tests: logs every call as "op id" (the file id for
 * release, fence and cpuExtents, else the attachment id), serves each buffer
 * as one segment `<name>-<bufferId>-g<generation>` in MemorySegments, and
 * moves that segment to the next generation on fence. `failNext` makes the
 * next call of an op reject; `hold` makes calls of an op wait for a gate.
 * With `remembersFds` it has fdClosed, logged as "fdClosed pid:fd".
 */
export class FakeOwner implements FileOwner {
  readonly calls: string[] = [];
  readonly directory: string;
  readonly failNext = new Map<FakeOwnerOp, ErrnoError>();
  readonly #sizes = new Map<number, number>();
  readonly #generations = new Map<number, number>();
  readonly #gates = new Map<FakeOwnerOp, Promise<void>>();
  lastMap: OwnerMap | undefined;
  lastAttach: OwnerAttach | undefined;
  readonly fdClosed?: (closed: ClosedFd) => Promise<void>;

  constructor(
    readonly name: string,
    readonly segments: MemorySegments,
    readonly shmId = 'tmpfs-a',
    options: { readonly remembersFds?: boolean } = {},
  ) {
    this.directory = `/fake/${name}`;
    if (options.remembersFds === true) this.fdClosed = (closed) => this.#call('fdClosed', `${closed.pid}:${closed.fd}`);
  }

  /** Exports a dma-buf through the registry with BAR-like defaults (vfio's). */
  export(registry: Registry, pid: number, overrides: Partial<ExportRequest> = {}): ExportResult {
    const request: ExportRequest = {
      pid,
      size: 8192,
      openFlags: O_RDWR | O_CLOEXEC,
      revoked: false,
      cpuAccess: false,
      providerBdf: '0000:03:00.0',
      allowPin: false,
      requirePeer2peer: true,
      handle: `bar-${this.#sizes.size}`,
      ...overrides,
    };
    const exported = registry.exportDmaBuf(this.name, request);
    this.#sizes.set(exported.bufferId, request.size);
    return exported;
  }

  /** Calls of `op` wait until the returned function is called. */
  hold(op: FakeOwnerOp): () => void {
    let open!: () => void;
    this.#gates.set(op, new Promise<void>((resolve) => (open = resolve)));
    return () => {
      this.#gates.delete(op);
      open();
    };
  }

  /** The segment the buffer's bytes are in now. */
  segmentOf(bufferId: number): string {
    return `${this.name}-${bufferId}-g${this.#generations.get(bufferId) ?? 0}`;
  }

  async release(file: OwnedFileRef): Promise<void> {
    await this.#call('release', file.fileId);
  }

  async attach(request: OwnerAttach): Promise<void> {
    this.lastAttach = request;
    await this.#call('attach', request.attachmentId);
  }

  async detach(attachment: OwnerAttachmentRef): Promise<void> {
    await this.#call('detach', attachment.attachmentId);
  }

  async map(request: OwnerMap): Promise<OwnerExtent[]> {
    this.lastMap = request;
    await this.#call('map', request.attachmentId);
    return this.#extents(request.bufferId);
  }

  async unmap(attachment: OwnerAttachmentRef): Promise<void> {
    await this.#call('unmap', attachment.attachmentId);
  }

  async pin(attachment: OwnerAttachmentRef): Promise<void> {
    await this.#call('pin', attachment.attachmentId);
  }

  async unpin(attachment: OwnerAttachmentRef): Promise<void> {
    await this.#call('unpin', attachment.attachmentId);
  }

  /** Moves the bytes to a fresh segment: the stale one no longer backs the buffer. */
  async fence(bufferId: number): Promise<void> {
    await this.#call('fence', bufferId);
    const from = this.segmentOf(bufferId);
    this.#generations.set(bufferId, (this.#generations.get(bufferId) ?? 0) + 1);
    this.segments.move(this.directory, from, this.segmentOf(bufferId));
  }

  async cpuExtents(bufferId: number): Promise<OwnerExtent[]> {
    await this.#call('cpuExtents', bufferId);
    return this.#extents(bufferId);
  }

  #extents(bufferId: number): OwnerExtent[] {
    const size = this.#sizes.get(bufferId) ?? 0;
    return [{ segment: this.segmentOf(bufferId), segmentOffset: 0, length: size, dmaAddress: 0xe000_0000n + BigInt(bufferId) * 0x10_0000n }];
  }

  async #call(op: FakeOwnerOp, id: number | string): Promise<void> {
    this.calls.push(`${op} ${id}`);
    await this.#gates.get(op);
    const failure = this.failNext.get(op);
    if (failure !== undefined) {
      this.failNext.delete(op);
      throw failure;
    }
  }
}
