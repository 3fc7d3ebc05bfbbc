import {
  decodeNvmeCompletion,
  encodeNvmeCommand,
  NVME_ADMIN_CREATE_CQ,
  NVME_ADMIN_CREATE_SQ,
  NVME_ADMIN_IDENTIFY,
  NVME_ADMIN_SET_FEATURES,
  NVME_CC_NVM_ENABLE,
  NVME_CC_SHN_NORMAL,
  NVME_CMBMSC_CMSE,
  NVME_CMBMSC_CRE,
  NVME_CMBSTS_CBAI,
  NVME_CMD_FLUSH,
  NVME_CMD_READ,
  NVME_CMD_WRITE,
  NVME_CQE_SIZE,
  NVME_CSTS_CFS,
  NVME_CSTS_RDY,
  NVME_CSTS_SHST_CMPLT,
  NVME_CSTS_SHST_MASK,
  NVME_FEAT_NUM_QUEUES,
  NVME_ID_CNS_CTRL,
  NVME_ID_CNS_NS,
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
  NVME_REG_DBS,
  NVME_SC_SUCCESS,
  NVME_SQE_SIZE,
  type NvmeCommandFields,
  type NvmeCompletion,
} from '@p2p/pci-emu';

/*
 * A user-space NVMe driver, as SPDK's nvme library is one: it owns the
 * controller through ports (its BAR0 registers, and memory it shares with
 * the device), brings the controller up, and runs admin and I/O queues by
 * writing submission entries into memory, ringing doorbells and polling
 * completion entries for their phase tag. The chaos workload, the examples,
 * tests and benches drive nvme0 and nvme1 with it through vfio-pci
 * (vfio-dma-space.ts).
 */

export const NVME_PAGE = 4096;

/** The controller's BAR0, as the driver reaches it (vfio-pci's region, here). */
export interface NvmeRegisterPort {
  read32(offset: number): Promise<number>;
  read64(offset: number): Promise<bigint>;
  write32(offset: number, value: number): Promise<void>;
  write64(offset: number, value: bigint): Promise<void>;
}

/**
 * Memory the CPU and the device share: the CPU's view, and the address the
 * device uses for it. Memory the CPU maps is coherent and has no sync
 * methods. Memory it reaches through a copy (a process that cannot map the
 * segments, as from outside the services' tmpfs) has them, as the DMA API
 * has for non-coherent memory: `syncForDevice` before the device reads what
 * the CPU wrote in the view (dma_sync_single_for_device()), `syncForCpu`
 * before the CPU reads what the device wrote (dma_sync_single_for_cpu()).
 */
export interface DmaBuffer {
  readonly address: bigint;
  readonly view: Buffer;
  syncForDevice?(offset: number, length: number): Promise<void>;
  syncForCpu?(offset: number, length: number): Promise<void>;
}

/** dma_sync_single_for_device() of `buffer`'s bytes [offset, offset + length): nothing for coherent memory. */
export async function syncForDevice(buffer: DmaBuffer, offset = 0, length = buffer.view.length - offset): Promise<void> {
  await buffer.syncForDevice?.(offset, length);
}

/** dma_sync_single_for_cpu() of `buffer`'s bytes [offset, offset + length): nothing for coherent memory. */
export async function syncForCpu(buffer: DmaBuffer, offset = 0, length = buffer.view.length - offset): Promise<void> {
  await buffer.syncForCpu?.(offset, length);
}

/** Page-aligned, zeroed memory the device can reach (an IOVA through the IOMMU). */
export interface DmaAllocator {
  allocate(bytes: number): Promise<DmaBuffer>;
}

export class NvmeStatusError extends Error {
  constructor(
    readonly what: string,
    readonly completion: NvmeCompletion,
  ) {
    super(`${what}: NVMe status 0x${completion.status.toString(16)} (SCT ${(completion.status >> 8) & 0x7}, SC 0x${(completion.status & 0xff).toString(16)})`);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Polls `check` until it returns a value, giving up after `timeoutMs`. */
async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`NVMe: ${what} did not happen within ${timeoutMs} ms`);
    await sleep(1);
  }
}

