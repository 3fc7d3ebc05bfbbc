import { copyAcross, totalLength } from '../memory/copy';
import type { KeyTable } from '../mr/key-table';
import type { MemoryRegion } from '../mr/memory-region';
import { resolveSges } from '../mr/resolve-sges';
import type { QueuePair } from '../qp/queue-pair';
import {
  IBV_ACCESS_REMOTE_ATOMIC,
  IBV_ACCESS_REMOTE_READ,
  IBV_ACCESS_REMOTE_WRITE,
} from '../verbs/access-flags';
import { AsyncEventType, QpState, WcOpcode, WcStatus } from '../verbs/enums';
import { RNR_NAK, WireOp, type WireRequest, type WireResponse } from './fabric';

const ACK: WireResponse = { status: WcStatus.SUCCESS };
const RNR: WireResponse = { status: RNR_NAK };
const NAK_REM_ACCESS: WireResponse = { status: WcStatus.REM_ACCESS_ERR };
const NAK_INV_REQ: WireResponse = { status: WcStatus.REM_INV_REQ_ERR };
const NAK_REM_OP: WireResponse = { status: WcStatus.REM_OP_ERR };

/** The QP access flag each remote opcode needs (rxe check_op_valid()). */
const QP_ACCESS: Readonly<Record<WireOp, number>> = {
  [WireOp.SEND]: 0,
  [WireOp.RDMA_WRITE]: IBV_ACCESS_REMOTE_WRITE,
  [WireOp.RDMA_READ]: IBV_ACCESS_REMOTE_READ,
  [WireOp.CMP_SWAP]: IBV_ACCESS_REMOTE_ATOMIC,
  [WireOp.FETCH_ADD]: IBV_ACCESS_REMOTE_ATOMIC,
};

/**
 * The responder side of one RC request, after rxe_resp.c's order:
 * drop (no answer) unless the QP is in RTR/RTS/SQD and connected to the
 * sender; an opcode the QP's access flags refuse, or a misaligned atomic,
 * is an invalid request (REM_INV_REQ_ERR, responder to ERR with
 * IBV_EVENT_QP_REQ_ERR); a SEND or WRITE_WITH_IMM without a posted receive
 * is RNR; an rkey that is not an MR of the QP's PD allowing the access over
 * the whole range, or whose pages cannot be faulted in (a revoked dma-buf),
 * is REM_ACCESS_ERR with the responder to ERR and IBV_EVENT_QP_ACCESS_ERR
 * (or, when a WRITE_WITH_IMM consumed a receive, that receive completing
 * with LOC_ACCESS_ERR). A SEND whose receive buffers fail the local checks
 * completes the receive with LOC_PROT_ERR (REM_OP_ERR for the requester);
 * one too long for them, with LOC_LEN_ERR (REM_INV_REQ_ERR).
 */
export function respond(keys: KeyTable<MemoryRegion>, qp: QueuePair, request: WireRequest): WireResponse | undefined {
  const state = qp.state;
  if (state !== QpState.RTR && state !== QpState.RTS && state !== QpState.SQD) {
    return undefined;
  }
  if (request.srcQpn !== qp.attr.destQpNum || request.srcGid !== qp.attr.dgid) {
    return undefined;
  }
  if (state === QpState.RTR && !qp.commEstablished) {
    qp.commEstablished = true;
    qp.emit(AsyncEventType.COMM_EST);
  }
  const need = QP_ACCESS[request.op];
  if ((qp.attr.qpAccessFlags & need) !== need) {
    qp.fail(AsyncEventType.QP_REQ_ERR);
    return NAK_INV_REQ;
  }
  switch (request.op) {
    case WireOp.SEND:
      return receiveSend(keys, qp, request);
    case WireOp.RDMA_WRITE:
      return receiveWrite(keys, qp, request);
    case WireOp.RDMA_READ:
      return receiveRead(keys, qp, request);
    case WireOp.CMP_SWAP:
    case WireOp.FETCH_ADD:
      return receiveAtomic(keys, qp, request);
  }
}

