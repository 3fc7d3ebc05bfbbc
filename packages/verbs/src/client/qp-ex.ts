import { errno, type ErrnoError } from '@p2p/errno';
import { rdma } from '@p2p/proto';
import {
  IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP,
  IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD,
  IBV_QP_EX_WITH_RDMA_READ,
  IBV_QP_EX_WITH_RDMA_WRITE,
  IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM,
  IBV_QP_EX_WITH_SEND,
  IBV_QP_EX_WITH_SEND_WITH_IMM,
} from '../abi/qp-ex';
import type { RingSendWrInput, RingSgeInput } from '../abi/user-queues';
import type { UserQp } from './user-queues';

const { WrOpcode } = rdma;

/** A WR being built: its opcode's fields, then its SGEs. */
interface Building {
  wrId: bigint;
  opcode: number;
  sendFlags: number;
  immData?: number;
  remoteAddr?: bigint;
  rkey?: number;
  compareAdd?: bigint;
  swap?: bigint;
  sgList: RingSgeInput[];
}

/**
 * struct ibv_qp_ex and the ibv_wr_*() calls (ibv_wr_post(3)) on a QP with
 * user queues: between wrStart() and wrComplete() each op call starts a
 * work request with the current wrId and wrFlags, and wrSetSge() /
 * wrSetSgeList() give it its memory. wrComplete() posts them all or none:
 * an op the QP was not created for (its send_ops_flags), an SGE without an
 * op, too many SGEs or a send queue without room for the whole batch fail
 * it, nothing posted, with the errno. wrAbort() drops the batch.
 */
export class QpEx {
  /** ibv_qp_ex.wr_id: the next op's. */
  wrId = 0n;
  /** ibv_qp_ex.wr_flags (IBV_SEND_*): the next op's. */
  wrFlags = 0;
  #batch: Building[] | undefined;
  #error: ErrnoError | undefined;

  constructor(
    readonly qp: UserQp,
    readonly sendOpsFlags: number,
  ) {}

  get qpNum(): number {
    return this.qp.qpNum;
  }

  /** ibv_wr_start(): a new batch (EINVAL while one is open). */
  wrStart(): void {
    if (this.#batch !== undefined) throw errno('EINVAL', `QP ${this.qpNum}: ibv_wr_start() inside an open batch`);
    this.#batch = [];
    this.#error = undefined;
  }

  /** ibv_wr_complete(): posts the batch, all or nothing; throws the first error the batch had. */
  wrComplete(): void {
    const batch = this.#open('ibv_wr_complete()');
    this.#batch = undefined;
    if (this.#error !== undefined) throw this.#error;
    if (batch.length === 0) return;
    const free = this.qp.freeSendSlots;
    if (batch.length > free) throw errno('ENOMEM', `QP ${this.qpNum}: a batch of ${batch.length} WRs, ${free} free slots in the send queue`);
    this.qp.postSend(batch as RingSendWrInput[]);
  }

  /** ibv_wr_abort(): the batch is dropped. */
  wrAbort(): void {
    this.#open('ibv_wr_abort()');
    this.#batch = undefined;
    this.#error = undefined;
  }

  wrRdmaWrite(rkey: number, remoteAddr: bigint): void {
    this.#op(IBV_QP_EX_WITH_RDMA_WRITE, { opcode: WrOpcode.WR_OPCODE_RDMA_WRITE, rkey, remoteAddr });
  }

  wrRdmaWriteImm(rkey: number, remoteAddr: bigint, immData: number): void {
    this.#op(IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM, { opcode: WrOpcode.WR_OPCODE_RDMA_WRITE_WITH_IMM, rkey, remoteAddr, immData });
  }

  wrSend(): void {
    this.#op(IBV_QP_EX_WITH_SEND, { opcode: WrOpcode.WR_OPCODE_SEND });
  }

  wrSendImm(immData: number): void {
    this.#op(IBV_QP_EX_WITH_SEND_WITH_IMM, { opcode: WrOpcode.WR_OPCODE_SEND_WITH_IMM, immData });
  }

  wrRdmaRead(rkey: number, remoteAddr: bigint): void {
    this.#op(IBV_QP_EX_WITH_RDMA_READ, { opcode: WrOpcode.WR_OPCODE_RDMA_READ, rkey, remoteAddr });
  }

  wrAtomicCmpSwp(rkey: number, remoteAddr: bigint, compare: bigint, swap: bigint): void {
    this.#op(IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP, { opcode: WrOpcode.WR_OPCODE_ATOMIC_CMP_AND_SWP, rkey, remoteAddr, compareAdd: compare, swap });
  }

  wrAtomicFetchAdd(rkey: number, remoteAddr: bigint, add: bigint): void {
    this.#op(IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD, { opcode: WrOpcode.WR_OPCODE_ATOMIC_FETCH_AND_ADD, rkey, remoteAddr, compareAdd: add });
  }

  /** ibv_wr_set_sge(): the current WR's one SGE. */
  wrSetSge(lkey: number, addr: bigint, length: number): void {
    this.wrSetSgeList([{ lkey, addr, length }]);
  }

  /** ibv_wr_set_sge_list(): the current WR's SGEs (at most max_send_sge). */
  wrSetSgeList(sges: readonly RingSgeInput[]): void {
    const batch = this.#open('ibv_wr_set_sge()');
    const current = batch.at(-1);
    if (current === undefined) {
      this.#error ??= errno('EINVAL', `QP ${this.qpNum}: ibv_wr_set_sge() before an op`);
      return;
    }
    if (sges.length > this.qp.cap.maxSendSge) this.#error ??= errno('EINVAL', `QP ${this.qpNum}: ${sges.length} SGEs exceed max_send_sge ${this.qp.cap.maxSendSge}`);
    current.sgList = sges.map((sge) => ({ addr: sge.addr, length: sge.length, lkey: sge.lkey }));
  }

  #op(flag: number, fields: Omit<Building, 'wrId' | 'sendFlags' | 'sgList'>): void {
    const batch = this.#open('an ibv_wr_*() op');
    if ((this.sendOpsFlags & flag) === 0) this.#error ??= errno('EOPNOTSUPP', `QP ${this.qpNum} was not created for this op (send_ops_flags 0x${this.sendOpsFlags.toString(16)})`);
    batch.push({ ...fields, wrId: this.wrId, sendFlags: this.wrFlags, sgList: [] });
  }

  #open(what: string): Building[] {
    if (this.#batch === undefined) throw errno('EINVAL', `QP ${this.qpNum}: ${what} outside ibv_wr_start() / ibv_wr_complete()`);
    return this.#batch;
  }
}
