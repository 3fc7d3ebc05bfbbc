import { userQueues } from '@p2p/verbs';
import { copyAcross } from '../memory/copy';
import type { RingSpace } from './ring';

const { DoorbellWord } = userQueues;

/**
 * The frame ring: one direction of a link's frames in shared memory, so that
 * two NICs on one tmpfs exchange transport packets with a store and a poll
 * rather than a gRPC message each way.
 *
 * It sits in the same system-heap buffer as the direction's payload ring,
 * after it (the hello's ring_bytes is the payload ring's size; the buffer is
 * FRAME_RING_BYTES larger), so the one fd the handshake passes carries both,
 * and a side that maps the payload ring maps this one too.
 *
 * Layout, from the ring's start:
 *    0  u32  tail: bytes the writer published, modulo 2^32
 *    4  u32  head: bytes the reader is done with, modulo 2^32
 *    8  u32  reader_asleep: the reader stopped polling; the writer wakes it
 *            with an empty message on the link's stream
 *  4096     the data area, FRAME_RING_DATA_BYTES, holding records (the header
 *           takes a page, so that the buffer stays whole pages)
 *
 * A record, 8-byte aligned, never split at the data area's end (a u32 WRAP
 * there sends the reader to offset 0):
 *    0  u32  record bytes (header included, before alignment)
 *    4  u32  packet bytes P
 *    8       the frame's packets (wire-layout.ts), P bytes
 *            u32 inline payload count N, then N times: u32 length, bytes
 *
 * tail, head and reader_asleep are sequentially consistent Atomics: the
 * writer's store of tail then load of reader_asleep, and the reader's store
 * of reader_asleep then load of tail, cannot both miss each other.
 */

export const FRAME_RING_HEADER_BYTES = 4096;
export const FRAME_RING_DATA_BYTES = 1024 * 1024;
export const FRAME_RING_BYTES = FRAME_RING_HEADER_BYTES + FRAME_RING_DATA_BYTES;
/** The largest record the ring takes; larger frames go on the stream. */
export const MAX_FRAME_RECORD_BYTES = FRAME_RING_DATA_BYTES / 4;

const TAIL = 0;
const HEAD = 4;
const READER_ASLEEP = 8;
const RECORD_HEADER_BYTES = 8;
const WRAP = 0xffff_ffff;
const MASK = FRAME_RING_DATA_BYTES - 1;

function align8(bytes: number): number {
  return (bytes + 7) & ~7;
}

function headerWords(memory: RingSpace): { tail: InstanceType<typeof DoorbellWord>; head: InstanceType<typeof DoorbellWord>; asleep: InstanceType<typeof DoorbellWord> } | undefined {
  const views: Uint8Array[] = [];
  if (!memory.views(0, FRAME_RING_HEADER_BYTES, views) || views.length !== 1) return undefined;
  const header = views[0]!;
  return { tail: new DoorbellWord(header, TAIL), head: new DoorbellWord(header, HEAD), asleep: new DoorbellWord(header, READER_ASLEEP) };
}

/** The writing end, in the NIC that allocated the buffer. */
export class FrameRingWriter {
  readonly #memory: RingSpace;
  readonly #tail;
  readonly #head;
  readonly #asleep;
  #produced = 0;
  readonly #targets: Uint8Array[] = [];
  #scratch = Buffer.allocUnsafe(64 * 1024);

  private constructor(memory: RingSpace, words: NonNullable<ReturnType<typeof headerWords>>) {
    this.#memory = memory;
    this.#tail = words.tail;
    this.#head = words.head;
    this.#asleep = words.asleep;
    this.#tail.store(0);
    this.#head.store(0);
    this.#asleep.store(0);
  }

  /** A writer over `memory` (the frame ring's window), undefined if its header is not one mapped view. */
  static over(memory: RingSpace): FrameRingWriter | undefined {
    const words = headerWords(memory);
    return words !== undefined ? new FrameRingWriter(memory, words) : undefined;
  }

