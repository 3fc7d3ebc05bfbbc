import { errno } from '@p2p/errno';
import type { BarMemory } from '../bar-memory';
import { type NamespaceStore, storeSucceeded } from './namespace-store';
import { type NvmeAdminContext, runAdminCommand } from './nvme-admin';
import { NVME_MAX_IO_QUEUES } from './nvme-admin-queues';
import { ControllerMemoryBuffer } from './nvme-cmb';
import {
  decodeNvmeCommand,
  NVME_CMD_READ,
  NVME_CMD_WRITE,
  NVME_CMD_WRITE_ZEROES,
  NVME_SQE_SIZE,
  type NvmeCommand,
  type NvmeCommandResult,
  type NvmeDataDirection,
} from './nvme-command';
import { encodeNvmeCompletion, NVME_CQE_SIZE } from './nvme-completion';
import { NvmeFeatures } from './nvme-features';
import { checkNvmeIdentity, identifyController, namespaceGuid, NVME_MAX_NAMESPACES, type NvmeIdentity } from './nvme-identify';
import { type NvmeIoContext, runIoCommand, startingLba } from './nvme-io';
import { NvmeErrorLog, NvmeIoCounters } from './nvme-log-pages';
import { copyToViews, NvmeMemory, type NvmeMemoryPort } from './nvme-memory';
import { nvmePrpSegments } from './nvme-prp';
import type { NvmeDoorbellPath, NvmeEvent, NvmeObserver } from './nvme-events';
import { NvmeCompletionQueue, type NvmeQueueDepth, type NvmeQueueLocation, NvmeSubmissionQueue } from './nvme-queue';
import {
  NVME_ADMIN_QUEUE_BASE_MASK,
  NVME_AQA_WRITABLE,
  NVME_CAP,
  NVME_CC_ENABLE,
  NVME_CC_SHN_MASK,
  NVME_CC_WRITABLE,
  NVME_CMB_SUPPORT_ALL,
  NVME_CSTS_CFS,
  NVME_CSTS_RDY,
  NVME_CSTS_SHST_CMPLT,
  NVME_CSTS_SHST_MASK,
  NVME_CSTS_SHST_OCCUR,
  NVME_MPSMAX,
  NVME_MPSMIN,
  NVME_VS_1_4,
  nvmeAqaAcqs,
  nvmeAqaAsqs,
  nvmeCcAms,
  nvmeCcCss,
  nvmeCcMps,
  type NvmeCmbSupport,
} from './nvme-regs';
import { NVME_SC_ABORT_REQ, NVME_SC_SUCCESS } from './nvme-status';

/** How many commands one turn fetches from each submission queue before it moves to the next. */
export const NVME_COMMANDS_PER_TURN = 64;
/** MDTS: a command moves at most 2^7 pages of CAP.MPSMIN (4 KiB), 512 KiB, QEMU's default. */
export const NVME_MDTS = 7;
export const NVME_MAX_TRANSFER_BYTES = 2 ** NVME_MDTS * 4096;
const MIN_PAGE_SIZE = 2 ** (12 + NVME_MPSMIN);

export interface NvmeControllerOptions {
  /** Bus-master access as this function, and deferral to pci-emu's event loop. */
  readonly port: NvmeMemoryPort;
  /** The Controller Memory Buffer: the memory of BAR `cmbBar`, its size expressible in CMBSZ. */
  readonly cmb: BarMemory;
  /** CMBLOC.BIR. */
  readonly cmbBar: number;
  /** The uses of the CMB CMBSZ advertises and the controller honours; all of them by default. */
  readonly cmbSupport?: NvmeCmbSupport;
  /** NSID n is namespaces[n - 1]; at most NVME_MAX_NAMESPACES. */
  readonly namespaces: readonly NamespaceStore[];
  readonly identity: NvmeIdentity;
  readonly observer?: NvmeObserver;
}

/**
 * An NVMe controller (NVMe base specification 1.4) behind its registers:
 * CC/CSTS bring-up, reset and shutdown, the admin and I/O queues, and the
 * admin and NVM command sets, with data moved between the namespace stores
 * and memory the controller reaches through its port or its own CMB.
 *
 * A doorbell write only records the new tail or head: commands run later, in
 * turns the port defers to pci-emu's event loop, each fetching at most
 * NVME_COMMANDS_PER_TURN commands per submission queue, round robin, so
 * register accesses land between commands, never inside one. A command runs
 * to completion within its turn (the stores are synchronous), and is fetched
 * only while its completion queue has room: a full CQ holds its SQs back
 * until the host's head doorbell frees a slot. A reset drops every queue and
 * bumps a generation, so a turn already deferred finds itself stale.
 */
