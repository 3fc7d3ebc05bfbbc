import type { BarMemory } from '../bar-memory';
import {
  NVME_CMBMSC_CBA_MASK,
  NVME_CMBMSC_CMSE,
  NVME_CMBMSC_CRE,
  NVME_CMBSTS_CBAI,
  nvmeCmbloc,
  nvmeCmbsz,
  type NvmeCmbSupport,
} from './nvme-regs';

const ADDRESS_SPACE = 1n << 64n;

/** Where a range of host-given addresses lives: at this offset of the CMB, in host (bus) memory, or across the CMB's edge. */
export type CmbLocation = number | 'host' | 'partial';

/**
 * The Controller Memory Buffer (NVMe 1.4, "Controller Memory Buffer") and
 * its 1.4 controls: the host turns on CMBLOC/CMBSZ with CMBMSC.CRE, then
 * tells the controller where it placed the BAR with CMBMSC.CBA and sets
 * CMSE. From then on every address the host gives (queue bases, PRP entries,
 * PRP lists) that falls in [CBA, CBA + size) is the controller's own memory,
 * accessed directly and never put on the bus; any other address is a
 * bus-master DMA. The Linux driver sets CBA to the BAR's bus address
 * (nvme_map_cmb()).
 */
export class ControllerMemoryBuffer {
  #cmbmsc = 0n;
  #cmbsts = 0;
  /** CBA while CRE and CMSE are set and CBA is valid; undefined while the controller recognizes no CMB address. */
  #base: bigint | undefined;
  readonly #cmbsz: number;
  readonly #cmbloc: number;

  /** `memory` is the BAR that CMBLOC.BIR `bar` names; EINVAL if its size is not expressible in CMBSZ. */
  constructor(
    readonly memory: BarMemory,
    bar: number,
    readonly support: NvmeCmbSupport,
  ) {
    this.#cmbsz = nvmeCmbsz(memory.size, support);
    this.#cmbloc = nvmeCmbloc(bar);
  }

  /** CMBLOC reads 0 until CMBMSC.CRE is set (1.4 section 3.1.11). */
  get cmbloc(): number {
    return (this.#cmbmsc & NVME_CMBMSC_CRE) !== 0n ? this.#cmbloc : 0;
  }

  /** CMBSZ reads 0 until CMBMSC.CRE is set (1.4 section 3.1.12). */
  get cmbsz(): number {
    return (this.#cmbmsc & NVME_CMBMSC_CRE) !== 0n ? this.#cmbsz : 0;
  }

  get cmbmsc(): bigint {
    return this.#cmbmsc;
  }

  get cmbsts(): number {
    return this.#cmbsts;
  }

  /**
   * A write of the whole 64-bit CMBMSC. CMSE takes effect only with CRE, and
   * only for a CBA whose range fits the 64-bit address space; otherwise
   * CMBSTS.CBAI reports the refused enable (QEMU's nvme_write_bar() does
   * the same check) and no address reaches the CMB.
   */
  writeCmbmsc(value: bigint): void {
    this.#cmbmsc = value & (NVME_CMBMSC_CRE | NVME_CMBMSC_CMSE | NVME_CMBMSC_CBA_MASK);
    this.#base = undefined;
    if ((this.#cmbmsc & NVME_CMBMSC_CRE) === 0n || (this.#cmbmsc & NVME_CMBMSC_CMSE) === 0n) return;
    const cba = this.#cmbmsc & NVME_CMBMSC_CBA_MASK;
    if (cba + BigInt(this.memory.size) > ADDRESS_SPACE) {
      this.#cmbsts |= NVME_CMBSTS_CBAI;
      return;
    }
    this.#cmbsts &= ~NVME_CMBSTS_CBAI;
    this.#base = cba;
  }

  /** Power-on state (FLR, conventional reset): CMB disabled. A controller reset (CC.EN 1 -> 0) keeps CMBMSC. */
  reset(): void {
    this.#cmbmsc = 0n;
    this.#cmbsts = 0;
    this.#base = undefined;
  }

  locate(address: bigint, length: number): CmbLocation {
    if (this.#base === undefined) return 'host';
    const end = address + BigInt(length);
    const cmbEnd = this.#base + BigInt(this.memory.size);
    if (end <= this.#base || address >= cmbEnd) return 'host';
    if (address < this.#base || end > cmbEnd) return 'partial';
    return Number(address - this.#base);
  }
}
