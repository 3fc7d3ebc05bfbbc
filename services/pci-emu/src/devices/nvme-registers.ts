import { errno } from '@p2p/errno';
import { mergeLanes, type RegisterOps } from './register-ops';

/* Controller register offsets, named as in include/linux/nvme.h (enum NVME_REG_*). */
export const NVME_REG_CAP = 0x00;
export const NVME_REG_VS = 0x08;
export const NVME_REG_INTMS = 0x0c;
export const NVME_REG_INTMC = 0x10;
export const NVME_REG_CC = 0x14;
export const NVME_REG_CSTS = 0x1c;
export const NVME_REG_AQA = 0x24;
export const NVME_REG_ASQ = 0x28;
export const NVME_REG_ACQ = 0x30;
export const NVME_REG_CMBLOC = 0x38;
export const NVME_REG_CMBSZ = 0x3c;
export const NVME_REG_DBS = 0x1000;

export const NVME_CC_ENABLE = 1 << 0;
const NVME_CC_SHN_MASK = 3 << 14;
/** EN, CSS, MPS, AMS, SHN, IOSQES, IOCQES: everything else in CC is reserved. */
const NVME_CC_WRITABLE = 0x00fffff1;
export const NVME_CSTS_RDY = 1 << 0;
const NVME_CSTS_SHST_MASK = 3 << 2;
export const NVME_CSTS_SHST_CMPLT = 2 << 2;

export const NVME_CMBSZ_SQS = 1 << 0;
export const NVME_CMBSZ_RDS = 1 << 3;
export const NVME_CMBSZ_WDS = 1 << 4;
const NVME_CMBSZ_SZU_SHIFT = 8;
const NVME_CMBSZ_SZ_SHIFT = 12;

/** Version 1.3.0: CMBLOC/CMBSZ are valid without the 1.4 CMBMSC.CRE handshake. */
export const NVME_VS_1_3 = 0x00010300;

/**
 * CAP: MQES 1023 (0's based), CQR (contiguous queues required), TO 20 x 500 ms,
 * DSTRD 0 (4-byte doorbell stride), CSS bit 37 (NVM command set), MPSMIN 0 (4 KiB).
 */
const CAP_LOW = 0x3ff | (1 << 16) | (20 << 24);
const CAP_HIGH = 1 << (37 - 32);

/** CMBSZ.SZU units: 4 KiB, 64 KiB, 1 MiB, 16 MiB, 256 MiB, 4 GiB, 64 GiB. */
const SZU_BYTES = [2 ** 12, 2 ** 16, 2 ** 20, 2 ** 24, 2 ** 28, 2 ** 32, 2 ** 36];

/**
 * CMBSZ for a CMB of `size` bytes filling BAR `bir`: submission queues and
 * PRP/SGL data for reads and writes may live in it (SQS, RDS, WDS), sized in
 * the largest unit whose 20-bit count still holds it exactly.
 */
export function nvmeCmbSize(size: number): number {
  const unit = [...SZU_BYTES.keys()].reverse().find((u) => size % SZU_BYTES[u]! === 0 && size / SZU_BYTES[u]! < 2 ** 20);
  if (unit === undefined) {
    throw errno('EINVAL', `CMB size ${size} is not expressible in CMBSZ`);
  }
  const count = size / SZU_BYTES[unit]!;
  return count * 2 ** NVME_CMBSZ_SZ_SHIFT + ((unit << NVME_CMBSZ_SZU_SHIFT) | NVME_CMBSZ_SQS | NVME_CMBSZ_RDS | NVME_CMBSZ_WDS);
}

/**
 * NVMe controller registers (BAR0). Register semantics only: CC.EN 0->1 sets
 * CSTS.RDY, 1->0 clears it (controller reset), a shutdown request in CC.SHN
 * completes at once; no queue or command processing, so doorbell writes are
 * accepted and forgotten and doorbells read 0. Read-only registers ignore writes.
 */
export class NvmeRegisters implements RegisterOps {
  #cc = 0;
  #csts = 0;
  #intMask = 0;
  #aqa = 0;
  readonly #asq = [0, 0];
  readonly #acq = [0, 0];

