import { copyAcross, totalLength } from '../memory/copy';
import type { KeyTable } from '../mr/key-table';
import type { MemoryRegion } from '../mr/memory-region';
import { resolveSges } from '../mr/resolve-sges';
import { STALLED, type QueuePair } from '../qp/queue-pair';
import type { SendWr } from '../qp/work-request';
import { WcStatus, WrOpcode } from '../verbs/enums';
import { RNR_NAK, WireOp, type Fabric, type WireResponse } from './fabric';

/** ibv_port_attr.max_msg_sz of the model device (mlx5's 1 GiB). */
export const MAX_MSG_SZ = 1 << 30;

/** rnr_retry 7: retry RNR NAKs forever (IB spec 9.7.5.2.8). */
export const RNR_RETRY_INFINITE = 7;

const WIRE_OP: Readonly<Record<WrOpcode, WireOp>> = {
  [WrOpcode.RDMA_WRITE]: WireOp.RDMA_WRITE,
  [WrOpcode.RDMA_WRITE_WITH_IMM]: WireOp.RDMA_WRITE,
  [WrOpcode.SEND]: WireOp.SEND,
  [WrOpcode.SEND_WITH_IMM]: WireOp.SEND,
  [WrOpcode.RDMA_READ]: WireOp.RDMA_READ,
  [WrOpcode.ATOMIC_CMP_AND_SWP]: WireOp.CMP_SWAP,
  [WrOpcode.ATOMIC_FETCH_AND_ADD]: WireOp.FETCH_ADD,
};

/**
 * The requester side of one RC send WR. Local checks first: every SGE an
 * lkey of the QP's PD covering it, local write where the NIC writes the
 * answer (READ, atomics), the page translation present or faultable
 * (LOC_PROT_ERR otherwise); a message over max_msg_sz or an atomic whose
 * SGEs are not 8 bytes is LOC_LEN_ERR. Then the request goes out:
 * no answer is retried retry_cnt times, then RETRY_EXC_ERR; an RNR NAK is
 * retried rnr_retry times, then RNR_RETRY_EXC_ERR, or waited out forever
 * (STALLED) with rnr_retry 7. A NAK's status is the WR's status.
 */
export function executeSend(keys: KeyTable<MemoryRegion>, fabric: Fabric, gid: string, qp: QueuePair, wr: SendWr): number {
  const op = WIRE_OP[wr.opcode];
  const writesLocal = op === WireOp.RDMA_READ || op === WireOp.CMP_SWAP || op === WireOp.FETCH_ADD;
  const local: Uint8Array[] = [];
  const resolved = resolveSges(keys, qp.pd, wr.sgList, writesLocal, local);
  if (resolved !== WcStatus.SUCCESS) {
    return resolved;
  }
  const length = totalLength(local);
  if (length > MAX_MSG_SZ) {
    return WcStatus.LOC_LEN_ERR;
  }
  if ((op === WireOp.CMP_SWAP || op === WireOp.FETCH_ADD) && length !== 8) {
    return WcStatus.LOC_LEN_ERR;
  }
  const withImm = wr.opcode === WrOpcode.RDMA_WRITE_WITH_IMM || wr.opcode === WrOpcode.SEND_WITH_IMM;
  const request = {
    op,
    srcGid: gid,
    srcQpn: qp.qpNum,
    remoteAddr: wr.remoteAddr ?? 0,
    rkey: wr.rkey ?? 0,
    length,
    payload: local,
    withImm,
    immData: withImm ? (wr.immData ?? 0) >>> 0 : 0,
    compareAdd: wr.compareAdd ?? 0n,
    swap: wr.swap ?? 0n,
  };
  const { dgid, destQpNum, retryCnt, rnrRetry } = qp.attr;
  let timeouts = 0;
  let rnrNaks = 0;
  let response: WireResponse | undefined;
  for (;;) {
    response = fabric.request(dgid, destQpNum, request);
    if (response === undefined) {
      if (timeouts++ >= retryCnt) {
        return WcStatus.RETRY_EXC_ERR;
      }
      qp.retries++;
      continue;
    }
    if (response.status === RNR_NAK) {
      if (rnrRetry === RNR_RETRY_INFINITE) {
        return STALLED;
      }
      if (rnrNaks++ >= rnrRetry) {
        return WcStatus.RNR_RETRY_EXC_ERR;
      }
      qp.rnrRetries++;
      continue;
    }
    break;
  }
  if (response.status !== WcStatus.SUCCESS) {
    return response.status;
  }
  if (op === WireOp.RDMA_READ && response.data !== undefined) {
    copyAcross([response.data], local, length);
  } else if (response.original !== undefined) {
    const original = new Uint8Array(8);
    new DataView(original.buffer).setBigUint64(0, response.original, true);
    copyAcross([original], local, 8);
  }
  return WcStatus.SUCCESS;
}
