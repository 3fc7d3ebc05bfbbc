import { errno } from '@p2p/errno';
import { type Segment, type SegmentStore, validateSegmentName } from '@p2p/shm';

/**
 * A host segment as the IOMMU holds it. A DMA reads it with pread and
 * writes through its mapping (see bus/dma-transfer.ts), so Segment fits.
 */
export interface HostSegment {
  readonly name: string;
  readonly size: number;
  /** Copies target.length bytes at `offset` into `target`. */
  readInto(offset: number, target: Uint8Array): void;
  /** The shared mapping of [offset, offset + length): writes to it are writes to the file. */
  view(offset: number, length: number): Buffer;
}

/** Host memory by segment name, held while a mapping references it. */
export interface HostMemory {
  /** Takes a reference on segment `name`, opening and mapping its file on the first. */
  hold(name: string): HostSegment;
  /** A segment held now (EBADF otherwise). */
  get(name: string): HostSegment;
  /** Drops one reference taken by hold(); the last one closes the file and drops its mapping. */
  release(name: string): void;
  /** How many segments are held (open and mapped) now. */
  readonly held: number;
  /** Drops every segment, whatever its references. */
  close(): void;
}

export interface HostSegmentCacheOptions {
  /** Names that are not host memory (pci-emu's own BAR segments): EINVAL. */
  readonly refuse?: (name: string) => boolean;
}

/**
 * Host memory from the segment directory: one open file and one whole-file
 * MAP_SHARED mapping per segment, shared by every mapping that names it and
 * dropped when the last of them goes.
 *
 * Holding a segment is the model's pin_user_pages(): while a mapping holds
 * it, DMA reaches the file the name led to when it was first held, even if
 * its owner unlinks the name meanwhile (the bytes outlive the name, as pinned
 * pages outlive a munmap). Files are at most the store's chunk size (1 GiB),
 * so one mapping always holds a file.
 */
export class HostSegmentCache implements HostMemory {
  readonly #open = new Map<string, { segment: Segment; references: number }>();

  constructor(
    private readonly store: SegmentStore,
    private readonly options: HostSegmentCacheOptions = {},
  ) {}

  get held(): number {
    return this.#open.size;
  }

  hold(name: string): HostSegment {
    const cached = this.#open.get(name);
    if (cached !== undefined) {
      cached.references++;
      return cached.segment;
    }
    validateSegmentName(name);
    if (this.options.refuse?.(name)) throw errno('EINVAL', `segment ${name} is device memory, not host memory: map its BAR instead`);
    // ENOENT for a missing file; O_NOFOLLOW, so a planted symlink leads nowhere.
    const segment = this.store.open(name);
    try {
      // Map now, so an mmap failure is the map's error and not a DMA's.
      if (segment.size > 0) segment.view(0, segment.size);
    } catch (error) {
      segment.close();
      throw error;
    }
    this.#open.set(name, { segment, references: 1 });
    return segment;
  }

  get(name: string): HostSegment {
    const cached = this.#open.get(name);
    if (cached === undefined) throw errno('EBADF', `segment ${name} is not held`);
    return cached.segment;
  }

  release(name: string): void {
    const cached = this.#open.get(name);
    if (cached === undefined) return;
    if (--cached.references > 0) return;
    this.#open.delete(name);
    cached.segment.close();
  }

  close(): void {
    for (const { segment } of this.#open.values()) segment.close();
    this.#open.clear();
  }
}

/** A platform with no segment directory (unit tests of the bus): every host mapping is refused. */
export const NO_HOST_MEMORY: HostMemory = {
  hold: (name) => {
    throw errno('EOPNOTSUPP', `no host memory on this platform: cannot map segment ${name}`);
  },
  get: (name) => {
    throw errno('EBADF', `segment ${name} is not held`);
  },
  release: () => undefined,
  held: 0,
  close: () => undefined,
};
