import { IBV_ACCESS_REMOTE_ATOMIC, IBV_ACCESS_REMOTE_READ, IBV_ACCESS_REMOTE_WRITE } from '../verbs/access-flags';
import { WcOpcode, WrOpcode } from '../verbs/enums';
import { WireOp } from './fabric';

/**
 * The opcode tables the requester, the responder and the completer are
 * driven from, as rxe's are (rxe_opcode.c: rxe_wr_opcode_info for work
 * requests, rxe_opcode_info's masks for packets). A new opcode is a row in
 * each and, for a new wire operation, its executor in the responder.
 */

/** One wire operation (an RC request packet): what rxe_opcode_info's mask bits say of it. */
export interface WireOpInfo {
  readonly name: string;
  /** The QP access flag a responder requires (rxe check_op_valid()), 0 for none. */
  readonly qpAccess: number;
  /** The MR access its rkey must grant over the range (rxe check_rkey()), 0 when it names no remote memory. */
  readonly mrAccess: number;
  /** The request carries the gathered SGEs as payload (RXE_PAYLOAD_MASK on the request). */
  readonly payload: boolean;
  /** The answer carries data the requester lands in its SGEs, and max_rd_atomic bounds how many are outstanding (RXE_READ_OR_ATOMIC_MASK). */
  readonly readLike: boolean;
  /** 8 bytes at an 8-byte aligned address, answered with the original value (RXE_ATOMIC_MASK). */
  readonly atomic: boolean;
}

export const WIRE_OPS: Readonly<Record<WireOp, WireOpInfo>> = {
  [WireOp.SEND]: { name: 'SEND', qpAccess: 0, mrAccess: 0, payload: true, readLike: false, atomic: false },
  [WireOp.RDMA_WRITE]: { name: 'RDMA_WRITE', qpAccess: IBV_ACCESS_REMOTE_WRITE, mrAccess: IBV_ACCESS_REMOTE_WRITE, payload: true, readLike: false, atomic: false },
  [WireOp.RDMA_READ]: { name: 'RDMA_READ', qpAccess: IBV_ACCESS_REMOTE_READ, mrAccess: IBV_ACCESS_REMOTE_READ, payload: false, readLike: true, atomic: false },
  [WireOp.CMP_SWAP]: { name: 'CMP_SWAP', qpAccess: IBV_ACCESS_REMOTE_ATOMIC, mrAccess: IBV_ACCESS_REMOTE_ATOMIC, payload: false, readLike: true, atomic: true },
  [WireOp.FETCH_ADD]: { name: 'FETCH_ADD', qpAccess: IBV_ACCESS_REMOTE_ATOMIC, mrAccess: IBV_ACCESS_REMOTE_ATOMIC, payload: false, readLike: true, atomic: true },
};

/** One work request opcode (rxe_wr_opcode_info): the packet it becomes and the completion it reports. */
export interface WrOpcodeInfo {
  readonly name: string;
  readonly wireOp: WireOp;
  /** ibv_wc.opcode of its send completion. */
  readonly wcOpcode: WcOpcode;
  /** It carries imm_data (IBV_WC_WITH_IMM at the receiver). */
  readonly withImm: boolean;
}

export const WR_OPCODES: Readonly<Record<WrOpcode, WrOpcodeInfo>> = {
  [WrOpcode.RDMA_WRITE]: { name: 'RDMA_WRITE', wireOp: WireOp.RDMA_WRITE, wcOpcode: WcOpcode.RDMA_WRITE, withImm: false },
  [WrOpcode.RDMA_WRITE_WITH_IMM]: { name: 'RDMA_WRITE_WITH_IMM', wireOp: WireOp.RDMA_WRITE, wcOpcode: WcOpcode.RDMA_WRITE, withImm: true },
  [WrOpcode.SEND]: { name: 'SEND', wireOp: WireOp.SEND, wcOpcode: WcOpcode.SEND, withImm: false },
  [WrOpcode.SEND_WITH_IMM]: { name: 'SEND_WITH_IMM', wireOp: WireOp.SEND, wcOpcode: WcOpcode.SEND, withImm: true },
  [WrOpcode.RDMA_READ]: { name: 'RDMA_READ', wireOp: WireOp.RDMA_READ, wcOpcode: WcOpcode.RDMA_READ, withImm: false },
  [WrOpcode.ATOMIC_CMP_AND_SWP]: { name: 'ATOMIC_CMP_AND_SWP', wireOp: WireOp.CMP_SWAP, wcOpcode: WcOpcode.COMP_SWAP, withImm: false },
  [WrOpcode.ATOMIC_FETCH_AND_ADD]: { name: 'ATOMIC_FETCH_AND_ADD', wireOp: WireOp.FETCH_ADD, wcOpcode: WcOpcode.FETCH_ADD, withImm: false },
};

/** The row of a WR opcode, undefined for one an RC QP does not run. */
export function wrOpcode(opcode: number): WrOpcodeInfo | undefined {
  return Object.prototype.hasOwnProperty.call(WR_OPCODES, opcode) ? WR_OPCODES[opcode as WrOpcode] : undefined;
}

/** The wire operation's row of a WR opcode (which must be one: post time checked it). */
export function wireOpOf(opcode: WrOpcode): WireOpInfo {
  return WIRE_OPS[WR_OPCODES[opcode].wireOp];
}
