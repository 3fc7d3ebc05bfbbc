import type { DmaErrorName, DmaOutcome, DmaPort, DmaRequest } from './dma-engine';
import { DMA_ERRORS, DMA_MAX_LENGTH, DMA_STATUS_DONE, DMA_STATUS_ERROR } from './dma-engine';
import { mergeLanes } from './register-ops';

/*
 * The DMA engine's descriptor ring, the shape of ioatdma's and DSA's
 * channels: the driver writes descriptors into memory the engine reaches
 * through the IOMMU, rings one doorbell (the producer index, TAIL) for any
 * number of them, and polls each descriptor's completion record in its own
 * memory; no register access per transfer. The engine runs the ring after
 * the doorbell write has returned, in order, a bounded amount per turn of
 * pci-emu's event loop, so register accesses and IOMMU changes (a revoke's
 * unmap) land between descriptors, never inside one.
 */
/** Ring base IOVA, lo dword (hi at +4); DMA_DESCRIPTOR_SIZE-aligned. Read/write. */
export const DMA_RING_BASE = 0x128;
/** Entries in the ring: a power of two, 2 .. DMA_RING_MAX_ENTRIES. Read/write. */
export const DMA_RING_SIZE = 0x130;
/** DMA_RING_CTRL_ENABLE: set starts the ring at index 0 (HEAD = TAIL = 0, no error); clear stops it. */
export const DMA_RING_CTRL = 0x134;
/** The next descriptor the engine runs (consumer index). Read-only. */
export const DMA_RING_HEAD = 0x138;
/** The doorbell: one past the last descriptor the driver has written (producer index), below SIZE. */
export const DMA_RING_TAIL = 0x13c;
/** DMA_RING_STATUS_*. Read-only. */
export const DMA_RING_STATUS = 0x140;
/** The DMA_ERRORS code that halted the ring. Read-only. */
export const DMA_RING_ERROR = 0x144;
/** The IOVA that faulted or master-aborted when the ring halted, lo dword (hi at +4). Read-only. */
export const DMA_RING_FAULT_IOVA = 0x148;
export const DMA_RING_END = 0x150;

export const DMA_RING_CTRL_ENABLE = 1;
export const DMA_RING_STATUS_DISABLED = 0;
/** Enabled: runs descriptors while HEAD != TAIL. */
export const DMA_RING_STATUS_ACTIVE = 1;
/** Stopped by an error (RING_ERROR, RING_FAULT_IOVA; HEAD is the failed descriptor) until the driver re-enables it. */
export const DMA_RING_STATUS_HALTED = 2;
export const DMA_RING_MAX_ENTRIES = 4096;

/*
 * A descriptor, 32 bytes little-endian:
 *   0x00 src IOVA (u64)   0x08 dst IOVA (u64)   0x10 length (u32)
 *   0x14 control (u32, reserved: must be 0)
 *   0x18 completion record, written by the engine when it is done with the
 *        descriptor: status (u8: DMA_STATUS_DONE or _ERROR), error (u8,
 *        DMA_ERRORS), 2 reserved bytes, then the bytes written (u32).
 * The driver zeroes the completion record before ringing, and polls it.
 */
export const DMA_DESCRIPTOR_SIZE = 32;
export const DMA_DESC_SRC = 0x00;
export const DMA_DESC_DST = 0x08;
export const DMA_DESC_LENGTH = 0x10;
export const DMA_DESC_CONTROL = 0x14;
export const DMA_DESC_COMPLETION = 0x18;
export const DMA_COMPLETION_SIZE = 8;

/** How many bytes of transfers one turn runs before yielding; each descriptor counts at least a page. */
export const DMA_RING_BYTES_PER_TURN = 8 * 1024 * 1024;
const DESCRIPTOR_MIN_COST = 4096;

const isPowerOfTwo = (value: number): boolean => value > 0 && (value & (value - 1)) === 0;