  /**
   * Publishes one frame as a record: false when it does not fit now (the
   * reader is behind), is too large for the ring, or the mapping is gone;
   * the caller sends it on the stream instead.
   */
  write(packets: Uint8Array, inlineData: readonly Uint8Array[]): boolean {
    let bytes = RECORD_HEADER_BYTES + packets.length + 4;
    for (const payload of inlineData) bytes += 4 + payload.length;
    const size = align8(bytes);
    if (size > MAX_FRAME_RECORD_BYTES) return false;
    const offset = this.#produced & MASK;
    const skip = offset + size > FRAME_RING_DATA_BYTES ? FRAME_RING_DATA_BYTES - offset : 0;
    const inUse = (this.#produced - this.#head.load()) >>> 0;
    if (inUse + skip + size > FRAME_RING_DATA_BYTES) return false;
    if (skip > 0) {
      if (!this.#store(offset, u32(WRAP))) return false;
      this.#produced = (this.#produced + skip) >>> 0;
    }
    const record = this.#record(size);
    record.writeUInt32LE(bytes, 0);
    record.writeUInt32LE(packets.length, 4);
    record.set(packets, RECORD_HEADER_BYTES);
    let at = RECORD_HEADER_BYTES + packets.length;
    record.writeUInt32LE(inlineData.length, at);
    at += 4;
    for (const payload of inlineData) {
      record.writeUInt32LE(payload.length, at);
      record.set(payload, at + 4);
      at += 4 + payload.length;
    }
    if (!this.#store(this.#produced & MASK, record.subarray(0, size))) return false;
    this.#produced = (this.#produced + size) >>> 0;
    this.#tail.store(this.#produced);
    return true;
  }

  /** The reader stopped polling: after write() it needs a wake-up. */
  get readerAsleep(): boolean {
    return this.#asleep.load() !== 0;
  }

  #record(size: number): Buffer {
    if (this.#scratch.length < size) this.#scratch = Buffer.allocUnsafe(Math.max(size, 2 * this.#scratch.length));
    return this.#scratch;
  }

  #store(offset: number, bytes: Uint8Array): boolean {
    const targets = this.#targets;
    targets.length = 0;
    if (!this.#memory.views(FRAME_RING_HEADER_BYTES + offset, bytes.length, targets)) return false;
    copyAcross([bytes], targets, bytes.length);
    targets.length = 0;
    return true;
  }
}

/** A frame read from the ring: its packets copied out, its inline payloads views of the ring, valid until release(end). */
export interface RingFrame {
  readonly packets: Buffer;
  readonly inlineData: Buffer[];
  /** The position to release once every packet of the frame ran. */
  readonly end: number;
}

/** The reading end, in the peer NIC. */
export class FrameRingReader {
  readonly #memory: RingSpace;
  readonly #tail;
  readonly #head;
  readonly #asleep;
  #read = 0;

  private constructor(memory: RingSpace, words: NonNullable<ReturnType<typeof headerWords>>) {
    this.#memory = memory;
    this.#tail = words.tail;
    this.#head = words.head;
    this.#asleep = words.asleep;
  }

  static over(memory: RingSpace): FrameRingReader | undefined {
    const words = headerWords(memory);
    return words !== undefined ? new FrameRingReader(memory, words) : undefined;
  }

  /** Frames are waiting. */
  get pending(): boolean {
    return this.#tail.load() !== this.#read;
  }

  /**
   * The next frame, or undefined when none is published; a string names what
   * is wrong with a record the writer could not have written (the link
   * ends).
   */
  next(): RingFrame | string | undefined {
    const tail = this.#tail.load();
    if (tail === this.#read) return undefined;
    if (((tail - this.#read) >>> 0) > FRAME_RING_DATA_BYTES) return `tail ${tail} is past the ring from ${this.#read}`;
    let offset = this.#read & MASK;
    let first = this.#bytes(offset, 4);
    if (first === undefined) return 'the frame ring is not mapped';
    if (first.readUInt32LE(0) === WRAP) {
      this.#read = (this.#read + FRAME_RING_DATA_BYTES - offset) >>> 0;
      if (tail === this.#read) return 'a wrap marker with no record after it';
      offset = 0;
      first = this.#bytes(0, 4);
      if (first === undefined) return 'the frame ring is not mapped';
    }
    const bytes = first.readUInt32LE(0);
    const size = align8(bytes);
    if (bytes < RECORD_HEADER_BYTES + 4 || size > MAX_FRAME_RECORD_BYTES || offset + size > FRAME_RING_DATA_BYTES || size > ((tail - this.#read) >>> 0)) {
      return `a record of ${bytes} bytes at ${offset}`;
    }
    const record = this.#bytes(offset, bytes);
    if (record === undefined) return 'the frame ring is not mapped';
    const packetBytes = record.readUInt32LE(4);
    let at = RECORD_HEADER_BYTES + packetBytes;
    if (at + 4 > bytes) return `packets of ${packetBytes} bytes in a record of ${bytes}`;
    // The packets are copied out: the peer can still write its ring, and a header must read the same each time it is read.
    const packets = Buffer.from(record.subarray(RECORD_HEADER_BYTES, at));
    const count = record.readUInt32LE(at);
    at += 4;
    const inlineData: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      if (at + 4 > bytes) return `inline payload ${i} of ${count} past the record`;
      const length = record.readUInt32LE(at);
      if (at + 4 + length > bytes) return `inline payload ${i} of ${length} bytes past the record`;
      inlineData.push(record.subarray(at + 4, at + 4 + length));
      at += 4 + length;
    }
    this.#read = (this.#read + size) >>> 0;
    return { packets, inlineData, end: this.#read };
  }

  /** Done with every frame up to `end`: the writer may reuse the space. */
  release(end: number): void {
    this.#head.store(end);
  }

  /**
   * Stops polling: says so, then looks once more. False (and awake again)
   * if a frame came meanwhile.
   */
  sleep(): boolean {
    this.#asleep.store(1);
    if (this.#tail.load() === this.#read) return true;
    this.#asleep.store(0);
    return false;
  }

  wake(): void {
    this.#asleep.store(0);
  }

  /** `length` bytes at `offset` of the data area as one Buffer: a view when contiguous in the mapping, else a copy. */
  #bytes(offset: number, length: number): Buffer | undefined {
    const views: Uint8Array[] = [];
    if (!this.#memory.views(FRAME_RING_HEADER_BYTES + offset, length, views)) return undefined;
    if (views.length === 1) {
      const view = views[0]!;
      return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
    }
    return Buffer.concat(views);
  }
}

function u32(value: number): Buffer {
  const bytes = Buffer.allocUnsafe(4);
  bytes.writeUInt32LE(value >>> 0, 0);
  return bytes;
}
