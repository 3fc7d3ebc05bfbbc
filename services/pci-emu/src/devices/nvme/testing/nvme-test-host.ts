import { expect } from 'chai';
import type { DmaOutcome } from '../../dma-engine';
import { HeapBarMemory } from '../../heap-bar-memory';
import { HeapNamespaceStore } from '../namespace-heap';
import type { NamespaceStore } from '../namespace-store';
import { encodeNvmeCommand, NVME_SQE_SIZE, type NvmeCommandFields, NVME_ADMIN_CREATE_CQ, NVME_ADMIN_CREATE_SQ } from '../nvme-command';
import { decodeNvmeCompletion, NVME_CQE_SIZE, type NvmeCompletion } from '../nvme-completion';
import { NvmeController } from '../nvme-controller';
import type { NvmeEvent } from '../nvme-events';
import type { NvmeIdentity } from '../nvme-identify';
import type { NvmeMemoryPort } from '../nvme-memory';
import { NVME_CC_NVM_ENABLE, NVME_CMB_SUPPORT_ALL, NVME_CMBMSC_CMSE, NVME_CMBMSC_CRE, type NvmeCmbSupport } from '../nvme-regs';
import { NVME_SC_SUCCESS } from '../nvme-status';

/*
 * A host for the controller's unit tests: flat memory where IOVA = offset,
 * a bus that faults past its end (an IOVA with no IOMMU translation), the
 * CMB as heap BAR memory at CMB_BASE, and the driver side of the queues.
 */
export const HOST_MEMORY = 8 * 1024 * 1024;
/** An IOVA the IOMMU has no translation for. */
export const FAULT = BigInt(HOST_MEMORY) + 0x10_0000n;
export const PAGE = 4096;
export const CMB_SIZE = 1024 * 1024;
export const CMB_BAR = 2;
/** Where the host placed BAR2: the CBA it programs. */
export const CMB_BASE = 0xf000_0000n;
export const IDENTITY: NvmeIdentity = {
  vendorId: 0x144d,
  subsystemVendorId: 0x144d,
  serialNumber: 'EMU-NVME-0001',
  modelNumber: 'p2p-dmabuf emulated NVMe controller',
  firmwareRevision: '1.0',
};
export const ADMIN_ENTRIES = 32;

/** The bus side of the port: host memory by IOVA, and the deferred work pci-emu's loop would run. */
export class FakeBus implements NvmeMemoryPort {
  readonly memory = Buffer.alloc(HOST_MEMORY);
  /** Every access the controller made through the port, by kind. */
  readonly accesses = { read: 0, write: 0, map: 0 };
  #pending: Array<() => void> = [];

  read(address: bigint, target: Buffer): DmaOutcome {
    this.accesses.read++;
    const fault = this.#fault(address, target.length, 'IOMMU_FAULT_READ');
    if (fault !== undefined) return fault;
    this.memory.copy(target, 0, Number(address), Number(address) + target.length);
    return { error: 'NONE', bytes: target.length, faultIova: 0n };
  }

  write(address: bigint, source: Uint8Array): DmaOutcome {
    this.accesses.write++;
    const fault = this.#fault(address, source.length, 'IOMMU_FAULT_WRITE');
    if (fault !== undefined) return fault;
    this.memory.set(source, Number(address));
    return { error: 'NONE', bytes: source.length, faultIova: 0n };
  }

  map(address: bigint, length: number, access: 'read' | 'write'): Buffer[] | DmaOutcome {
    this.accesses.map++;
    const fault = this.#fault(address, length, access === 'read' ? 'IOMMU_FAULT_READ' : 'IOMMU_FAULT_WRITE');
    return fault ?? [this.memory.subarray(Number(address), Number(address) + length)];
  }

  defer(work: () => void): void {
    this.#pending.push(work);
  }

  get pending(): number {
    return this.#pending.length;
  }

  /** Runs the oldest deferred work item, as one pass of pci-emu's event loop. */
  runOne(): void {
    this.#pending.shift()?.();
  }

  /** Runs deferred work until none is left; returns how many items ran. */
  runAll(): number {
    let ran = 0;
    while (this.#pending.length > 0) {
      this.runOne();
      expect(++ran, 'deferred work keeps rescheduling itself').to.be.below(10_000);
    }
    return ran;
  }

  #fault(address: bigint, length: number, error: DmaOutcome['error']): DmaOutcome | undefined {
    return address + BigInt(length) > BigInt(HOST_MEMORY) ? { error, bytes: 0, faultIova: address } : undefined;
  }
}

/** The driver's view of one queue. */
interface HostQueue {
  readonly base: bigint;
  readonly entries: number;
  /** SQ: the next slot to fill; CQ: the next slot to read. */
  index: number;
  phase: boolean;
}

