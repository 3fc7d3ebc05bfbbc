import type { OwnerAttachmentRef, OwnerExtent } from '../owners/file-owner';
import type { Process } from '../processes/process';
import type { DmaBuf } from './dma-buf';
import type { DmaMapType } from './p2p-oracle';

/** Shared memory when the importer sees the owner's tmpfs, else the streamed fallback. */
export type Transport = 'shared-memory' | 'stream';

/** The sg_table an importer got from dma_buf_map_attachment(). */
export interface AttachmentMapping {
  readonly transport: Transport;
  /** The owner's segment directory. */
  readonly directory: string;
  readonly extents: readonly OwnerExtent[];
  readonly mapType: DmaMapType;
  /** Bumps on every map of the attachment: a mapping of an older generation is stale. */
  readonly generation: number;
}

/** What an importer said when it attached. */
export interface AttachmentParams {
  readonly importerBdf: string;
  readonly dynamic: boolean;
  readonly peer2peer: boolean;
  /** The importer's tmpfs identity. */
  readonly shmId: string;
}

/**
 * struct dma_buf_attachment. It holds a reference to its buffer's file until
 * it is detached or fenced. One mapping at a time in this model (the kernel
 * caches one sg_table per attachment too).
 */
export class Attachment {
  /** dma_buf_pin() calls not yet undone by dma_buf_unpin(). */
  pins = 0;
  mapping: AttachmentMapping | undefined;
  #generation = 0;

  constructor(
    readonly attachmentId: number,
    readonly buffer: DmaBuf,
    /** The importing driver's process: it gets the move_notify calls. */
    readonly importer: Process,
    readonly params: AttachmentParams,
  ) {}

  get importerPid(): number {
    return this.importer.pid;
  }

  get ref(): OwnerAttachmentRef {
    return {
      bufferId: this.buffer.bufferId,
      handle: this.buffer.handle,
      attachmentId: this.attachmentId,
      importerBdf: this.params.importerBdf,
      peer2peer: this.params.peer2peer,
    };
  }

  /** Records a successful map under the next generation. */
  setMapping(mapping: Omit<AttachmentMapping, 'generation'>): AttachmentMapping {
    this.#generation++;
    this.mapping = { ...mapping, generation: this.#generation };
    return this.mapping;
  }
}
