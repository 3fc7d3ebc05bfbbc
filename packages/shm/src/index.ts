/**
 * Shared memory for the model's device BARs: segment files in a tmpfs
 * directory mapped MAP_SHARED through mmap-io, and sparse regions of any size
 * made of one file per chunk (at most 1 GiB) so no mmap-io call ever sees a
 * size or offset its 32-bit arguments would mangle; and the write notices a
 * bus master sends, over a Unix socket in the same directory, once it wrote
 * into a device's segments.
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
export { PAGE_SIZE, GiB, MAX_MAP_BYTES, MAP_OFFSET_LIMIT, DEFAULT_CHUNK_SIZE, MAX_SOCKET_PATH } from './limits';
export { checkRange } from './range';
export {
  encodeWriteNotice,
  isValidWriteNotice,
  WriteNoticeDecoder,
  WRITE_NOTICE_SOCKET,
  PCI_EMU_SEGMENT_PREFIX,
  WRITE_NOTICE_VERSION,
  MAX_WRITE_NOTICE_BYTES,
  type WriteNotice,
} from './write-notice';
export { WriteNoticeClient, type WriteNoticeClientOptions } from './write-notice-client';
export { WriteNoticeServer, type WriteNoticeServerOptions } from './write-notice-server';