/** Encodes a descriptor (drivers and tests). */
export function encodeDmaDescriptor(request: DmaRequest, target: Buffer = Buffer.alloc(DMA_DESCRIPTOR_SIZE), at = 0): Buffer {
  target.writeBigUInt64LE(request.src, at + DMA_DESC_SRC);
  target.writeBigUInt64LE(request.dst, at + DMA_DESC_DST);
  target.writeUInt32LE(request.length, at + DMA_DESC_LENGTH);
  target.fill(0, at + DMA_DESC_CONTROL, at + DMA_DESCRIPTOR_SIZE);
  return target;
}

/** A completion record as the driver reads it; status 0 means the engine has not written it yet. */
export interface DmaCompletionRecord {
  readonly status: number;
  readonly error: DmaErrorName | undefined;
  readonly bytes: number;
}

export function decodeDmaCompletion(source: Buffer, at = DMA_DESC_COMPLETION): DmaCompletionRecord {
  const code = source[at + 1]!;
  const error = (Object.keys(DMA_ERRORS) as DmaErrorName[]).find((name) => DMA_ERRORS[name] === code);
  return { status: source[at]!, error, bytes: source.readUInt32LE(at + 4) };
}

/** The ring's registers and the engine's walk over it. */
export class DmaRing {
  readonly #base = [0, 0];
  readonly #fault = [0, 0];
  #size = 0;
  #control = 0;
  #head = 0;
  #tail = 0;
  #status = DMA_RING_STATUS_DISABLED;
  #error = 0;
  /** Bumped by every stop: a turn scheduled before it finds itself stale. */
  #generation = 0;
  #scheduled = false;
  readonly #descriptor = Buffer.alloc(DMA_DESCRIPTOR_SIZE);
  readonly #completion = Buffer.alloc(DMA_COMPLETION_SIZE);

  constructor(private readonly port: DmaPort) {}

  static owns(offset: number): boolean {
    return offset >= DMA_RING_BASE && offset < DMA_RING_END;
  }

  read(offset: number): number {
    switch (offset) {
      case DMA_RING_BASE:
      case DMA_RING_BASE + 4:
        return this.#base[(offset - DMA_RING_BASE) / 4]!;
      case DMA_RING_SIZE:
        return this.#size;
      case DMA_RING_CTRL:
        return this.#control;
      case DMA_RING_HEAD:
        return this.#head;
      case DMA_RING_TAIL:
        return this.#tail;
      case DMA_RING_STATUS:
        return this.#status;
      case DMA_RING_ERROR:
        return this.#error;
      case DMA_RING_FAULT_IOVA:
      case DMA_RING_FAULT_IOVA + 4:
        return this.#fault[(offset - DMA_RING_FAULT_IOVA) / 4]!;
      default:
        return 0;
    }
  }

  write(offset: number, value: number, mask: number): void {
    switch (offset) {
      case DMA_RING_BASE:
      case DMA_RING_BASE + 4:
        this.#base[(offset - DMA_RING_BASE) / 4] = mergeLanes(this.#base[(offset - DMA_RING_BASE) / 4]!, value, mask);
        return;
      case DMA_RING_SIZE:
        this.#size = mergeLanes(this.#size, value, mask);
        return;
      case DMA_RING_CTRL:
        this.#setControl(mergeLanes(this.#control, value, mask));
        return;
      case DMA_RING_TAIL:
        this.#doorbell(mergeLanes(this.#tail, value, mask));
        return;
      default:
        // HEAD, STATUS, ERROR and FAULT_IOVA are read-only.
        return;
    }
  }

  reset(): void {
    this.#stop();
    this.#base.fill(0);
    this.#size = 0;
    this.#control = 0;
  }

