import type { BarMemory } from '../bar-memory';
import { mergeLanes, type RegisterOps } from '../register-ops';
import type { NvmeController } from './nvme-controller';
import {
  NVME_REG_ACQ,
  NVME_REG_AQA,
  NVME_REG_ASQ,
  NVME_REG_CAP,
  NVME_REG_CC,
  NVME_REG_CMBLOC,
  NVME_REG_CMBMSC,
  NVME_REG_CMBSTS,
  NVME_REG_CMBSZ,
  NVME_REG_CSTS,
  NVME_REG_INTMC,
  NVME_REG_INTMS,
  NVME_REG_VS,
} from './nvme-regs';

const lo = (value: bigint): number => Number(value & 0xffff_ffffn);
const hi = (value: bigint): number => Number(value >> 32n);
/** Replaces dword `half` (0: low, 1: high) of a 64-bit register with the written lanes. */
const mergeHalf = (old: bigint, half: number, value: number, mask: number): bigint => {
  const dword = mergeLanes(half === 0 ? lo(old) : hi(old), value, mask);
  return half === 0 ? (old & ~0xffff_ffffn) | BigInt(dword) : (old & 0xffff_ffffn) | (BigInt(dword) << 32n);
};

/**
 * BAR0's controller registers (0x00 - 0xfff) as MMIO sees them, each
 * decoded to the controller (nvme-controller.ts), which keeps their values.
 * The doorbells above 0x1000 are not registers here: they are the BAR's
 * window (memory a bus master can write too; nvme-device.ts turns each
 * write into NvmeController.doorbell()). INTMS/INTMC are kept here: no
 * interrupt is ever raised, so the mask only needs to read back.
 */
export class NvmeRegisterFile implements RegisterOps {
  #intMask = 0;

  constructor(
    private readonly controller: NvmeController,
    /** The doorbell window: zeroed with the controller on every reset. */
    private readonly doorbells: BarMemory,
  ) {}

  read(offset: number): number {
    const c = this.controller;
    switch (offset) {
      case NVME_REG_CAP:
      case NVME_REG_CAP + 4:
        return offset === NVME_REG_CAP ? lo(c.cap) : hi(c.cap);
      case NVME_REG_VS:
        return c.vs;
      case NVME_REG_INTMS:
      case NVME_REG_INTMC:
        return this.#intMask;
      case NVME_REG_CC:
        return c.cc;
      case NVME_REG_CSTS:
        return c.csts;
      case NVME_REG_AQA:
        return c.aqa;
      case NVME_REG_ASQ:
      case NVME_REG_ASQ + 4:
        return offset === NVME_REG_ASQ ? lo(c.asq) : hi(c.asq);
      case NVME_REG_ACQ:
      case NVME_REG_ACQ + 4:
        return offset === NVME_REG_ACQ ? lo(c.acq) : hi(c.acq);
      case NVME_REG_CMBLOC:
        return c.cmbloc;
      case NVME_REG_CMBSZ:
        return c.cmbsz;
      case NVME_REG_CMBMSC:
      case NVME_REG_CMBMSC + 4:
        return offset === NVME_REG_CMBMSC ? lo(c.cmbmsc) : hi(c.cmbmsc);
      case NVME_REG_CMBSTS:
        return c.cmbsts;
      default:
        return 0;
    }
  }

  write(offset: number, value: number, mask: number): void {
    const c = this.controller;
    switch (offset) {
      case NVME_REG_INTMS:
        this.#intMask = (this.#intMask | (value & mask)) >>> 0;
        return;
      case NVME_REG_INTMC:
        this.#intMask = (this.#intMask & ~(value & mask)) >>> 0;
        return;
      case NVME_REG_CC:
        c.writeCc(mergeLanes(c.cc, value, mask));
        return;
      case NVME_REG_AQA:
        c.writeAqa(mergeLanes(c.aqa, value, mask));
        return;
      case NVME_REG_ASQ:
      case NVME_REG_ASQ + 4:
        c.writeAsq(mergeHalf(c.asq, (offset - NVME_REG_ASQ) / 4, value, mask));
        return;
      case NVME_REG_ACQ:
      case NVME_REG_ACQ + 4:
        c.writeAcq(mergeHalf(c.acq, (offset - NVME_REG_ACQ) / 4, value, mask));
        return;
      case NVME_REG_CMBMSC:
      case NVME_REG_CMBMSC + 4:
        c.writeCmbmsc(mergeHalf(c.cmbmsc, (offset - NVME_REG_CMBMSC) / 4, value, mask));
        return;
      default:
        // CAP, VS, CSTS, CMBLOC, CMBSZ and CMBSTS are read-only; the rest is reserved.
        return;
    }
  }

  /** FLR, conventional reset, D3hot -> D0: the controller and its doorbells back to power-on. */
  reset(): void {
    this.#intMask = 0;
    this.controller.reset();
    this.doorbells.write(0, Buffer.alloc(this.doorbells.size));
  }
}
