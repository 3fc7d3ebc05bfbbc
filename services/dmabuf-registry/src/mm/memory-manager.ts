import { errno } from '@p2p/errno';
import type { BufferExtents, CpuAccess } from '../dma-buf/cpu-access';
import type { DmaBuf } from '../dma-buf/dma-buf';
import type { RegistryEvents } from '../events/registry-events';
import type { FileLayer } from '../files/file-layer';
import { openedForWriting } from '../files/open-flags';
import { sliceExtents } from '../segments/extents';
import { AddressSpace, type RangePiece } from './address-space';
import { MMAP_MIN_ADDR, TASK_SIZE, hex, isPageAligned, pageAlign } from './layout';
import { PROT_READ, PROT_WRITE, checkProt, protString } from './prot';
import { Vma } from './vma';

/** Where mmap puts a mapping, and with what protection. */
export interface MmapOptions {
  /** PROT_READ | PROT_WRITE. Default: PROT_READ, and PROT_WRITE if the fd is open for writing. */
  readonly prot?: number;
  /** A hint (or with `fixed`, the address); 0 or absent: none. */
  readonly addr?: number;
  /** MAP_FIXED: exactly at `addr`, replacing what is mapped there. */
  readonly fixed?: boolean;
}

/** What mmap(2) of a dma-buf gives: the VMA's address and protection, and the segments behind the range. */
export interface Mapping extends BufferExtents {
  readonly addr: number;
  readonly prot: number;
}

/** A VMA as /proc/<pid>/maps shows it. */
export interface VmaInfo {
  readonly addr: number;
  readonly length: number;
  readonly bufferId: number;
  readonly offset: number;
  readonly prot: number;
  readonly deviceMemory: boolean;
}

/** A VMA of this registry: it maps a dma-buf. */
export type BufferVma = Vma<DmaBuf>;

/**
 * Processes' address spaces (mm/mmap.c): mmap of dma-buf fds, munmap, exit,
 * and the page walk get_user_pages() makes. Each VMA holds a reference to
 * its buffer (vma->vm_file), so a mapping keeps the buffer alive after
 * close(fd); a split gives the new piece its own (__split_vma()), and the
 * reference goes with the last VMA of it. A process never has more than
 * `maxMapCount` VMAs (vm.max_map_count): an mmap or a splitting munmap past
 * it is ENOMEM.
 */
export class MemoryManager {
  readonly #files: FileLayer;
  readonly #cpu: CpuAccess;
  readonly #events: RegistryEvents;
  readonly #maxMapCount: number;
  /** By pid, from the first mmap to exit. */
  readonly #spaces = new Map<number, AddressSpace<DmaBuf>>();

  constructor(files: FileLayer, cpu: CpuAccess, events: RegistryEvents, maxMapCount: number) {
    this.#files = files;
    this.#cpu = cpu;
    this.#events = events;
    this.#maxMapCount = maxMapCount;
  }

