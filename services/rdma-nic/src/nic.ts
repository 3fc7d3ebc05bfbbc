import { errno } from '@p2p/errno';
import { CompletionQueue, MAX_CQE, roundCqe } from './cq/completion-queue';
import type { WorkCompletion } from './cq/work-completion';
import { AsyncEvents } from './events/async-events';
import type { DmaBufMemory, MemoryWindow } from './memory/memory';
import { KeyTable } from './mr/key-table';
import { DmabufMemoryRegion, HostMemoryRegion, type MemoryRegion } from './mr/memory-region';
import { ProtectionDomain } from './mr/protection-domain';
import { checkRegDmabufMr, checkRegMr } from './mr/reg-checks';
import type { QpAttr } from './qp/qp-attr';
import { QueuePair, type QpCap, type SendEngine } from './qp/queue-pair';
import type { PostResult, RecvWr, SendWr } from './qp/work-request';
import { AsyncEventType, QpState } from './verbs/enums';
import type { Fabric, FabricEndpoint, WireRequest, WireResponse } from './transport/fabric';
import { landResponse, prepareSend, wireRequest } from './transport/requester';
import { respond } from './transport/responder';

/** ibv_device_attr limits of the model device. */
export const DEVICE_LIMITS = {
  maxQp: 1 << 16,
  maxQpWr: 1 << 15,
  maxSge: 30,
  maxCqe: MAX_CQE,
  /** No inline data: a send's payload is always read from its SGEs. */
  maxInlineData: 0,
  maxMrSize: Number.MAX_SAFE_INTEGER,
} as const;

/** The first QPN handed out; 0 and 1 are the special QPs. */
const FIRST_QPN = 0x100;

export interface NicOptions {
  /** The port's GID, the NIC's address on the fabric. */
  readonly gid: string;
  readonly fabric: Fabric;
}

export interface CreateQpOptions {
  readonly pdHandle: number;
  readonly sendCqHandle: number;
  readonly recvCqHandle: number;
  readonly cap: QpCap;
  readonly sqSigAll: boolean;
}

/**
 * One RDMA NIC and its verbs context: PDs, MRs (host memory and dma-buf),
 * CQs and RC QPs, and its endpoint on the fabric. Every verb but
 * regDmabufMr() (which maps the dma-buf) is synchronous; send WRs complete
 * as the fabric answers, which an in-memory fabric does inside
 * ibv_post_send() itself.
 */
export class Nic implements FabricEndpoint {
  readonly gid: string;
  readonly events = new AsyncEvents();
  readonly #fabric: Fabric;
  readonly #keys = new KeyTable<MemoryRegion>();
  readonly #pds = new Map<number, ProtectionDomain>();
  readonly #mrs = new Map<number, MemoryRegion>();
  readonly #cqs = new Map<number, CompletionQueue>();
  readonly #qps = new Map<number, QueuePair>();
  readonly #engine: SendEngine;
  readonly #rnrCleared: (qp: QueuePair) => void;
  readonly #faulting: (qp: QueuePair, fault: Promise<void>) => void;
  readonly #onOverflow: (cq: CompletionQueue) => void;
  #nextHandle = 1;
  #nextQpn = FIRST_QPN;

