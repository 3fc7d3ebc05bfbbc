import { errno } from '@p2p/errno';
import type { BufInfo } from './dma-buf/buf-info';
import { BufferMoves, type MoveRequest, type MoveResult } from './dma-buf/buffer-moves';
import { CpuAccess } from './dma-buf/cpu-access';
import { DmaBuf } from './dma-buf/dma-buf';
import {
  DmaBufCore,
  type AttachRequest,
  type AttachResult,
  type ExportRequest,
  type ExportResult,
  type MapResult,
} from './dma-buf/dma-buf-core';
import type { P2pOracle } from './dma-buf/p2p-oracle';
import { RegistryEvents, type RegistryEventListener } from './events/registry-events';
import { FileLayer, type ProcessInfo, type ResolvedFd } from './files/file-layer';
import { DMA_HEAP_VALID_FD_FLAGS, checkOpenFlags } from './files/open-flags';
import { RegistryFile } from './files/registry-file';
import { SystemHeap, type SystemHeapOptions } from './heap/system-heap';
import { DEFAULT_MAX_MAP_COUNT, pageAlign } from './mm/layout';
import { MemoryManager, type Mapping, type MmapOptions, type VmaInfo } from './mm/memory-manager';
import { DEFAULT_MAX_PIN_PAGES, UserPagePins, type PinRequest, type PinnedPages } from './mm/user-page-pins';
import type { FileOwner } from './owners/file-owner';
import type { OwnerFailure, OwnerFailureReporter, OwnerRecord } from './owners/owner-record';
import { OwnerTable } from './owners/owner-table';
import { ProcessCredentials } from './processes/credentials';
import type { ImporterNotifier } from './processes/process';
import type { SegmentAccess } from './segments/segment-access';

export interface RegistryOptions {
  /** pci_p2pdma_map_type() for maps of BAR memory. */
  readonly p2p: P2pOracle;
  /** Byte access to owners' segments: the streamed fallback and CPU access. */
  readonly segments: SegmentAccess;
  /** The system heap's memory; without it heapAllocate() is ENODEV (no /dev/dma_heap/system). */
  readonly heap?: SystemHeapOptions;
  /**
   * The first pid (default 1). A deployed registry starts each incarnation
   * at a random base, so a client still holding a pid of an earlier
   * incarnation gets ESRCH instead of reaching a new process's files.
   */
  readonly firstPid?: number;
  /** How long a move waits for each move_notify ack before fencing; default 1000. */
  readonly ackTimeoutMs?: number;
  /**
   * Where failures of the void exporter ops (release, detach, unmap, unpin,
   * fence) go: they cannot fail the operation. Default: a process warning.
   */
  readonly onOwnerError?: OwnerFailureReporter;
  /** vm.max_map_count: the most VMAs one process may have; default 65530, the kernel's. */
  readonly maxMapCount?: number;
  /** The most pages one pinUserPages() call pins; default 262144 (1 GiB of 4 KiB pages). */
  readonly maxPinPages?: number;
}

export const DEFAULT_ACK_TIMEOUT_MS = 1000;

export interface CreatedFile {
  readonly fileId: number;
  readonly fd: number;
}

/** A process as the listing shows it: its fds, and how many VMAs it has and pins it holds. */
export interface ListedProcess extends ProcessInfo {
  readonly vmaCount: number;
  /** pinUserPages() pins this process holds as the pinning service. */
  readonly pinCount: number;
}

export interface ProcessListing {
  readonly processes: ListedProcess[];
  /** Live owners by name, the system heap included. */
  readonly owners: string[];
}

/**
 * The file layer and dma-buf core of one machine: processes with fd tables
 * and address spaces, refcounted files released through their owners,
 * dma-bufs with their attachments, move_notify fan-out with fencing, user
 * page pins for platform services, and the system heap.
 *
 * Every failure throws ErrnoError and leaves the registry as it was: ESRCH
 * for an unknown pid, EBADF for an fd the process does not hold, EINVAL for
 * bad arguments and unknown attachments, ENOENT for unknown owners, buffers,
 * tokens and notifications; the rest as each method says.
 */