  /**
   * mmap(addr, length, prot, MAP_SHARED | (fixed ? MAP_FIXED : 0), fd,
   * offset). In order: EINVAL for prot bits other than PROT_READ and
   * PROT_WRITE or an address that is not a non-negative integer; the file's checks (CpuAccess.mmapTarget: EBADF, EINVAL,
   * EACCES, EINVAL); for MAP_FIXED, EINVAL for an address that is not page
   * aligned, EPERM below MMAP_MIN_ADDR, ENOMEM past TASK_SIZE; ENOMEM for
   * one VMA more than maxMapCount or no free range; ENODEV while revoked.
   * The VMA spans length rounded up to pages.
   */
  async mmap(pid: number, fd: number, offset: number, length: number, options: MmapOptions = {}): Promise<Mapping> {
    const asked = options.prot === undefined ? undefined : checkProt(options.prot, 'mmap');
    const hint = options.addr ?? 0;
    if (!Number.isSafeInteger(hint) || hint < 0) throw errno('EINVAL', `mmap: address ${hint} is not a non-negative integer`);
    const buffer = this.#cpu.mmapTarget(pid, fd, offset, length, asked ?? PROT_READ);
    const prot = asked ?? PROT_READ | (openedForWriting(buffer.openFlags) ? PROT_WRITE : 0);
    const span = pageAlign(length);
    const fixed = options.fixed === true;
    if (fixed) checkFixed(hint, span);
    this.#place(this.#space(pid), span, hint, fixed);
    // The VMA's reference, taken while the fd still holds the file (the fget() of the syscall).
    buffer.get();
    let mapping: Mapping;
    let replaced: BufferVma[];
    try {
      const where = await this.#cpu.extentsOf(buffer, 'mmap');
      // The process may have exited, or mapped or unmapped elsewhere, while the exporter answered.
      const space = this.#space(pid);
      const addr = this.#place(space, span, hint, fixed);
      replaced = fixed ? this.#unmapRange(space, addr, addr + span) : [];
      space.insert(new Vma(addr, addr + span, buffer, offset, prot, isDeviceMemory(buffer)));
      mapping = { addr, prot, directory: where.directory, extents: sliceExtents(where.extents, offset, length) };
    } catch (error) {
      await this.#files.put(buffer);
      throw error;
    }
    this.#events.emit({
      kind: 'MMAP',
      bufferId: buffer.bufferId,
      pid,
      detail: `[${hex(mapping.addr)}, ${hex(mapping.addr + span)}) ${protString(prot)} offset ${offset} of fd ${fd}${replaced.length > 0 ? `, replacing ${replaced.length} VMA(s)` : ''}`,
    });
    await this.#putAll(replaced);
    return mapping;
  }

  /**
   * munmap(2): EINVAL for an address that is not page aligned, length 0, or
   * a range past TASK_SIZE; ENOMEM if a split would pass maxMapCount. Pages
   * with no mapping are skipped. Resolves once the references of the VMAs
   * that went are dropped (a last one releases its buffer).
   */
  async munmap(pid: number, addr: number, length: number): Promise<void> {
    const space = this.#existing(pid);
    if (!isPageAligned(addr)) throw errno('EINVAL', `munmap: address ${addr} is not a non-negative multiple of the page size`);
    if (!Number.isSafeInteger(length) || length <= 0) throw errno('EINVAL', `munmap: length ${length} is not a positive integer`);
    const end = addr + pageAlign(length);
    if (addr > TASK_SIZE || end > TASK_SIZE) throw errno('EINVAL', `munmap: [${hex(addr)}, ${hex(end)}) runs past the end of user space (${hex(TASK_SIZE)})`);
    if (space === undefined) return;
    const removed = this.#unmapRange(space, addr, end);
    if (removed.length > 0) {
      this.#events.emit({ kind: 'MUNMAP', pid, detail: `[${hex(addr)}, ${hex(end)}): ${removed.length} VMA(s) unmapped or cut` });
    }
    await this.#putAll(removed);
  }

  /** /proc/<pid>/maps: ESRCH for an unknown pid. */
  maps(pid: number): VmaInfo[] {
    return (this.#existing(pid)?.vmas() ?? []).map((vma) => ({
      addr: vma.start,
      length: vma.length,
      bufferId: vma.file.bufferId,
      offset: vma.offset,
      prot: vma.prot,
      deviceMemory: vma.deviceMemory,
    }));
  }

  /** How many VMAs the process has (0 for an unknown pid). */
  vmaCount(pid: number): number {
    return this.#spaces.get(pid)?.count ?? 0;
  }

  /**
   * The walk of get_user_pages() over [start, end) of `pid`'s address
   * space: pieces in address order, each a slice of the VMA mapping it or a
   * hole. ESRCH for an unknown pid.
   */
  walk(pid: number, start: number, end: number): RangePiece<DmaBuf>[] {
    const space = this.#existing(pid);
    return space === undefined ? [{ start, end, vma: undefined }] : space.pieces(start, end);
  }

  /**
   * exit_mm(): the address space of an exiting process (its pid already
   * gone) is emptied and every VMA's reference dropped. Returns how many
   * VMAs there were.
   */
  async exitMm(pid: number): Promise<number> {
    const space = this.#spaces.get(pid);
    if (space === undefined) return 0;
    this.#spaces.delete(pid);
    const vmas = space.clear();
    await this.#putAll(vmas);
    return vmas.length;
  }

  /** A live process's address space, made on first use: ESRCH for an unknown pid. */
  #space(pid: number): AddressSpace<DmaBuf> {
    this.#files.process(pid);
    let space = this.#spaces.get(pid);
    if (space === undefined) {
      space = new AddressSpace<DmaBuf>();
      this.#spaces.set(pid, space);
    }
    return space;
  }

  /** A live process's address space if it has one: ESRCH for an unknown pid. */
  #existing(pid: number): AddressSpace<DmaBuf> | undefined {
    this.#files.process(pid);
    return this.#spaces.get(pid);
  }

  /** Where a new VMA of `span` bytes goes: ENOMEM for one VMA too many or no room. */
  #place(space: AddressSpace<DmaBuf>, span: number, hint: number, fixed: boolean): number {
    const after = (fixed ? space.countAfterUnmap(hint, hint + span) : space.count) + 1;
    if (after > this.#maxMapCount) {
      throw errno('ENOMEM', `mmap: the process has ${space.count} VMAs; vm.max_map_count is ${this.#maxMapCount}`);
    }
    if (fixed) return hint;
    const addr = space.place(span, hint);
    if (addr === undefined) throw errno('ENOMEM', `mmap: no free range of ${span} bytes in the address space`);
    return addr;
  }

  /**
   * Unmaps [start, end) of `space` (ENOMEM if a split would pass
   * maxMapCount). The pieces that stay take references of their own; the
   * VMAs that went are returned for the caller to drop theirs.
   */
  #unmapRange(space: AddressSpace<DmaBuf>, start: number, end: number): BufferVma[] {
    if (space.countAfterUnmap(start, end) > this.#maxMapCount) {
      throw errno('ENOMEM', `munmap: splitting a VMA would pass vm.max_map_count (${this.#maxMapCount})`);
    }
    const { removed, kept } = space.unmap(start, end);
    for (const piece of kept) piece.file.get();
    return removed;
  }

  async #putAll(vmas: readonly BufferVma[]): Promise<void> {
    for (const vma of vmas) await this.#files.put(vma.file);
  }
}

/** A buffer of a PCI BAR is mapped VM_IO | VM_PFNMAP (vfio's mmap, io_remap_pfn_range()). */
function isDeviceMemory(buffer: DmaBuf): boolean {
  return buffer.providerBdf !== '';
}

/** MAP_FIXED's address: page aligned (EINVAL), not below mmap_min_addr (EPERM), within TASK_SIZE (ENOMEM). */
function checkFixed(addr: number, span: number): void {
  if (!isPageAligned(addr)) throw errno('EINVAL', `mmap: MAP_FIXED address ${addr} is not a multiple of the page size`);
  if (addr < MMAP_MIN_ADDR) throw errno('EPERM', `mmap: MAP_FIXED address ${hex(addr)} is below vm.mmap_min_addr (${hex(MMAP_MIN_ADDR)})`);
  if (addr + span > TASK_SIZE) throw errno('ENOMEM', `mmap: [${hex(addr)}, ${hex(addr + span)}) runs past the end of user space (${hex(TASK_SIZE)})`);
}

