import { errno, type ErrnoError } from '@p2p/errno';
import type { rdma } from '@p2p/proto';
import { u64Address } from '../codec/address';
import type { DecodedSendWrs } from '../codec/wqe';
import type { WorkCompletion } from '../cq/work-completion';
import type { AsyncEvent } from '../events/async-events';
import { gidBytes, gidText } from '../link';
import type { QpAttr } from '../qp/qp-attr';
import type { RecvWr, SendWr, Sge } from '../qp/work-request';
import type { QpState, WrOpcode } from '../verbs/enums';
import { IBV_QP_AV } from '../verbs/qp-attr-mask';

/*
 * The proto's enums number QpState, WrOpcode, WcStatus, WcOpcode and
 * AsyncEventType as the domain does (verbs/enums.ts), so values pass
 * through; a value the domain does not know is refused there with EINVAL, at
 * the work request or attribute that carries it.
 */

/** A u64 argument as a number: EINVAL past 2^53 - 1, outside what the model addresses. */
export function u64Arg(value: bigint, what: string): number {
  const n = u64Address(value);
  if (n === undefined) throw errno('EINVAL', `${what} 0x${value.toString(16)} is past 2^53 - 1, outside what this model addresses`);
  return n;
}

function sgesFromWire(sgList: readonly rdma.Sge[]): Sge[] | undefined {
  const sges: Sge[] = [];
  for (const sge of sgList) {
    const addr = u64Address(sge.addr);
    if (addr === undefined) return undefined;
    sges.push({ addr, length: sge.length, lkey: sge.lkey });
  }
  return sges;
}

function farAddress(index: number): ErrnoError {
  return errno('EINVAL', `work request ${index}: an address past 2^53 - 1, outside every MR of this model`);
}

/** Send WRs up to the first that cannot be read; that one is bad_wr. */
export function sendWrsFromWire(wrs: readonly rdma.SendWr[]): DecodedSendWrs {
  const out: SendWr[] = [];
  for (const [index, wr] of wrs.entries()) {
    const sgList = sgesFromWire(wr.sgList);
    const remoteAddr = u64Address(wr.remoteAddr);
    if (sgList === undefined || remoteAddr === undefined) return { wrs: out, error: farAddress(index) };
    out.push({
      wrId: wr.wrId,
      opcode: wr.opcode as number as WrOpcode,
      sgList,
      sendFlags: wr.sendFlags,
      immData: wr.immData,
      remoteAddr,
      rkey: wr.rkey,
      compareAdd: wr.compareAdd,
      swap: wr.swap,
    });
  }
  return { wrs: out };
}

/** Receive WRs up to the first that cannot be read; that one is bad_wr. */
export function recvWrsFromWire(wrs: readonly rdma.RecvWr[]): { readonly wrs: RecvWr[]; readonly error?: ErrnoError } {
  const out: RecvWr[] = [];
  for (const [index, wr] of wrs.entries()) {
    const sgList = sgesFromWire(wr.sgList);
    if (sgList === undefined) return { wrs: out, error: farAddress(index) };
    out.push({ wrId: wr.wrId, sgList });
  }
  return { wrs: out };
}

export function wcToWire(wc: WorkCompletion): rdma.WorkCompletion {
  return {
    wrId: wc.wrId,
    status: wc.status as number as rdma.WcStatus,
    opcode: wc.opcode as number as rdma.WcOpcode,
    byteLen: wc.byteLen,
    immData: wc.immData,
    qpNum: wc.qpNum,
    withImm: wc.withImm,
    vendorErr: wc.vendorErr,
    srcQp: wc.srcQp,
  };
}

/**
 * ibv_modify_qp()'s attributes. The address vector's GID is read only when
 * IBV_QP_AV names it (16 bytes, else EINVAL), into the canonical text the
 * responder compares requesters' GIDs with.
 */
export function qpAttrFromWire(attr: rdma.QpAttr | undefined, mask: number): Partial<QpAttr> {
  if (attr === undefined) return {};
  return {
    qpState: attr.qpState as number as QpState,
    curQpState: attr.curQpState as number as QpState,
    enSqdAsyncNotify: attr.enSqdAsyncNotify,
    qpAccessFlags: attr.qpAccessFlags,
    pkeyIndex: attr.pkeyIndex,
    portNum: attr.portNum,
    pathMtu: attr.pathMtu,
    timeout: attr.timeout,
    retryCnt: attr.retryCnt,
    rnrRetry: attr.rnrRetry,
    rqPsn: attr.rqPsn,
    sqPsn: attr.sqPsn,
    maxRdAtomic: attr.maxRdAtomic,
    maxDestRdAtomic: attr.maxDestRdAtomic,
    minRnrTimer: attr.minRnrTimer,
    destQpNum: attr.destQpNum,
    ...((mask & IBV_QP_AV) !== 0 ? { dgid: gidText(attr.dgid) } : {}),
  };
}

/** ibv_query_qp()'s attributes; a QP with no address vector yet has an empty GID. */
export function qpAttrToWire(attr: QpAttr): rdma.QpAttr {
  return {
    qpState: attr.qpState as number as rdma.QpState,
    curQpState: attr.curQpState as number as rdma.QpState,
    enSqdAsyncNotify: attr.enSqdAsyncNotify,
    qpAccessFlags: attr.qpAccessFlags,
    pkeyIndex: attr.pkeyIndex,
    portNum: attr.portNum,
    pathMtu: attr.pathMtu,
    dgid: attr.dgid === '' ? Buffer.alloc(0) : gidBytes(attr.dgid),
    timeout: attr.timeout,
    retryCnt: attr.retryCnt,
    rnrRetry: attr.rnrRetry,
    rqPsn: attr.rqPsn,
    sqPsn: attr.sqPsn,
    maxRdAtomic: attr.maxRdAtomic,
    maxDestRdAtomic: attr.maxDestRdAtomic,
    minRnrTimer: attr.minRnrTimer,
    destQpNum: attr.destQpNum,
  };
}

export function asyncEventToWire(event: AsyncEvent): rdma.WatchAsyncEventsResponse {
  return {
    eventType: event.type as number as rdma.AsyncEventType,
    qpNum: event.qpNum ?? 0,
    cqHandle: event.cqHandle ?? 0,
    monotonicNs: event.time.monotonicNs,
    unixNanos: event.time.unixNanos,
  };
}
