import { errno } from '@p2p/errno';
import { copyAcross } from '../memory/copy';

/** Ring sizes are powers of two, so that positions can count modulo 2^32 and still name ring offsets. */
export const MIN_RING_BYTES = 64 * 1024;
/** A heap segment holds at most 1 GiB. */
export const MAX_RING_BYTES = 1024 * 1024 * 1024;

/** The memory under a ring (a RingMemory): its size and synchronous views. */
export interface RingSpace {
  readonly size: number;
  /** Pushes the views of [offset, offset + length) onto `out`; false once the memory is not mapped any more. */
  views(offset: number, length: number, out: Uint8Array[]): boolean;
  release(): Promise<void>;
}

export function checkRingBytes(bytes: number): void {
  if (!Number.isSafeInteger(bytes) || bytes < MIN_RING_BYTES || bytes > MAX_RING_BYTES || (bytes & (bytes - 1)) !== 0) {
    throw errno('EINVAL', `ringBytes ${bytes} is not a power of two in [${MIN_RING_BYTES}, ${MAX_RING_BYTES}]`);
  }
}

/**
 * The sending end of a payload ring. Positions count bytes modulo 2^32 from
 * the ring's start: a payload takes the contiguous range that ends at the
 * position its packet carries, skipping to offset 0 when it does not fit
 * before the end (the skipped tail counts as used). The receiver consumes
 * strictly in order and reports its position back (the frame header's
 * consumed), which frees the space: end-to-end credits as RC's (IBA 9.7.7.2),
 * counted in bytes instead of messages.
 *
 * A payload that does not fit now (or ever) is refused, and goes inline: a
 * full ring never blocks the sender.
 */
export class RingProducer {
  readonly #memory: RingSpace;
  readonly #size: number;
  readonly #mask: number;
  #produced = 0;
  #consumed = 0;
  #usable = false;
  readonly #targets: Uint8Array[] = [];

  constructor(memory: RingSpace) {
    this.#memory = memory;
    this.#size = memory.size;
    this.#mask = memory.size - 1;
  }

  get memory(): RingSpace {
    return this.#memory;
  }

  /** Bytes written and not yet consumed. */
  get inUse(): number {
    return (this.#produced - this.#consumed) >>> 0;
  }

  /**
   * The receiver's credit: the position up to which it consumed. The first
   * one says it maps the ring; before it every payload goes inline. A
   * position outside what was produced is stale or garbled and ignored.
   */
  credit(consumed: number): void {
    this.#usable = true;
    if (((consumed - this.#consumed) >>> 0) <= this.inUse) this.#consumed = consumed;
  }

  /**
   * Copies the `length` bytes of `sources` into the ring: the position just
   * past them, for the packet's locator; -1 when there is no room or the
   * mapping is gone (the caller sends them inline).
   */
  put(sources: readonly Uint8Array[], length: number): number {
    if (!this.#usable || length > this.#size) return -1;
    const offset = this.#produced & this.#mask;
    const skip = offset + length > this.#size ? this.#size - offset : 0;
    if (this.inUse + skip + length > this.#size) return -1;
    const targets = this.#targets;
    if (!this.#memory.views(skip > 0 ? 0 : offset, length, targets)) {
      this.#usable = false;
      return -1;
    }
    copyAcross(sources, targets, length);
    targets.length = 0;
    this.#produced = (this.#produced + skip + length) >>> 0;
    return this.#produced;
  }
}

/** The receiving end of the peer's ring (see RingProducer). */
export class RingConsumer {
  readonly #memory: RingSpace;
  readonly #size: number;
  readonly #mask: number;
  #consumed = 0;
  #reported = 0;

  constructor(memory: RingSpace) {
    this.#memory = memory;
    this.#size = memory.size;
    this.#mask = memory.size - 1;
  }

  get memory(): RingSpace {
    return this.#memory;
  }

  /** Consumed since the last report(): the peer should hear about it. */
  get unreported(): boolean {
    return this.#consumed !== this.#reported;
  }

  /**
   * The views of the payload of `length` bytes that ends at position `end`,
   * pushed onto `out`: false if that is not a range the producer could have
   * written (a corrupt packet) or the mapping is gone.
   */
  views(end: number, length: number, out: Uint8Array[]): boolean {
    if (((end - this.#consumed) >>> 0) > this.#size || length > this.#size) return false;
    const offset = ((end - length) >>> 0) & this.#mask;
    if (offset + length > this.#size) return false;
    return this.#memory.views(offset, length, out);
  }

  /** Done with everything up to position `end`. */
  release(end: number): void {
    this.#consumed = end;
  }

  /** The position to report in the next frame header. */
  report(): number {
    this.#reported = this.#consumed;
    return this.#consumed;
  }
}
