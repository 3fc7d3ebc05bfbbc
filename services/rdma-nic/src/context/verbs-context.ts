import { errno, type ErrnoError } from '@p2p/errno';
import type { WorkCompletion } from '../cq/work-completion';
import type { AsyncEvent } from '../events/async-events';
import type { Nic } from '../nic';
import type { QpAttr } from '../qp/qp-attr';
import type { QpCap } from '../qp/queue-pair';
import type { PostResult, RecvWr, SendWr } from '../qp/work-request';
import { CompletionWatcher, type CompletionSink } from './completion-watcher';
import type { ImportedMemory, MemoryImportPort } from './ports';

/** What a registration hands back (struct ibv_mr's handle and keys). */
export interface RegisteredMr {
  readonly handle: number;
  readonly lkey: number;
  readonly rkey: number;
}

export interface CreatedQp {
  readonly qpNum: number;
  readonly cap: QpCap;
}

/** Where a context's async events go, until its file is released. */
export interface AsyncEventSink {
  event(event: AsyncEvent): void;
  end(): void;
}

/** Reports background failures that have no caller to fail (a detach during teardown). */
export type ErrorReporter = (error: unknown, what: string) => void;

/**
 * One verbs context: an open file of this NIC in a process's fd table
 * (ib_uverbs_file) and the objects made through it. The NIC's handles are
 * device-wide; a context accepts only its own, and another context's handle
 * fails exactly as a handle that does not exist (uobj_get_obj_read() finds no
 * object in this file: EINVAL).
 */
export class VerbsContext {
  readonly handle: string;
  readonly #nic: Nic;
  readonly #imports: MemoryImportPort;
  readonly #report: ErrorReporter;
  readonly #pds = new Set<number>();
  readonly #mrs = new Map<number, ImportedMemory<unknown>>();
  /** CQ handle -> the cqe the CQ holds. */
  readonly #cqs = new Map<number, number>();
  readonly #qps = new Set<number>();
  readonly #watchers = new Map<number, CompletionWatcher>();
  /** Event sinks, each with its unsubscribe from the NIC's events. */
  readonly #eventSinks = new Map<AsyncEventSink, () => void>();
  #released = false;

  constructor(handle: string, nic: Nic, imports: MemoryImportPort, report: ErrorReporter) {
    this.handle = handle;
    this.#nic = nic;
    this.#imports = imports;
    this.#report = report;
  }

  /** The file was released: every object is gone and every call fails with EBADF. */
  get released(): boolean {
    return this.#released;
  }

  // Protection domains

  allocPd(): number {
    this.#check();
    const pd = this.#nic.allocPd().handle;
    this.#pds.add(pd);
    return pd;
  }

  deallocPd(pdHandle: number): void {
    this.#pd(pdHandle);
    this.#nic.deallocPd(pdHandle);
    this.#pds.delete(pdHandle);
  }

  // Memory regions

  /**
   * ib_uverbs_reg_mr(): the PD is looked up before the memory is pinned
   * (ib_umem_get()), so a bad PD fails without touching the buffer.
   */
  async regMr(pid: number, pdHandle: number, heapFd: number, offset: number, length: number, iova: number, access: number): Promise<RegisteredMr> {
    this.#pd(pdHandle);
    const imported = await this.#imports.hostMemory(pid, heapFd, offset, length, access);
    try {
      this.#pd(pdHandle);
      const mr = this.#nic.regMr(pdHandle, imported.memory, iova, access);
      this.#mrs.set(mr.handle, imported);
      return { handle: mr.handle, lkey: mr.lkey, rkey: mr.rkey };
    } catch (error) {
      await this.#detach(imported, 'detach after a failed reg_mr');
      throw error;
    }
  }

