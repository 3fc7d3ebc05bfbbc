/*
 * The names of opcodes and statuses, for metric labels and logs: the NVMe
 * 1.4 specification's, opcodes as its tables write them ("Write Zeroes",
 * "Create I/O SQ"), statuses upper-cased with underscores (LBA_OUT_OF_RANGE)
 * as the service's other labels are. The opcodes the controller does not
 * implement are named too, so that a host sending one reads as what it is
 * (Dataset Management, INVALID_OPCODE). Anything else is its hex value: an
 * opcode is a byte and a status 11 bits, so a label never takes unbounded
 * values.
 */
import {
  NVME_ADMIN_ABORT_CMD,
  NVME_ADMIN_CREATE_CQ,
  NVME_ADMIN_CREATE_SQ,
  NVME_ADMIN_DELETE_CQ,
  NVME_ADMIN_DELETE_SQ,
  NVME_ADMIN_GET_FEATURES,
  NVME_ADMIN_GET_LOG_PAGE,
  NVME_ADMIN_IDENTIFY,
  NVME_ADMIN_SET_FEATURES,
  NVME_CMD_FLUSH,
  NVME_CMD_READ,
  NVME_CMD_WRITE,
  NVME_CMD_WRITE_ZEROES,
} from './nvme-command';
import {
  NVME_SC_ABORT_LIMIT,
  NVME_SC_ABORT_QUEUE,
  NVME_SC_ABORT_REQ,
  NVME_SC_CMB_INVALID_USE,
  NVME_SC_CMD_SEQ_ERROR,
  NVME_SC_CQ_INVALID,
  NVME_SC_DATA_XFER_ERROR,
  NVME_SC_FEATURE_NOT_CHANGEABLE,
  NVME_SC_FEATURE_NOT_PER_NS,
  NVME_SC_FEATURE_NOT_SAVEABLE,
  NVME_SC_INVALID_FIELD,
  NVME_SC_INVALID_LOG_PAGE,
  NVME_SC_INVALID_NS,
  NVME_SC_INVALID_OPCODE,
  NVME_SC_INVALID_QUEUE,
  NVME_SC_INVALID_VECTOR,
  NVME_SC_LBA_RANGE,
  NVME_SC_NS_NOT_READY,
  NVME_SC_PRP_INVALID_OFFSET,
  NVME_SC_QID_INVALID,
  NVME_SC_QUEUE_SIZE,
  NVME_SC_READ_ERROR,
  NVME_SC_SUCCESS,
  NVME_SC_WRITE_FAULT,
} from './nvme-status';

/** Which command set an opcode belongs to: the admin queue's (qid 0) or the NVM command set of the I/O queues. */
export type NvmeQueueKind = 'admin' | 'io';

/** NVMe 1.4, "Opcodes for Admin Commands". */
const ADMIN_OPCODES: ReadonlyMap<number, string> = new Map([
  [NVME_ADMIN_DELETE_SQ, 'Delete I/O SQ'],
  [NVME_ADMIN_CREATE_SQ, 'Create I/O SQ'],
  [NVME_ADMIN_GET_LOG_PAGE, 'Get Log Page'],
  [NVME_ADMIN_DELETE_CQ, 'Delete I/O CQ'],
  [NVME_ADMIN_CREATE_CQ, 'Create I/O CQ'],
  [NVME_ADMIN_IDENTIFY, 'Identify'],
  [NVME_ADMIN_ABORT_CMD, 'Abort'],
  [NVME_ADMIN_SET_FEATURES, 'Set Features'],
  [NVME_ADMIN_GET_FEATURES, 'Get Features'],
  [0x0c, 'Asynchronous Event Request'],
  [0x0d, 'Namespace Management'],
  [0x10, 'Firmware Commit'],
  [0x11, 'Firmware Image Download'],
  [0x14, 'Device Self-test'],
  [0x15, 'Namespace Attachment'],
  [0x18, 'Keep Alive'],
  [0x19, 'Directive Send'],
  [0x1a, 'Directive Receive'],
  [0x1c, 'Virtualization Management'],
  [0x1d, 'NVMe-MI Send'],
  [0x1e, 'NVMe-MI Receive'],
  [0x7c, 'Doorbell Buffer Config'],
  [0x80, 'Format NVM'],
  [0x81, 'Security Send'],
  [0x82, 'Security Receive'],
  [0x84, 'Sanitize'],
  [0x86, 'Get LBA Status'],
]);

