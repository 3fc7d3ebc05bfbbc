import { copyAcross, totalLength } from '../memory/copy';
import type { KeyTable } from '../mr/key-table';
import type { MemoryRegion } from '../mr/memory-region';
import { resolveSges, sgesWritten } from '../mr/resolve-sges';
import type { QueuePair } from '../qp/queue-pair';
import { AsyncEventType, QpState, WcOpcode, WcStatus } from '../verbs/enums';
import { RNR_NAK, WireOp, type WireRequest, type WireResponse } from './fabric';
import { WIRE_OPS } from './opcodes';

const ACK: WireResponse = { status: WcStatus.SUCCESS };
const NAK_REM_ACCESS: WireResponse = { status: WcStatus.REM_ACCESS_ERR };
const NAK_INV_REQ: WireResponse = { status: WcStatus.REM_INV_REQ_ERR };
const NAK_REM_OP: WireResponse = { status: WcStatus.REM_OP_ERR };

type Executor = (keys: KeyTable<MemoryRegion>, qp: QueuePair, request: WireRequest, faulting: Faulting) => WireResponse;

/** The executor of each wire operation (rxe_resp.c's execute()); what each checks and needs is in opcodes.ts. */
const EXECUTORS: Readonly<Record<WireOp, Executor>> = {
  [WireOp.SEND]: (keys, qp, request, faulting) => receiveSend(keys, qp, request, faulting),
  [WireOp.RDMA_WRITE]: (keys, qp, request, faulting) => receiveWrite(keys, qp, request, faulting),
  [WireOp.RDMA_READ]: (keys, qp, request, faulting) => receiveRead(keys, qp, request, faulting),
  [WireOp.CMP_SWAP]: (keys, qp, request, faulting) => receiveAtomic(keys, qp, request, faulting),
  [WireOp.FETCH_ADD]: (keys, qp, request, faulting) => receiveAtomic(keys, qp, request, faulting),
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
 * with LOC_ACCESS_ERR). A SEND or WRITE whose payload is not the length it
 * declares is an invalid request as well (rxe RESPST_ERR_LENGTH, a class C
 * error). A SEND whose receive buffers fail the local checks
 * completes the receive with LOC_PROT_ERR (REM_OP_ERR for the requester);
 * one too long for them, with LOC_LEN_ERR (REM_INV_REQ_ERR). A target page
 * that must be faulted in (a dma-buf MR after move_notify) is RNR too, as
 * mlx5 answers ODP faults, and `faulting` learns of the fault so that the
 * requester can be told when it is done.
 *
 * Each PSN runs once, in order (QueuePair.checkPsn): a duplicate is
 * acknowledged without running again, except that a READ reads again and an
 * atomic answers its saved original; a PSN ahead of the expected one is
 * dropped.
 */
export function respond(keys: KeyTable<MemoryRegion>, qp: QueuePair, request: WireRequest, faulting: Faulting): WireResponse | undefined {
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
  const psn = qp.checkPsn(request.psn);
  if (psn === 'drop') {
    return undefined;
  }
  if (psn === 'duplicate') {
    return duplicate(keys, qp, request, faulting);
  }
  // An operation the tables do not know (a corrupt packet) is an invalid request, as one the QP's access refuses.
  const op = WIRE_OPS[request.op] as (typeof WIRE_OPS)[WireOp] | undefined;
  if (op === undefined || (qp.attr.qpAccessFlags & op.qpAccess) !== op.qpAccess) {
    qp.advancePsn();
    qp.fail(AsyncEventType.QP_REQ_ERR);
    return NAK_INV_REQ;
  }
  const response = EXECUTORS[request.op](keys, qp, request, faulting);
  if (response.status !== RNR_NAK) {
    qp.advancePsn();
  }
  return response;
}

type Faulting = (qp: QueuePair, fault: Promise<void>) => void;

/** A retransmission of a PSN already run: its answer was lost. */
function duplicate(keys: KeyTable<MemoryRegion>, qp: QueuePair, request: WireRequest, faulting: Faulting): WireResponse {
  const op = WIRE_OPS[request.op] as (typeof WIRE_OPS)[WireOp] | undefined;
  if (op?.readLike === true && !op.atomic) {
    return receiveRead(keys, qp, request, faulting);
  }
  if (op?.atomic === true) {
    const original = qp.savedAtomic(request.psn);
    return original === undefined ? NAK_INV_REQ : { status: WcStatus.SUCCESS, original };
  }
  return ACK;
}

/** Receiver not ready: the requester retries after our min_rnr_timer. */
function rnr(qp: QueuePair): WireResponse {
  return { status: RNR_NAK, rnrTimer: qp.attr.minRnrTimer };
}

