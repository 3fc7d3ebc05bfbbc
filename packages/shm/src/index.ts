/**
 * Shared memory for the model's device BARs: segment files in a tmpfs
 * directory mapped MAP_SHARED through mmap-io, and sparse regions of any size
 * made of one file per chunk (at most 1 GiB) so no mmap-io call ever sees a
 * size or offset its 32-bit arguments would mangle.
 */
export { resolveShmDir, DEFAULT_SHM_DIR, SHM_DIR_ENV } from './shm-dir';
export { claimShmDir, type ShmDirClaim } from './shm-dir-claim';
export { shmIdentity, SHM_IDENTITY_FILE } from './shm-identity';
export { SegmentStore, type SegmentStoreOptions } from './segment-store';
export { Segment, type SegmentHandle } from './segment';
export { SharedMemory, type Extent } from './shared-memory';
export { listSegmentFiles, allocatedBytes, type SegmentInfo } from './accounting';
export { isValidSegmentName, validateSegmentName, MAX_SEGMENT_NAME_LENGTH } from './segment-name';
export { mapShared } from './guarded-map';
export { PAGE_SIZE, GiB, MAX_MAP_BYTES, MAP_OFFSET_LIMIT, DEFAULT_CHUNK_SIZE } from './limits';
export { checkRange } from './range';
