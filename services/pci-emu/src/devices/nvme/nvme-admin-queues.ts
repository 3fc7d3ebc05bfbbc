import { type NvmeCommand, type NvmeCommandResult, nvmeFailed, NVME_SQE_SIZE } from './nvme-command';
import type { ControllerMemoryBuffer } from './nvme-cmb';
import { NVME_CQE_SIZE } from './nvme-completion';
import type { NvmeFeatures } from './nvme-features';
import { NvmeCompletionQueue, type NvmeQueueLocation, NvmeSubmissionQueue } from './nvme-queue';
import { NVME_MAX_QUEUE_ENTRIES, NVME_NVM_IOCQES, NVME_NVM_IOSQES, nvmeCcIocqes, nvmeCcIosqes } from './nvme-regs';
import {
  NVME_SC_CMB_INVALID_USE,
  NVME_SC_CQ_INVALID,
  NVME_SC_INVALID_FIELD,
  NVME_SC_INVALID_QUEUE,
  NVME_SC_INVALID_VECTOR,
  NVME_SC_PRP_INVALID_OFFSET,
  NVME_SC_QID_INVALID,
  NVME_SC_QUEUE_SIZE,
  NVME_SC_SUCCESS,
  nvmeInvalid,
} from './nvme-status';

/** At most this many I/O submission and completion queues (QIDs 1 .. 64). */
export const NVME_MAX_IO_QUEUES = 64;
/** Interrupt vectors a completion queue may name: one per queue. Interrupts are not raised; IV is checked and kept. */
export const NVME_MAX_INTERRUPT_VECTORS = NVME_MAX_IO_QUEUES + 1;

/** CDW11 PC: the queue is one contiguous range (PRP1 its base), required since CAP.CQR is 1. */
const NVME_QUEUE_PHYS_CONTIG = 1 << 0;
/** Create I/O Completion Queue CDW11 IEN. */
const NVME_CQ_IRQ_ENABLED = 1 << 1;

/** What the queue commands need of the controller. */
export interface NvmeQueueContext {
  readonly sqs: Map<number, NvmeSubmissionQueue>;
  readonly cqs: Map<number, NvmeCompletionQueue>;
  readonly features: NvmeFeatures;
  readonly cmb: ControllerMemoryBuffer;
  /** CC as last written: IOSQES and IOCQES must be set before I/O queues are created. */
  cc(): number;
  /** The memory page size CC.MPS selected at enable. */
  pageSize(): number;
  /** The command id in `slot` of `sq`, read from its memory; undefined if the read fails. */
  commandIdAt(sq: NvmeSubmissionQueue, slot: number): number | undefined;
  queueCreated(queue: NvmeSubmissionQueue | NvmeCompletionQueue): void;
  queueDeleted(queue: NvmeSubmissionQueue | NvmeCompletionQueue): void;
}

const ok: NvmeCommandResult = { status: NVME_SC_SUCCESS, result: 0, bytes: 0 };
const refuse = (status: number): NvmeCommandResult => nvmeFailed(nvmeInvalid(status));

/** CDW10: QID 15:0, QSIZE 31:16 (0's based). */
const queueId = (command: NvmeCommand): number => command.cdw10 & 0xffff;
const queueEntries = (command: NvmeCommand): number => (command.cdw10 >>> 16) + 1;

/**
 * Where a queue of `bytes` at `base` lives; Invalid Use of Controller Memory
 * Buffer if it is in the CMB and CMBSZ does not offer queues of its kind
 * there, or if it straddles the CMB's edge.
 */
function queueLocation(context: NvmeQueueContext, base: bigint, bytes: number, allowed: boolean): NvmeQueueLocation | number {
  const at = context.cmb.locate(base, bytes);
  if (at === 'host') return 'host';
  if (at === 'partial' || !allowed) return nvmeInvalid(NVME_SC_CMB_INVALID_USE);
  return 'cmb';
}

/**
 * Create I/O Completion Queue (NVMe 1.4, "Create I/O Completion Queue
 * command"), checked in QEMU's nvme_create_cq() order: QID (0, beyond what
 * Number of Queues granted, or in use), QSIZE (1 entry, beyond MQES, or
 * CC.IOCQES not set), PRP1 not page aligned, IV, PC clear; then the CMB.
 */
export function createIoCompletionQueue(command: NvmeCommand, context: NvmeQueueContext): NvmeCommandResult {
  const qid = queueId(command);
  const entries = queueEntries(command);
  const vector = command.cdw11 >>> 16;
  if (qid === 0 || qid > context.features.completionQueues || context.cqs.has(qid)) return refuse(NVME_SC_QID_INVALID);
  if (entries < 2 || entries > NVME_MAX_QUEUE_ENTRIES || nvmeCcIocqes(context.cc()) !== NVME_NVM_IOCQES) return refuse(NVME_SC_QUEUE_SIZE);
  if (command.prp1 % BigInt(context.pageSize()) !== 0n) return refuse(NVME_SC_PRP_INVALID_OFFSET);
  if (vector >= NVME_MAX_INTERRUPT_VECTORS) return refuse(NVME_SC_INVALID_VECTOR);
  if ((command.cdw11 & NVME_QUEUE_PHYS_CONTIG) === 0) return refuse(NVME_SC_INVALID_FIELD);
  const location = queueLocation(context, command.prp1, entries * NVME_CQE_SIZE, context.cmb.support.completionQueues);
  if (typeof location === 'number') return nvmeFailed(location);
  const cq = new NvmeCompletionQueue(qid, command.prp1, entries, vector, (command.cdw11 & NVME_CQ_IRQ_ENABLED) !== 0, location);
  context.cqs.set(qid, cq);
  context.queueCreated(cq);
  return ok;
}