export interface TestHostOptions {
  readonly namespaces?: NamespaceStore[];
  readonly cmbSupport?: NvmeCmbSupport;
}

/** A controller, the fake bus and CMB behind it, and a driver: the whole device as a test sees it. */
export class NvmeTestHost {
  readonly bus = new FakeBus();
  readonly cmb = new HeapBarMemory(CMB_SIZE);
  readonly namespaces: NamespaceStore[];
  readonly events: NvmeEvent[] = [];
  readonly controller: NvmeController;
  readonly #sqs = new Map<number, HostQueue & { readonly cqid: number }>();
  readonly #cqs = new Map<number, HostQueue>();
  #nextHost = BigInt(PAGE);
  #nextCmb = 0n;
  #nextCid = 1;

  constructor(options: TestHostOptions = {}) {
    this.namespaces = options.namespaces ?? [new HeapNamespaceStore(2048, 512)];
    this.controller = new NvmeController({
      port: this.bus,
      cmb: this.cmb,
      cmbBar: CMB_BAR,
      cmbSupport: options.cmbSupport ?? NVME_CMB_SUPPORT_ALL,
      namespaces: this.namespaces,
      identity: IDENTITY,
      observer: (event) => this.events.push(event),
    });
  }

  /** The first namespace, as the heap store the tests build by default. */
  get ns1(): HeapNamespaceStore {
    return this.namespaces[0] as HeapNamespaceStore;
  }