export class Registry {
  readonly #events = new RegistryEvents();
  readonly #owners: OwnerTable;
  readonly #files: FileLayer;
  readonly #core: DmaBufCore;
  readonly #moves: BufferMoves;
  readonly #cpu: CpuAccess;
  readonly #mm: MemoryManager;
  readonly #pins: UserPagePins;
  readonly #heap: { readonly owner: SystemHeap; readonly record: OwnerRecord } | undefined;
  readonly #credentials = new ProcessCredentials();
  readonly #exitListeners = new Set<(pid: number) => void>();
  #shuttingDown = false;

  constructor(options: RegistryOptions) {
    const ackTimeoutMs = positive(options.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS, 'ackTimeoutMs');
    const maxMapCount = positive(options.maxMapCount ?? DEFAULT_MAX_MAP_COUNT, 'maxMapCount');
    const maxPinPages = positive(options.maxPinPages ?? DEFAULT_MAX_PIN_PAGES, 'maxPinPages');
    this.#owners = new OwnerTable(options.onOwnerError ?? warnOwnerFailure);
    this.#files = new FileLayer((file) => this.#release(file), options.firstPid ?? 1);
    this.#core = new DmaBufCore(this.#files, this.#events, options.p2p, options.segments);
    this.#moves = new BufferMoves(this.#core, this.#files, this.#events, ackTimeoutMs);
    this.#cpu = new CpuAccess(this.#files, options.segments);
    this.#mm = new MemoryManager(this.#files, this.#cpu, this.#events, maxMapCount);
    this.#pins = new UserPagePins(this.#files, this.#mm, this.#cpu, this.#events, maxPinPages);
    if (options.heap !== undefined) {
      const owner = new SystemHeap(options.heap);
      this.#heap = { owner, record: this.#owners.register(owner) };
    }
  }

  /** Every event from now on, in order, synchronously. Returns the unsubscribe. */
  onEvent(listener: RegistryEventListener): () => void {
    return this.#events.subscribe(listener);
  }

  /* ---- processes and files ---- */

