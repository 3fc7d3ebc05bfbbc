import type { PciBus } from '../bus/pci-bus';
import {
  encodeNvmeCommand,
  NVME_ADMIN_CREATE_CQ,
  NVME_ADMIN_CREATE_SQ,
  NVME_SQE_SIZE,
  type NvmeCommandFields,
} from '../devices/nvme/nvme-command';
import { decodeNvmeCompletion, NVME_CQE_SIZE, type NvmeCompletion } from '../devices/nvme/nvme-completion';
import {
  NVME_CC_NVM_ENABLE,
  NVME_CMBMSC_CMSE,
  NVME_CMBMSC_CRE,
  NVME_REG_ACQ,
  NVME_REG_AQA,
  NVME_REG_ASQ,
  NVME_REG_CC,
  NVME_REG_CMBMSC,
  NVME_REG_DBS,
} from '../devices/nvme/nvme-regs';
import { MEMORY_BAR } from './platform';

/** Entries of every queue the host creates. */
export const NVME_HOST_ENTRIES = 16;
/** The I/O queue pair the host creates: SQ 1 completing on CQ 1. */
export const NVME_IO_QID = 1;
/** Where the host's data buffer starts, as an offset into the CMB. */
export const NVME_HOST_DATA = 0x1_0000;

/** Each queue's page in the CMB, by qid: SQs from page 0, CQs from page 8. */
const sqOffset = (qid: number): number => qid * 0x1000;
const cqOffset = (qid: number): number => (8 + qid) * 0x1000;

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * A driver of an NVMe function through the bus, as a CPU reaches it: BAR0
 * registers and doorbells by MMIO, and its queues and data in the
 * controller's own CMB (BAR2, CBA its bus address), so the controller needs
 * no IOMMU mapping. Commands are written and doorbells rung as separate
 * steps, so a test can look between them.
 */
export class NvmeBusHost {
  /** CMBMSC.CBA: BAR2's bus address, as Linux's nvme_map_cmb() sets it. */
  readonly cba: bigint;
  readonly #sqTails = new Map<number, number>();
  readonly #cqHeads = new Map<number, { head: number; phase: boolean }>();
  #nextCid = 1;

  constructor(
    readonly bus: PciBus,
    readonly bdf: string,
  ) {
    this.cba = BigInt(bus.getFunction(bdf).bars.find((bar) => bar.index === MEMORY_BAR)!.busAddress);
  }

  /** Turns the CMB on, programs the admin queues in it and sets CC.EN. */
  enable(): void {
    this.bus.mmioWrite(this.bdf, 0, NVME_REG_CMBMSC, 8, NVME_CMBMSC_CRE | NVME_CMBMSC_CMSE | this.cba);
    this.bus.mmioWrite(this.bdf, 0, NVME_REG_AQA, 4, ((NVME_HOST_ENTRIES - 1) << 16) | (NVME_HOST_ENTRIES - 1));
    this.bus.mmioWrite(this.bdf, 0, NVME_REG_ASQ, 8, this.cba + BigInt(sqOffset(0)));
    this.bus.mmioWrite(this.bdf, 0, NVME_REG_ACQ, 8, this.cba + BigInt(cqOffset(0)));
    this.bus.mmioWrite(this.bdf, 0, NVME_REG_CC, 4, NVME_CC_NVM_ENABLE);
    this.#track(0);
  }

  /** Creates CQ 1 and SQ 1 on it, each by an admin command run to completion. */
  async createIoQueues(): Promise<void> {
    const size = ((NVME_HOST_ENTRIES - 1) << 16) | NVME_IO_QID;
    await this.run(0, { opcode: NVME_ADMIN_CREATE_CQ, prp1: this.cba + BigInt(cqOffset(NVME_IO_QID)), cdw10: size, cdw11: 0x1 });
    await this.run(0, { opcode: NVME_ADMIN_CREATE_SQ, prp1: this.cba + BigInt(sqOffset(NVME_IO_QID)), cdw10: size, cdw11: (NVME_IO_QID << 16) | 0x1 });
    this.#track(NVME_IO_QID);
  }

  /** Writes a command at SQ `qid`'s tail, without ringing its doorbell. */
  write(qid: number, fields: Omit<NvmeCommandFields, 'commandId'>): void {
    const tail = this.#sqTails.get(qid)!;
    this.bus.bulkWrite(this.bdf, MEMORY_BAR, sqOffset(qid) + tail * NVME_SQE_SIZE, encodeNvmeCommand({ ...fields, commandId: this.#nextCid++ }));
    this.#sqTails.set(qid, (tail + 1) % NVME_HOST_ENTRIES);
  }

  /** The SQ tail doorbell, by MMIO. */
  ringTail(qid: number): void {
    this.bus.mmioWrite(this.bdf, 0, this.doorbellOffset(2 * qid), 4, this.#sqTails.get(qid)!);
  }

  /** BAR0 offset of doorbell slot `index` (CAP.DSTRD is 0). */
  doorbellOffset(index: number): number {
    return NVME_REG_DBS + 4 * index;
  }

  /** Lets the controller's deferred turns run. */
  async settle(): Promise<void> {
    for (let turn = 0; turn < 4; turn++) await nextTurn();
  }

  /** The new completions of CQ `qid` (phase tag); with `release`, its head doorbell rung past them by MMIO. */
  reap(qid: number, release = true): NvmeCompletion[] {
    const cq = this.#cqHeads.get(qid)!;
    const found: NvmeCompletion[] = [];
    for (;;) {
      const { data } = this.bus.bulkRead(this.bdf, MEMORY_BAR, cqOffset(qid) + cq.head * NVME_CQE_SIZE, NVME_CQE_SIZE);
      const completion = decodeNvmeCompletion(data);
      if (completion.phase !== cq.phase) break;
      found.push(completion);
      cq.head = (cq.head + 1) % NVME_HOST_ENTRIES;
      if (cq.head === 0) cq.phase = !cq.phase;
    }
    if (release && found.length > 0) this.bus.mmioWrite(this.bdf, 0, this.doorbellOffset(2 * qid + 1), 4, cq.head);
    return found;
  }

  /** Writes, rings, lets the controller run and reaps: the command's completion. */
  async run(qid: number, fields: Omit<NvmeCommandFields, 'commandId'>): Promise<NvmeCompletion> {
    this.write(qid, fields);
    this.ringTail(qid);
    await this.settle();
    const [completion] = this.reap(qid);
    if (completion === undefined) throw new Error(`no completion on CQ ${qid}`);
    return completion;
  }

  /** A data buffer's address in the CMB, `offset` bytes into the host's data area. */
  dataAddress(offset = 0): bigint {
    return this.cba + BigInt(NVME_HOST_DATA + offset);
  }

  #track(qid: number): void {
    this.#sqTails.set(qid, 0);
    this.#cqHeads.set(qid, { head: 0, phase: true });
  }
}
