import { userQueues } from '@p2p/verbs';
import type { WorkCompletion } from './work-completion';

const { CQ_ARM, CQ_CONSUMER_INDEX, CQ_RING_AT, CQE_RING_BYTES, DoorbellWord, cqeOwner, encodeRingCqe } = userQueues;

/**
 * The NIC's end of a CQ in user memory (CreateCq with a ring_fd): it
 * writes each CQE into the process's ring, owner byte last, and learns from
 * the consumer index the process stores how many it polled. A CQE that
 * finds every slot the CQ holds unpolled overflows it. A CQE written while
 * the process armed the CQ (ibv_req_notify_cq()) raises one completion event.
 */
export class CqRing {
  readonly #view: DataView;
  readonly #consumer: userQueues.DoorbellWord;
  readonly #arm: userQueues.DoorbellWord;
  readonly #entries: number;
  readonly #holds: number;
  readonly #onEvent: () => void;
  #produced = 0;

  /** `memory` holds the ring of `entries` slots (a power of two); the CQ holds `holds` completions (its cqe). */
  constructor(memory: Uint8Array, entries: number, holds: number, onEvent: () => void) {
    this.#view = new DataView(memory.buffer, memory.byteOffset, CQ_RING_AT + entries * CQE_RING_BYTES);
    this.#consumer = new DoorbellWord(memory, CQ_CONSUMER_INDEX);
    this.#arm = new DoorbellWord(memory, CQ_ARM);
    this.#entries = entries;
    this.#holds = holds;
    this.#onEvent = onEvent;
  }

  /** CQEs written and not yet polled, as the process's consumer index says (a garbled index counts as none polled). */
  get depth(): number {
    const unpolled = (this.#produced - this.#consumer.load()) >>> 0;
    return unpolled > this.#holds ? this.#holds : unpolled;
  }

  /** Writes the CQE for WQE `wqeCounter` of its queue; false when the CQ is full (an overflow: nothing written). */
  write(wc: WorkCompletion, wqeCounter: number): boolean {
    if (((this.#produced - this.#consumer.load()) >>> 0) >= this.#holds) return false;
    const slot = this.#produced % this.#entries;
    encodeRingCqe(this.#view, CQ_RING_AT + slot * CQE_RING_BYTES, wc, cqeOwner(this.#produced, this.#entries), wqeCounter);
    this.#produced = (this.#produced + 1) >>> 0;
    if (this.#arm.load() !== 0) {
      this.#arm.store(0);
      this.#onEvent();
    }
    return true;
  }
}