  /** A new process (pid from 1, never reused). Without a notifier it cannot be a dynamic importer. */
  openProcess(name: string, notifier?: ImporterNotifier): number {
    if (this.#shuttingDown) throw errno('ESHUTDOWN', 'the registry is shutting down');
    return this.#files.openProcess(name, notifier).pid;
  }

  /**
   * A process with its credential: what a session is. The credential is the
   * only proof of being `pid` on any service, and dies with the process.
   */
  openSession(name: string, notifier?: ImporterNotifier): { pid: number; credential: string } {
    const pid = this.openProcess(name, notifier);
    return { pid, credential: this.#credentials.issue(pid) };
  }

  /** The live process a credential proves; undefined for a forged, dead or earlier incarnation's one. */
  resolveCredential(credential: string): number | undefined {
    return this.#credentials.resolve(credential);
  }

  /**
   * Calls `listener` with the pid of every process that begins to exit, as
   * its credential dies: services caching credentials drop it then.
   * Returns the unsubscribe.
   */
  onProcessExit(listener: (pid: number) => void): () => void {
    this.#exitListeners.add(listener);
    return () => this.#exitListeners.delete(listener);
  }

  /**
   * do_exit(): from the start the pid is gone (ESRCH), its credential proves
   * nothing, and the process's
   * pending move_notify calls count as acked (a dead process does no DMA).
   * Then its address space goes (exit_mm(): every VMA's reference is
   * dropped); every fd is closed, lowest first; every user page pin it holds
   * as a pinning service is released; every attachment it imported is
   * detached; every fd in flight from or to it is dropped. PROCESS_EXIT last.
   * Pins others hold on its pages stay.
   */
  async exitProcess(pid: number): Promise<void> {
    const process = this.#files.beginExit(pid);
    this.#credentials.revoke(pid);
    for (const listener of this.#exitListeners) listener(pid);
    this.#moves.importerExited(pid);
    const unmapped = await this.#mm.exitMm(pid);
    const closed = await this.#files.closeAll(process);
    const unpinned = await this.#pins.pinnerExited(pid);
    const detached = await this.#core.detachAllOf(process);
    const dropped = await this.#files.dropTransfersOf(pid);
    this.#events.emit({
      kind: 'PROCESS_EXIT',
      pid,
      detail: `${process.name}: unmapped ${unmapped} VMA(s), closed ${closed} fd(s), released ${unpinned} pin(s), detached ${detached} attachment(s), dropped ${dropped} fd(s) in flight`,
    });
  }

  /** dup(2): the lowest free fd (from 3) for the same file. */
  dup(pid: number, fd: number): number {
    return this.#files.dup(pid, fd);
  }

  /**
   * close(2): EBADF if not held (a double close included); resolves after
   * the release if this was the last reference, else after the owner's
   * fdClosed (if it has one).
   */
  async close(pid: number, fd: number): Promise<void> {
    await this.#files.close(pid, fd);
  }

  /** SCM_RIGHTS: a one-time token for `toPid` (ESRCH if none) holding its own reference. */
  sendFd(pid: number, fd: number, toPid: number): string {
    return this.#files.sendFd(pid, fd, toPid);
  }

  /** Redeems a token: ENOENT if unknown or redeemed, EPERM for anyone but its recipient (it stays valid). */
  receiveFd(pid: number, token: string): number {
    return this.#files.receiveFd(pid, token);
  }

  resolveFd(pid: number, fd: number): ResolvedFd {
    return this.#files.resolveFd(pid, fd);
  }

  /* ---- owners ---- */

  /** EBUSY if a live owner has the name, EINVAL for an empty one. */
  registerOwner(owner: FileOwner): void {
    this.#owners.register(owner);
  }

  /**
   * The owner service died. Every dma-buf it exported is revoked for good
   * (its dynamic importers get move_notify as for a revoke; attach and map
   * fail with ENODEV from now on); fds live on until closed. Nothing more is
   * sent to it, release included. ENOENT if no live owner has the name,
   * EPERM for the built-in system heap.
   */
  async ownerGone(name: string): Promise<void> {
    const record = this.#owners.live(name);
    this.#checkNotHeap(record, 'go away');
    this.#owners.remove(record);
    await this.#moves.ownerGone(record);
  }

  /** A file of the owner (a vfio device, a verbs context) at the lowest free fd of `pid`. */
  createFile(ownerName: string, pid: number, handle: string, openFlags: number): CreatedFile {
    const owner = this.#owners.live(ownerName);
    const process = this.#files.process(pid);
    const flags = checkOpenFlags(openFlags, 'create file');
    const { file, fd } = this.#files.create(process, (fileId) => new RegistryFile(fileId, owner, handle, flags));
    return { fileId: file.fileId, fd };
  }

  /** dma_buf_export() + dma_buf_fd() into `request.pid`'s table. */
  exportDmaBuf(ownerName: string, request: ExportRequest): ExportResult {
    return this.#core.export(this.#owners.live(ownerName), request);
  }

  /**
   * vfio_pci_dma_buf_move(): resolves once every dynamic importer acked or
   * was fenced. ENOENT for an unknown owner or a buffer not its own (or let
   * go), EINVAL for a permanent move that does not revoke, EPERM for the
   * system heap (its buffers never move).
   */
  async move(ownerName: string, bufferId: number, request: MoveRequest): Promise<MoveResult> {
    const owner = this.#owners.live(ownerName);
    this.#checkNotHeap(owner, 'move a buffer');
    return this.#moves.move(owner, bufferId, request);
  }

  /* ---- importers ---- */

  async attach(request: AttachRequest): Promise<AttachResult> {
    return this.#core.attach(request);
  }

  /** dma_buf_detach(). A move_notify pending for the attachment counts as acked: a detaching importer stopped DMA. */
  async detach(pid: number, attachmentId: number): Promise<void> {
    const attachment = this.#core.attachment(pid, attachmentId);
    this.#moves.importerDetaching(attachment);
    await this.#core.detach(attachment);
  }

  async pin(pid: number, attachmentId: number): Promise<void> {
    await this.#core.pin(this.#core.attachment(pid, attachmentId));
  }

  async unpin(pid: number, attachmentId: number): Promise<void> {
    await this.#core.unpin(this.#core.attachment(pid, attachmentId));
  }

  async map(pid: number, attachmentId: number): Promise<MapResult> {
    return this.#core.map(this.#core.attachment(pid, attachmentId));
  }

  async unmap(pid: number, attachmentId: number): Promise<void> {
    await this.#core.unmap(this.#core.attachment(pid, attachmentId));
  }

  /** The importer stopped DMA and dropped its mapping. ENOENT for an unknown, settled or foreign id. */
  ack(pid: number, notificationId: number): void {
    this.#moves.ack(pid, notificationId);
  }

  /** The streamed fallback: a read through the attachment's current mapping. */
  readAttachment(pid: number, attachmentId: number, offset: number, length: number): Buffer {
    return this.#core.readAttachment(this.#core.attachment(pid, attachmentId), offset, length);
  }

  writeAttachment(pid: number, attachmentId: number, offset: number, data: Uint8Array): void {
    this.#core.writeAttachment(this.#core.attachment(pid, attachmentId), offset, data);
  }

  /* ---- the system heap ---- */

  /**
   * dma_heap_ioctl_allocate() on /dev/dma_heap/system: EINVAL for fd flags
   * outside O_ACCMODE|O_CLOEXEC, non-zero heap flags, or a size that
   * PAGE_ALIGNs to 0; ENOMEM past the heap's cap or past the caller's
   * per-process limit (the buffer is charged to the caller until its
   * release); ENODEV with no heap.
   */
  heapAllocate(pid: number, size: number, openFlags: number, heapFlags = 0): ExportResult {
    if (this.#heap === undefined) throw errno('ENODEV', 'no system heap is configured');
    const process = this.#files.process(pid);
    const flags = checkOpenFlags(openFlags, 'DMA_HEAP_IOCTL_ALLOC', DMA_HEAP_VALID_FD_FLAGS);
    if (heapFlags !== 0) throw errno('EINVAL', `DMA_HEAP_IOCTL_ALLOC: heap flags ${heapFlags} (none are valid)`);
    if (!Number.isSafeInteger(size) || size < 0) throw errno('EINVAL', `DMA_HEAP_IOCTL_ALLOC: size ${size} is not an integer`);
    const aligned = pageAlign(size);
    if (aligned === 0) throw errno('EINVAL', 'DMA_HEAP_IOCTL_ALLOC: size 0');
    // The buffer's segments are named after its id, so they are made just before the file gets it.
    const handle = this.#heap.owner.allocate(this.#files.nextFileId(), aligned, process.pid);
    return this.#core.export(this.#heap.record, {
      pid: process.pid,
      size: aligned,
      openFlags: flags,
      revoked: false,
      cpuAccess: true,
      allowPin: true,
      requirePeer2peer: false,
      handle,
    });
  }

