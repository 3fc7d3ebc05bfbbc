/*
 * The completion queue entry (NVMe 1.4 section 4.6, "Completion Queue
 * Entry"), 16 bytes little-endian, with include/linux/nvme.h's field names
 * (struct nvme_completion):
 *   0x00 result (DW0, command specific)   0x04 DW1 (reserved)
 *   0x08 sq_head (u16)   0x0a sq_id (u16)   0x0c command_id (u16)
 *   0x0e status (u16): phase tag in bit 0, the Status Field above it.
 */
export const NVME_CQE_SIZE = 16;

export interface NvmeCompletion {
  readonly result: number;
  /** The submission queue's head pointer when the entry was posted: how far the host may reuse the SQ. */
  readonly sqHead: number;
  readonly sqId: number;
  readonly commandId: number;
  /** The Status Field (nvme-status.ts), without the phase tag. */
  readonly status: number;
  /** The phase tag: flips each time the controller wraps the queue, so the host tells new entries from old. */
  readonly phase: boolean;
}

export function encodeNvmeCompletion(completion: NvmeCompletion, target: Buffer = Buffer.alloc(NVME_CQE_SIZE), at = 0): Buffer {
  target.writeUInt32LE(completion.result >>> 0, at);
  target.writeUInt32LE(0, at + 4);
  target.writeUInt16LE(completion.sqHead, at + 8);
  target.writeUInt16LE(completion.sqId, at + 10);
  target.writeUInt16LE(completion.commandId, at + 12);
  target.writeUInt16LE(((completion.status << 1) | (completion.phase ? 1 : 0)) & 0xffff, at + 14);
  return target;
}

export function decodeNvmeCompletion(source: Buffer, at = 0): NvmeCompletion {
  const status = source.readUInt16LE(at + 14);
  return {
    result: source.readUInt32LE(at),
    sqHead: source.readUInt16LE(at + 8),
    sqId: source.readUInt16LE(at + 10),
    commandId: source.readUInt16LE(at + 12),
    status: status >>> 1,
    phase: (status & 1) === 1,
  };
}
