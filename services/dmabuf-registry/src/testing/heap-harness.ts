import { PAGE_SIZE, SegmentStore } from '@p2p/shm';
import type { RegistryOptions } from '../registry';
import { harness, type Harness } from './harness';

/** Heap segments of HEAP_CHUNK_PAGES pages: a buffer of more has several segment files. */
export const HEAP_CHUNK_PAGES = 4;

/** The harness with a system heap whose segments are files in `dir` (on the FakeOwner's tmpfs, "tmpfs-a"). */
export function heapHarness(dir: string, options: Partial<RegistryOptions> = {}): Harness & { store: SegmentStore } {
  const store = new SegmentStore({ dir, chunkSize: HEAP_CHUNK_PAGES * PAGE_SIZE });
  const h = harness({ heap: { store, directory: dir, shmId: 'tmpfs-a', prefix: 'heap' }, ...options });
  return { ...h, store };
}
