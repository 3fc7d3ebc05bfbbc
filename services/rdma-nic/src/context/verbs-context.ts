import { errno, type ErrnoError } from '@p2p/errno';
import { IBV_REREG_MR_CHANGE_ACCESS, IBV_REREG_MR_CHANGE_PD, IBV_REREG_MR_CHANGE_TRANSLATION, IBV_REREG_MR_FLAGS_SUPPORTED, userQueues } from '@p2p/verbs';
import { CqRing } from '../cq/cq-ring';
import { checkMrAccess } from '../mr/reg-checks';
import type { MemoryWindow } from '../memory/memory';
import type { DoorbellServer } from '../user-queues/doorbell-server';
import { UserContext } from '../user-queues/user-context';
import { UserQp } from '../user-queues/user-qp';
import { IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_MW_BIND, IBV_ACCESS_REMOTE_ATOMIC, IBV_ACCESS_REMOTE_WRITE } from '../verbs/access-flags';
import { HostMemoryRegion } from '../mr/memory-region';


/** ib_access_writable(): access for which ib_umem_get() pins with FOLL_WRITE. */
function ib_access_writable(access: number): boolean {
  return (access & (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC | IBV_ACCESS_MW_BIND)) !== 0;
}
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

/** What OpenUserQueues answers: where to send wake-ups, and the key that names the context there. */
export interface OpenedUserQueues {
  readonly doorbellSocket: string;
  readonly wakeKey: Buffer;
}

