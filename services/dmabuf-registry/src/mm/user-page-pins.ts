import { errno, ErrnoError } from '@p2p/errno';
import { PAGE_SIZE } from '@p2p/shm';
import type { BufferExtents, CpuAccess } from '../dma-buf/cpu-access';
import type { DmaBuf } from '../dma-buf/dma-buf';
import type { RegistryEvents } from '../events/registry-events';
import type { FileLayer } from '../files/file-layer';
import { sliceExtents } from '../segments/extents';
import type { RangePiece } from './address-space';
import { TASK_SIZE, hex, isPageAligned } from './layout';
import type { BufferVma, MemoryManager } from './memory-manager';
import { PROT_READ, PROT_WRITE } from './prot';

/** The most pages one PinUserPages call pins by default: 1 GiB of 4 KiB pages. Larger ranges are pinned in pieces. */
export const DEFAULT_MAX_PIN_PAGES = 262_144;

export interface PinRequest {
  /** The process whose address space is walked. */
  readonly pid: number;
  readonly addr: number;
  readonly length: number;
  /** FOLL_WRITE: the device will write the pages. */
  readonly write: boolean;
  /** The pinning service's own process: the pin is its, and its exit unpins. */
  readonly pinnerPid: number;
}

/** Host memory: `length` bytes at `segmentOffset` of segment file `segment`. */
export interface UserPageExtent {
  readonly segment: string;
  readonly segmentOffset: number;
  readonly length: number;
}

export interface PinnedPages {
  readonly pinId: number;
  /** The directory the segments are in, as their owner sees it, and its tmpfs identity. */
  readonly directory: string;
  readonly shmId: string;
  /** The pages of the range in order, adjacent pieces of one segment merged. */
  readonly extents: UserPageExtent[];
}

interface UserPagePin {
  readonly pinId: number;
  readonly pid: number;
  readonly pinnerPid: number;
  /** Each buffer the pages belong to, once: the pin holds a reference to each. */
  readonly buffers: readonly DmaBuf[];
}

/**
 * pin_user_pages(FOLL_LONGTERM) for platform services (mm/gup.c), as vfio's
 * VFIO_IOMMU_MAP_DMA and iommufd's IOMMU_IOAS_MAP pin a process's memory
 * before mapping it for a device. A pin holds a reference to every buffer
 * its pages belong to, so the pages stay whatever the process does (munmap,
 * close, exit), as pinned pages do, until unpin or the exit of the pinning
 * process: the pins are its, as vfio's belong to its container, so a
 * crashed service leaks nothing.
 *
 * The walk fails as GUP's does: a page with no VMA, a VM_IO|VM_PFNMAP VMA
 * (device memory has no struct page), or a VMA without the access asked
 * for (check_vma_flags()) is EFAULT; so is a page the buffer cannot back (past
 * its end, revoked or orphaned: the fault would be SIGBUS). All or nothing:
 * a failed call pins nothing.
 */
export class UserPagePins {
  readonly #files: FileLayer;
  readonly #memory: MemoryManager;
  readonly #cpu: CpuAccess;
  readonly #events: RegistryEvents;
  readonly #maxPages: number;
  readonly #pins = new Map<number, UserPagePin>();
  #lastPinId = 0;

  constructor(files: FileLayer, memory: MemoryManager, cpu: CpuAccess, events: RegistryEvents, maxPages: number) {
    this.#files = files;
    this.#memory = memory;
    this.#cpu = cpu;
    this.#events = events;
    this.#maxPages = maxPages;
  }

  /**
   * Pins [addr, addr + length) of `pid`. In order: ESRCH for an unknown pid
   * or pinner; EINVAL for an address or length that is not a whole number of
   * pages (pin_user_pages() takes pages: the caller aligns), length 0, a
   * range past TASK_SIZE, or more than the most pages per call; then the
   * walk's EFAULTs, first page first; EFAULT too for pages in another tmpfs
   * than the first page's (one pin names one directory).
   */
  async pin(request: PinRequest): Promise<PinnedPages> {
    const { pid, addr, length, write, pinnerPid } = request;
    this.#files.process(pid);
    this.#files.process(pinnerPid);
    if (!isPageAligned(addr) || !isPageAligned(length)) {
      throw errno('EINVAL', `pin_user_pages: address ${addr} and length ${length} must be whole pages of ${PAGE_SIZE} bytes`);
    }
    if (length === 0) throw errno('EINVAL', 'pin_user_pages: length 0');
    if (addr + length > TASK_SIZE) throw errno('EINVAL', `pin_user_pages: [${hex(addr)}, ${hex(addr + length)}) runs past the end of user space`);
    if (length / PAGE_SIZE > this.#maxPages) {
      throw errno('EINVAL', `pin_user_pages: ${length / PAGE_SIZE} pages; at most ${this.#maxPages} per call (pin a large range in pieces)`);
    }
    const vmas = this.#memory.walk(pid, addr, addr + length).map((piece) => checkPiece(piece, write));
    const buffers = [...new Set(vmas.map((vma) => vma.file))];
    const shmId = buffers[0]!.owner.owner.shmId;
    for (const vma of vmas) {
      if (vma.file.owner.owner.shmId !== shmId) {
        throw errno('EFAULT', `pin_user_pages: the page at ${hex(vma.start)} is in another tmpfs than the page at ${hex(addr)}: pin them apart`);
      }
    }
    for (const buffer of buffers) buffer.get();
    try {
      const where = new Map<DmaBuf, BufferExtents>();
      for (const buffer of buffers) where.set(buffer, await this.#extentsOf(buffer));
      // The pinning service may have gone while the exporters answered: then nobody would unpin.
      this.#files.process(pinnerPid);
      const extents = mergeAdjacent(vmas.flatMap((vma) => sliceExtents(where.get(vma.file)!.extents, vma.offset, vma.length)));
      const pin: UserPagePin = { pinId: ++this.#lastPinId, pid, pinnerPid, buffers };
      this.#pins.set(pin.pinId, pin);
      for (const buffer of buffers) buffer.userPins++;
      this.#events.emit({
        kind: 'PIN_USER_PAGES',
        bufferId: buffers[0]!.bufferId,
        pid,
        detail: `pin ${pin.pinId} for pid ${pinnerPid}: [${hex(addr)}, ${hex(addr + length)}) ${write ? 'for writing' : 'for reading'}, dma-buf(s) ${buffers.map((b) => b.bufferId).join(', ')}`,
      });
      return { pinId: pin.pinId, directory: where.get(buffers[0]!)!.directory, shmId, extents };
    } catch (error) {
      for (const buffer of buffers) await this.#files.put(buffer);
      throw error;
    }
  }

