/**
 * The client library of dmabuf-registry: a process's session (fd calls,
 * heap buffers, CPU access, mmap and munmap, and for platform services
 * pin_user_pages), dynamic dma-buf importers that map lazily and
 * honour move_notify, ack and fence as ib_umem_dmabuf does, owner sessions
 * for exporting services, and an exporter backed by shared-memory regions.
 */
export {
  RegistrySession,
  type RegistrySessionOptions,
  type RegistrySessionEvents,
  type SessionState,
  type MmapOptions,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
} from './registry-session';
export { DmaBufImporter, type ImportDmaBufOptions, type MoveNotice, type MappingInfo, type ImporterState } from './dmabuf-importer';
export {
  OwnerSession,
  type OwnerSessionOptions,
  type OwnerSessionEvents,
  type ExportDmaBufOptions,
  type ExportedDmaBuf,
  type CreatedFile,
  type MoveResult,
} from './owner-session';
export type { OwnerOps, OwnerCallInfo } from './owner-ops';
export { SharedMemoryExporter } from './shared-memory-exporter';
export { CredentialCache } from './credential-cache';
export { FdCache, type CachedFile } from './fd-cache';
export { Emitter, type EventMap } from './emitter';
export { WRITE_CHUNK_BYTES } from './attachment-stream';
export { O_RDONLY, O_WRONLY, O_RDWR, O_NONBLOCK, O_CLOEXEC } from './open-flags';
export type { U64 } from './u64';
