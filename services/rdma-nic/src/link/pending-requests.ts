import { performance } from 'node:perf_hooks';
import type { WireReply, WireResponse } from '../transport/fabric';
import { Fifo } from './fifo';

/** What a request was sent on: whether the peer is still working towards its answer. */
export interface RequestCarrier {
  /**
   * The stream is up, the peer was heard from within `windowMs`, and it has
   * answered nothing sent after `entry`: it is behind, not dropping.
   */
  stillWorking(entry: PendingRequest, windowMs: number): boolean;
}

/** One request on the wire, waiting for its answer or its transport timer. */
export class PendingRequest {
  readonly srcQpn: number;
  readonly psn: number;
  readonly timeoutMs: number;
  /** performance.now() past which nothing answers it; Infinity for timeoutMs 0. */
  deadline: number;
  /** The link it went out on, once sent. */
  carrier: RequestCarrier | undefined;
  /** A retransmission of this request that waits for this transmission's answer (see WireLink.sendRequest). */
  successor: PendingRequest | undefined;
  readonly reply: WireReply;
  /** Its timeout queue; undefined for a request that waits forever. */
  readonly queue: Fifo<PendingRequest> | undefined;
  /** Its link sequence number, set when it is put on a stream. */
  seq = 0;
  /** Answered or timed out: reply was called. */
  done = false;

  constructor(srcQpn: number, psn: number, timeoutMs: number, deadline: number, reply: WireReply, queue: Fifo<PendingRequest> | undefined) {
    this.srcQpn = srcQpn;
    this.psn = psn;
    this.timeoutMs = timeoutMs;
    this.deadline = deadline;
    this.reply = reply;
    this.queue = queue;
  }
}

/**
 * The requests of a fabric that still wait for an answer, and the transport
 * timer of each (IBA 9.7.6.1.3, the local ACK timeout): the fabric calls
 * reply(undefined) once a request's timeoutMs has passed unanswered, and an
 * answer that comes later finds it done and is dropped.
 *
 * The stream under a link is reliable while it is up: a request on it is
 * never lost in transit, only dropped by the responder (which then answers
 * later requests first) or stuck with a peer that went quiet (killed,
 * frozen, cut off). So a timer that runs out while the peer is still heard
 * from and has answered nothing sent after the request is restarted rather
 * than reported: the responder is behind, and a retransmission would only
 * add to its backlog (the congestion collapse of retransmitting on a slow
 * but live path).
 *
 * One timer serves all of them. Requests are kept in one FIFO per distinct
 * timeoutMs (a QP's timeout is one of 32 values), where deadlines are in
 * order, so the next deadline is always at the head of a queue: adding,
 * answering and expiring are O(1), and the timer is re-armed only when the
 * earliest deadline changes, never per request. Requests that wait forever
 * (timeoutMs 0) are in a set instead: one that is never answered must not
 * hold back the answered ones behind it.
 */
export class PendingRequests {
  readonly #queues = new Map<number, Fifo<PendingRequest>>();
  readonly #forever = new Set<PendingRequest>();
  readonly #onError: (error: unknown) => void;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;
  #closed = false;
  /** Requests whose timer ran out. */
  timeouts = 0;

  /** `onError` hears what a reply callback throws: the fabric carries on. */
  constructor(onError: (error: unknown) => void) {
    this.#onError = onError;
  }

  add(srcQpn: number, psn: number, timeoutMs: number, reply: WireReply): PendingRequest {
    if (timeoutMs <= 0) {
      const entry = new PendingRequest(srcQpn, psn, 0, Infinity, reply, undefined);
      this.#forever.add(entry);
      return entry;
    }
    let queue = this.#queues.get(timeoutMs);
    if (queue === undefined) {
      queue = new Fifo<PendingRequest>();
      this.#queues.set(timeoutMs, queue);
    }
    const deadline = performance.now() + timeoutMs;
    const entry = new PendingRequest(srcQpn, psn, timeoutMs, deadline, reply, queue);
    queue.push(entry);
    if (deadline < this.#timerAt) this.#arm(deadline);
    return entry;
  }

  /** Answers `entry`, unless it was answered or timed out already: then false. */
  settle(entry: PendingRequest, response: WireResponse): boolean {
    if (entry.done) return false;
    this.#finish(entry, response);
    // Answers come in request order, so the head is usually the entry itself.
    if (entry.queue !== undefined) dropDone(entry.queue);
    else this.#forever.delete(entry);
    return true;
  }

  /** Answers every waiting request with undefined (the fabric is closing) and stops the timer. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const waiting = [...this.#queues.values()].flatMap((queue) => queue.drain()).concat([...this.#forever]);
    this.#forever.clear();
    for (const entry of waiting) if (!entry.done) this.#finish(entry, undefined);
  }

  #finish(entry: PendingRequest, response: WireResponse | undefined): void {
    entry.done = true;
    try {
      entry.reply(response);
    } catch (error) {
      this.#onError(error);
    }
  }

  #arm(at: number): void {
    if (this.#closed) return;
    clearTimeout(this.#timer);
    this.#timerAt = at;
    // The check waits for the check phase of the turn the timer fires in: after a long stretch of work
    // (a burst of posts copying into fresh ring pages, say) the timers phase comes before the poll phase,
    // and the peer's answers that arrived meanwhile must be read before anyone is declared silent.
    this.#timer = setTimeout(() => setImmediate(() => this.#expire()), Math.max(0, Math.ceil(at - performance.now())));
  }

  #expire(): void {
    if (this.#closed) return;
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = performance.now();
    for (const queue of this.#queues.values()) {
      for (let head = queue.peek(); head !== undefined && (head.done || head.deadline <= now); head = queue.peek()) {
        queue.shift();
        if (head.done) continue;
        if (head.carrier?.stillWorking(head, head.timeoutMs) === true) {
          head.deadline = now + head.timeoutMs;
          queue.push(head);
          continue;
        }
        this.timeouts++;
        // reply may post again (a retry), which lands at the tail of a queue: no harm to this walk.
        this.#finish(head, undefined);
      }
    }
    let next = Infinity;
    for (const queue of this.#queues.values()) next = Math.min(next, queue.peek()?.deadline ?? Infinity);
    if (next < this.#timerAt) this.#arm(next);
  }
}

/** Drops answered entries from the head of `queue`. */
function dropDone(queue: Fifo<PendingRequest>): void {
  for (let head = queue.peek(); head !== undefined && head.done; head = queue.peek()) queue.shift();
}