/**
 * One submission queue and its completion queue. Commands may be in flight
 * together; completions are matched by command id. The SQ tail doorbell and
 * the CQ head doorbell are written through `ring`: MMIO by default, or
 * whatever the caller chooses (an RDMA WRITE, in the seed's flow).
 */
export class NvmeQueuePair {
  #tail = 0;
  #cqHead = 0;
  #phase = true;
  /** How far the controller has consumed the SQ, from the last completion's SQ Head. */
  #sqHead = 0;
  #nextCid = 0;
  readonly #waiting = new Map<number, { resolve: (completion: NvmeCompletion) => void; reject: (error: Error) => void }>();
  #polling = false;
  /** The last entry synced and rung, for memory reached through a copy. */
  #published: Promise<void> = Promise.resolve();

  constructor(
    readonly qid: number,
    readonly entries: number,
    readonly sq: DmaBuffer,
    readonly cq: DmaBuffer,
    private readonly ring: (doorbell: number, value: number) => Promise<void>,
  ) {}

  /** Submits one command and resolves with its completion; rejects with NvmeStatusError unless it succeeded. */
  async submit(fields: Omit<NvmeCommandFields, 'commandId'>, what = `opcode 0x${fields.opcode.toString(16)} on queue ${this.qid}`): Promise<NvmeCompletion> {
    const completion = await this.submitRaw(fields);
    if (completion.status !== NVME_SC_SUCCESS) throw new NvmeStatusError(what, completion);
    return completion;
  }

  /** Submits one command and resolves with its completion, whatever its status. */
  async submitRaw(fields: Omit<NvmeCommandFields, 'commandId'>): Promise<NvmeCompletion> {
    while ((this.#tail + 1) % this.entries === this.#sqHead) await nextTurn();
    const commandId = this.#allocateCid();
    const slot = this.#tail * NVME_SQE_SIZE;
    encodeNvmeCommand({ ...fields, commandId }, this.sq.view, slot);
    this.#tail = (this.#tail + 1) % this.entries;
    const done = new Promise<NvmeCompletion>((resolve, reject) => this.#waiting.set(commandId, { resolve, reject }));
    // An earlier command's poller may abandon this one while its doorbell write is still out; if that write then fails, nobody awaits `done`.
    done.catch(() => undefined);
    try {
      await this.#publish(slot, this.#tail);
    } catch (error) {
      this.#waiting.delete(commandId);
      throw error;
    }
    // A CQ head doorbell that fails (the controller went away) fails every outstanding command.
    this.#poll().catch((error: unknown) => this.abandon(error instanceof Error ? error : new Error(String(error))));
    return done;
  }

  /**
   * Makes the entry at `slot` visible to the controller, then rings the SQ
   * tail doorbell with `tail`. Memory the CPU maps is there once written;
   * memory reached through a copy is synced first, and the doorbells are
   * rung in the order of the entries, so that no tail is rung before an
   * entry below it is synced.
   */
  #publish(slot: number, tail: number): Promise<void> {
    if (this.sq.syncForDevice === undefined) return this.ring(2 * this.qid, tail);
    const turn = this.#published.then(async () => {
      await syncForDevice(this.sq, slot, NVME_SQE_SIZE);
      await this.ring(2 * this.qid, tail);
    });
    this.#published = turn.catch(() => undefined);
    return turn;
  }

  /** Commands submitted and not completed yet. */
  get outstanding(): number {
    return this.#waiting.size;
  }

