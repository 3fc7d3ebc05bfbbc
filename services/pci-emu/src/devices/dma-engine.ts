import { mergeLanes, type RegisterOps } from './register-ops';

/*
 * The accelerator's DMA engine: a register block in BAR0. Every register is
 * a little-endian dword; 64-bit values are lo/hi pairs (a qword MMIO write
 * lands as lo then hi). A qword write at DMA_LEN sets the length and rings
 * the doorbell in one access.
 */
/** Source IOVA, lo dword (hi at +4). Read/write. */
export const DMA_SRC_IOVA = 0x100;
/** Destination IOVA, lo dword (hi at +4). Read/write. */
export const DMA_DST_IOVA = 0x108;
/** Transfer length in bytes, 1 .. DMA_MAX_LENGTH. Read/write. */
export const DMA_LEN = 0x110;
/** Write DMA_DOORBELL_START to start a transfer; reads 0. */
export const DMA_DOORBELL = 0x114;
/** DMA_STATUS_*: read-only. */
export const DMA_STATUS = 0x118;
/** DMA_ERRORS value of the last transfer: read-only. */
export const DMA_ERROR = 0x11c;
/** The IOVA that faulted or master-aborted, lo dword (hi at +4): read-only. */
export const DMA_FAULT_IOVA = 0x120;
/** The block is [DMA_ENGINE_BASE, DMA_ENGINE_END); the rest of BAR0 stays scratch registers. */
export const DMA_ENGINE_BASE = 0x100;
export const DMA_ENGINE_END = 0x128;

export const DMA_DOORBELL_START = 1;
/** The most one transfer moves: 64 MiB. */
export const DMA_MAX_LENGTH = 64 * 1024 * 1024;

export const DMA_STATUS_IDLE = 0;
/** Never read back: a transfer runs within the doorbell write (see DmaEngine). */
export const DMA_STATUS_BUSY = 1;
export const DMA_STATUS_DONE = 2;
export const DMA_STATUS_ERROR = 3;

/** The ERROR register's codes; the proto's DmaError has the same numbers. */
export const DMA_ERRORS = {
  NONE: 0,
  /** The source has no readable translation. */
  IOMMU_FAULT_READ: 1,
  /** The destination has no writable translation. */
  IOMMU_FAULT_WRITE: 2,
  /** LEN is 0 or above DMA_MAX_LENGTH. */
  BAD_LENGTH: 3,
  /** A BAR the transfer reaches did not claim it (decode off, D3hot, unplugged). */
  MASTER_ABORT: 4,
  /** PCI_COMMAND.MASTER is clear: the function may not issue requests. */
  NO_BUS_MASTER: 5,
  /** Host memory failed mid-copy; the bytes before the failure may have landed. */
  DATA: 6,
  /** A ring descriptor sets reserved control bits. */
  BAD_DESCRIPTOR: 7,
  /** The ring was enabled with a SIZE that is not a power of two in 2 .. 4096, or a misaligned BASE. */
  BAD_RING: 8,
  /** TAIL was written with an index at or past SIZE. */
  BAD_DOORBELL: 9,
} as const;

export type DmaErrorName = keyof typeof DMA_ERRORS;

/** How a transfer ended. */
export interface DmaOutcome {
  readonly error: DmaErrorName;
  /** Bytes written to the destination. */
  readonly bytes: number;
  /** For IOMMU faults and master aborts: the IOVA that failed; else 0. */
  readonly faultIova: bigint;
}

/** One transfer as the engine's registers describe it. */
export interface DmaRequest {
  readonly src: bigint;
  readonly dst: bigint;
  readonly length: number;
}

