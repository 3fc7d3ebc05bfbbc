/*
 * The submission queue entry (NVMe 1.4 section 4.2, "Submission Queue Entry
 * - Command Format"), 64 bytes little-endian, with include/linux/nvme.h's
 * field names (struct nvme_common_command):
 *   0x00 opcode (u8)  0x01 flags (u8: FUSE 1:0, PSDT 7:6)  0x02 command_id (u16)
 *   0x04 nsid (u32)   0x08 cdw2, cdw3   0x10 metadata (u64)
 *   0x18 prp1 (u64)   0x20 prp2 (u64)   0x28 cdw10 .. 0x3c cdw15
 */
export const NVME_SQE_SIZE = 64;

/* Admin command set opcodes (NVMe 1.4, "Opcodes for Admin Commands"); Linux's enum nvme_admin_opcode, upper-cased. */
export const NVME_ADMIN_DELETE_SQ = 0x00;
export const NVME_ADMIN_CREATE_SQ = 0x01;
export const NVME_ADMIN_GET_LOG_PAGE = 0x02;
export const NVME_ADMIN_DELETE_CQ = 0x04;
export const NVME_ADMIN_CREATE_CQ = 0x05;
export const NVME_ADMIN_IDENTIFY = 0x06;
export const NVME_ADMIN_ABORT_CMD = 0x08;
export const NVME_ADMIN_SET_FEATURES = 0x09;
export const NVME_ADMIN_GET_FEATURES = 0x0a;

/* NVM command set opcodes (NVMe 1.4, "Opcodes for NVM Commands"); Linux's enum nvme_opcode, upper-cased. */
export const NVME_CMD_FLUSH = 0x00;
export const NVME_CMD_WRITE = 0x01;
export const NVME_CMD_READ = 0x02;
export const NVME_CMD_WRITE_ZEROES = 0x08;

/** flags: FUSE, fused operations (not supported: FUSES is 0). */
export const NVME_CMD_FUSE_MASK = 0x03;
/** flags: PSDT, PRP or SGL for data transfer (SGLs are not supported: SGLS is 0). */
export const NVME_CMD_PSDT_MASK = 0xc0;
/** The broadcast NSID: every namespace (Flush), or the controller as a whole (Get Log Page). */
export const NVME_NSID_ALL = 0xffffffff;

/**
 * Which way a command's data moves, as its opcode's bits 1:0 say (NVMe 1.4,
 * the opcode tables' Data Transfer column): 01b host to controller (Write),
 * 10b controller to host (Read, Identify, Get Log Page).
 */
export type NvmeDataDirection = 'host-to-controller' | 'controller-to-host';

/** The direction opcode bits 1:0 give; undefined for no data (00b) and bidirectional (11b). */
export function nvmeDataDirection(opcode: number): NvmeDataDirection | undefined {
  const transfer = opcode & 0x3;
  if (transfer === 0x1) return 'host-to-controller';
  return transfer === 0x2 ? 'controller-to-host' : undefined;
}

export interface NvmeCommand {
  readonly opcode: number;
  readonly flags: number;
  readonly commandId: number;
  readonly nsid: number;
  readonly metadata: bigint;
  readonly prp1: bigint;
  readonly prp2: bigint;
  readonly cdw10: number;
  readonly cdw11: number;
  readonly cdw12: number;
  readonly cdw13: number;
  readonly cdw14: number;
  readonly cdw15: number;
}

/** The fields a host fills; the rest encode as 0. */
export type NvmeCommandFields = Pick<NvmeCommand, 'opcode' | 'commandId'> & Partial<NvmeCommand>;

export function decodeNvmeCommand(sqe: Buffer): NvmeCommand {
  return {
    opcode: sqe[0]!,
    flags: sqe[1]!,
    commandId: sqe.readUInt16LE(2),
    nsid: sqe.readUInt32LE(4),
    metadata: sqe.readBigUInt64LE(0x10),
    prp1: sqe.readBigUInt64LE(0x18),
    prp2: sqe.readBigUInt64LE(0x20),
    cdw10: sqe.readUInt32LE(0x28),
    cdw11: sqe.readUInt32LE(0x2c),
    cdw12: sqe.readUInt32LE(0x30),
    cdw13: sqe.readUInt32LE(0x34),
    cdw14: sqe.readUInt32LE(0x38),
    cdw15: sqe.readUInt32LE(0x3c),
  };
}

/** Encodes a command (drivers and tests) at `at` of `target`. */
export function encodeNvmeCommand(command: NvmeCommandFields, target: Buffer = Buffer.alloc(NVME_SQE_SIZE), at = 0): Buffer {
  target.fill(0, at, at + NVME_SQE_SIZE);
  target[at] = command.opcode;
  target[at + 1] = command.flags ?? 0;
  target.writeUInt16LE(command.commandId, at + 2);
  target.writeUInt32LE(command.nsid ?? 0, at + 4);
  target.writeBigUInt64LE(command.metadata ?? 0n, at + 0x10);
  target.writeBigUInt64LE(command.prp1 ?? 0n, at + 0x18);
  target.writeBigUInt64LE(command.prp2 ?? 0n, at + 0x20);
  const dwords = [command.cdw10, command.cdw11, command.cdw12, command.cdw13, command.cdw14, command.cdw15];
  dwords.forEach((dword, i) => target.writeUInt32LE((dword ?? 0) >>> 0, at + 0x28 + 4 * i));
  return target;
}

/** How a command ended: the completion's Status Field and DW0, and the data bytes it moved. */
export interface NvmeCommandResult {
  readonly status: number;
  readonly result: number;
  readonly bytes: number;
}

/** A command that failed before moving data. */
export const nvmeFailed = (status: number): NvmeCommandResult => ({ status, result: 0, bytes: 0 });
