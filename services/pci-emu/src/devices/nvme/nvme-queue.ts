import { NVME_SQE_SIZE } from './nvme-command';
import { NVME_CQE_SIZE } from './nvme-completion';

/** Where a queue lives, for events: the controller's own CMB or memory across the bus. */
export type NvmeQueueLocation = 'cmb' | 'host';

/** How many entries a queue holds that its consumer has not taken: for the queue-depth gauge. */
export interface NvmeQueueDepth {
  readonly queue: 'sq' | 'cq';
  readonly qid: number;
  readonly depth: number;
}

/**
 * A submission queue (NVMe 1.4 section 4.1, "Submission Queue & Completion
 * Queue Definition"): a physically contiguous ring the host produces into
 * (tail, by doorbell) and the controller consumes from (head). Empty when
 * head equals tail; the host keeps one slot free.
 */
export class NvmeSubmissionQueue {
  head = 0;
  tail = 0;
  /** Slots an Abort named while their command was still unfetched, with the command id it named. */
  readonly aborted = new Map<number, number>();

  constructor(
    readonly qid: number,
    readonly base: bigint,
    readonly entries: number,
    readonly cqid: number,
    readonly location: NvmeQueueLocation,
  ) {}

  get empty(): boolean {
    return this.head === this.tail;
  }

  /** Commands submitted and not yet fetched (a fetched command completes within the turn that fetched it). */
  get depth(): number {
    return (this.tail - this.head + this.entries) % this.entries;
  }

  entryAddress(slot: number): bigint {
    return this.base + BigInt(slot * NVME_SQE_SIZE);
  }

  /** The slots from head to tail: the commands submitted and not yet fetched, oldest first. */
  pendingSlots(): number[] {
    const slots: number[] = [];
    for (let slot = this.head; slot !== this.tail; slot = (slot + 1) % this.entries) slots.push(slot);
    return slots;
  }

  /** The tail doorbell; a value past the end of the queue is invalid and ignored (NVMe 1.4, "Invalid Doorbell Write Value"; no Asynchronous Event here). */
  ringTail(value: number): boolean {
    if (value >= this.entries) return false;
    this.tail = value;
    return true;
  }
}

/**
 * A completion queue (NVMe 1.4 section 4.1): the controller produces at
 * tail, the host consumes and reports its head by doorbell. The phase tag
 * starts at 1 and flips each time the tail wraps, so the host finds new
 * entries without a count. Full when one more entry would make tail equal
 * head: the controller then fetches no command whose completion would go
 * here until the host frees a slot.
 */
export class NvmeCompletionQueue {
  head = 0;
  tail = 0;
  phase = true;
  /** The submission queues that complete here: a CQ with any cannot be deleted. */
  readonly submissionQueues = new Set<number>();

  constructor(
    readonly qid: number,
    readonly base: bigint,
    readonly entries: number,
    readonly vector: number,
    readonly interruptsEnabled: boolean,
    readonly location: NvmeQueueLocation,
  ) {}

  get full(): boolean {
    return (this.tail + 1) % this.entries === this.head;
  }

  /** Completions posted that the host has not yet released by its head doorbell. */
  get depth(): number {
    return (this.tail - this.head + this.entries) % this.entries;
  }

  /** Where the next completion goes. */
  get tailAddress(): bigint {
    return this.base + BigInt(this.tail * NVME_CQE_SIZE);
  }

  advanceTail(): void {
    this.tail = (this.tail + 1) % this.entries;
    if (this.tail === 0) this.phase = !this.phase;
  }

  /**
   * The head doorbell. Invalid, and ignored, if past the end of the queue or
   * if it would consume entries the controller has not posted.
   */
  ringHead(value: number): boolean {
    const posted = this.depth;
    const consumed = (value - this.head + this.entries) % this.entries;
    if (value >= this.entries || consumed > posted) return false;
    this.head = value;
    return true;
  }
}