  /** Page-aligned host memory, never reused. */
  alloc(bytes: number): bigint {
    const address = this.#nextHost;
    this.#nextHost += BigInt(Math.ceil(bytes / PAGE) * PAGE);
    expect(Number(this.#nextHost)).to.be.at.most(HOST_MEMORY, 'test host memory exhausted');
    return address;
  }

  /** Page-aligned CMB memory, by the address the host uses for it (CBA + offset). */
  allocCmb(bytes: number): bigint {
    const address = CMB_BASE + this.#nextCmb;
    this.#nextCmb += BigInt(Math.ceil(bytes / PAGE) * PAGE);
    return address;
  }

  /** Writes at a host address: host memory, or the CMB at CMB_BASE. */
  poke(address: bigint, data: Uint8Array): void {
    if (address >= CMB_BASE) this.cmb.write(Number(address - CMB_BASE), data);
    else this.bus.memory.set(data, Number(address));
  }

  peek(address: bigint, length: number): Buffer {
    if (address >= CMB_BASE) return this.cmb.read(Number(address - CMB_BASE), length);
    return Buffer.from(this.bus.memory.subarray(Number(address), Number(address) + length));
  }

  /**
   * PRP1/PRP2 for `length` bytes of contiguous memory at `address`, as
   * Linux's nvme_pci_setup_prps() builds them: PRP2 the second page, or a
   * PRP list (at `list`, fresh host memory by default) of every page after
   * the first.
   */
  prps(address: bigint, length: number, list?: bigint): { prp1: bigint; prp2: bigint } {
    const first = PAGE - Number(address % BigInt(PAGE));
    if (length <= first) return { prp1: address, prp2: 0n };
    const pages: bigint[] = [];
    for (let at = address + BigInt(first); at < address + BigInt(length); at += BigInt(PAGE)) pages.push(at);
    if (pages.length === 1) return { prp1: address, prp2: pages[0]! };
    const where = list ?? this.alloc(pages.length * 8);
    const entries = Buffer.alloc(pages.length * 8);
    pages.forEach((page, i) => entries.writeBigUInt64LE(page, i * 8));
    this.poke(where, entries);
    return { prp1: address, prp2: where };
  }

  /** Turns on the CMB's registers and its memory space at CMB_BASE, as Linux's nvme_map_cmb() does. */
  enableCmb(): void {
    this.controller.writeCmbmsc(NVME_CMBMSC_CRE | NVME_CMBMSC_CMSE | CMB_BASE);
  }

  /** Programs the admin queues and sets CC.EN; returns CSTS. */
  enable(options: { asq?: bigint; acq?: bigint; entries?: number; cc?: number } = {}): number {
    const entries = options.entries ?? ADMIN_ENTRIES;
    const asq = options.asq ?? this.alloc(entries * NVME_SQE_SIZE);
    const acq = options.acq ?? this.alloc(entries * NVME_CQE_SIZE);
    this.controller.writeAqa(((entries - 1) << 16) | (entries - 1));
    this.controller.writeAsq(asq);
    this.controller.writeAcq(acq);
    this.controller.writeCc(options.cc ?? NVME_CC_NVM_ENABLE);
    this.#sqs.set(0, { base: asq, entries, index: 0, phase: true, cqid: 0 });
    this.#cqs.set(0, { base: acq, entries, index: 0, phase: true });
    return this.controller.csts;
  }

  /** Forgets the driver's queues, as a driver does when it resets the controller. */
  forgetQueues(): void {
    this.#sqs.clear();
    this.#cqs.clear();
  }

  /** Writes a command at the SQ's tail and rings its doorbell; nothing runs until the bus does. Returns the command id. */
  submit(qid: number, fields: Omit<NvmeCommandFields, 'commandId'> & { commandId?: number }): number {
    const sq = this.#sqs.get(qid);
    if (sq === undefined) throw new Error(`the test host has no SQ ${qid}`);
    const commandId = fields.commandId ?? this.#nextCid++ & 0xffff;
    this.poke(sq.base + BigInt(sq.index * NVME_SQE_SIZE), encodeNvmeCommand({ ...fields, commandId }));
    sq.index = (sq.index + 1) % sq.entries;
    this.controller.doorbell(2 * qid, sq.index);
    return commandId;
  }

  /** Reads the new completions of CQ `cqid` (phase tag), then rings its head doorbell. */
  reap(cqid: number): NvmeCompletion[] {
    const cq = this.#cqs.get(cqid);
    if (cq === undefined) throw new Error(`the test host has no CQ ${cqid}`);
    const found: NvmeCompletion[] = [];
    for (;;) {
      const completion = decodeNvmeCompletion(this.peek(cq.base + BigInt(cq.index * NVME_CQE_SIZE), NVME_CQE_SIZE));
      if (completion.phase !== cq.phase) break;
      found.push(completion);
      cq.index = (cq.index + 1) % cq.entries;
      if (cq.index === 0) cq.phase = !cq.phase;
    }
    if (found.length > 0) this.controller.doorbell(2 * cqid + 1, cq.index);
    return found;
  }

  /** Submits one command to SQ `qid`, lets the controller run, and returns its completion. */
  run(qid: number, fields: Omit<NvmeCommandFields, 'commandId'>): NvmeCompletion {
    const commandId = this.submit(qid, fields);
    this.bus.runAll();
    const completions = this.reap(this.#sqs.get(qid)!.cqid);
    expect(completions.map((c) => c.commandId)).to.deep.equal([commandId], 'one completion for the command');
    return completions[0]!;
  }

  admin(fields: Omit<NvmeCommandFields, 'commandId'>): NvmeCompletion {
    return this.run(0, fields);
  }

  /** Status of an admin command, asserting nothing else. */
  adminStatus(fields: Omit<NvmeCommandFields, 'commandId'>): number {
    return this.admin(fields).status;
  }

  /** Creates I/O CQ `qid` then SQ `qid` completing into it, at the given bases or fresh host memory. */
  createQueuePair(qid: number, entries: number, where: { sq?: bigint; cq?: bigint; cqEntries?: number } = {}): void {
    const cqEntries = where.cqEntries ?? entries;
    const cq = where.cq ?? this.alloc(cqEntries * NVME_CQE_SIZE);
    const sq = where.sq ?? this.alloc(entries * NVME_SQE_SIZE);
    expect(this.adminStatus({ opcode: NVME_ADMIN_CREATE_CQ, prp1: cq, cdw10: ((cqEntries - 1) << 16) | qid, cdw11: 1 })).to.equal(NVME_SC_SUCCESS);
    this.#cqs.set(qid, { base: cq, entries: cqEntries, index: 0, phase: true });
    expect(this.adminStatus({ opcode: NVME_ADMIN_CREATE_SQ, prp1: sq, cdw10: ((entries - 1) << 16) | qid, cdw11: (qid << 16) | 1 })).to.equal(NVME_SC_SUCCESS);
    this.#sqs.set(qid, { base: sq, entries, index: 0, phase: true, cqid: qid });
  }

  /** A second SQ completing into an existing CQ. */
  addSubmissionQueue(qid: number, cqid: number, entries: number): void {
    const sq = this.alloc(entries * NVME_SQE_SIZE);
    expect(this.adminStatus({ opcode: NVME_ADMIN_CREATE_SQ, prp1: sq, cdw10: ((entries - 1) << 16) | qid, cdw11: (cqid << 16) | 1 })).to.equal(NVME_SC_SUCCESS);
    this.#sqs.set(qid, { base: sq, entries, index: 0, phase: true, cqid });
  }

  /** A controller enabled with one I/O queue pair (QID 1, `entries` deep). */
  static ready(options: TestHostOptions & { entries?: number } = {}): NvmeTestHost {
    const host = new NvmeTestHost(options);
    host.enable();
    host.createQueuePair(1, options.entries ?? 64);
    return host;
  }
}