  /** unpin_user_pages(): ENOENT for a pin that is not `pinnerPid`'s (unknown, unpinned, another's). */
  async unpin(pinnerPid: number, pinId: number): Promise<void> {
    const pin = this.#pins.get(pinId);
    if (pin === undefined || pin.pinnerPid !== pinnerPid) throw errno('ENOENT', `pid ${pinnerPid} holds no pin ${pinId}`);
    await this.#release(pin, 'unpinned');
  }

  /** The pinning process exited: every pin it held goes. Returns how many. */
  async pinnerExited(pinnerPid: number): Promise<number> {
    const held = [...this.#pins.values()].filter((pin) => pin.pinnerPid === pinnerPid);
    for (const pin of held) await this.#release(pin, `unpinned: pid ${pinnerPid} exited`);
    return held.length;
  }

  /** How many pins `pinnerPid` holds. */
  heldBy(pinnerPid: number): number {
    let count = 0;
    for (const pin of this.#pins.values()) if (pin.pinnerPid === pinnerPid) count++;
    return count;
  }

  async #release(pin: UserPagePin, why: string): Promise<void> {
    this.#pins.delete(pin.pinId);
    for (const buffer of pin.buffers) buffer.userPins--;
    this.#events.emit({ kind: 'UNPIN_USER_PAGES', bufferId: pin.buffers[0]!.bufferId, pid: pin.pid, detail: `pin ${pin.pinId} ${why}` });
    for (const buffer of pin.buffers) await this.#files.put(buffer);
  }

  /** Where a buffer's pages are now; a buffer revoked meanwhile faults (EFAULT). */
  async #extentsOf(buffer: DmaBuf): Promise<BufferExtents> {
    try {
      return await this.#cpu.extentsOf(buffer, 'pin_user_pages');
    } catch (error) {
      if (error instanceof ErrnoError && error.errno === 'ENODEV') throw errno('EFAULT', error.detail);
      throw error;
    }
  }
}

/** check_vma_flags() and the fault a page would take, for one piece of the walk. */
function checkPiece(piece: RangePiece<DmaBuf>, write: boolean): BufferVma {
  const vma = piece.vma;
  const at = hex(piece.start);
  if (vma === undefined) throw errno('EFAULT', `pin_user_pages: no mapping at ${at}`);
  const buffer = vma.file;
  if (vma.deviceMemory) {
    throw errno('EFAULT', `pin_user_pages: ${at} maps device memory (dma-buf ${buffer.bufferId} of ${buffer.providerBdf}: VM_IO | VM_PFNMAP)`);
  }
  if (write && (vma.prot & PROT_WRITE) === 0) throw errno('EFAULT', `pin_user_pages: the mapping at ${at} is not writable`);
  if (!write && (vma.prot & PROT_READ) === 0) throw errno('EFAULT', `pin_user_pages: the mapping at ${at} is not readable`);
  if (vma.offset + vma.length > buffer.size) {
    throw errno('EFAULT', `pin_user_pages: the page at ${hex(piece.start + Math.max(0, buffer.size - vma.offset))} lies past the end of dma-buf ${buffer.bufferId} (${buffer.size} bytes)`);
  }
  if (buffer.orphaned || buffer.revoked) throw errno('EFAULT', `pin_user_pages: dma-buf ${buffer.bufferId} mapped at ${at} is ${buffer.orphaned ? 'orphaned' : 'revoked'}`);
  return vma;
}

/** Extents in order, with each run of contiguous pieces of one segment made one. */
function mergeAdjacent(pieces: readonly { segment: string; segmentOffset: number; length: number }[]): UserPageExtent[] {
  const merged: { segment: string; segmentOffset: number; length: number }[] = [];
  for (const piece of pieces) {
    const last = merged.at(-1);
    if (last !== undefined && last.segment === piece.segment && last.segmentOffset + last.length === piece.segmentOffset) last.length += piece.length;
    else merged.push({ segment: piece.segment, segmentOffset: piece.segmentOffset, length: piece.length });
  }
  return merged;
}
