/** @p2p/dmabuf-registry domain: processes with fd tables and address spaces, the dma-buf core, move_notify and fencing, user page pins, the system heap. */

export { Registry, DEFAULT_ACK_TIMEOUT_MS, type RegistryOptions, type CreatedFile, type ProcessListing, type ListedProcess } from './registry';

// Processes and files
export type { ImporterNotifier, MoveNotice, FenceNotice } from './processes/process';
export type { ResolvedFd, ProcessInfo, FdInfo } from './files/file-layer';
export type { FileKind } from './files/registry-file';
export { FIRST_FD } from './files/fd-table';
export {
  O_RDONLY,
  O_WRONLY,
  O_RDWR,
  O_ACCMODE,
  O_NONBLOCK,
  O_CLOEXEC,
  DMA_HEAP_VALID_FD_FLAGS,
} from './files/open-flags';

// Owners
export type {
  FileOwner,
  OwnerExtent,
  OwnedFileRef,
  ClosedFd,
  OwnerAttachmentRef,
  OwnerAttach,
  OwnerMap,
} from './owners/file-owner';
export type { OwnerFailure, OwnerFailureReporter, VoidOwnerOp } from './owners/owner-record';

// dma-buf core
export type {
  ExportRequest,
  ExportResult,
  AttachRequest,
  AttachResult,
  MapResult,
} from './dma-buf/dma-buf-core';
export type { Transport, AttachmentMapping } from './dma-buf/attachment';
export type { MoveRequest, MoveResult } from './dma-buf/buffer-moves';
export type { BufInfo, AttachmentInfo } from './dma-buf/buf-info';
export type { P2pOracle, P2pMapType, DmaMapType } from './dma-buf/p2p-oracle';

// Address spaces and user page pins
export type { MmapOptions, Mapping, VmaInfo } from './mm/memory-manager';
export type { PinRequest, PinnedPages, UserPageExtent } from './mm/user-page-pins';
export { DEFAULT_MAX_PIN_PAGES } from './mm/user-page-pins';
export { PROT_NONE, PROT_READ, PROT_WRITE } from './mm/prot';
export { MMAP_BASE, MMAP_MIN_ADDR, TASK_SIZE, DEFAULT_MAX_MAP_COUNT } from './mm/layout';

// Segments
export type { SegmentAccess } from './segments/segment-access';
export { SegmentFileAccess } from './segments/segment-file-access';
export { sliceExtents } from './segments/extents';

// System heap
export { SYSTEM_HEAP, type SystemHeapOptions } from './heap/system-heap';

// Events
export type { RegistryEvent, RegistryEventKind, RegistryEventListener } from './events/registry-events';

// Service
export { startDmabufRegistry, DMABUF_REGISTRY_DEFAULTS } from './service';
