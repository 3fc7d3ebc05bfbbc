import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { userQueues } from '@p2p/verbs';
import type { UserQp } from './user-qp';

const { CQ_EVENT_BYTES, CQ_EVENT_TAG, DB_NIC_ASLEEP, DoorbellWord, WAKE_KEY_BYTES } = userQueues;

/**
 * The NIC's end of one verbs context's user queues: its doorbell page, the
 * QPs whose doorbell records it polls, and the process's connection on the
 * doorbell socket (wake-ups in, completion events out). The wake key,
 * handed to the context's caller only, names the context on the socket.
 */
export class UserContext {
  readonly key = randomBytes(WAKE_KEY_BYTES);
  readonly #asleep: userQueues.DoorbellWord;
  readonly #qps = new Map<number, UserQp>();
  #socket: Socket | undefined;
  #sleeping = false;

  constructor(doorbellPage: Uint8Array) {
    this.#asleep = new DoorbellWord(doorbellPage, DB_NIC_ASLEEP);
    // Asleep until the first wake-up: a context nobody posts on costs nothing.
    this.#sleeping = true;
    this.#asleep.store(1);
  }

  get sleeping(): boolean {
    return this.#sleeping;
  }

  addQp(qp: UserQp): void {
    this.#qps.set(qp.qpNum, qp);
  }

  removeQp(qpNum: number): void {
    this.#qps.delete(qpNum);
  }

  /** Fetches what every QP's doorbell records announce; whether any had work. */
  scan(): boolean {
    let worked = false;
    for (const qp of this.#qps.values()) if (qp.scan()) worked = true;
    return worked;
  }

  /** The NIC polls this context again: posters need not wake it. */
  wake(): void {
    if (!this.#sleeping) return;
    this.#sleeping = false;
    this.#asleep.store(0);
  }

  /**
   * The NIC stops polling: it says so in the doorbell page, then looks once
   * more, so that a record stored before the poster could see the flag is
   * not missed (both sides use sequentially consistent accesses). False,
   * and awake still, if that look found work.
   */
  sleep(): boolean {
    this.#sleeping = true;
    this.#asleep.store(1);
    if (!this.scan()) return true;
    this.wake();
    return false;
  }

  /** The process's connection on the doorbell socket (a newer one replaces an older). */
  connect(socket: Socket): void {
    if (this.#socket !== undefined && this.#socket !== socket) this.#socket.destroy();
    this.#socket = socket;
    socket.once('close', () => {
      if (this.#socket === socket) this.#socket = undefined;
    });
  }

  /** A completion event for CQ `cqHandle` (armed by the process): lost if it has no connection, as an event on a closed channel. */
  cqEvent(cqHandle: number): void {
    const socket = this.#socket;
    if (socket === undefined || socket.destroyed) return;
    const event = Buffer.alloc(CQ_EVENT_BYTES);
    event.writeUInt8(CQ_EVENT_TAG, 0);
    event.writeUInt32LE(cqHandle >>> 0, 1);
    socket.write(event);
  }

  close(): void {
    this.#qps.clear();
    this.#socket?.destroy();
    this.#socket = undefined;
  }
}
