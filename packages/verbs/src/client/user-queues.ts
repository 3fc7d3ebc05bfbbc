import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { RegistrySession } from '@p2p/dmabuf-client';
import { errno, ErrnoError } from '@p2p/errno';
import { rdma } from '@p2p/proto';
import { SegmentStore } from '@p2p/shm';
import {
  CQ_ARM,
  CQ_CONSUMER_INDEX,
  CQ_EVENT_BYTES,
  CQ_EVENT_TAG,
  CQ_RING_AT,
  CQE_OWNER,
  CQE_RING_BYTES,
  DB_NIC_ASLEEP,
  DOORBELL_PAGE_BYTES,
  DoorbellWord,
  QP_RQ_DBREC,
  QP_SQ_DBREC,
  type QpRingLayout,
  type QueueCaps,
  type RingSendWrInput,
  type RingSgeInput,
  WAKE_BYTE,
  completesReceive,
  cqeOwner,
  decodeRingWc,
  ringCqeWqeCounter,
  encodeRecvWqe,
  encodeSendWqe,
  qpRingLayout,
} from '../abi/user-queues';
import { decodeWqes } from '../abi/wqe';
import type { PostStream } from './post-stream';

/** What the user queues need of the process: its registry session (memory, mappings). */
export type QueueMemory = Pick<RegistrySession, 'pid' | 'heapAllocate' | 'mmapFd' | 'munmap' | 'closeFd'>;

/**
 * A system-heap buffer of the process, mapped here: what libmlx5 allocates
 * for its queues and doorbell records (anonymous memory there). Its fd is
 * only for handing it to the NIC: once the NIC pinned it, pinned() closes
 * the fd, and the mapping alone keeps the buffer, as a VMA outlives
 * close(), so that the context adds no file to the process's table.
 */
export class MappedBuffer {
  #fdOpen = true;

  private constructor(
    readonly fd: number,
    readonly addr: bigint,
    readonly view: Buffer,
  ) {}

  /** The NIC holds the buffer now: the fd goes. */
  async pinned(memory: QueueMemory): Promise<void> {
    if (!this.#fdOpen) return;
    this.#fdOpen = false;
    await memory.closeFd(this.fd).catch(() => undefined);
  }

  /**
   * `bytes` of zeroed host memory, mapped in this process: EOPNOTSUPP when
   * its segment cannot be mapped here (the process shares no tmpfs with the
   * registry), with nothing left behind.
   */
  static async allocate(memory: QueueMemory, bytes: number): Promise<MappedBuffer> {
    const { fd } = await memory.heapAllocate(bytes);
    try {
      const mapped = await memory.mmapFd(fd, 0, bytes);
      if (mapped.extents.length !== 1) throw errno('EOPNOTSUPP', `a ${bytes}-byte queue buffer in ${mapped.extents.length} segments`);
      const extent = mapped.extents[0]!;
      let view: Buffer;
      try {
        const segment = new SegmentStore({ dir: mapped.directory }).open(extent.segment);
        try {
          view = segment.view(Number(extent.segmentOffset), bytes);
        } finally {
          segment.close();
        }
      } catch (error) {
        await memory.munmap(mapped.addr, bytes).catch(() => undefined);
        throw errno('EOPNOTSUPP', `the queue buffer's segment cannot be mapped here (${error instanceof Error ? error.message : String(error)}): this process shares no tmpfs with the registry`);
      }
      return new MappedBuffer(fd, mapped.addr, view);
    } catch (error) {
      await memory.closeFd(fd).catch(() => undefined);
      throw error;
    }
  }

  async release(memory: QueueMemory): Promise<void> {
    const fdOpen = this.#fdOpen;
    this.#fdOpen = false;
    await Promise.allSettled([memory.munmap(this.addr, this.view.length), fdOpen ? memory.closeFd(this.fd) : Promise.resolve()]);
  }
}

function postError(failure: ErrnoError, posted: number): ErrnoError & { posted: number } {
  return Object.assign(failure, { posted });
}

/** rdma-core's WR opcodes the model's RC QPs run (the proto's numbering). */
const SEND_OPCODES = new Set<number>([
  rdma.WrOpcode.WR_OPCODE_RDMA_WRITE,
  rdma.WrOpcode.WR_OPCODE_RDMA_WRITE_WITH_IMM,
  rdma.WrOpcode.WR_OPCODE_SEND,
  rdma.WrOpcode.WR_OPCODE_SEND_WITH_IMM,
  rdma.WrOpcode.WR_OPCODE_RDMA_READ,
  rdma.WrOpcode.WR_OPCODE_ATOMIC_CMP_AND_SWP,
  rdma.WrOpcode.WR_OPCODE_ATOMIC_FETCH_AND_ADD,
]);

/**
 * A QP's work queues in this process's memory, as libmlx5 keeps them:
 * ibv_post_send() and ibv_post_recv() write WQEs into the rings and store
 * the doorbell records, with no call to the NIC; a slot is free once the
 * completion of its WQE (or of a later one) has been polled. The checks are
 * the library's: EINVAL before RTS (sends) or in RESET (receives), for an
 * opcode it does not know or too many SGEs; ENOMEM for a full queue.
 */
export class UserQp {
  readonly layout: QpRingLayout;
  readonly #view: DataView;
  readonly #sqDoorbell: DoorbellWord;
  readonly #rqDoorbell: DoorbellWord;
  readonly #ring: () => void;
  #sqPosted = 0;
  #sqRetired = 0;
  #rqPosted = 0;
  #rqRetired = 0;
  /** The state as this process set it (ibv_qp.state): the NIC may have moved it to ERR since, which flushes. */
  state: rdma.QpState = rdma.QpState.QP_STATE_RESET;

