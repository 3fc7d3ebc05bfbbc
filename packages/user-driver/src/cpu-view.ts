import type { dmabuf } from '@p2p/proto';
import { SegmentStore } from '@p2p/shm';

/**
 * The CPU's view of what MmapFd mapped: the one segment extent behind it,
 * mapped here (the process's loads and stores, as a driver writes
 * descriptors and polls completions). The view keeps the mapping alive
 * after the segment's file is closed.
 */
export function cpuView(mapped: dmabuf.MmapFdResponse): Buffer {
  if (mapped.extents.length !== 1) throw new Error(`a heap buffer in ${mapped.extents.length} extents`);
  const extent = mapped.extents[0]!;
  const segment = new SegmentStore({ dir: mapped.directory }).open(extent.segment);
  try {
    return segment.view(Number(extent.segmentOffset), Number(extent.length));
  } finally {
    segment.close();
  }
}
