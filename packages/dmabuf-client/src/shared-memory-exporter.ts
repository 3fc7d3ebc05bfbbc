import { errno } from '@p2p/errno';
import type { dmabuf } from '@p2p/proto';
import { type SegmentStore, SharedMemory } from '@p2p/shm';
import type { OwnerCallInfo, OwnerOps } from './owner-ops';

/** The unit of a fence's copy: all-zero blocks are skipped so the fresh segments stay sparse. */
const COPY_BLOCK = 1024 * 1024;
const ZERO_BLOCK = Buffer.alloc(COPY_BLOCK);

interface Region {
  memory: SharedMemory;
  readonly dmaBase: bigint;
  /** The prefix it was added with; relocations append -fence<n>. */
  readonly basePrefix: string;
  relocations: number;
}

/**
 * OwnerOps for buffers backed by @p2p/shm SharedMemory regions: the exporter
 * of tests, and the reference for real ones (vfio-pci's BARs work the same).
 *
 * - map: the region's extents, with DMA addresses dmaBase + offset in the
 *   buffer (a BAR's bus address plus the offset, as vfio_pci_dma_buf_map
 *   builds its sg_table).
 * - fence: relocation. The bytes go to a fresh region (a new prefix), the old
 *   region is destroyed (its files unlinked), and later maps return the new
 *   segments: a fenced importer's stale mapping, in a process that froze
 *   without acking, writes into an orphaned file nobody reads.
 * - release: destroys the region.
 */
export class SharedMemoryExporter implements OwnerOps {
  readonly #store: SegmentStore;
  readonly #regions = new Map<string, Region>();

  /** `store` is the owner's segment directory, where relocated regions are created. */
  constructor(store: SegmentStore) {
    this.#store = store;
  }

  /**
   * Serves `memory` as the buffer exported with `handle`. The region must live
   * in the store's directory: that is where the registry and importers look
   * for the segments an owner names. EEXIST if the handle is taken.
   */
  addBuffer(handle: string, memory: SharedMemory, dmaBase: bigint): void {
    if (this.#regions.has(handle)) throw errno('EEXIST', `buffer ${handle} is already served`);
    this.#regions.set(handle, { memory, dmaBase, basePrefix: memory.prefix, relocations: 0 });
  }

  /** The region behind `handle` now (a fence replaces it). ENOENT if unknown or released. */
  memoryOf(handle: string): SharedMemory {
    return this.#region(handle, 'memoryOf').memory;
  }

  map(call: OwnerCallInfo): dmabuf.Extent[] {
    const region = this.#region(handleOf(call, 'map'), 'map');
    let offset = 0n;
    return region.memory.extents(0, region.memory.size).map((extent) => {
      const length = BigInt(extent.length);
      const mapped: dmabuf.Extent = { segment: extent.segment, segmentOffset: BigInt(extent.offset), length, dmaAddress: region.dmaBase + offset };
      offset += length;
      return mapped;
    });
  }

  fence(call: OwnerCallInfo): void {
    const region = this.#region(handleOf(call, 'fence'), 'fence');
    const old = region.memory;
    const fresh = SharedMemory.create(this.#store, `${region.basePrefix}-fence${region.relocations + 1}`, old.size);
    try {
      copySparse(old, fresh, this.#store);
    } catch (error) {
      fresh.destroy();
      throw error;
    }
    region.memory = fresh;
    region.relocations++;
    old.destroy();
  }

  release(call: OwnerCallInfo): void {
    const handle = handleOf(call, 'release');
    const region = this.#region(handle, 'release');
    this.#regions.delete(handle);
    region.memory.destroy();
  }

  #region(handle: string, op: string): Region {
    const region = this.#regions.get(handle);
    if (region === undefined) throw errno('ENOENT', `${op}: no buffer ${handle}`);
    return region;
  }
}

function handleOf(call: OwnerCallInfo, op: string): string {
  if (call.handle === undefined) throw errno('ENOENT', `${op}: file ${call.fileId} was not exported by this owner session`);
  return call.handle;
}

/**
 * Copies every byte of `from` into `to` (same size) without filling holes:
 * chunks with no allocated blocks are skipped whole, and within the others
 * all-zero blocks are not written. A 64 GiB BAR that holds 1 MiB of data
 * costs about 1 MiB in its new home.
 */
function copySparse(from: SharedMemory, to: SharedMemory, store: SegmentStore): void {
  let offset = 0;
  for (const extent of from.extents(0, from.size)) {
    if (store.stat(extent.segment).allocatedBytes > 0) {
      for (let at = 0; at < extent.length; at += COPY_BLOCK) {
        const length = Math.min(COPY_BLOCK, extent.length - at);
        const block = from.read(offset + at, length);
        if (!block.equals(ZERO_BLOCK.subarray(0, length))) to.write(offset + at, block);
      }
    }
    offset += extent.length;
  }
}
