import { namespaceOf, type NamespaceStore, storeSucceeded } from './namespace-store';
import {
  NVME_CMD_FLUSH,
  NVME_CMD_FUSE_MASK,
  NVME_CMD_PSDT_MASK,
  NVME_CMD_READ,
  NVME_CMD_WRITE,
  NVME_CMD_WRITE_ZEROES,
  NVME_NSID_ALL,
  type NvmeCommand,
  type NvmeCommandResult,
  type NvmeDataDirection,
  nvmeFailed,
} from './nvme-command';
import type { NvmeIoCounters } from './nvme-log-pages';
import {
  NVME_SC_INVALID_FIELD,
  NVME_SC_INVALID_NS,
  NVME_SC_INVALID_OPCODE,
  NVME_SC_LBA_RANGE,
  NVME_SC_READ_ERROR,
  NVME_SC_SUCCESS,
  NVME_SC_WRITE_FAULT,
  nvmeInvalid,
} from './nvme-status';

/** CDW12 of Read, Write and Write Zeroes: NLB 15:0 (0's based), FUA bit 30. */
const NVME_RW_FUA = 1 << 30;

/** What the NVM command set needs of the controller. */
export interface NvmeIoContext {
  /** NSID n is namespaces[n - 1]. */
  readonly namespaces: readonly NamespaceStore[];
  /** Per namespace, as namespaces. */
  readonly counters: readonly NvmeIoCounters[];
  /** The most bytes one command may move (MDTS). */
  readonly maxTransferBytes: number;
  /** Volatile Write Cache Enable: when clear, every write is made durable before it completes. */
  volatileWriteCache(): boolean;
  /** Views of the command's `length` bytes of data, or the status that stopped the mapping. */
  mapData(command: NvmeCommand, length: number, direction: NvmeDataDirection): Buffer[] | number;
}

/** The first LBA of Read, Write and Write Zeroes: CDW10 (low) and CDW11 (high). */
export const startingLba = (command: NvmeCommand): bigint => (BigInt(command.cdw11) << 32n) | BigInt(command.cdw10);
const blockCount = (command: NvmeCommand): number => (command.cdw12 & 0xffff) + 1;

type IoHandler = (command: NvmeCommand, context: NvmeIoContext) => NvmeCommandResult;

const IO_COMMANDS: ReadonlyMap<number, IoHandler> = new Map<number, IoHandler>([
  [NVME_CMD_FLUSH, flush],
  [NVME_CMD_WRITE, (command, context) => readWrite(command, context, 'host-to-controller')],
  [NVME_CMD_READ, (command, context) => readWrite(command, context, 'controller-to-host')],
  [NVME_CMD_WRITE_ZEROES, writeZeroes],
]);

/**
 * Runs one NVM I/O command (NVMe 1.4 chapter 6, "NVM Command Set"). Checked
 * first, for every command: the opcode (Invalid Command Opcode), FUSE and
 * PSDT (Invalid Field); then the command's own checks.
 */
export function runIoCommand(command: NvmeCommand, context: NvmeIoContext): NvmeCommandResult {
  const run = IO_COMMANDS.get(command.opcode);
  if (run === undefined) return nvmeFailed(nvmeInvalid(NVME_SC_INVALID_OPCODE));
  if ((command.flags & (NVME_CMD_PSDT_MASK | NVME_CMD_FUSE_MASK)) !== 0) return nvmeFailed(nvmeInvalid(NVME_SC_INVALID_FIELD));
  return run(command, context);
}

/**
 * The namespace and the byte range of SLBA .. SLBA + NLB, or the status, in
 * this order: Invalid Namespace, a length beyond `maxBytes` (Invalid Field),
 * LBA Out of Range.
 */