  /* ---- CPU access ---- */

  async cpuRead(pid: number, fd: number, offset: number, length: number): Promise<Buffer> {
    return this.#cpu.read(pid, fd, offset, length);
  }

  async cpuWrite(pid: number, fd: number, offset: number, data: Uint8Array): Promise<void> {
    await this.#cpu.write(pid, fd, offset, data);
  }

  /* ---- address spaces ---- */

  /**
   * mmap(2) of a dma-buf fd into the process's address space (see
   * MemoryManager.mmap for the rules): the VMA's address and protection,
   * and the segments behind [offset, offset + length). The VMA holds the
   * buffer until it is unmapped, also after the fd is closed.
   */
  async mmap(pid: number, fd: number, offset: number, length: number, options: MmapOptions = {}): Promise<Mapping> {
    return this.#mm.mmap(pid, fd, offset, length, options);
  }

  /** munmap(2): EINVAL for an unaligned address, length 0 or a range past user space; holes are skipped. */
  async munmap(pid: number, addr: number, length: number): Promise<void> {
    await this.#mm.munmap(pid, addr, length);
  }

  /** /proc/<pid>/maps: the process's VMAs, lowest address first. */
  maps(pid: number): VmaInfo[] {
    return this.#mm.maps(pid);
  }

  /**
   * pin_user_pages(FOLL_LONGTERM) for a platform service whose own process
   * is `request.pinnerPid` (see UserPagePins.pin for the rules): the host
   * memory behind the range, held until unpinUserPages() or the pinner's exit.
   */
  async pinUserPages(request: PinRequest): Promise<PinnedPages> {
    return this.#pins.pin(request);
  }

