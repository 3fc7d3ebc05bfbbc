export { resolveShmDir, DEFAULT_SHM_DIR, SHM_DIR_ENV } from './shm-dir';
export { SegmentStore, type SegmentStoreOptions } from './segment-store';
export { Segment, type SegmentHandle } from './segment';
export { SharedMemory, type Extent } from './shared-memory';
export { listSegmentFiles, allocatedBytes, type SegmentInfo } from './accounting';
export { isValidSegmentName, validateSegmentName, MAX_SEGMENT_NAME_LENGTH } from './segment-name';
export { mapShared } from './guarded-map';
export { PAGE_SIZE, GiB, MAX_MAP_BYTES, MAP_OFFSET_LIMIT, DEFAULT_CHUNK_SIZE } from './limits';
