import { copyAcross, totalLength } from '../memory/copy';
import type { KeyTable } from '../mr/key-table';
import type { MemoryRegion } from '../mr/memory-region';
import { resolveSges, sgesWritten } from '../mr/resolve-sges';
import type { SendWr } from '../qp/work-request';
import type { ProtectionDomain } from '../mr/protection-domain';
import { WcStatus, type WrOpcode } from '../verbs/enums';
import type { WireRequest, WireResponse } from './fabric';
import { WIRE_OPS, WR_OPCODES, wireOpOf } from './opcodes';

/** ibv_port_attr.max_msg_sz of the model device (mlx5's 1 GiB). */
export const MAX_MSG_SZ = 1 << 30;

/** rnr_retry 7: retry RNR NAKs forever (IB spec 9.7.5.2.8). */
export const RNR_RETRY_INFINITE = 7;

/** RDMA_READ and atomics: the answer carries data the NIC writes locally, and max_rd_atomic bounds how many are outstanding. */
export function isReadLike(opcode: WrOpcode): boolean {
  return wireOpOf(opcode).readLike;
}

/**
 * The requester's local checks of one send WR, before anything goes out:
 * every SGE an lkey of the QP's PD covering it, local write where the NIC
 * writes the answer (READ, atomics), the pages present (LOC_PROT_ERR
 * otherwise, or the page fault to wait for); a message over max_msg_sz or
 * an atomic whose SGEs are not 8 bytes is LOC_LEN_ERR. Fills `local` with
 * the views of the SGEs.
 */
export function prepareSend(keys: KeyTable<MemoryRegion>, pd: ProtectionDomain, wr: SendWr, local: Uint8Array[]): WcStatus | Promise<void> {
  const readLike = isReadLike(wr.opcode);
  const resolved = resolveSges(keys, pd, wr.sgList, readLike, local);
  if (resolved !== WcStatus.SUCCESS) {
    return resolved;
  }
  const length = totalLength(local);
  if (length > MAX_MSG_SZ) {
    return WcStatus.LOC_LEN_ERR;
  }
  if (wireOpOf(wr.opcode).atomic && length !== 8) {
    return WcStatus.LOC_LEN_ERR;
  }
  return WcStatus.SUCCESS;
}

const NO_PAYLOAD: readonly Uint8Array[] = [];

/**
 * The request packet of a prepared WR. Only SEND and RDMA_WRITE carry the
 * gathered SGEs as payload; for READ and atomics the SGEs are where the
 * answer lands, and the request carries only their length. `local` says
 * where a one-SGE message's memory lies, for a peer that can be given it.
 */
export function wireRequest(keys: KeyTable<MemoryRegion>, gid: string, srcQpn: number, psn: number, wr: SendWr, local: readonly Uint8Array[]): WireRequest {
  const { wireOp, withImm } = WR_OPCODES[wr.opcode];
  const op = WIRE_OPS[wireOp];
  // One SGE moving bytes (not an atomic's 8): a peer that maps its dma-buf moves them straight to or from it.
  const sge = wr.sgList.length === 1 && !op.atomic && (op.payload || op.readLike) ? wr.sgList[0]! : undefined;
  return {
    op: wireOp,
    srcGid: gid,
    srcQpn,
    psn,
    remoteAddr: wr.remoteAddr ?? 0,
    rkey: wr.rkey ?? 0,
    length: totalLength(local),
    payload: op.payload ? local : NO_PAYLOAD,
    withImm,
    immData: withImm ? (wr.immData ?? 0) >>> 0 : 0,
    compareAdd: wr.compareAdd ?? 0n,
    swap: wr.swap ?? 0n,
    local: sge !== undefined && sge.length > 0 ? keys.get(sge.lkey)?.grantRef(sge.addr) : undefined,
  };
}

/**
 * Land a successful answer in local memory: READ data or an atomic's
 * original value, into the SGEs resolved again now (the NIC writes through
 * the MTT as it is when the answer arrives). An MR invalidated since the
 * request went out is not written: LOC_PROT_ERR. READ data the responder
 * landed itself (WireResponse.landed) is in place already.
 */
export function landResponse(keys: KeyTable<MemoryRegion>, pd: ProtectionDomain, wr: SendWr, response: WireResponse): WcStatus {
  if (!isReadLike(wr.opcode)) {
    return WcStatus.SUCCESS;
  }
  const local: Uint8Array[] = [];
  if (resolveSges(keys, pd, wr.sgList, true, local) !== WcStatus.SUCCESS) {
    return WcStatus.LOC_PROT_ERR;
  }
  if (response.landed !== undefined) {
    // The responder put the bytes in place through the peer's mapping of the MR: only the notices are left.
    sgesWritten(keys, wr.sgList, response.landed);
  } else if (response.data !== undefined) {
    const landed = Math.min(totalLength(response.data), totalLength(local));
    copyAcross(response.data, local, landed);
    sgesWritten(keys, wr.sgList, landed);
  } else if (response.original !== undefined) {
    const original = new Uint8Array(8);
    new DataView(original.buffer).setBigUint64(0, response.original, true);
    copyAcross([original], local, 8);
    sgesWritten(keys, wr.sgList, 8);
  }
  return WcStatus.SUCCESS;
}