  /**
   * nvme_cancel_request() once the controller is gone (reset, or its
   * process died): every outstanding command fails with `error`, and
   * polling stops.
   */
  abandon(error: Error): void {
    const waiting = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const { reject } of waiting) reject(error);
  }

  #allocateCid(): number {
    for (;;) {
      const cid = this.#nextCid;
      this.#nextCid = (this.#nextCid + 1) & 0xffff;
      if (!this.#waiting.has(cid)) return cid;
    }
  }

  /** Reaps completions while commands are outstanding, then writes the CQ head doorbell once per batch. */
  async #poll(): Promise<void> {
    if (this.#polling) return;
    this.#polling = true;
    try {
      let idle = 0;
      while (this.#waiting.size > 0) {
        let reaped = 0;
        await syncForCpu(this.cq);
        for (;;) {
          const entry = decodeNvmeCompletion(this.cq.view, this.#cqHead * NVME_CQE_SIZE);
          if (entry.phase !== this.#phase) break;
          this.#cqHead = (this.#cqHead + 1) % this.entries;
          if (this.#cqHead === 0) this.#phase = !this.#phase;
          this.#sqHead = entry.sqHead;
          this.#waiting.get(entry.commandId)?.resolve(entry);
          this.#waiting.delete(entry.commandId);
          reaped++;
        }
        if (reaped > 0) {
          idle = 0;
          await this.ring(2 * this.qid + 1, this.#cqHead);
        } else if (++idle < 64) {
          await nextTurn();
        } else {
          await sleep(1);
        }
      }
    } finally {
      this.#polling = false;
    }
  }
}

export interface NvmeNamespaceInfo {
  readonly nsid: number;
  /** NSZE. */
  readonly blocks: bigint;
  readonly blockSize: number;
}

export interface NvmeDriverOptions {
  /** Admin queue entries; default 32. */
  readonly adminEntries?: number;
  /** How long a handshake may take; default 5 s. */
  readonly timeoutMs?: number;
}

/** A controller brought up and owned by this driver. */
export class NvmeDriver {
  #prpLists: DmaBuffer[] = [];

  private constructor(
    readonly registers: NvmeRegisterPort,
    readonly memory: DmaAllocator,
    readonly admin: NvmeQueuePair,
    /** CAP.DSTRD: doorbells are 4 << DSTRD bytes apart. */
    readonly doorbellStride: number,
    private readonly timeoutMs: number,
  ) {}

  /** The BAR0 offset of doorbell `index` (2y: SQ y tail, 2y + 1: CQ y head). */
  doorbellOffset(index: number): number {
    return NVME_REG_DBS + index * (4 << this.doorbellStride);
  }

  /**
   * nvme_pci_enable() and nvme_pci_configure_admin_queue(): disable and wait
   * for CSTS.RDY to clear, place the admin queues, enable with the NVM
   * command set, 4 KiB pages and 64/16-byte I/O entries, and wait for RDY.
   */
  static async start(registers: NvmeRegisterPort, memory: DmaAllocator, options: NvmeDriverOptions = {}): Promise<NvmeDriver> {
    const entries = options.adminEntries ?? 32;
    const timeoutMs = options.timeoutMs ?? 5000;
    const cap = await registers.read64(NVME_REG_CAP);
    const stride = Number((cap >> 32n) & 0xfn);
    if ((await registers.read32(NVME_REG_CC)) !== 0) await registers.write32(NVME_REG_CC, 0);
    await waitFor('CSTS.RDY to clear', timeoutMs, async () => (((await registers.read32(NVME_REG_CSTS)) & NVME_CSTS_RDY) === 0 ? true : undefined));
    const sq = await memory.allocate(entries * NVME_SQE_SIZE);
    const cq = await memory.allocate(entries * NVME_CQE_SIZE);
    await registers.write32(NVME_REG_AQA, ((entries - 1) << 16) | (entries - 1));
    await registers.write64(NVME_REG_ASQ, sq.address);
    await registers.write64(NVME_REG_ACQ, cq.address);
    await registers.write32(NVME_REG_CC, NVME_CC_NVM_ENABLE);
    await waitFor('CSTS.RDY to set', timeoutMs, async () => {
      const csts = await registers.read32(NVME_REG_CSTS);
      if ((csts & NVME_CSTS_CFS) !== 0) throw new Error(`NVMe: controller fatal status while enabling (CSTS 0x${csts.toString(16)})`);
      return (csts & NVME_CSTS_RDY) !== 0 ? true : undefined;
    });
    let driver: NvmeDriver | undefined;
    const admin = new NvmeQueuePair(0, entries, sq, cq, (index, value) => registers.write32(driver!.doorbellOffset(index), value));
    driver = new NvmeDriver(registers, memory, admin, stride, timeoutMs);
    return driver;
  }

  /** Identify Controller: the 4 KiB data structure. */
  async identifyController(): Promise<Buffer> {
    const data = await this.memory.allocate(NVME_PAGE);
    await this.admin.submit({ opcode: NVME_ADMIN_IDENTIFY, prp1: data.address, cdw10: NVME_ID_CNS_CTRL }, 'Identify Controller');
    await syncForCpu(data);
    return Buffer.from(data.view.subarray(0, NVME_PAGE));
  }

  /** Identify Namespace: NSZE and the LBA format in use (FLBAS -> LBAF[n].LBADS). */
  async identifyNamespace(nsid: number): Promise<NvmeNamespaceInfo> {
    const data = await this.memory.allocate(NVME_PAGE);
    await this.admin.submit({ opcode: NVME_ADMIN_IDENTIFY, nsid, prp1: data.address, cdw10: NVME_ID_CNS_NS }, `Identify Namespace ${nsid}`);
    await syncForCpu(data);
    const format = data.view[26]! & 0xf;
    const lbads = (data.view.readUInt32LE(128 + 4 * format) >>> 16) & 0xff;
    return { nsid, blocks: data.view.readBigUInt64LE(0), blockSize: 2 ** lbads };
  }

  /** Set Features, Number of Queues: returns the I/O SQs and CQs granted. */
  async setNumberOfQueues(count: number): Promise<{ sqs: number; cqs: number }> {
    const { result } = await this.admin.submit({ opcode: NVME_ADMIN_SET_FEATURES, cdw10: NVME_FEAT_NUM_QUEUES, cdw11: ((count - 1) << 16) | (count - 1) }, 'Set Features (Number of Queues)');
    return { sqs: (result & 0xffff) + 1, cqs: (result >>> 16) + 1 };
  }

  /**
   * Create I/O Completion Queue then Submission Queue `qid` (physically
   * contiguous, as CAP.CQR requires; no interrupts: the driver polls), at
   * device addresses the caller chose: host memory, or the controller's
   * CMB. A CQ must be zeroed before it is created (its phase tags read 0).
   */
  async createIoQueues(qid: number, entries: number, sqAddress: bigint, cqAddress: bigint): Promise<void> {
    const size = ((entries - 1) << 16) | qid;
    await this.admin.submit({ opcode: NVME_ADMIN_CREATE_CQ, prp1: cqAddress, cdw10: size, cdw11: 1 /* PC */ }, `Create I/O CQ ${qid}`);
    await this.admin.submit({ opcode: NVME_ADMIN_CREATE_SQ, prp1: sqAddress, cdw10: size, cdw11: (qid << 16) | 1 /* CQID, PC */ }, `Create I/O SQ ${qid}`);
  }

  /** An I/O queue pair in host memory the driver allocates, polled by this driver; doorbells by MMIO. */
  async createIoQueuePair(qid: number, entries: number): Promise<NvmeQueuePair> {
    const cq = await this.memory.allocate(entries * NVME_CQE_SIZE);
    const sq = await this.memory.allocate(entries * NVME_SQE_SIZE);
    await this.createIoQueues(qid, entries, sq.address, cq.address);
    return new NvmeQueuePair(qid, entries, sq, cq, (index, value) => this.registers.write32(this.doorbellOffset(index), value));
  }

  /** Read or Write of `blocks` blocks at `lba` of namespace `nsid` to or from `data`, on `queue`. */
  async io(queue: NvmeQueuePair, opcode: typeof NVME_CMD_READ | typeof NVME_CMD_WRITE, nsid: number, lba: bigint, blocks: number, data: bigint, blockSize: number): Promise<NvmeCompletion> {
    const length = blocks * blockSize;
    const { prp1, prp2, list } = await this.#prps(data, length);
    try {
      return await queue.submit(
        { opcode, nsid, prp1, prp2, cdw10: Number(lba & 0xffff_ffffn), cdw11: Number(lba >> 32n), cdw12: blocks - 1 },
        `${opcode === NVME_CMD_READ ? 'Read' : 'Write'} of ${blocks} blocks at LBA ${lba} of namespace ${nsid}`,
      );
    } finally {
      if (list !== undefined) this.#prpLists.push(list);
    }
  }

  /** Flush of namespace `nsid` (0xffffffff: all). */
  flush(queue: NvmeQueuePair, nsid: number): Promise<NvmeCompletion> {
    return queue.submit({ opcode: NVME_CMD_FLUSH, nsid }, `Flush of namespace ${nsid}`);
  }

  /**
   * PRP1 and PRP2 for `length` bytes at `data` (contiguous to the device):
   * PRP2 is the second page, or a PRP list when the transfer spans more than
   * two pages. A list belongs to one command until io() hands it back to
   * the pool.
   */
  async #prps(data: bigint, length: number): Promise<{ prp1: bigint; prp2: bigint; list?: DmaBuffer }> {
    const first = NVME_PAGE - Number(data % BigInt(NVME_PAGE));
    if (length <= first) return { prp1: data, prp2: 0n };
    const second = data + BigInt(first);
    const rest = Math.ceil((length - first) / NVME_PAGE);
    if (rest === 1) return { prp1: data, prp2: second };
    if (rest > NVME_PAGE / 8) throw new Error(`NVMe: ${length} bytes need more than one PRP list page`);
    const list = this.#prpLists.pop() ?? (await this.memory.allocate(NVME_PAGE));
    for (let i = 0; i < rest; i++) list.view.writeBigUInt64LE(second + BigInt(i * NVME_PAGE), 8 * i);
    await syncForDevice(list, 0, 8 * rest);
    return { prp1: data, prp2: list.address, list };
  }

  /**
   * nvme_map_cmb(): CMBMSC.CRE to read CMBLOC/CMBSZ, then CRE | CMSE with
   * the CMB's bus address as the controller base address. Returns the CMB's
   * size and the address the controller knows it by.
   */
  async enableCmb(busAddress: bigint): Promise<{ size: number; address: bigint; cmbsz: number; cmbloc: number }> {
    await this.registers.write64(NVME_REG_CMBMSC, NVME_CMBMSC_CRE);
    const cmbsz = await this.registers.read32(NVME_REG_CMBSZ);
    const cmbloc = await this.registers.read32(NVME_REG_CMBLOC);
    const unit = 2 ** (12 + 4 * ((cmbsz >>> 8) & 0xf));
    const size = unit * (cmbsz >>> 12);
    const offset = BigInt(unit) * BigInt(cmbloc >>> 12);
    const address = busAddress + offset;
    await this.registers.write64(NVME_REG_CMBMSC, NVME_CMBMSC_CRE | NVME_CMBMSC_CMSE | address);
    if (((await this.registers.read32(NVME_REG_CMBSTS)) & NVME_CMBSTS_CBAI) !== 0) throw new Error(`NVMe: the controller refused 0x${address.toString(16)} as the CMB's base address`);
    return { size, address, cmbsz, cmbloc };
  }

  /** nvme_disable_ctrl(shutdown = true): CC.SHN normal, wait for CSTS.SHST complete. */
  async shutdown(): Promise<void> {
    const cc = await this.registers.read32(NVME_REG_CC);
    await this.registers.write32(NVME_REG_CC, cc | NVME_CC_SHN_NORMAL);
    await waitFor('CSTS.SHST complete', this.timeoutMs, async () =>
      ((await this.registers.read32(NVME_REG_CSTS)) & NVME_CSTS_SHST_MASK) === NVME_CSTS_SHST_CMPLT ? true : undefined,
    );
  }
}