  #setControl(control: number): void {
    const enable = (control & DMA_RING_CTRL_ENABLE) !== 0;
    const wasEnabled = (this.#control & DMA_RING_CTRL_ENABLE) !== 0;
    this.#control = control;
    if (enable === wasEnabled) return;
    this.#stop();
    if (!enable) return;
    if (!isPowerOfTwo(this.#size) || this.#size < 2 || this.#size > DMA_RING_MAX_ENTRIES || this.#base[0]! % DMA_DESCRIPTOR_SIZE !== 0) {
      this.#halt('BAD_RING', 0n);
      return;
    }
    this.#status = DMA_RING_STATUS_ACTIVE;
  }

  /** Back to DISABLED, index 0, no error; a turn already scheduled does nothing. */
  #stop(): void {
    this.#generation++;
    this.#scheduled = false;
    this.#head = 0;
    this.#tail = 0;
    this.#status = DMA_RING_STATUS_DISABLED;
    this.#error = 0;
    this.#fault.fill(0);
  }

  #doorbell(tail: number): void {
    if (this.#status !== DMA_RING_STATUS_ACTIVE) {
      // A disabled or halted ring ignores its doorbell, as a halted channel does.
      return;
    }
    if (tail >= this.#size) {
      this.#halt('BAD_DOORBELL', 0n);
      return;
    }
    this.#tail = tail;
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled || this.#status !== DMA_RING_STATUS_ACTIVE || this.#head === this.#tail) return;
    this.#scheduled = true;
    const generation = this.#generation;
    this.port.defer(() => {
      if (generation !== this.#generation) return;
      this.#scheduled = false;
      this.#turn();
    });
  }

  #turn(): void {
    let budget = DMA_RING_BYTES_PER_TURN;
    while (this.#status === DMA_RING_STATUS_ACTIVE && this.#head !== this.#tail && budget > 0) {
      budget -= Math.max(DESCRIPTOR_MIN_COST, this.#runOne());
    }
    this.#schedule();
  }

  /** Runs the descriptor at HEAD; returns the bytes it asked to move. */
  #runOne(): number {
    const at = this.#descriptorIova(this.#head);
    const fetched = this.port.read(at, this.#descriptor);
    if (fetched.error !== 'NONE') {
      this.#halt(fetched.error, fetched.faultIova);
      return 0;
    }
    const request: DmaRequest = {
      src: this.#descriptor.readBigUInt64LE(DMA_DESC_SRC),
      dst: this.#descriptor.readBigUInt64LE(DMA_DESC_DST),
      length: this.#descriptor.readUInt32LE(DMA_DESC_LENGTH),
    };
    const outcome = this.#execute(request, this.#descriptor.readUInt32LE(DMA_DESC_CONTROL));
    this.port.completed(request, outcome);
    this.#completion.fill(0);
    this.#completion[0] = outcome.error === 'NONE' ? DMA_STATUS_DONE : DMA_STATUS_ERROR;
    this.#completion[1] = DMA_ERRORS[outcome.error];
    this.#completion.writeUInt32LE(outcome.bytes, 4);
    const written = this.port.write(at + BigInt(DMA_DESC_COMPLETION), this.#completion);
    if (outcome.error !== 'NONE') {
      this.#halt(outcome.error, outcome.faultIova);
    } else if (written.error !== 'NONE') {
      this.#halt(written.error, written.faultIova);
    } else {
      this.#head = (this.#head + 1) % this.#size;
    }
    return request.length;
  }

  #execute(request: DmaRequest, control: number): DmaOutcome {
    if (control !== 0) return { error: 'BAD_DESCRIPTOR', bytes: 0, faultIova: 0n };
    if (request.length === 0 || request.length > DMA_MAX_LENGTH) return { error: 'BAD_LENGTH', bytes: 0, faultIova: 0n };
    return this.port.transfer(request);
  }

  #descriptorIova(index: number): bigint {
    return ((BigInt(this.#base[1]!) << 32n) | BigInt(this.#base[0]!)) + BigInt(index * DMA_DESCRIPTOR_SIZE);
  }

  #halt(error: DmaErrorName, faultIova: bigint): void {
    this.#status = DMA_RING_STATUS_HALTED;
    this.#error = DMA_ERRORS[error];
    this.#fault[0] = Number(faultIova & 0xffffffffn);
    this.#fault[1] = Number(faultIova >> 32n);
  }
}