function receiveSend(keys: KeyTable<MemoryRegion>, qp: QueuePair, request: WireRequest): WireResponse {
  const recv = qp.peekRecv();
  if (recv === undefined) {
    qp.rnrNakSent = true;
    return RNR;
  }
  const views: Uint8Array[] = [];
  if (resolveSges(keys, qp.pd, recv.sgList, true, views) !== WcStatus.SUCCESS) {
    qp.completeHeadRecv(WcStatus.LOC_PROT_ERR, WcOpcode.RECV, 0, false, 0);
    qp.toError();
    return NAK_REM_OP;
  }
  if (totalLength(views) < request.length) {
    qp.completeHeadRecv(WcStatus.LOC_LEN_ERR, WcOpcode.RECV, 0, false, 0);
    qp.toError();
    return NAK_INV_REQ;
  }
  copyAcross(request.payload, views, request.length);
  qp.completeHeadRecv(WcStatus.SUCCESS, WcOpcode.RECV, request.length, request.withImm, request.immData);
  return ACK;
}

function receiveWrite(keys: KeyTable<MemoryRegion>, qp: QueuePair, request: WireRequest): WireResponse {
  if (request.withImm && qp.peekRecv() === undefined) {
    qp.rnrNakSent = true;
    return RNR;
  }
  if (request.length > 0) {
    const target = remoteView(keys, qp, request.rkey, request.remoteAddr, request.length, IBV_ACCESS_REMOTE_WRITE);
    if (target === undefined) {
      if (request.withImm) {
        qp.completeHeadRecv(WcStatus.LOC_ACCESS_ERR, WcOpcode.RECV_RDMA_WITH_IMM, 0, true, 0);
        qp.toError();
      } else {
        qp.fail(AsyncEventType.QP_ACCESS_ERR);
      }
      return NAK_REM_ACCESS;
    }
    copyAcross(request.payload, [target], request.length);
  }
  if (request.withImm) {
    qp.completeHeadRecv(WcStatus.SUCCESS, WcOpcode.RECV_RDMA_WITH_IMM, request.length, true, request.immData);
  }
  return ACK;
}

function receiveRead(keys: KeyTable<MemoryRegion>, qp: QueuePair, request: WireRequest): WireResponse {
  if (request.length === 0) {
    return ACK;
  }
  const source = remoteView(keys, qp, request.rkey, request.remoteAddr, request.length, IBV_ACCESS_REMOTE_READ);
  if (source === undefined) {
    qp.fail(AsyncEventType.QP_ACCESS_ERR);
    return NAK_REM_ACCESS;
  }
  return { status: WcStatus.SUCCESS, data: source };
}

/** IB atomics: 8 bytes at an 8-byte aligned address, in the responder's (little-endian host) order. */
function receiveAtomic(keys: KeyTable<MemoryRegion>, qp: QueuePair, request: WireRequest): WireResponse {
  if (request.remoteAddr % 8 !== 0) {
    qp.fail(AsyncEventType.QP_REQ_ERR);
    return NAK_INV_REQ;
  }
  const target = remoteView(keys, qp, request.rkey, request.remoteAddr, 8, IBV_ACCESS_REMOTE_ATOMIC);
  if (target === undefined) {
    qp.fail(AsyncEventType.QP_ACCESS_ERR);
    return NAK_REM_ACCESS;
  }
  const word = new DataView(target.buffer, target.byteOffset, 8);
  const original = word.getBigUint64(0, true);
  if (request.op === WireOp.FETCH_ADD) {
    word.setBigUint64(0, BigInt.asUintN(64, original + request.compareAdd), true);
  } else if (original === request.compareAdd) {
    word.setBigUint64(0, request.swap, true);
  }
  return { status: WcStatus.SUCCESS, original };
}

/** rxe check_rkey(): the rkey's MR, in the QP's PD, allowing `access` over [remoteAddr, remoteAddr + length), translated. */
function remoteView(
  keys: KeyTable<MemoryRegion>,
  qp: QueuePair,
  rkey: number,
  addr: number,
  length: number,
  access: number,
): Uint8Array | undefined {
  const mr = keys.get(rkey);
  if (mr === undefined || mr.pd !== qp.pd || (mr.access & access) !== access || !mr.contains(addr, length)) {
    return undefined;
  }
  return mr.translate(addr, length);
}