  constructor(
    readonly qpNum: number,
    readonly cap: QueueCaps,
    readonly buffer: MappedBuffer,
    ring: () => void,
  ) {
    this.layout = qpRingLayout(cap);
    if (this.layout.bytes > buffer.view.length) throw errno('EINVAL', `QP ${qpNum}'s queues need ${this.layout.bytes} bytes, its buffer has ${buffer.view.length}`);
    this.#view = new DataView(buffer.view.buffer, buffer.view.byteOffset, this.layout.bytes);
    this.#sqDoorbell = new DoorbellWord(buffer.view, QP_SQ_DBREC);
    this.#rqDoorbell = new DoorbellWord(buffer.view, QP_RQ_DBREC);
    this.#ring = ring;
  }

  /** ibv_post_send(): how many went in; a bad WR throws its errno, with `posted` the ones before it (which went in). */
  postSend(wrs: readonly RingSendWrInput[]): number {
    const { sqAt, sqEntries, sqStride } = this.layout;
    let posted = 0;
    let failure: ErrnoError | undefined;
    if (this.state !== rdma.QpState.QP_STATE_RTS && this.state !== rdma.QpState.QP_STATE_SQD && this.state !== rdma.QpState.QP_STATE_ERR) {
      failure = errno('EINVAL', `QP ${this.qpNum} cannot post sends before RTS`);
    } else {
      for (const wr of wrs) {
        if (!SEND_OPCODES.has(wr.opcode)) failure = errno('EINVAL', `opcode ${String(wr.opcode)} is not an RC send opcode`);
        else if (wr.sgList.length > this.cap.maxSendSge) failure = errno('EINVAL', `${wr.sgList.length} SGEs exceed max_send_sge ${this.cap.maxSendSge}`);
        else if (((this.#sqPosted - this.#sqRetired) >>> 0) >= sqEntries) failure = errno('ENOMEM', `the send queue of QP ${this.qpNum} is full (${sqEntries})`);
        if (failure !== undefined) break;
        encodeSendWqe(this.#view, sqAt + (this.#sqPosted % sqEntries) * sqStride, wr);
        this.#sqPosted = (this.#sqPosted + 1) >>> 0;
        posted++;
      }
    }
    if (posted > 0) {
      this.#sqDoorbell.store(this.#sqPosted);
      this.#ring();
    }
    if (failure !== undefined) throw postError(failure, posted);
    return posted;
  }

  /** ibv_post_recv(), as postSend(). */
  postRecv(wrs: readonly { readonly wrId: bigint; readonly sgList: readonly RingSgeInput[] }[]): number {
    const { rqAt, rqEntries, rqStride } = this.layout;
    let posted = 0;
    let failure: ErrnoError | undefined;
    if (this.state === rdma.QpState.QP_STATE_RESET) {
      failure = errno('EINVAL', `QP ${this.qpNum} cannot post receives in RESET`);
    } else {
      for (const wr of wrs) {
        if (wr.sgList.length > this.cap.maxRecvSge) failure = errno('EINVAL', `${wr.sgList.length} SGEs exceed max_recv_sge ${this.cap.maxRecvSge}`);
        else if (((this.#rqPosted - this.#rqRetired) >>> 0) >= rqEntries) failure = errno('ENOMEM', `the receive queue of QP ${this.qpNum} is full (${rqEntries})`);
        if (failure !== undefined) break;
        encodeRecvWqe(this.#view, rqAt + (this.#rqPosted % rqEntries) * rqStride, wr);
        this.#rqPosted = (this.#rqPosted + 1) >>> 0;
        posted++;
      }
    }
    if (posted > 0) {
      this.#rqDoorbell.store(this.#rqPosted);
      this.#ring();
    }
    if (failure !== undefined) throw postError(failure, posted);
    return posted;
  }

  /** Send queue slots a post may take now. */
  get freeSendSlots(): number {
    return this.layout.sqEntries - ((this.#sqPosted - this.#sqRetired) >>> 0);
  }

  /** A polled completion of WQE `wqeCounter`: it and every WQE before it in that queue are free. */
  retire(wqeCounter: number, recv: boolean): void {
    const next = (wqeCounter + 1) >>> 0;
    if (recv) this.#rqRetired = next;
    else this.#sqRetired = next;
  }

  /** To RESET (mlx5_init_qp_indices()): the queues start over, and so do the doorbell records. */
  reset(): void {
    this.#sqPosted = this.#sqRetired = this.#rqPosted = this.#rqRetired = 0;
    this.#sqDoorbell.store(0);
    this.#rqDoorbell.store(0);
  }
}

/**
 * A CQ in this process's memory: ibv_poll_cq() reads the CQEs the NIC
 * wrote, by their owner byte, and stores the consumer index; no call.
 * ibv_req_notify_cq() arms it: the NIC's next CQE raises one event.
 */
export class UserCq {
  readonly entries: number;
  readonly #view: DataView;
  readonly #consumer: DoorbellWord;
  readonly #arm: DoorbellWord;
  readonly #qps: ReadonlyMap<number, UserQp>;
  #ci = 0;
  #events = 0;
  readonly #waiters: (() => void)[] = [];
  #watched = false;
  #closed = false;
  readonly #onClose: (() => void)[] = [];

  constructor(
    readonly handle: number,
    readonly cqe: number,
    readonly buffer: MappedBuffer,
    qps: ReadonlyMap<number, UserQp>,
  ) {
    this.entries = cqe + 1;
    const bytes = CQ_RING_AT + this.entries * CQE_RING_BYTES;
    if (bytes > buffer.view.length) throw errno('EINVAL', `CQ ${handle} needs ${bytes} bytes, its buffer has ${buffer.view.length}`);
    this.#view = new DataView(buffer.view.buffer, buffer.view.byteOffset, bytes);
    this.#consumer = new DoorbellWord(buffer.view, CQ_CONSUMER_INDEX);
    this.#arm = new DoorbellWord(buffer.view, CQ_ARM);
    this.#qps = qps;
  }

  /** ibv_poll_cq(): up to `max` completions, oldest first, each freeing its WQE's slot; a watched CQ reads empty (its watcher polls it). */
  poll(max: number): rdma.WorkCompletion[] {
    return this.#watched ? [] : this.#poll(max);
  }

  #poll(max: number): rdma.WorkCompletion[] {
    const out: rdma.WorkCompletion[] = [];
    while (out.length < max) {
      const at = CQ_RING_AT + (this.#ci % this.entries) * CQE_RING_BYTES;
      if (this.#view.getUint8(at + CQE_OWNER) !== cqeOwner(this.#ci, this.entries)) break;
      // Read straight into the ibv_wc: one object per completion.
      const wc = decodeRingWc(this.#view, at) as rdma.WorkCompletion;
      this.#qps.get(wc.qpNum)?.retire(ringCqeWqeCounter(this.#view, at), completesReceive(wc.opcode));
      out.push(wc);
      this.#ci = (this.#ci + 1) >>> 0;
    }
    if (out.length > 0) this.#consumer.store(this.#ci);
    return out;
  }

  /** ibv_req_notify_cq(cq, 0): the next CQE raises a completion event. Poll again after arming: a CQE written before it raises none. */
  reqNotify(): void {
    this.#arm.store(1);
  }

  /** ibv_get_cq_event() for this CQ: resolves at the next completion event (or at once for one already delivered). */
  getEvent(): Promise<void> {
    if (this.#events > 0) {
      this.#events--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** The next completion event, or `cancelled`, whichever first; a cancelled wait takes no event from a later one. */
  #eventOr(cancelled: Promise<void>): Promise<void> {
    if (this.#events > 0) {
      this.#events--;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const waiter = (): void => resolve();
      this.#waiters.push(waiter);
      void cancelled.then(() => {
        const at = this.#waiters.indexOf(waiter);
        if (at >= 0) this.#waiters.splice(at, 1);
        resolve();
      });
    });
  }

  /** The NIC raised a completion event. */
  event(): void {
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) waiter();
    else this.#events++;
  }

  /**
   * WatchCompletions in this process: a completion channel that also polls,
   * as the NIC's is. Every completion is polled and handed to `onBatch` in
   * order, one batch per poll; the watcher busy-polls for WATCH_SPIN_MS
   * after the last completion, then arms the CQ and sleeps on its events.
   * At most one watcher (EBUSY); poll() finds a watched CQ empty. `onEnd`
   * runs when the CQ or its context goes. Returns the cancel.
   */
  watch(onBatch: (wcs: rdma.WorkCompletion[]) => void, onEnd?: (error?: Error) => void): () => void {
    if (this.#watched) throw errno('EBUSY', `CQ ${this.handle} already has a watcher`);
    if (this.#closed) throw errno('EINVAL', `CQ ${this.handle} is destroyed`);
    this.#watched = true;
    let stopped = false;
    let wakeStop: () => void = () => undefined;
    const stoppedSignal = new Promise<void>((resolve) => (wakeStop = resolve));
    const stop = (): void => {
      if (stopped) return;
      stopped = true;
      this.#watched = false;
      wakeStop();
    };
    this.#onClose.push(() => {
      if (stopped) return;
      stop();
      onEnd?.();
    });
    const loop = async (): Promise<void> => {
      let lastWork = performance.now();
      while (!stopped) {
        const wcs = this.#poll(this.entries);
        if (wcs.length > 0) {
          onBatch(wcs);
          lastWork = performance.now();
        } else if (performance.now() - lastWork >= WATCH_SPIN_MS) {
          this.reqNotify();
          // A CQE written before the arm raised no event: look once more before sleeping.
          const late = this.#poll(this.entries);
          if (late.length > 0) onBatch(late);
          else await this.#eventOr(stoppedSignal);
          lastWork = performance.now();
          continue;
        }
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    };
    void loop();
    return stop;
  }

  /** The CQ was destroyed, or its context closed: watchers end. */
  close(): void {
    this.#closed = true;
    for (const end of this.#onClose.splice(0)) end();
  }
}

/** How long a client-side watcher busy-polls after its last completion before sleeping on the completion channel. */
export const WATCH_SPIN_MS = 0.05;

/**
 * A context's user queues: the doorbell page, the connection on the NIC's
 * doorbell socket, and the QPs and CQs in this process's memory. Ringing
 * after storing a doorbell record costs a load of nic_asleep, and a
 * one-byte write on the socket only when the NIC sleeps on the context.
 */
export class UserQueues {
  readonly qps = new Map<number, UserQp>();
  readonly cqs = new Map<number, UserCq>();
  readonly #asleep: DoorbellWord;
  readonly #socket: net.Socket;
  readonly #page: MappedBuffer;
  readonly #wake = Buffer.from([WAKE_BYTE]);
  #events: Buffer = Buffer.alloc(0);
  /** Wake-ups sent (for tests and benches: how often the NIC slept). */
  wakeUps = 0;

  private constructor(page: MappedBuffer, socket: net.Socket) {
    this.#page = page;
    this.#asleep = new DoorbellWord(page.view, DB_NIC_ASLEEP);
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => this.#onEvents(chunk));
    socket.on('error', () => undefined);
  }

  /**
   * Allocates the doorbell page, has the NIC pin it (OpenUserQueues) and
   * connects to its doorbell socket with the wake key.
   */
  static async open(memory: QueueMemory, openOnNic: (doorbellPageFd: number) => Promise<rdma.OpenUserQueuesResponse>): Promise<UserQueues> {
    const page = await MappedBuffer.allocate(memory, DOORBELL_PAGE_BYTES);
    try {
      const { doorbellSocket, wakeKey } = await openOnNic(page.fd);
      const socket = await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect(doorbellSocket, () => {
          s.off('error', reject);
          resolve(s);
        });
        s.once('error', reject);
      }).catch((error: unknown) => {
        throw errno('EOPNOTSUPP', `the NIC's doorbell socket ${doorbellSocket} cannot be reached from here: ${error instanceof Error ? error.message : String(error)}`);
      });
      socket.setNoDelay?.(true);
      socket.write(Buffer.from(wakeKey));
      await page.pinned(memory);
      return new UserQueues(page, socket);
    } catch (error) {
      await page.release(memory);
      throw error;
    }
  }

  /** After a doorbell record: wake the NIC if it sleeps on this context. */
  readonly ring = (): void => {
    if (this.#asleep.load() === 0) return;
    this.wakeUps++;
    this.#socket.write(this.#wake);
  };

  #onEvents(chunk: Buffer): void {
    this.#events = this.#events.length === 0 ? chunk : Buffer.concat([this.#events, chunk]);
    let at = 0;
    for (; at + CQ_EVENT_BYTES <= this.#events.length; at += CQ_EVENT_BYTES) {
      if (this.#events.readUInt8(at) !== CQ_EVENT_TAG) continue;
      this.cqs.get(this.#events.readUInt32LE(at + 1))?.event();
    }
    this.#events = this.#events.subarray(at);
  }

  close(): void {
    for (const cq of this.cqs.values()) cq.close();
    this.#socket.destroy();
  }

  get page(): MappedBuffer {
    return this.#page;
  }
}

/**
 * PostStream on a QP with user queues: the packed WQEs are unpacked and
 * written into the send queue, the errno of a bad one as the call would
 * answer it; posting is synchronous, so post() has resolved or rejected by
 * the time it returns.
 */
export class RingPostStream implements PostStream {
  constructor(readonly qp: UserQp) {}

  post(wqes: Buffer): Promise<number> {
    try {
      return Promise.resolve(this.postAndForget(wqes));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  postAndForget(wqes: Buffer): number {
    const { wrs, bad } = decodeWqes(wqes);
    const posted = wrs.length === 0 ? 0 : this.qp.postSend(wrs);
    if (bad !== undefined) throw Object.assign(errno('EINVAL', `packed WQE ${bad.index}: ${bad.reason}`), { posted });
    return posted;
  }

  close(): void {}
}

/** Whether an error says the process cannot have user queues here (and may post through calls instead). */
export function userQueuesUnavailable(error: unknown): boolean {
  return error instanceof ErrnoError && error.errno === 'EOPNOTSUPP';
}