/**
 * Create I/O Submission Queue (NVMe 1.4, "Create I/O Submission Queue
 * command"), checked in QEMU's nvme_create_sq() order: CQID (0 or no such
 * CQ), QID, QSIZE (or CC.IOSQES not set), PRP1 alignment, PC; then the CMB.
 * QPRIO is ignored: arbitration is round robin (CAP.AMS 0).
 */
export function createIoSubmissionQueue(command: NvmeCommand, context: NvmeQueueContext): NvmeCommandResult {
  const qid = queueId(command);
  const entries = queueEntries(command);
  const cqid = command.cdw11 >>> 16;
  const cq = context.cqs.get(cqid);
  if (cqid === 0 || cq === undefined) return refuse(NVME_SC_CQ_INVALID);
  if (qid === 0 || qid > context.features.submissionQueues || context.sqs.has(qid)) return refuse(NVME_SC_QID_INVALID);
  if (entries < 2 || entries > NVME_MAX_QUEUE_ENTRIES || nvmeCcIosqes(context.cc()) !== NVME_NVM_IOSQES) return refuse(NVME_SC_QUEUE_SIZE);
  if (command.prp1 % BigInt(context.pageSize()) !== 0n) return refuse(NVME_SC_PRP_INVALID_OFFSET);
  if ((command.cdw11 & NVME_QUEUE_PHYS_CONTIG) === 0) return refuse(NVME_SC_INVALID_FIELD);
  const location = queueLocation(context, command.prp1, entries * NVME_SQE_SIZE, context.cmb.support.submissionQueues);
  if (typeof location === 'number') return nvmeFailed(location);
  const sq = new NvmeSubmissionQueue(qid, command.prp1, entries, cqid, location);
  context.sqs.set(qid, sq);
  cq.submissionQueues.add(qid);
  context.queueCreated(sq);
  return ok;
}

/**
 * Delete I/O Submission Queue (NVMe 1.4, "Delete I/O Submission Queue
 * command"). Every fetched command has completed (commands run to
 * completion within a turn); the commands still in the queue are dropped
 * without a completion, aborted implicitly as that section allows, which
 * QEMU's nvme_del_sq() does too.
 */
export function deleteIoSubmissionQueue(command: NvmeCommand, context: NvmeQueueContext): NvmeCommandResult {
  const qid = queueId(command);
  const sq = context.sqs.get(qid);
  if (qid === 0 || sq === undefined) return refuse(NVME_SC_QID_INVALID);
  context.sqs.delete(qid);
  context.cqs.get(sq.cqid)?.submissionQueues.delete(qid);
  context.queueDeleted(sq);
  return ok;
}

/**
 * Delete I/O Completion Queue (NVMe 1.4, "Delete I/O Completion Queue
 * command"): not the admin CQ (Invalid Queue Identifier), and not while a
 * submission queue completes into it (Invalid Queue Deletion).
 */
export function deleteIoCompletionQueue(command: NvmeCommand, context: NvmeQueueContext): NvmeCommandResult {
  const qid = queueId(command);
  const cq = context.cqs.get(qid);
  if (qid === 0 || cq === undefined) return refuse(NVME_SC_QID_INVALID);
  if (cq.submissionQueues.size > 0) return refuse(NVME_SC_INVALID_QUEUE);
  context.cqs.delete(qid);
  context.queueDeleted(cq);
  return ok;
}

/**
 * Abort (NVMe 1.4, "Abort command"): CDW10 SQID 15:0, CID 31:16. A fetched
 * command has already completed, so only a command still waiting in its
 * submission queue (behind a full completion queue, or later in this turn)
 * can be aborted: it completes with Command Abort Requested when the
 * controller reaches it, without running. DW0 bit 0 is 0 if the command was
 * found, 1 if not. An SQID with no queue is Invalid Field (QEMU's
 * nvme_abort()). Abort completes at once, so no more than one is ever
 * outstanding: ACL is never exceeded.
 */
export function abortCommand(command: NvmeCommand, context: NvmeQueueContext): NvmeCommandResult {
  const sqid = command.cdw10 & 0xffff;
  const cid = command.cdw10 >>> 16;
  const sq = context.sqs.get(sqid);
  if (sq === undefined) return refuse(NVME_SC_INVALID_FIELD);
  const slot = sq.pendingSlots().find((candidate) => context.commandIdAt(sq, candidate) === cid);
  if (slot === undefined) return { status: NVME_SC_SUCCESS, result: 1, bytes: 0 };
  sq.aborted.set(slot, cid);
  return ok;
}