function blockRange(command: NvmeCommand, context: NvmeIoContext, maxBytes: number): { store: NamespaceStore; offset: number; length: number } | number {
  const store = namespaceOf(context.namespaces, command.nsid);
  if (store === undefined) return nvmeInvalid(NVME_SC_INVALID_NS);
  const length = blockCount(command) * store.blockSize;
  // MDTS before the range, as QEMU's nvme_rw() checks them.
  if (length > maxBytes) return nvmeInvalid(NVME_SC_INVALID_FIELD);
  const slba = startingLba(command);
  if (slba + BigInt(blockCount(command)) > BigInt(store.blocks)) return nvmeInvalid(NVME_SC_LBA_RANGE);
  return { store, offset: Number(slba) * store.blockSize, length };
}

/**
 * Read and Write (NVMe 1.4, "Read command" and "Write command"): NSID,
 * transfer size (MDTS), LBA range, then the data's PRPs; the data moves
 * between the store and the mapped memory in one copy. A Write with FUA, or
 * with the volatile write cache disabled, is made durable before it
 * completes.
 */
function readWrite(command: NvmeCommand, context: NvmeIoContext, direction: NvmeDataDirection): NvmeCommandResult {
  const range = blockRange(command, context, context.maxTransferBytes);
  if (typeof range === 'number') return nvmeFailed(range);
  const views = context.mapData(command, range.length, direction);
  if (typeof views === 'number') return nvmeFailed(views);
  const counters = context.counters[command.nsid - 1]!;
  const reading = direction === 'controller-to-host';
  const durable = !context.volatileWriteCache() || (command.cdw12 & NVME_RW_FUA) !== 0;
  const stored = storeSucceeded(() => {
    if (reading) {
      range.store.readv(range.offset, views);
    } else {
      range.store.writev(range.offset, views);
      if (durable) range.store.flush();
    }
  });
  if (!stored) {
    counters.mediaErrors++;
    return nvmeFailed(reading ? NVME_SC_READ_ERROR : NVME_SC_WRITE_FAULT);
  }
  const units = BigInt(range.length / 512);
  if (reading) {
    counters.unitsRead += units;
    counters.readCommands++;
  } else {
    counters.unitsWritten += units;
    counters.writeCommands++;
  }
  return { status: NVME_SC_SUCCESS, result: 0, bytes: range.length };
}

/**
 * Write Zeroes (NVMe 1.4, "Write Zeroes command"): the range's blocks read
 * 0 afterwards. It moves no data, so MDTS does not bound it (NLB does: at
 * most 64 Ki blocks). DEAC is ignored: blocks are written, not deallocated.
 */
function writeZeroes(command: NvmeCommand, context: NvmeIoContext): NvmeCommandResult {
  const range = blockRange(command, context, Infinity);
  if (typeof range === 'number') return nvmeFailed(range);
  const counters = context.counters[command.nsid - 1]!;
  const durable = !context.volatileWriteCache() || (command.cdw12 & NVME_RW_FUA) !== 0;
  const stored = storeSucceeded(() => {
    range.store.writeZeroes(range.offset, range.length);
    if (durable) range.store.flush();
  });
  if (!stored) {
    counters.mediaErrors++;
    return nvmeFailed(NVME_SC_WRITE_FAULT);
  }
  counters.writeCommands++;
  return { status: NVME_SC_SUCCESS, result: 0, bytes: 0 };
}

/**
 * Flush (NVMe 1.4, "Flush command"): makes the namespace's completed writes
 * durable; NSID FFFFFFFFh flushes every namespace (Identify Controller VWC
 * bits 2:1 say so). Any other NSID that names no namespace is Invalid
 * Namespace.
 */
function flush(command: NvmeCommand, context: NvmeIoContext): NvmeCommandResult {
  let indices: number[];
  if (command.nsid === NVME_NSID_ALL) {
    indices = context.namespaces.map((_store, i) => i);
  } else {
    if (namespaceOf(context.namespaces, command.nsid) === undefined) return nvmeFailed(nvmeInvalid(NVME_SC_INVALID_NS));
    indices = [command.nsid - 1];
  }
  for (const i of indices) {
    if (!storeSucceeded(() => context.namespaces[i]!.flush())) {
      context.counters[i]!.mediaErrors++;
      return nvmeFailed(NVME_SC_WRITE_FAULT);
    }
  }
  return { status: NVME_SC_SUCCESS, result: 0, bytes: 0 };
}