  /** `cmbBar` is the BAR index of the CMB (CMBLOC.BIR), at offset 0 of it. */
  constructor(
    private readonly cmbBar: number,
    private readonly cmbSize: number,
  ) {}

  read(offset: number): number {
    switch (offset) {
      case NVME_REG_CAP:
        return CAP_LOW;
      case NVME_REG_CAP + 4:
        return CAP_HIGH;
      case NVME_REG_VS:
        return NVME_VS_1_3;
      case NVME_REG_INTMS:
      case NVME_REG_INTMC:
        return this.#intMask;
      case NVME_REG_CC:
        return this.#cc;
      case NVME_REG_CSTS:
        return this.#csts;
      case NVME_REG_AQA:
        return this.#aqa;
      case NVME_REG_ASQ:
      case NVME_REG_ASQ + 4:
        return this.#asq[(offset - NVME_REG_ASQ) / 4]!;
      case NVME_REG_ACQ:
      case NVME_REG_ACQ + 4:
        return this.#acq[(offset - NVME_REG_ACQ) / 4]!;
      case NVME_REG_CMBLOC:
        return this.cmbBar;
      case NVME_REG_CMBSZ:
        return nvmeCmbSize(this.cmbSize);
      default:
        return 0;
    }
  }

  write(offset: number, value: number, mask: number): void {
    const bits = (value & mask) >>> 0;
    switch (offset) {
      case NVME_REG_INTMS:
        this.#intMask = (this.#intMask | bits) >>> 0;
        return;
      case NVME_REG_INTMC:
        this.#intMask = (this.#intMask & ~bits) >>> 0;
        return;
      case NVME_REG_CC:
        this.#writeCc((mergeLanes(this.#cc, value, mask) & NVME_CC_WRITABLE) >>> 0);
        return;
      case NVME_REG_AQA:
        // ASQS 11:0 and ACQS 27:16.
        this.#aqa = (mergeLanes(this.#aqa, value, mask) & 0x0fff0fff) >>> 0;
        return;
      case NVME_REG_ASQ:
      case NVME_REG_ASQ + 4:
        this.#writeQueueBase(this.#asq, (offset - NVME_REG_ASQ) / 4, value, mask);
        return;
      case NVME_REG_ACQ:
      case NVME_REG_ACQ + 4:
        this.#writeQueueBase(this.#acq, (offset - NVME_REG_ACQ) / 4, value, mask);
        return;
      default:
        // CAP, VS, CSTS, CMBLOC, CMBSZ are read-only; reserved space and doorbells keep nothing.
        return;
    }
  }

  reset(): void {
    this.#cc = 0;
    this.#csts = 0;
    this.#intMask = 0;
    this.#aqa = 0;
    this.#asq.fill(0);
    this.#acq.fill(0);
  }

  #writeCc(cc: number): void {
    const wasEnabled = (this.#cc & NVME_CC_ENABLE) !== 0;
    const enabled = (cc & NVME_CC_ENABLE) !== 0;
    const shutdownRequested = (cc & NVME_CC_SHN_MASK) !== 0 && (this.#cc & NVME_CC_SHN_MASK) === 0;
    this.#cc = cc;
    if (!wasEnabled && enabled) {
      this.#csts |= NVME_CSTS_RDY;
    } else if (wasEnabled && !enabled) {
      // Controller reset: not ready, shutdown status cleared (NVMe 1.3 section 7.3.2).
      this.#csts &= ~(NVME_CSTS_RDY | NVME_CSTS_SHST_MASK);
    }
    if (shutdownRequested) {
      this.#csts = (this.#csts & ~NVME_CSTS_SHST_MASK) | NVME_CSTS_SHST_CMPLT;
    }
  }

  /** ASQ/ACQ: 64-bit, 4 KiB aligned (bits 11:0 reserved), written as two dwords. */
  #writeQueueBase(register: number[], half: number, value: number, mask: number): void {
    const writable = half === 0 ? 0xfffff000 : 0xffffffff;
    register[half] = (mergeLanes(register[half]!, value, mask) & writable) >>> 0;
  }
}