/** A device's way onto the bus, given by the platform: DMA as this function, and the report of each transfer. */
export interface DmaPort {
  /** Copies `length` bytes from IOVA `src` to IOVA `dst` as a bus master, through the IOMMU. */
  transfer(request: DmaRequest): DmaOutcome;
  /** Reads `target.length` bytes at `iova` into the device (a descriptor, a queue entry). */
  read(iova: bigint, target: Buffer): DmaOutcome;
  /** Writes `source` at `iova` (a completion record, a queue entry). */
  write(iova: bigint, source: Uint8Array): DmaOutcome;
  /** The memory behind [iova, iova + length) for `access`, for one system call to move (see dmaMap). */
  map(iova: bigint, length: number, access: 'read' | 'write'): Buffer[] | DmaOutcome;
  /** Every finished transfer, refused ones included. */
  completed(request: DmaRequest, outcome: DmaOutcome): void;
  /** Runs `work` once the access that asked for it has returned: the device acting on its own. */
  defer(work: () => void): void;
}

const hiLo = (pair: readonly number[]): bigint => (BigInt(pair[1]!) << 32n) | BigInt(pair[0]!);

/**
 * The engine's registers. A transfer runs synchronously within the doorbell
 * write: when the MMIO write that rang it returns, STATUS is DONE or ERROR
 * and every byte has landed, so STATUS never reads BUSY and no write can
 * reach the registers of a running transfer. Ringing again starts a new
 * transfer with the registers as they are; a reset (FLR, conventional,
 * D3hot -> D0) brings every register back to 0 (IDLE).
 */
export class DmaEngine implements RegisterOps {
  readonly #src = [0, 0];
  readonly #dst = [0, 0];
  readonly #fault = [0, 0];
  #length = 0;
  #status = DMA_STATUS_IDLE;
  #error = 0;

  constructor(private readonly port: DmaPort) {}

  read(offset: number): number {
    switch (offset) {
      case DMA_SRC_IOVA:
      case DMA_SRC_IOVA + 4:
        return this.#src[(offset - DMA_SRC_IOVA) / 4]!;
      case DMA_DST_IOVA:
      case DMA_DST_IOVA + 4:
        return this.#dst[(offset - DMA_DST_IOVA) / 4]!;
      case DMA_LEN:
        return this.#length;
      case DMA_STATUS:
        return this.#status;
      case DMA_ERROR:
        return this.#error;
      case DMA_FAULT_IOVA:
      case DMA_FAULT_IOVA + 4:
        return this.#fault[(offset - DMA_FAULT_IOVA) / 4]!;
      default:
        return 0;
    }
  }

  write(offset: number, value: number, mask: number): void {
    switch (offset) {
      case DMA_SRC_IOVA:
      case DMA_SRC_IOVA + 4:
        this.#src[(offset - DMA_SRC_IOVA) / 4] = mergeLanes(this.#src[(offset - DMA_SRC_IOVA) / 4]!, value, mask);
        return;
      case DMA_DST_IOVA:
      case DMA_DST_IOVA + 4:
        this.#dst[(offset - DMA_DST_IOVA) / 4] = mergeLanes(this.#dst[(offset - DMA_DST_IOVA) / 4]!, value, mask);
        return;
      case DMA_LEN:
        this.#length = mergeLanes(this.#length, value, mask);
        return;
      case DMA_DOORBELL:
        if ((value & mask & DMA_DOORBELL_START) !== 0) this.#start();
        return;
      default:
        // STATUS, ERROR and FAULT_IOVA are read-only.
        return;
    }
  }

  reset(): void {
    this.#src.fill(0);
    this.#dst.fill(0);
    this.#fault.fill(0);
    this.#length = 0;
    this.#status = DMA_STATUS_IDLE;
    this.#error = 0;
  }

  #start(): void {
    const request = { src: hiLo(this.#src), dst: hiLo(this.#dst), length: this.#length };
    this.#status = DMA_STATUS_BUSY;
    const outcome =
      request.length === 0 || request.length > DMA_MAX_LENGTH
        ? { error: 'BAD_LENGTH' as const, bytes: 0, faultIova: 0n }
        : this.port.transfer(request);
    this.#status = outcome.error === 'NONE' ? DMA_STATUS_DONE : DMA_STATUS_ERROR;
    this.#error = DMA_ERRORS[outcome.error];
    this.#fault[0] = Number(outcome.faultIova & 0xffffffffn);
    this.#fault[1] = Number(outcome.faultIova >> 32n);
    this.port.completed(request, outcome);
  }
}