export class NvmeController {
  #cc = 0;
  #csts = 0;
  #aqa = 0;
  #asq = 0n;
  #acq = 0n;
  #pageSize = MIN_PAGE_SIZE;
  #shuttingDown = false;
  /** Bumped by every reset and fatal error: a turn or shutdown deferred before it does nothing. */
  #generation = 0;
  #scheduled = false;
  readonly #sqs = new Map<number, NvmeSubmissionQueue>();
  readonly #cqs = new Map<number, NvmeCompletionQueue>();
  readonly #cmb: ControllerMemoryBuffer;
  readonly #memory: NvmeMemory;
  readonly #features = new NvmeFeatures(NVME_MAX_IO_QUEUES);
  readonly #errors = new NvmeErrorLog();
  readonly #counters: NvmeIoCounters[];
  readonly #admin: NvmeAdminContext;
  readonly #io: NvmeIoContext;
  readonly #sqe = Buffer.alloc(NVME_SQE_SIZE);
  readonly #cqe = Buffer.alloc(NVME_CQE_SIZE);
  readonly #probe = Buffer.alloc(NVME_SQE_SIZE);

  constructor(private readonly options: NvmeControllerOptions) {
    checkNvmeIdentity(options.identity);
    if (options.namespaces.length > NVME_MAX_NAMESPACES) {
      throw errno('EINVAL', `${options.namespaces.length} namespaces: a controller has at most ${NVME_MAX_NAMESPACES}`);
    }
    this.#cmb = new ControllerMemoryBuffer(options.cmb, options.cmbBar, options.cmbSupport ?? NVME_CMB_SUPPORT_ALL);
    this.#memory = new NvmeMemory(options.port, this.#cmb);
    this.#counters = options.namespaces.map(() => new NvmeIoCounters());
    this.#admin = {
      sqs: this.#sqs,
      cqs: this.#cqs,
      features: this.#features,
      cmb: this.#cmb,
      cc: () => this.#cc,
      pageSize: () => this.#pageSize,
      commandIdAt: (sq, slot) => (this.#memory.read(sq.entryAddress(slot), this.#probe) ? this.#probe.readUInt16LE(2) : undefined),
      queueCreated: (queue) => this.#queueCreated(queue),
      queueDeleted: (queue) => this.#queueDeleted(queue),
      identity: options.identity,
      identifyController: identifyController(options.identity, { mdts: NVME_MDTS, namespaces: options.namespaces.length }),
      namespaces: options.namespaces,
      namespaceGuids: options.namespaces.map((_store, i) => namespaceGuid(options.identity, i + 1)),
      errors: this.#errors,
      counters: this.#counters,
      maxTransferBytes: NVME_MAX_TRANSFER_BYTES,
      transferToHost: (command, data) => this.#transferToHost(command, data),
    };
    this.#io = {
      namespaces: options.namespaces,
      counters: this.#counters,
      maxTransferBytes: NVME_MAX_TRANSFER_BYTES,
      volatileWriteCache: () => this.#features.volatileWriteCache,
      mapData: (command, length, direction) => this.#mapData(command, length, direction),
    };
  }

  /** CAP: fixed (nvme-regs.ts). */
  get cap(): bigint {
    return NVME_CAP;
  }

  get vs(): number {
    return NVME_VS_1_4;
  }

  get cc(): number {
    return this.#cc;
  }

  get csts(): number {
    return this.#csts;
  }

  get aqa(): number {
    return this.#aqa;
  }

  get asq(): bigint {
    return this.#asq;
  }

  get acq(): bigint {
    return this.#acq;
  }

  get cmbloc(): number {
    return this.#cmb.cmbloc;
  }

  get cmbsz(): number {
    return this.#cmb.cmbsz;
  }

  get cmbmsc(): bigint {
    return this.#cmb.cmbmsc;
  }

  get cmbsts(): number {
    return this.#cmb.cmbsts;
  }

  /** AQA, ASQ and ACQ are read when CC.EN goes 0 -> 1; a write while enabled takes effect at the next enable. */
  writeAqa(value: number): void {
    this.#aqa = (value & NVME_AQA_WRITABLE) >>> 0;
  }

  writeAsq(value: bigint): void {
    this.#asq = value & NVME_ADMIN_QUEUE_BASE_MASK;
  }

  writeAcq(value: bigint): void {
    this.#acq = value & NVME_ADMIN_QUEUE_BASE_MASK;
  }

  /** The whole 64-bit CMBMSC (nvme-cmb.ts); the register file merges the dword the host wrote. */
  writeCmbmsc(value: bigint): void {
    this.#cmb.writeCmbmsc(value);
  }

  /**
   * CC (NVMe 1.4 section 3.1.5): EN 0 -> 1 brings the controller up, EN
   * 1 -> 0 is a controller reset; SHN going non-zero starts a shutdown, SHN
   * going back to 0 clears CSTS.SHST (a reset is still needed to run
   * commands again).
   */
  writeCc(value: number): void {
    const was = this.#cc;
    this.#cc = (value & NVME_CC_WRITABLE) >>> 0;
    const enabled = (this.#cc & NVME_CC_ENABLE) !== 0;
    if (enabled && (was & NVME_CC_ENABLE) === 0) this.#enable();
    else if (!enabled && (was & NVME_CC_ENABLE) !== 0) this.#controllerReset('CC.EN cleared');
    const shutdown = (this.#cc & NVME_CC_SHN_MASK) !== 0;
    if (shutdown && (was & NVME_CC_SHN_MASK) === 0) this.#shutdown();
    else if (!shutdown && (was & NVME_CC_SHN_MASK) !== 0) this.#csts &= ~NVME_CSTS_SHST_MASK;
  }

  /**
   * A write of doorbell slot `index` (2y: SQ y tail, 2y + 1: CQ y head),
   * through `path`. Ignored while the controller is not ready, failed or
   * shut down, for a queue that does not exist, and for a value the queue
   * cannot take (no Asynchronous Event is reported).
   */
  doorbell(index: number, value: number, path: NvmeDoorbellPath = 'mmio'): void {
    const accepted = this.#doorbell(index, value & 0xffff);
    this.#emit({ kind: 'doorbell', index, value, path, accepted });
  }

  /** Every queue's depth as it stands: read between turns, so no fetched command is in flight. */
  queueDepths(): NvmeQueueDepth[] {
    const sqs = [...this.#sqs.values()].map((sq): NvmeQueueDepth => ({ queue: 'sq', qid: sq.qid, depth: sq.depth }));
    const cqs = [...this.#cqs.values()].map((cq): NvmeQueueDepth => ({ queue: 'cq', qid: cq.qid, depth: cq.depth }));
    return [...sqs, ...cqs];
  }

  /** A function-level reset (FLR, conventional reset, D3hot -> D0): a controller reset, and every register to its power-on value. */
  reset(): void {
    this.#controllerReset('function reset');
    this.#cc = 0;
    this.#aqa = 0;
    this.#asq = 0n;
    this.#acq = 0n;
    this.#pageSize = MIN_PAGE_SIZE;
    this.#cmb.reset();
  }

  #doorbell(index: number, value: number): boolean {
    if (!this.#processing() || !Number.isInteger(index) || index < 0) return false;
    const qid = index >>> 1;
    if (index % 2 === 0) {
      const sq = this.#sqs.get(qid);
      if (sq === undefined || !sq.ringTail(value)) return false;
    } else {
      const cq = this.#cqs.get(qid);
      if (cq === undefined || !cq.ringHead(value)) return false;
    }
    this.#schedule();
    return true;
  }

  #processing(): boolean {
    return (this.#csts & (NVME_CSTS_RDY | NVME_CSTS_CFS)) === NVME_CSTS_RDY && !this.#shuttingDown;
  }

  /**
   * CC.EN 0 -> 1: the admin queues from AQA/ASQ/ACQ, checked as QEMU's
   * nvme_start_ctrl() does. A configuration the controller cannot run (a
   * command set other than NVM, an arbitration other than round robin, MPS
   * outside CAP.MPSMIN..MPSMAX, an admin queue of 1 entry, a base not aligned
   * to the page, a queue in the CMB that CMBSZ does not allow) sets CSTS.CFS
   * instead of RDY. IOSQES/IOCQES are checked when I/O queues are created.
   */
  #enable(): void {
    const mps = nvmeCcMps(this.#cc);
    if (nvmeCcCss(this.#cc) !== 0) return this.#fatal('CC.CSS selects a command set other than NVM');
    if (nvmeCcAms(this.#cc) !== 0) return this.#fatal('CC.AMS selects an arbitration other than round robin');
    if (mps < NVME_MPSMIN || mps > NVME_MPSMAX) return this.#fatal(`CC.MPS ${mps} is outside CAP.MPSMIN..MPSMAX`);
    const pageSize = 2 ** (12 + mps);
    const sqEntries = nvmeAqaAsqs(this.#aqa) + 1;
    const cqEntries = nvmeAqaAcqs(this.#aqa) + 1;
    if (sqEntries < 2 || cqEntries < 2) return this.#fatal('AQA.ASQS or AQA.ACQS is 0: an admin queue needs 2 entries');
    if (this.#asq % BigInt(pageSize) !== 0n || this.#acq % BigInt(pageSize) !== 0n) return this.#fatal('ASQ or ACQ is not aligned to the CC.MPS page');
    const sqAt = this.#adminQueueLocation(this.#asq, sqEntries * NVME_SQE_SIZE, this.#cmb.support.submissionQueues);
    const cqAt = this.#adminQueueLocation(this.#acq, cqEntries * NVME_CQE_SIZE, this.#cmb.support.completionQueues);
    if (sqAt === undefined || cqAt === undefined) return this.#fatal('an admin queue is in the CMB where CMBSZ does not allow it');
    this.#pageSize = pageSize;
    const cq = new NvmeCompletionQueue(0, this.#acq, cqEntries, 0, true, cqAt);
    const sq = new NvmeSubmissionQueue(0, this.#asq, sqEntries, 0, sqAt);
    cq.submissionQueues.add(0);
    this.#cqs.set(0, cq);
    this.#sqs.set(0, sq);
    this.#queueCreated(cq);
    this.#queueCreated(sq);
    this.#csts = NVME_CSTS_RDY;
    this.#emit({ kind: 'state', state: 'ready', reason: 'CC.EN set' });
  }

  #adminQueueLocation(base: bigint, bytes: number, allowed: boolean): NvmeQueueLocation | undefined {
    const at = this.#cmb.locate(base, bytes);
    if (at === 'host') return 'host';
    return at !== 'partial' && allowed ? 'cmb' : undefined;
  }

  /**
   * A controller reset (NVMe 1.4 section 7.3.2): every queue deleted with
   * the commands still in it, features back to their defaults, CSTS
   * cleared. AQA, ASQ, ACQ and CMBMSC keep their values.
   */
  #controllerReset(reason: string): void {
    this.#generation++;
    this.#scheduled = false;
    for (const queue of [...this.#sqs.values(), ...this.#cqs.values()]) this.#queueDeleted(queue);
    this.#sqs.clear();
    this.#cqs.clear();
    this.#features.reset();
    this.#shuttingDown = false;
    this.#csts = 0;
    this.#emit({ kind: 'state', state: 'reset', reason });
  }

  /**
   * A shutdown notification (NVMe 1.4 section 7.6.2): the controller stops
   * fetching commands, reports SHST "occurring", then, once the write has
   * returned, flushes every namespace and reports "complete". A failing
   * flush counts as a media error; the shutdown still completes.
   */
  #shutdown(): void {
    this.#shuttingDown = true;
    this.#csts = (this.#csts & ~NVME_CSTS_SHST_MASK) | NVME_CSTS_SHST_OCCUR;
    const generation = this.#generation;
    this.options.port.defer(() => {
      if (generation !== this.#generation) return;
      this.options.namespaces.forEach((store, i) => {
        if (!storeSucceeded(() => store.flush())) this.#counters[i]!.mediaErrors++;
      });
      this.#csts = (this.#csts & ~NVME_CSTS_SHST_MASK) | NVME_CSTS_SHST_CMPLT;
      this.#emit({ kind: 'state', state: 'shutdown-complete', reason: 'CC.SHN set' });
    });
  }

  /** An error no completion queue can report (NVMe 1.4 section 9.5): CSTS.CFS, and the controller stops until reset. */
  #fatal(reason: string): void {
    this.#generation++;
    this.#scheduled = false;
    this.#csts |= NVME_CSTS_CFS;
    this.#emit({ kind: 'state', state: 'fatal', reason });
  }

  /** A submission queue has a command to fetch and room in its completion queue. */
  #runnable(sq: NvmeSubmissionQueue): boolean {
    const cq = this.#cqs.get(sq.cqid);
    return !sq.empty && cq !== undefined && !cq.full;
  }

  #schedule(): void {
    if (this.#scheduled || !this.#processing() || ![...this.#sqs.values()].some((sq) => this.#runnable(sq))) return;
    this.#scheduled = true;
    const generation = this.#generation;
    this.options.port.defer(() => {
      if (generation !== this.#generation) return;
      this.#scheduled = false;
      this.#turn(generation);
    });
  }

  #turn(generation: number): void {
    const queues = [...this.#sqs.values()].sort((a, b) => a.qid - b.qid);
    for (const sq of queues) {
      for (let fetched = 0; fetched < NVME_COMMANDS_PER_TURN; fetched++) {
        // A command (or an observer) may have reset the controller, failed it, or deleted this queue.
        if (generation !== this.#generation || !this.#processing()) return;
        if (this.#sqs.get(sq.qid) !== sq || !this.#runnable(sq)) break;
        this.#runOne(sq, this.#cqs.get(sq.cqid)!);
      }
    }
    this.#schedule();
  }

  /** Fetches the command at the SQ's head, runs it, posts its completion. */
  #runOne(sq: NvmeSubmissionQueue, cq: NvmeCompletionQueue): void {
    const slot = sq.head;
    if (!this.#memory.read(sq.entryAddress(slot), this.#sqe)) return this.#fatal(`SQ ${sq.qid} entry ${slot} could not be fetched`);
    sq.head = (slot + 1) % sq.entries;
    const command = decodeNvmeCommand(this.#sqe);
    const abortedId = sq.aborted.get(slot);
    sq.aborted.delete(slot);
    const generation = this.#generation;
    const outcome = abortedId === command.commandId ? { status: NVME_SC_ABORT_REQ, result: 0, bytes: 0 } : this.#execute(sq, command);
    // An observer of the command's queue events may have reset the controller: its queues are gone.
    if (generation !== this.#generation) return;
    const phase = cq.phase;
    encodeNvmeCompletion({ result: outcome.result, sqHead: sq.head, sqId: sq.qid, commandId: command.commandId, status: outcome.status, phase }, this.#cqe);
    if (!this.#memory.write(cq.tailAddress, this.#cqe)) return this.#fatal(`CQ ${cq.qid} entry ${cq.tail} could not be posted`);
    cq.advanceTail();
    if (outcome.status !== NVME_SC_SUCCESS) {
      const lba = sq.qid !== 0 && [NVME_CMD_READ, NVME_CMD_WRITE, NVME_CMD_WRITE_ZEROES].includes(command.opcode) ? startingLba(command) : 0n;
      this.#errors.record({ sqid: sq.qid, commandId: command.commandId, status: outcome.status, phase, nsid: command.nsid, lba });
    }
    this.#emit({ kind: 'command', qid: sq.qid, cid: command.commandId, opcode: command.opcode, status: outcome.status, bytes: outcome.bytes });
  }

  #execute(sq: NvmeSubmissionQueue, command: NvmeCommand): NvmeCommandResult {
    return sq.qid === 0 ? runAdminCommand(command, this.#admin) : runIoCommand(command, this.#io);
  }

  #mapData(command: NvmeCommand, length: number, direction: NvmeDataDirection): Buffer[] | number {
    const segments = nvmePrpSegments(command.prp1, command.prp2, length, this.#pageSize, this.#memory.readPrpList);
    return typeof segments === 'number' ? segments : this.#memory.mapData(segments, direction);
  }

  #transferToHost(command: NvmeCommand, data: Buffer): number {
    const views = this.#mapData(command, data.length, 'controller-to-host');
    if (typeof views === 'number') return views;
    copyToViews(data, views);
    return NVME_SC_SUCCESS;
  }

  #queueCreated(queue: NvmeSubmissionQueue | NvmeCompletionQueue): void {
    const kind = queue instanceof NvmeSubmissionQueue ? 'sq' : 'cq';
    this.#emit({ kind: 'queue-created', queue: kind, qid: queue.qid, entries: queue.entries, location: queue.location });
  }

  #queueDeleted(queue: NvmeSubmissionQueue | NvmeCompletionQueue): void {
    this.#emit({ kind: 'queue-deleted', queue: queue instanceof NvmeSubmissionQueue ? 'sq' : 'cq', qid: queue.qid });
  }

  #emit(event: NvmeEvent): void {
    this.options.observer?.(event);
  }
}