function receiveSend(keys: KeyTable<MemoryRegion>, qp: QueuePair, request: WireRequest, faulting: Faulting): WireResponse {
  const recv = qp.peekRecv();
  if (recv === undefined) {
    qp.rnrNakSent = true;
    return rnr(qp);
  }
  if (!payloadFits(request)) {
    return invalidLength(qp);
  }
  const views: Uint8Array[] = [];
  const resolved = resolveSges(keys, qp.pd, recv.sgList, true, views);
  if (typeof resolved !== 'number') {
    faulting(qp, resolved);
    return rnr(qp);
  }
  if (resolved !== WcStatus.SUCCESS) {
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
  sgesWritten(keys, recv.sgList, request.length);
  qp.completeHeadRecv(WcStatus.SUCCESS, WcOpcode.RECV, request.length, request.withImm, request.immData);
  return ACK;
}

function receiveWrite(keys: KeyTable<MemoryRegion>, qp: QueuePair, request: WireRequest, faulting: Faulting): WireResponse {
  if (request.withImm && qp.peekRecv() === undefined) {
    qp.rnrNakSent = true;
    return rnr(qp);
  }
  if (request.length > 0) {
    const target = remoteViews(keys, qp, request.rkey, request.remoteAddr, request.length, WIRE_OPS[request.op].mrAccess);
    if (target instanceof Promise) {
      faulting(qp, target);
      return rnr(qp);
    }
    if (target === undefined) {
      if (request.withImm) {
        qp.completeHeadRecv(WcStatus.LOC_ACCESS_ERR, WcOpcode.RECV_RDMA_WITH_IMM, 0, true, 0);
        qp.toError();
      } else {
        qp.fail(AsyncEventType.QP_ACCESS_ERR);
      }
      return NAK_REM_ACCESS;
    }
    if (!payloadFits(request)) {
      return invalidLength(qp);
    }
    copyAcross(request.payload, target, request.length);
    // The bytes are in place: the memory's device hears of them before the ACK and the receive's completion.
    keys.get(request.rkey)?.written(request.remoteAddr, request.length);
  }
  if (request.withImm) {
    qp.completeHeadRecv(WcStatus.SUCCESS, WcOpcode.RECV_RDMA_WITH_IMM, request.length, true, request.immData);
  }
  return ACK;
}

function receiveRead(keys: KeyTable<MemoryRegion>, qp: QueuePair, request: WireRequest, faulting: Faulting): WireResponse {
  if (request.length === 0) {
    return ACK;
  }
  const source = remoteViews(keys, qp, request.rkey, request.remoteAddr, request.length, WIRE_OPS[request.op].mrAccess);
  if (source instanceof Promise) {
    faulting(qp, source);
    return rnr(qp);
  }
  if (source === undefined) {
    qp.fail(AsyncEventType.QP_ACCESS_ERR);
    return NAK_REM_ACCESS;
  }
  return { status: WcStatus.SUCCESS, data: source };
}

/** IB atomics: 8 bytes at an 8-byte aligned address, in the responder's (little-endian host) order. */
function receiveAtomic(keys: KeyTable<MemoryRegion>, qp: QueuePair, request: WireRequest, faulting: Faulting): WireResponse {
  if (request.remoteAddr % 8 !== 0) {
    qp.fail(AsyncEventType.QP_REQ_ERR);
    return NAK_INV_REQ;
  }
  const views = remoteViews(keys, qp, request.rkey, request.remoteAddr, 8, WIRE_OPS[request.op].mrAccess);
  if (views instanceof Promise) {
    faulting(qp, views);
    return rnr(qp);
  }
  if (views === undefined || views.length !== 1) {
    qp.fail(AsyncEventType.QP_ACCESS_ERR);
    return NAK_REM_ACCESS;
  }
  const target = views[0]!;
  const word = new DataView(target.buffer, target.byteOffset, 8);
  const original = word.getBigUint64(0, true);
  if (request.op === WireOp.FETCH_ADD) {
    word.setBigUint64(0, BigInt.asUintN(64, original + request.compareAdd), true);
  } else if (original === request.compareAdd) {
    word.setBigUint64(0, request.swap, true);
  }
  // Told even when a compare failed and nothing changed: a notice carries no data, so a spurious one is harmless.
  keys.get(request.rkey)?.written(request.remoteAddr, 8);
  qp.saveAtomic(request.psn, original);
  return { status: WcStatus.SUCCESS, original };
}

/**
 * The payload a SEND or WRITE carries is exactly the length it declares
 * (rxe check_length() and check_rkey(): pktlen != resid). A requester's
 * packets always agree; a peer whose do not would have the responder copy
 * past the end of what arrived.
 */
function payloadFits(request: WireRequest): boolean {
  return totalLength(request.payload) === request.length;
}

/** RESPST_ERR_LENGTH: NAK invalid request, the responder QP to ERR with IBV_EVENT_QP_REQ_ERR, as for any invalid request here. */
function invalidLength(qp: QueuePair): WireResponse {
  qp.fail(AsyncEventType.QP_REQ_ERR);
  return NAK_INV_REQ;
}

/**
 * rxe check_rkey(): the rkey's MR, in the QP's PD, allowing `access` over
 * [remoteAddr, remoteAddr + length), translated: its views, undefined when
 * refused or untranslatable, or the page fault under way.
 */
function remoteViews(
  keys: KeyTable<MemoryRegion>,
  qp: QueuePair,
  rkey: number,
  addr: number,
  length: number,
  access: number,
): Uint8Array[] | Promise<void> | undefined {
  const mr = keys.get(rkey);
  if (mr === undefined || mr.pd !== qp.pd || (mr.access & access) !== access || !mr.contains(addr, length)) {
    return undefined;
  }
  const views: Uint8Array[] = [];
  const translated = mr.translate(addr, length, views);
  if (translated === true) {
    return views;
  }
  return translated === false ? undefined : translated;
}