  /** unpin_user_pages(): ENOENT for a pin `pinnerPid` does not hold. */
  async unpinUserPages(pinnerPid: number, pinId: number): Promise<void> {
    await this.#pins.unpin(pinnerPid, pinId);
  }

  /* ---- seeing it ---- */

  /** /sys/kernel/debug/dma_buf/bufinfo: live buffers by id. */
  bufInfo(): BufInfo[] {
    return this.#core.bufInfo();
  }

  /** Live buffers and attachments, without building bufinfo: what /metrics reads at each scrape. */
  counts(): { buffers: number; attachments: number } {
    return this.#core.counts();
  }

  /** The name of the owner that exported `bufferId` (the system heap's included); undefined once it left bufinfo. */
  exporterOf(bufferId: number): string | undefined {
    return this.#core.buffer(bufferId)?.owner.name;
  }

  processes(): ProcessListing {
    const processes = this.#files.processes().map((process) => ({
      ...process,
      vmaCount: this.#mm.vmaCount(process.pid),
      pinCount: this.#pins.heldBy(process.pid),
    }));
    return { processes, owners: this.#owners.names() };
  }

  /**
   * The machine goes down: no new process (ESHUTDOWN), and every live one
   * exits, lowest pid first. With every fd, token and attachment gone every
   * file is released (heap segments destroyed) and pending moves settle.
   */
  async shutdown(): Promise<void> {
    this.#shuttingDown = true;
    for (const { pid } of this.#files.processes()) {
      // A process whose session ended meanwhile is already exiting on its own.
      if (this.#files.has(pid)) await this.exitProcess(pid);
    }
  }

  /* ---- internals ---- */

  /** The last reference is gone: the file leaves every listing, then its owner releases it (skipped if dead). */
  async #release(file: RegistryFile): Promise<void> {
    if (file instanceof DmaBuf) this.#core.forget(file);
    this.#events.emit({
      kind: 'RELEASE',
      ...(file instanceof DmaBuf ? { bufferId: file.bufferId } : {}),
      detail: `${file.kind} file ${file.fileId} of ${file.owner.name}${file.owner.alive ? '' : ' (owner gone: release not sent)'}`,
    });
    await file.owner.voidCall('release', (owner) => owner.release({ fileId: file.fileId, handle: file.handle }));
  }

  #checkNotHeap(record: OwnerRecord, what: string): void {
    if (this.#heap !== undefined && record === this.#heap.record) {
      throw errno('EPERM', `the system heap cannot ${what}`);
    }
  }
}

function positive(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw errno('EINVAL', `${name} ${value} is not a positive integer`);
  return value;
}

function warnOwnerFailure(failure: OwnerFailure): void {
  const message = failure.error instanceof Error ? failure.error.message : String(failure.error);
  process.emitWarning(`${failure.owner} failed ${failure.op}: ${message}`, 'OwnerFailure');
}