  /**
   * ib_uverbs_reg_dmabuf_mr(): a dynamic attachment whose move_notify zaps
   * the MR's translation synchronously, before the ack
   * (mlx5_ib_dmabuf_invalidate_cb()), so no DMA reaches the memory once the
   * exporter's revoke has returned; the next access faults and maps again.
   * The NIC checks the arguments once it knows the buffer's size, after the
   * attach; the kernel checks the access flags first, so a call with both a
   * bad fd and bad flags fails with EBADF here where the kernel says EINVAL.
   */
  async regDmabufMr(pid: number, pdHandle: number, fd: number, offset: number, length: number, iova: number, access: number): Promise<RegisteredMr> {
    this.#pd(pdHandle);
    let mrHandle: number | undefined;
    let movedWhileRegistering = false;
    const imported = await this.#imports.dmaBuf(pid, fd, () => {
      if (mrHandle === undefined) movedWhileRegistering = true;
      else if (this.#mrs.has(mrHandle)) this.#nic.invalidateDmabufMr(mrHandle);
    });
    try {
      this.#pd(pdHandle);
      const mr = await this.#nic.regDmabufMr(pdHandle, offset, length, iova, imported.memory, access);
      mrHandle = mr.handle;
      if (this.#released) {
        // The file was released while the registration mapped: nothing may outlive it.
        this.#nic.deregMr(mr.handle);
        throw this.#closedError();
      }
      this.#mrs.set(mr.handle, imported);
      // A move that landed before the handle was known still has to zap what the registration mapped.
      if (movedWhileRegistering) this.#nic.invalidateDmabufMr(mr.handle);
      return { handle: mr.handle, lkey: mr.lkey, rkey: mr.rkey };
    } catch (error) {
      await this.#detach(imported, 'detach after a failed reg_dmabuf_mr');
      throw error;
    }
  }

  /** ib_dereg_mr(): the keys stop resolving at once, then the attachment goes (ib_umem_dmabuf_release()). */
  async deregMr(mrHandle: number): Promise<void> {
    const imported = this.#mr(mrHandle);
    this.#nic.deregMr(mrHandle);
    this.#mrs.delete(mrHandle);
    await imported.detach();
  }

  // Completion queues

  createCq(cqe: number): { handle: number; cqe: number } {
    this.#check();
    const cq = this.#nic.createCq(cqe);
    this.#cqs.set(cq.handle, cq.cqe);
    return { handle: cq.handle, cqe: cq.cqe };
  }

  /** ibv_destroy_cq(): EBUSY while a QP completes on it; a watcher's stream ends. */
  destroyCq(cqHandle: number): void {
    this.#cq(cqHandle);
    this.#nic.destroyCq(cqHandle);
    this.#cqs.delete(cqHandle);
    this.#watchers.get(cqHandle)?.end();
  }

  /** ibv_poll_cq(). A watched CQ is polled by its watcher, so it reads empty here. */
  pollCq(cqHandle: number, maxEntries: number): WorkCompletion[] {
    this.#cq(cqHandle);
    return this.#watchers.has(cqHandle) ? [] : this.#nic.pollCq(cqHandle, maxEntries);
  }

  /** WatchCompletions: at most one watcher per CQ (EBUSY). Returns the watcher; stop() it when the consumer leaves. */
  watchCompletions(cqHandle: number, sink: CompletionSink): CompletionWatcher {
    const cqe = this.#cq(cqHandle);
    if (this.#watchers.has(cqHandle)) throw errno('EBUSY', `CQ ${cqHandle} already has a watcher`);
    const watcher: CompletionWatcher = new CompletionWatcher(this.#nic, cqHandle, cqe, sink, () => {
      if (this.#watchers.get(cqHandle) === watcher) this.#watchers.delete(cqHandle);
    });
    this.#watchers.set(cqHandle, watcher);
    return watcher;
  }

  // Queue pairs

  createQp(pdHandle: number, sendCqHandle: number, recvCqHandle: number, cap: QpCap, sqSigAll: boolean): CreatedQp {
    this.#pd(pdHandle);
    this.#cq(sendCqHandle);
    this.#cq(recvCqHandle);
    const qp = this.#nic.createQp({ pdHandle, sendCqHandle, recvCqHandle, cap, sqSigAll });
    this.#qps.add(qp.qpNum);
    return { qpNum: qp.qpNum, cap: qp.cap };
  }

  modifyQp(qpNum: number, attr: Partial<QpAttr>, mask: number): void {
    this.#qp(qpNum);
    this.#nic.modifyQp(qpNum, attr, mask);
  }

  queryQp(qpNum: number): QpAttr {
    this.#qp(qpNum);
    return this.#nic.queryQp(qpNum);
  }

  destroyQp(qpNum: number): void {
    this.#qp(qpNum);
    this.#nic.destroyQp(qpNum);
    this.#qps.delete(qpNum);
  }

  postSend(qpNum: number, wrs: readonly SendWr[]): PostResult {
    this.#qp(qpNum);
    return this.#nic.postSend(qpNum, wrs);
  }

  postRecv(qpNum: number, wrs: readonly RecvWr[]): PostResult {
    this.#qp(qpNum);
    return this.#nic.postRecv(qpNum, wrs);
  }

  // Async events

  /**
   * The context's async events: those affiliated with its QPs and CQs, and
   * the unaffiliated ones (port, device), which every context gets
   * (ib_uverbs_event_handler()). Returns the unsubscribe.
   */
  watchAsyncEvents(sink: AsyncEventSink): () => void {
    this.#check();
    const unsubscribe = this.#nic.events.addListener((event) => {
      if (this.#affiliated(event)) sink.event(event);
    });
    this.#eventSinks.set(sink, unsubscribe);
    return () => {
      unsubscribe();
      this.#eventSinks.delete(sink);
    };
  }

  /**
   * The file's release (ib_uverbs_cleanup_ufile()): every object made
   * through the context is destroyed, QPs first, then MRs (their
   * attachments detached), CQs and PDs, whatever the process left behind.
   */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    for (const qpNum of this.#qps) this.#teardown(() => this.#nic.destroyQp(qpNum), `destroy QP ${qpNum}`);
    this.#qps.clear();
    const detaches: Promise<void>[] = [];
    for (const [mrHandle, imported] of this.#mrs) {
      this.#teardown(() => this.#nic.deregMr(mrHandle), `deregister MR ${mrHandle}`);
      detaches.push(imported.detach().catch((error: unknown) => this.#report(error, `detach of MR ${mrHandle} at release`)));
    }
    this.#mrs.clear();
    for (const watcher of [...this.#watchers.values()]) watcher.end();
    for (const cqHandle of this.#cqs.keys()) this.#teardown(() => this.#nic.destroyCq(cqHandle), `destroy CQ ${cqHandle}`);
    this.#cqs.clear();
    for (const pdHandle of this.#pds) this.#teardown(() => this.#nic.deallocPd(pdHandle), `deallocate PD ${pdHandle}`);
    this.#pds.clear();
    for (const [sink, unsubscribe] of [...this.#eventSinks]) {
      unsubscribe();
      sink.end();
    }
    this.#eventSinks.clear();
    await Promise.all(detaches);
  }

  #affiliated(event: AsyncEvent): boolean {
    if (event.qpNum !== undefined) return this.#qps.has(event.qpNum);
    if (event.cqHandle !== undefined) return this.#cqs.has(event.cqHandle);
    return true;
  }

  #teardown(destroy: () => void, what: string): void {
    try {
      destroy();
    } catch (error) {
      this.#report(error, `${what} at release`);
    }
  }

  /** A failed registration leaves nothing attached by the time it fails (ib_umem_dmabuf_get()'s error path detaches). */
  async #detach(imported: ImportedMemory<unknown>, what: string): Promise<void> {
    await imported.detach().catch((error: unknown) => this.#report(error, what));
  }

  #check(): void {
    if (this.#released) throw this.#closedError();
  }

  #closedError(): ErrnoError {
    return errno('EBADF', `verbs context ${this.handle} was closed`);
  }

  #pd(handle: number): void {
    this.#check();
    if (!this.#pds.has(handle)) throw errno('EINVAL', `no PD ${handle} in this context`);
  }

  #mr(handle: number): ImportedMemory<unknown> {
    this.#check();
    const imported = this.#mrs.get(handle);
    if (imported === undefined) throw errno('EINVAL', `no MR ${handle} in this context`);
    return imported;
  }

  /** The CQ's cqe. */
  #cq(handle: number): number {
    this.#check();
    const cqe = this.#cqs.get(handle);
    if (cqe === undefined) throw errno('EINVAL', `no CQ ${handle} in this context`);
    return cqe;
  }

  #qp(qpNum: number): void {
    this.#check();
    if (!this.#qps.has(qpNum)) throw errno('EINVAL', `no QP ${qpNum} in this context`);
  }
}
