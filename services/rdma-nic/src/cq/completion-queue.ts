import type { CqRing } from './cq-ring';
import type { WorkCompletion } from './work-completion';

/** What retires work queue entries when their completion is polled: the QP that posted them. */
export interface WorkQueueOwner {
  /** The completion for entry `seq` of the send (or receive) queue was polled: it and every earlier entry are free. */
  retire(seq: number, recv: boolean): void;
}

export type CompletionListener = (wc: WorkCompletion) => void;

/** The device's largest CQ (ibv_device_attr.max_cqe, mlx5's 4M - 1). */
export const MAX_CQE = (1 << 22) - 1;

/**
 * mlx5_create_cq(): the ring holds a power of two entries, at least cqe + 1,
 * and the CQ reports one fewer. Returns the cqe the caller is told.
 */
export function roundCqe(cqe: number): number {
  let ring = 1;
  while (ring < cqe + 1) {
    ring *= 2;
  }
  return ring - 1;
}

/**
 * An ibv_cq: a ring of completions, polled in the order they were
 * generated. A completion that finds the ring full overflows the CQ: it is
 * lost, the CQ is in error from then on (every later completion is lost
 * too) and `onOverflow` tells the NIC, which raises IBV_EVENT_CQ_ERR and
 * errors the QPs on it.
 */
export class CompletionQueue {
  readonly #ring: (WorkCompletion | undefined)[];
  readonly #owners: (WorkQueueOwner | undefined)[];
  readonly #seqs: number[];
  readonly #recv: boolean[];
  readonly #listeners = new Set<CompletionListener>();
  readonly #onOverflow: (cq: CompletionQueue) => void;
  #head = 0;
  #count = 0;
  #errored = false;
  /** The ring in user memory the CQEs go to, for a CQ the process polls itself. */
  #userRing: CqRing | undefined;

  /** QPs whose send or receive queue completes here; a CQ with any is busy. */
  users = 0;

  constructor(
    readonly handle: number,
    readonly cqe: number,
    onOverflow: (cq: CompletionQueue) => void,
  ) {
    this.#ring = new Array<WorkCompletion | undefined>(cqe).fill(undefined);
    this.#owners = new Array<WorkQueueOwner | undefined>(cqe).fill(undefined);
    this.#seqs = new Array<number>(cqe).fill(0);
    this.#recv = new Array<boolean>(cqe).fill(false);
    this.#onOverflow = onOverflow;
  }

  get errored(): boolean {
    return this.#errored;
  }

  /** Completions waiting to be polled. */
  get depth(): number {
    return this.#userRing?.depth ?? this.#count;
  }

  /** Polled by its process in user memory (a CQ made with a ring): ibv_poll_cq() here finds nothing. */
  get inUserMemory(): boolean {
    return this.#userRing !== undefined;
  }

  /** From now on every CQE goes to `ring` in the process's memory. */
  useUserRing(ring: CqRing): void {
    this.#userRing = ring;
  }

  /**
   * The hardware writing a CQE for entry `seq` of `owner`'s send or receive
   * queue. A CQE in user memory frees its queue entries as it is written:
   * the process, which polls it, keeps its own count of free slots.
   */
  push(wc: WorkCompletion, owner: WorkQueueOwner, seq: number, recv: boolean): void {
    if (this.#errored) {
      return;
    }
    if (this.#userRing !== undefined) {
      if (!this.#userRing.write(wc, seq)) {
        this.#errored = true;
        this.#onOverflow(this);
        return;
      }
      owner.retire(seq, recv);
      for (const listener of this.#listeners) {
        listener(wc);
      }
      return;
    }
    if (this.#count === this.cqe) {
      this.#errored = true;
      this.#onOverflow(this);
      return;
    }
    const slot = (this.#head + this.#count) % this.cqe;
    this.#ring[slot] = wc;
    this.#owners[slot] = owner;
    this.#seqs[slot] = seq;
    this.#recv[slot] = recv;
    this.#count++;
    for (const listener of this.#listeners) {
      listener(wc);
    }
  }

  /** ibv_poll_cq(): up to `max` completions, oldest first, each retiring its work queue entries. */
  poll(max: number): WorkCompletion[] {
    const n = Math.min(max, this.#count);
    const out = new Array<WorkCompletion>(n);
    for (let i = 0; i < n; i++) {
      const slot = this.#head;
      out[i] = this.#ring[slot]!;
      this.#owners[slot]!.retire(this.#seqs[slot]!, this.#recv[slot]!);
      this.#ring[slot] = undefined;
      this.#owners[slot] = undefined;
      this.#head = (slot + 1) % this.cqe;
      this.#count--;
    }
    return out;
  }

  /**
   * mlx5_cq_clean(): drop the completions of `owner` still in the ring, as
   * libmlx5 does when a QP goes to RESET or is destroyed.
   */
  clean(owner: WorkQueueOwner): void {
    let kept = 0;
    for (let i = 0; i < this.#count; i++) {
      const from = (this.#head + i) % this.cqe;
      if (this.#owners[from] === owner) {
        continue;
      }
      const to = (this.#head + kept) % this.cqe;
      this.#ring[to] = this.#ring[from];
      this.#owners[to] = this.#owners[from];
      this.#seqs[to] = this.#seqs[from]!;
      this.#recv[to] = this.#recv[from]!;
      kept++;
    }
    for (let i = kept; i < this.#count; i++) {
      const slot = (this.#head + i) % this.cqe;
      this.#ring[slot] = undefined;
      this.#owners[slot] = undefined;
    }
    this.#count = kept;
  }

  /**
   * Observe every completion as it is written, for streaming; observing
   * does not consume, ibv_poll_cq() does. Returns the unsubscribe.
   */
  addListener(listener: CompletionListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