/** NVMe 1.4, "Opcodes for NVM Commands". */
const IO_OPCODES: ReadonlyMap<number, string> = new Map([
  [NVME_CMD_FLUSH, 'Flush'],
  [NVME_CMD_WRITE, 'Write'],
  [NVME_CMD_READ, 'Read'],
  [0x04, 'Write Uncorrectable'],
  [0x05, 'Compare'],
  [NVME_CMD_WRITE_ZEROES, 'Write Zeroes'],
  [0x09, 'Dataset Management'],
  [0x0c, 'Verify'],
  [0x0d, 'Reservation Register'],
  [0x0e, 'Reservation Report'],
  [0x11, 'Reservation Acquire'],
  [0x15, 'Reservation Release'],
]);

/**
 * The Status Field without DNR (SCT and SC), NVMe 1.4 "Generic Command
 * Status Values", "Command Specific Status Values" and "Media and Data
 * Integrity Errors".
 */
const STATUSES: ReadonlyMap<number, string> = new Map([
  [NVME_SC_SUCCESS, 'SUCCESS'],
  [NVME_SC_INVALID_OPCODE, 'INVALID_OPCODE'],
  [NVME_SC_INVALID_FIELD, 'INVALID_FIELD'],
  [0x003, 'COMMAND_ID_CONFLICT'],
  [NVME_SC_DATA_XFER_ERROR, 'DATA_TRANSFER_ERROR'],
  [0x005, 'POWER_LOSS_ABORT'],
  [0x006, 'INTERNAL_ERROR'],
  [NVME_SC_ABORT_REQ, 'ABORT_REQUESTED'],
  [NVME_SC_ABORT_QUEUE, 'ABORTED_SQ_DELETION'],
  [NVME_SC_INVALID_NS, 'INVALID_NAMESPACE_OR_FORMAT'],
  [NVME_SC_CMD_SEQ_ERROR, 'COMMAND_SEQUENCE_ERROR'],
  [NVME_SC_CMB_INVALID_USE, 'INVALID_CMB_USE'],
  [NVME_SC_PRP_INVALID_OFFSET, 'INVALID_PRP_OFFSET'],
  [NVME_SC_LBA_RANGE, 'LBA_OUT_OF_RANGE'],
  [0x081, 'CAPACITY_EXCEEDED'],
  [NVME_SC_NS_NOT_READY, 'NAMESPACE_NOT_READY'],
  [NVME_SC_CQ_INVALID, 'COMPLETION_QUEUE_INVALID'],
  [NVME_SC_QID_INVALID, 'INVALID_QUEUE_IDENTIFIER'],
  [NVME_SC_QUEUE_SIZE, 'INVALID_QUEUE_SIZE'],
  [NVME_SC_ABORT_LIMIT, 'ABORT_COMMAND_LIMIT_EXCEEDED'],
  [NVME_SC_INVALID_VECTOR, 'INVALID_INTERRUPT_VECTOR'],
  [NVME_SC_INVALID_LOG_PAGE, 'INVALID_LOG_PAGE'],
  [NVME_SC_INVALID_QUEUE, 'INVALID_QUEUE_DELETION'],
  [NVME_SC_FEATURE_NOT_SAVEABLE, 'FEATURE_NOT_SAVEABLE'],
  [NVME_SC_FEATURE_NOT_CHANGEABLE, 'FEATURE_NOT_CHANGEABLE'],
  [NVME_SC_FEATURE_NOT_PER_NS, 'FEATURE_NOT_NAMESPACE_SPECIFIC'],
  [NVME_SC_WRITE_FAULT, 'WRITE_FAULT'],
  [NVME_SC_READ_ERROR, 'UNRECOVERED_READ_ERROR'],
]);

const hex = (value: number, digits: number): string => `0x${value.toString(16).padStart(digits, '0')}`;

/** The command set of queue `qid`: admin on queue 0, NVM on the I/O queues. */
export const nvmeQueueKind = (qid: number): NvmeQueueKind => (qid === 0 ? 'admin' : 'io');

/** "Read", "Create I/O SQ", ...; an opcode without a name as "0x7f". */
export function nvmeOpcodeName(queue: NvmeQueueKind, opcode: number): string {
  return (queue === 'admin' ? ADMIN_OPCODES : IO_OPCODES).get(opcode) ?? hex(opcode, 2);
}

/** SCT and SC, bits 10:0 of the Status Field: DNR only says whether a retry could help. */
const STATUS_CODE_MASK = 0x7ff;

/** "SUCCESS", "LBA_OUT_OF_RANGE", ... (DNR dropped); a status without a name as "0x2ff". */
export function nvmeStatusName(status: number): string {
  const code = status & STATUS_CODE_MASK;
  return STATUSES.get(code) ?? hex(code, 3);
}