  constructor(options: NicOptions) {
    this.gid = options.gid;
    this.#fabric = options.fabric;
    this.#engine = {
      prepare: (qp, wr, local) => prepareSend(this.#keys, qp.pd, wr, local),
      transmit: (qp, wr, psn, local, timeoutMs, reply) =>
        this.#fabric.request(qp.attr.dgid, qp.attr.destQpNum, wireRequest(this.#keys, this.gid, qp.qpNum, psn, wr, local), timeoutMs, reply),
      land: (qp, wr, response) => landResponse(this.#keys, qp.pd, wr, response),
    };
    this.#rnrCleared = (qp) => this.#fabric.rnrCleared(qp.attr.dgid, qp.attr.destQpNum);
    // A responder page fault answered RNR: once it is done, the requester may retry.
    this.#faulting = (qp, fault) => void fault.then(() => this.#rnrCleared(qp));
    this.#onOverflow = (cq) => this.#cqOverflow(cq);
  }

  // Protection domains

  /** ibv_alloc_pd(). */
  allocPd(): ProtectionDomain {
    const pd = new ProtectionDomain(this.#nextHandle++);
    this.#pds.set(pd.handle, pd);
    return pd;
  }

  /** ibv_dealloc_pd(): EBUSY while MRs or QPs use it. */
  deallocPd(pdHandle: number): void {
    const pd = this.#pd(pdHandle);
    if (pd.users > 0) {
      throw errno('EBUSY', `PD ${pdHandle} still has ${pd.users} MRs or QPs`);
    }
    this.#pds.delete(pdHandle);
  }

  // Memory regions

  /** ibv_reg_mr_iova() over the whole of `memory`. */
  regMr(pdHandle: number, memory: MemoryWindow, iova: number, access: number): HostMemoryRegion {
    const pd = this.#pd(pdHandle);
    checkRegMr(memory.length, memory.length, iova, access);
    const mr = new HostMemoryRegion(this.#nextHandle++, pd, this.#keys.allocate(), iova, memory.length, access, memory);
    return this.#addMr(mr);
  }

  /**
   * ibv_reg_dmabuf_mr(): checks as ib_uverbs_reg_dmabuf_mr(), then maps
   * once (ib_umem_dmabuf_get() + map_pages); an exporter refusing the map
   * fails the registration with its errno and leaves nothing behind.
   */
  async regDmabufMr(pdHandle: number, offset: number, length: number, iova: number, dmabuf: DmaBufMemory, access: number): Promise<DmabufMemoryRegion> {
    const pd = this.#pd(pdHandle);
    checkRegDmabufMr(dmabuf.size, offset, length, iova, access);
    const mr = new DmabufMemoryRegion(this.#nextHandle++, pd, this.#keys.allocate(), iova, length, access, dmabuf, offset);
    pd.users++;
    try {
      await mr.mapAtRegistration();
    } finally {
      pd.users--;
    }
    this.#pd(pdHandle);
    return this.#addMr(mr);
  }

  /**
   * ibv_rereg_mr() of a host-memory MR, the checks done: the same handle and
   * keys over new memory (and iova, length), a new PD, or new access.
   */
  reregMr(mrHandle: number, change: { pdHandle?: number; memory?: MemoryWindow; iova?: number; access?: number }): HostMemoryRegion {
    const old = this.#mr(mrHandle);
    if (!(old instanceof HostMemoryRegion)) throw errno('EINVAL', `MR ${mrHandle} is not a host-memory MR`);
    const pd = change.pdHandle === undefined ? old.pd : this.#pd(change.pdHandle);
    const memory = change.memory ?? old.memory;
    const iova = change.iova ?? old.iova;
    const access = change.access ?? old.access;
    checkRegMr(memory.length, memory.length, iova, access);
    const mr = new HostMemoryRegion(old.handle, pd, old.key, iova, memory.length, access, memory);
    old.pd.users--;
    pd.users++;
    this.#keys.set(mr.key, mr);
    this.#mrs.set(mr.handle, mr);
    return mr;
  }

  /** ibv_dereg_mr(): its keys stop resolving at once. */
  deregMr(mrHandle: number): void {
    const mr = this.#mr(mrHandle);
    this.#keys.delete(mr.key);
    this.#mrs.delete(mrHandle);
    mr.pd.users--;
  }

  mr(mrHandle: number): MemoryRegion {
    return this.#mr(mrHandle);
  }

  /** move_notify on a dma-buf MR's attachment: zap its translation; the next access faults. */
  invalidateDmabufMr(mrHandle: number): void {
    const mr = this.#mr(mrHandle);
    if (!(mr instanceof DmabufMemoryRegion)) {
      throw errno('EINVAL', `MR ${mrHandle} is not a dma-buf MR`);
    }
    mr.invalidate();
  }

  // Completion queues

  /** ibv_create_cq(): EINVAL outside 1..max_cqe; the CQ holds at least `cqe` (CompletionQueue.cqe says how many). */
  createCq(cqe: number): CompletionQueue {
    if (!Number.isInteger(cqe) || cqe < 1 || cqe > DEVICE_LIMITS.maxCqe) {
      throw errno('EINVAL', `cqe ${cqe} is outside 1..${DEVICE_LIMITS.maxCqe}`);
    }
    const cq = new CompletionQueue(this.#nextHandle++, roundCqe(cqe), this.#onOverflow);
    this.#cqs.set(cq.handle, cq);
    return cq;
  }

  /** ibv_destroy_cq(): EBUSY while a QP completes on it. */
  destroyCq(cqHandle: number): void {
    const cq = this.#cq(cqHandle);
    if (cq.users > 0) {
      throw errno('EBUSY', `CQ ${cqHandle} still serves ${cq.users} QP queues`);
    }
    this.#cqs.delete(cqHandle);
  }

  /** ibv_poll_cq(). */
  pollCq(cqHandle: number, maxEntries: number): WorkCompletion[] {
    return this.#cq(cqHandle).poll(maxEntries);
  }

  cq(cqHandle: number): CompletionQueue {
    return this.#cq(cqHandle);
  }

  // Queue pairs

  /**
   * ibv_create_qp() for IBV_QPT_RC: EINVAL for caps outside the device's
   * limits; the work queues round up to a power of two as mlx5's do, and the
   * QP reports what it got.
   */
  createQp(options: CreateQpOptions): QueuePair {
    const pd = this.#pd(options.pdHandle);
    const sendCq = this.#cq(options.sendCqHandle);
    const recvCq = this.#cq(options.recvCqHandle);
    const { cap } = options;
    checkCap(cap.maxSendWr, 1, DEVICE_LIMITS.maxQpWr, 'max_send_wr');
    checkCap(cap.maxRecvWr, 1, DEVICE_LIMITS.maxQpWr, 'max_recv_wr');
    checkCap(cap.maxSendSge, 1, DEVICE_LIMITS.maxSge, 'max_send_sge');
    checkCap(cap.maxRecvSge, 1, DEVICE_LIMITS.maxSge, 'max_recv_sge');
    checkCap(cap.maxInlineData ?? 0, 0, DEVICE_LIMITS.maxInlineData, 'max_inline_data');
    if (this.#qps.size >= DEVICE_LIMITS.maxQp) {
      throw errno('ENOMEM', `the device has its ${DEVICE_LIMITS.maxQp} QPs`);
    }
    const actual: QpCap = {
      maxSendWr: nextPowerOfTwo(cap.maxSendWr),
      maxRecvWr: nextPowerOfTwo(cap.maxRecvWr),
      maxSendSge: cap.maxSendSge,
      maxRecvSge: cap.maxRecvSge,
    };
    const qp = new QueuePair(this.#nextQpn++ & 0xffffff, pd, sendCq, recvCq, actual, options.sqSigAll, this.events, this.#engine);
    this.#qps.set(qp.qpNum, qp);
    pd.users++;
    sendCq.users++;
    recvCq.users++;
    return qp;
  }

  /** ibv_modify_qp(). */
  modifyQp(qpNum: number, attr: Partial<QpAttr>, mask: number): void {
    this.#qp(qpNum).modify(attr, mask);
  }

  /** ibv_query_qp(). */
  queryQp(qpNum: number): QpAttr {
    return this.#qp(qpNum).query();
  }

  /** ibv_destroy_qp(). */
  destroyQp(qpNum: number): void {
    const qp = this.#qp(qpNum);
    qp.destroy();
    this.#qps.delete(qpNum);
    qp.pd.users--;
    qp.sendCq.users--;
    qp.recvCq.users--;
  }

  /** ibv_post_send(). */
  postSend(qpNum: number, wrs: readonly SendWr[]): PostResult {
    return this.#qp(qpNum).postSend(wrs);
  }

  /** ibv_post_recv(). */
  postRecv(qpNum: number, wrs: readonly RecvWr[]): PostResult {
    return this.#qp(qpNum).postRecv(wrs, this.#rnrCleared);
  }

  qp(qpNum: number): QueuePair {
    return this.#qp(qpNum);
  }

  // The fabric endpoint

  receive(qpNum: number, request: WireRequest): WireResponse | undefined {
    const qp = this.#qps.get(qpNum);
    return qp === undefined ? undefined : respond(this.#keys, qp, request, this.#faulting);
  }

  retryAfterRnr(qpNum: number): void {
    this.#qps.get(qpNum)?.resumeAfterRnr();
  }

  /**
   * A CQ overflowed: IBV_EVENT_CQ_ERR for it, and every QP completing on it
   * goes to ERR with IBV_EVENT_QP_FATAL (its completions can no longer be
   * reported).
   */
  #cqOverflow(cq: CompletionQueue): void {
    this.events.emit({ type: AsyncEventType.CQ_ERR, cqHandle: cq.handle });
    for (const qp of this.#qps.values()) {
      if ((qp.sendCq === cq || qp.recvCq === cq) && qp.state !== QpState.RESET && qp.state !== QpState.ERR) {
        qp.fail(AsyncEventType.QP_FATAL);
      }
    }
  }

  #addMr<T extends MemoryRegion>(mr: T): T {
    this.#keys.set(mr.key, mr);
    this.#mrs.set(mr.handle, mr);
    mr.pd.users++;
    return mr;
  }

  #pd(handle: number): ProtectionDomain {
    const pd = this.#pds.get(handle);
    if (pd === undefined) {
      throw errno('EINVAL', `no PD ${handle}`);
    }
    return pd;
  }

  #mr(handle: number): MemoryRegion {
    const mr = this.#mrs.get(handle);
    if (mr === undefined) {
      throw errno('EINVAL', `no MR ${handle}`);
    }
    return mr;
  }

  #cq(handle: number): CompletionQueue {
    const cq = this.#cqs.get(handle);
    if (cq === undefined) {
      throw errno('EINVAL', `no CQ ${handle}`);
    }
    return cq;
  }

  #qp(qpNum: number): QueuePair {
    const qp = this.#qps.get(qpNum);
    if (qp === undefined) {
      throw errno('EINVAL', `no QP ${qpNum}`);
    }
    return qp;
  }
}

function checkCap(value: number, min: number, max: number, what: string): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw errno('EINVAL', `${what} ${value} is outside ${min}..${max}`);
  }
}

function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) {
    p *= 2;
  }
  return p;
}
