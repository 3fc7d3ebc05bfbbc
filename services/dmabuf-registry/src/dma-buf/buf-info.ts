import type { DmaBuf } from './dma-buf';

export interface AttachmentInfo {
  readonly attachmentId: number;
  readonly importerPid: number;
  readonly importerBdf: string;
  readonly dynamic: boolean;
  readonly peer2peer: boolean;
  readonly mapped: boolean;
  readonly pinned: boolean;
}

/** One buffer as /sys/kernel/debug/dma_buf/bufinfo shows it. */
export interface BufInfo {
  readonly bufferId: number;
  readonly size: number;
  readonly exporter: string;
  /** file_count(): fds, fds in flight, attachments, VMAs, user page pins, and moves in progress. */
  readonly refcount: number;
  readonly openFlags: number;
  readonly revoked: boolean;
  /** Revoked for good: the exporter closed the device or is gone. */
  readonly orphaned: boolean;
  readonly providerBdf: string;
  readonly cpuAccess: boolean;
  readonly attachments: AttachmentInfo[];
  /** pin_user_pages() pins on its pages (PinUserPages). */
  readonly userPins: number;
}

export function bufInfo(buffer: DmaBuf): BufInfo {
  return {
    bufferId: buffer.bufferId,
    size: buffer.size,
    exporter: buffer.owner.name,
    refcount: buffer.refcount,
    openFlags: buffer.openFlags,
    revoked: buffer.revoked,
    orphaned: buffer.orphaned,
    providerBdf: buffer.providerBdf,
    cpuAccess: buffer.cpuAccess,
    attachments: buffer.attachments.map((attachment) => ({
      attachmentId: attachment.attachmentId,
      importerPid: attachment.importerPid,
      importerBdf: attachment.params.importerBdf,
      dynamic: attachment.params.dynamic,
      peer2peer: attachment.params.peer2peer,
      mapped: attachment.mapping !== undefined,
      pinned: attachment.pins > 0,
    })),
    userPins: buffer.userPins,
  };
}