/** The one view of `length` bytes of pinned host memory a ring needs: a ring across mappings is refused. */
function ringView(window: MemoryWindow, length: number, what: string): Uint8Array {
  const views: Uint8Array[] = [];
  window.views(0, length, views);
  if (views.length !== 1) throw errno('EINVAL', `the ${what} spans ${views.length} mappings; a ring is one`);
  return views[0]!;
}

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
  readonly #doorbells: DoorbellServer | undefined;
  /** The user queues' end (OpenUserQueues), and the pinned memory of the doorbell page and of every ring. */
  #user: UserContext | undefined;
  readonly #ringMemory = new Map<string, ImportedMemory<unknown>>();
  #released = false;

  constructor(handle: string, nic: Nic, imports: MemoryImportPort, report: ErrorReporter, doorbells?: DoorbellServer) {
    this.handle = handle;
    this.#nic = nic;
    this.#imports = imports;
    this.#report = report;
    this.#doorbells = doorbells;
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
   * ib_uverbs_reg_mr(): the access flags are checked first, then the PD is
   * looked up before the memory is pinned (ib_umem_get()), so a bad PD or
   * bad flags fail without touching the buffer.
   */
  async regMr(pid: number, pdHandle: number, heapFd: number, offset: number, length: number, iova: number, access: number): Promise<RegisteredMr> {
    this.#check();
    // ib_uverbs_reg_mr() checks the access flags before it looks up the PD or pins a page.
    checkMrAccess(access);
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

  /**
   * ibv_rereg_mr(): libibverbs' checks (a dma-buf MR, flags 0 or unknown,
   * a translation of length 0, access without CHANGE_ACCESS: EINVAL), then
   * the kernel's (ib_check_mr_access(), the new PD, the new memory pinned
   * as ib_umem_get() pins it; a writable access on memory the process may
   * only read is EFAULT). Nothing changes unless all of it succeeds; the
   * old memory is unpinned after.
   */
  async reregMr(pid: number, mrHandle: number, flags: number, change: { pdHandle: number; heapFd: number; offset: number; length: number; iova: number; access: number }): Promise<RegisteredMr & { iova: number; length: number }> {
    const imported = this.#mr(mrHandle);
    const old = this.#nic.mr(mrHandle);
    if (!(old instanceof HostMemoryRegion)) throw errno('EINVAL', `MR ${mrHandle} is a dma-buf MR: ibv_rereg_mr() takes MRs of ibv_reg_mr() only`);
    if (flags === 0 || (flags & ~IBV_REREG_MR_FLAGS_SUPPORTED) !== 0) throw errno('EINVAL', `rereg flags 0x${flags.toString(16)}: a non-empty set of IBV_REREG_MR_CHANGE_TRANSLATION, _PD and _ACCESS`);
    const translation = (flags & IBV_REREG_MR_CHANGE_TRANSLATION) !== 0;
    if (translation && change.length === 0) throw errno('EINVAL', 'a new translation of length 0');
    if (change.access !== 0 && (flags & IBV_REREG_MR_CHANGE_ACCESS) === 0) throw errno('EINVAL', `access 0x${change.access.toString(16)} without IBV_REREG_MR_CHANGE_ACCESS`);
    const access = (flags & IBV_REREG_MR_CHANGE_ACCESS) !== 0 ? change.access : old.access;
    checkMrAccess(access);
    const pdHandle = (flags & IBV_REREG_MR_CHANGE_PD) !== 0 ? change.pdHandle : undefined;
    if (pdHandle !== undefined) this.#pd(pdHandle);
    let pinned: ImportedMemory<MemoryWindow> | undefined;
    if (translation) {
      pinned = await this.#imports.hostMemory(pid, change.heapFd, change.offset, change.length, access);
    } else if (ib_access_writable(access) && imported.writable === false) {
      throw errno('EFAULT', `access 0x${access.toString(16)} writes, and MR ${mrHandle}'s memory is open read-only`);
    }
    try {
      this.#check();
      this.#mr(mrHandle);
      if (pdHandle !== undefined) this.#pd(pdHandle);
      const mr = this.#nic.reregMr(mrHandle, { pdHandle, memory: pinned?.memory, iova: translation ? change.iova : undefined, access });
      if (pinned !== undefined) {
        this.#mrs.set(mrHandle, pinned);
        await this.#detach(imported, `detach of MR ${mrHandle}'s old memory`);
      }
      return { handle: mr.handle, lkey: mr.lkey, rkey: mr.rkey, iova: mr.iova, length: mr.length };
    } catch (error) {
      if (pinned !== undefined) await this.#detach(pinned, 'detach after a failed rereg_mr');
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

  // User queues

  /**
   * mlx5_alloc_context()'s part: pins the doorbell page (a system-heap
   * buffer of the process, EFAULT as for MR memory) and opens the context
   * on the doorbell socket. Once per context (EINVAL); EOPNOTSUPP on a NIC
   * without a doorbell socket.
   */
  async openUserQueues(pid: number, doorbellPageFd: number): Promise<OpenedUserQueues> {
    this.#check();
    const doorbells = this.#doorbells;
    if (doorbells === undefined) throw errno('EOPNOTSUPP', 'this NIC has no doorbell socket: post and poll through its calls');
    if (this.#user !== undefined || this.#ringMemory.has('doorbell page')) throw errno('EINVAL', `context ${this.handle} has its user queues already`);
    const page = await this.#pinRing(pid, doorbellPageFd, userQueues.DOORBELL_PAGE_BYTES, 'doorbell page');
    const user = new UserContext(ringView(page.memory, userQueues.DOORBELL_PAGE_BYTES, 'doorbell page'));
    this.#user = user;
    doorbells.add(user);
    return { doorbellSocket: doorbells.path, wakeKey: user.key };
  }

  /** Pins [0, length) of a ring buffer for the life of `name` in this context; released with it or at release(). */
  async #pinRing(pid: number, fd: number, length: number, name: string): Promise<ImportedMemory<MemoryWindow>> {
    this.#ringMemory.set(name, { memory: undefined, detach: async () => undefined });
    try {
      const pinned = await this.#imports.hostMemory(pid, fd, 0, length, IBV_ACCESS_LOCAL_WRITE);
      if (this.#released) {
        await this.#detach(pinned, `detach of the ${name} after release`);
        throw this.#closedError();
      }
      this.#ringMemory.set(name, pinned);
      return pinned;
    } catch (error) {
      this.#ringMemory.delete(name);
      throw error;
    }
  }

  async #unpinRing(name: string): Promise<void> {
    const pinned = this.#ringMemory.get(name);
    this.#ringMemory.delete(name);
    if (pinned !== undefined) await this.#detach(pinned, `detach of the ${name}`);
  }

  #userContext(): UserContext {
    if (this.#user === undefined) throw errno('EINVAL', `context ${this.handle} has no user queues (OpenUserQueues first)`);
    return this.#user;
  }

  /** ibv_create_cq() with its ring in the process's memory: EFAULT for a buffer short of cqRingBytes() of the CQ it gets. */
  async createUserCq(pid: number, cqe: number, ringFd: number): Promise<{ handle: number; cqe: number }> {
    this.#check();
    const user = this.#userContext();
    const cq = this.#nic.createCq(cqe);
    const name = `CQ ${cq.handle}`;
    try {
      const bytes = userQueues.cqRingBytes(cq.cqe);
      const pinned = await this.#pinRing(pid, ringFd, bytes, name);
      cq.useUserRing(new CqRing(ringView(pinned.memory, bytes, name), userQueues.cqRingEntries(cq.cqe), cq.cqe, () => user.cqEvent(cq.handle)));
    } catch (error) {
      this.#nic.destroyCq(cq.handle);
      throw error;
    }
    this.#cqs.set(cq.handle, cq.cqe);
    return { handle: cq.handle, cqe: cq.cqe };
  }

  /** ibv_create_qp() with its work queues in the process's memory; both CQs must be in user memory (EINVAL). */
  async createUserQp(pid: number, pdHandle: number, sendCqHandle: number, recvCqHandle: number, cap: QpCap, sqSigAll: boolean, ringFd: number): Promise<CreatedQp> {
    const user = this.#userContext();
    this.#pd(pdHandle);
    for (const handle of [sendCqHandle, recvCqHandle]) {
      this.#cq(handle);
      if (!this.#nic.cq(handle).inUserMemory) throw errno('EINVAL', `CQ ${handle} is polled through calls; a QP with user queues completes on CQs in user memory`);
    }
    const qp = this.#nic.createQp({ pdHandle, sendCqHandle, recvCqHandle, cap, sqSigAll });
    const name = `QP ${qp.qpNum}`;
    qp.useUserQueues();
    try {
      const bytes = userQueues.qpRingBytes(qp.cap);
      const pinned = await this.#pinRing(pid, ringFd, bytes, name);
      user.addQp(new UserQp(qp, ringView(pinned.memory, bytes, name), (wrs) => this.#nic.postRecv(qp.qpNum, wrs)));
    } catch (error) {
      this.#nic.destroyQp(qp.qpNum);
      throw error;
    }
    this.#qps.add(qp.qpNum);
    return { qpNum: qp.qpNum, cap: qp.cap };
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
    void this.#unpinRing(`CQ ${cqHandle}`);
  }

  /** ibv_poll_cq(). A watched CQ is polled by its watcher, so it reads empty here; a CQ in user memory is its process's to poll (EINVAL). */
  pollCq(cqHandle: number, maxEntries: number): WorkCompletion[] {
    this.#cq(cqHandle);
    this.#notInUserMemory(cqHandle);
    return this.#watchers.has(cqHandle) ? [] : this.#nic.pollCq(cqHandle, maxEntries);
  }

  #notInUserMemory(cqHandle: number): void {
    if (this.#nic.cq(cqHandle).inUserMemory) throw errno('EINVAL', `CQ ${cqHandle} is in user memory: its process polls it there`);
  }

  /** WatchCompletions: at most one watcher per CQ (EBUSY). Returns the watcher; stop() it when the consumer leaves. */
  watchCompletions(cqHandle: number, sink: CompletionSink): CompletionWatcher {
    const cqe = this.#cq(cqHandle);
    this.#notInUserMemory(cqHandle);
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

  /** ibv_query_qp()'s init_attr.cap: what the QP was created with. */
  qpCap(qpNum: number): QpCap {
    this.#qp(qpNum);
    return this.#nic.qp(qpNum).cap;
  }

  destroyQp(qpNum: number): void {
    this.#qp(qpNum);
    this.#nic.destroyQp(qpNum);
    this.#qps.delete(qpNum);
    this.#user?.removeQp(qpNum);
    void this.#unpinRing(`QP ${qpNum}`);
  }

  postSend(qpNum: number, wrs: readonly SendWr[]): PostResult {
    this.#qp(qpNum);
    this.#callsPost(qpNum);
    return this.#nic.postSend(qpNum, wrs);
  }

  postRecv(qpNum: number, wrs: readonly RecvWr[]): PostResult {
    this.#qp(qpNum);
    this.#callsPost(qpNum);
    return this.#nic.postRecv(qpNum, wrs);
  }

  #callsPost(qpNum: number): void {
    if (this.#nic.qp(qpNum).inUserMemory) throw errno('EINVAL', `QP ${qpNum} has its work queues in user memory: its process posts there`);
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
    if (this.#user !== undefined) this.#doorbells?.remove(this.#user);
    for (const [name, pinned] of this.#ringMemory) detaches.push(this.#detach(pinned, `detach of the ${name} at release`));
    this.#ringMemory.clear();
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
