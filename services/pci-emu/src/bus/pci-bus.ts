import { errno } from '@p2p/errno';
import { PCI_COMMAND, PCI_COMMAND_MEMORY } from '../config-space/pci-regs';
import type { BarMemory, BarMemoryFactory } from '../devices/bar-memory';
import { createDevice } from '../devices/create-device';
import type { DmaPort } from '../devices/dma-engine';
import { HeapNamespaceStore } from '../devices/nvme/namespace-heap';
import type { NamespaceStore } from '../devices/nvme/namespace-store';
import type { NvmeEvent } from '../devices/nvme/nvme-events';
import type { NvmeQueueDepth } from '../devices/nvme/nvme-queue';
import { type HostMemory, NO_HOST_MEMORY } from '../iommu/host-memory';
import { Iommu } from '../iommu/iommu';
import { canonicalBdf } from '../topology/bdf';
import { p2pDistance, type P2pDistance } from '../topology/p2p-distance';
import type { Topology } from '../topology/topology';
import { memoryOffsetOf, memoryRangeOf } from './bar-memory-range';
import { enumerateBarAddresses, isMultiFunction } from './enumerate';
import { type MmioAccessCount, MmioTally } from './mmio-tally';
import { type DmaPlatform, dmaMap, dmaRead, dmaTransfer, dmaWrite } from './dma-transfer';
import type { FunctionInfo } from './function-info';
import { PciEventHub, type PciEventBody, type PciEventFilter, type PciEventListener, type PowerState } from './pci-events';
import { PciFunction, type ConfigWriteMode } from './pci-function';

export interface MmioReadResult<V extends number | bigint = number | bigint> {
  readonly value: V;
  /** False when the function did not claim the access (decode off or not D0): value is all ones. */
  readonly decoded: boolean;
}

export interface BulkReadResult {
  readonly data: Buffer;
  /** False when not claimed: data is all 0xff. */
  readonly decoded: boolean;
}

export interface WriteResult {
  /** False when the write was dropped because the function did not claim it. */
  readonly decoded: boolean;
}

/** Where a range of BAR offsets lives: `length` bytes from `offset` of the BAR memory named `memoryName`. */
export interface BarMemorySpan {
  readonly memoryName: string;
  readonly offset: number;
  readonly length: number;
}

/** Whose memory a BarMemory is: BAR `bar` of `bdf`, its byte 0 at BAR offset `base` (0, or a register BAR's window). */
interface MemoryOwner {
  readonly bdf: string;
  readonly bar: number;
  readonly base: number;
}

/** "0000-03-00.0-bar2": unique per BAR and usable as a file name. */
function memoryName(bdf: string, index: number): string {
  return `${bdf.replace(/:/g, '-')}-bar${index}`;
}

export interface PciBusOptions {
  /**
   * Set PCI_COMMAND_MEMORY on every function at start, as platform firmware
   * does once it has assigned the BARs (default true). Resets still clear
   * it, as hardware does.
   */
  readonly firmwareEnablesMemory?: boolean;
  /** Host memory the IOMMU may map (default: none, host mappings fail with EOPNOTSUPP). */
  readonly hostMemory?: HostMemory;
  /** The store behind namespace `nsid` of NVMe function `bdf` (default: heap memory, gone with the bus). */
  readonly namespaceStore?: (bdf: string, nsid: number, blocks: number, blockSize: number) => NamespaceStore;
  /** What each NVMe controller reports (commands, queues, doorbells, state), for metrics and logs. */
  readonly nvmeObserver?: NvmeBusObserver;
}

/** An NVMe controller's event, with the function that reported it. */
export type NvmeBusObserver = (bdf: string, event: NvmeEvent) => void;

/** One NVMe function's queues as they stand. */
export interface NvmeQueueDepths {
  readonly bdf: string;
  readonly queues: readonly NvmeQueueDepth[];
}

const heapNamespace = (_bdf: string, _nsid: number, blocks: number, blockSize: number): NamespaceStore => new HeapNamespaceStore(blocks, blockSize);

/**
 * The emulated PCI subsystem: every endpoint function of a topology, with
 * BAR memory from `createBarMemory` and bus addresses assigned as firmware
 * enumeration would, and the IOMMU every function's DMA goes through. All
 * operations are synchronous; failures throw ErrnoError (unknown BDF or
 * unplugged: ENODEV; bad argument: EINVAL; strict write to a read-only
 * field: EPERM) and leave the state unchanged. Events are delivered to
 * listeners synchronously, after the operation's change.
 */
export class PciBus {
  readonly #functions = new Map<string, PciFunction>();
  readonly #memories: BarMemory[] = [];
  readonly #namespaces: NamespaceStore[] = [];
  readonly #owners = new Map<string, MemoryOwner>();
  readonly #events = new PciEventHub();
  /** The NVMe functions' queue depths, by BDF. */
  readonly #nvmeQueues = new Map<string, () => readonly NvmeQueueDepth[]>();
  readonly #nvmeObservers = new Set<NvmeBusObserver>();
  /** Listeners that asked for NVMe events: while none does, the bus posts none. */
  #nvmeListeners = 0;
  readonly #mmio = new MmioTally();
  /** The platform IOMMU: domains, mappings, and the translation of every DMA. */
  readonly iommu: Iommu;

  constructor(
    readonly topology: Topology,
    createBarMemory: BarMemoryFactory,
    options: PciBusOptions = {},
  ) {
    if (options.nvmeObserver !== undefined) this.#nvmeObservers.add(options.nvmeObserver);
    this.iommu = new Iommu({
      topology,
      getFunction: (bdf) => this.getFunction(bdf),
      hostMemory: options.hostMemory ?? NO_HOST_MEMORY,
      post: (event) => this.#events.post(event),
      batch: (operation) => this.#events.batch(operation),
    });
    try {
      const devices = topology.functions.map((spec) =>
        createDevice(spec, {
          allocate: (index, size) => {
            const name = memoryName(spec.bdf, index);
            const memory = createBarMemory(name, size);
            this.#memories.push(memory);
            if (memory.size !== size) {
              throw errno('EINVAL', `BAR memory ${name} has ${memory.size} bytes, not ${size}`);
            }
            return { memory, memoryName: name };
          },
          dma: this.#dmaPort(spec.bdf),
          report: (bar, offset, length, path) => this.#events.post({ type: 'bar-written', bdf: spec.bdf, bar, offset, length, path }),
          namespace: (nsid, blocks, blockSize) => {
            const store = (options.namespaceStore ?? heapNamespace)(spec.bdf, nsid, blocks, blockSize);
            this.#namespaces.push(store);
            return store;
          },
          nvmeObserver: (event) => this.#nvmeEvent(spec.bdf, event),
        }),
      );
      const addresses = enumerateBarAddresses(topology, devices);
      topology.functions.forEach((spec, i) => {
        const post = (event: PciEventBody): void => {
          this.#events.post(event);
        };
        const multiFunction = isMultiFunction(topology, spec.bdf);
        const fn = new PciFunction(spec.bdf, spec, devices[i]!, addresses[i]!, multiFunction, post);
        this.#functions.set(spec.bdf, fn);
        const queueDepths = devices[i]!.nvmeQueueDepths;
        if (queueDepths !== undefined) this.#nvmeQueues.set(spec.bdf, queueDepths);
        for (const bar of fn.info().bars) {
          const memory = memoryRangeOf(bar);
          if (bar.memoryName !== undefined && memory !== undefined) this.#owners.set(bar.memoryName, { bdf: fn.bdf, bar: bar.index, base: memory.offset });
        }
      });
      if (options.firmwareEnablesMemory ?? true) {
        for (const fn of this.#functions.values()) fn.configWrite(PCI_COMMAND, 2, PCI_COMMAND_MEMORY, 'hardware');
      }
      // Nobody can have subscribed yet: boot-time changes are not events.
      this.#events.flush();
    } catch (error) {
      this.close();
      throw error;
    }
  }

  /* ---- discovery ---- */

  listFunctions(): FunctionInfo[] {
    return [...this.#functions.values()].map((fn) => fn.info());
  }

  /** Info is available while unplugged too (present: false). */
  getFunction(bdf: string): FunctionInfo {
    return this.#lookup(bdf).info();
  }

  /** pci_p2pdma_distance() between two present functions: DMA from `client` to BAR memory of `provider`. */
  p2pDistance(providerBdf: string, clientBdf: string): P2pDistance {
    const provider = this.#present(providerBdf);
    const client = this.#present(clientBdf);
    return p2pDistance(this.topology, provider.bdf, client.bdf);
  }

  /* ---- config space ---- */

  configRead(bdf: string, offset: number, width: number): number {
    return this.#lookup(bdf).configRead(offset, width);
  }

  configWrite(bdf: string, offset: number, width: number, value: number, mode: ConfigWriteMode = 'strict'): void {
    this.#run(bdf, (fn) => fn.configWrite(offset, width, value, mode));
  }

  /* ---- MMIO ---- */

  mmioRead(bdf: string, bar: number, offset: number, width: 8): MmioReadResult<bigint>;
  mmioRead(bdf: string, bar: number, offset: number, width: 1 | 2 | 4): MmioReadResult<number>;
  mmioRead(bdf: string, bar: number, offset: number, width: number): MmioReadResult;
  mmioRead(bdf: string, bar: number, offset: number, width: number): MmioReadResult {
    return this.#access(bdf, bar, 'read', (fn) => fn.mmioRead(bar, offset, width));
  }

  /** `value` may be a number or bigint for any width; it must fit. */
  mmioWrite(bdf: string, bar: number, offset: number, width: number, value: number | bigint): WriteResult {
    return this.#access(bdf, bar, 'write', (fn) => fn.mmioWrite(bar, offset, width, value));
  }

  bulkRead(bdf: string, bar: number, offset: number, length: number): BulkReadResult {
    return this.#access(bdf, bar, 'read', (fn) => fn.bulkRead(bar, offset, length));
  }

  bulkWrite(bdf: string, bar: number, offset: number, data: Uint8Array): WriteResult {
    return this.#access(bdf, bar, 'write', (fn) => fn.bulkWrite(bar, offset, data));
  }

  /**
   * CPU accesses to each function's BARs so far (those the function refused
   * with an error excluded; unclaimed ones, answered with all ones, included).
   */
  mmioAccessCounts(): IterableIterator<MmioAccessCount> {
    return this.#mmio.counts();
  }

  /* ---- BAR memory: segments, and the writes other processes make into them ---- */

  /**
   * Where BAR offsets [offset, offset + length) of BAR `bar` live in its
   * memory (GetBarSegments); `length` undefined: to the end of the memory.
   * EINVAL unless they lie in memory (a memory BAR, a register BAR's window).
   */
  barMemorySpan(bdf: string, bar: number, offset: number, length?: number): BarMemorySpan {
    const fn = this.#lookup(bdf);
    const info = fn.info().bars.find((b) => b.index === bar);
    if (info === undefined) throw errno('EINVAL', `${fn.bdf} has no BAR ${bar}`);
    const memory = memoryRangeOf(info);
    const span = length ?? (memory === undefined ? 0 : memory.offset + memory.length - offset);
    const at = memoryOffsetOf(fn.bdf, info, offset, span);
    return { memoryName: info.memoryName!, offset: at, length: span };
  }

  /**
   * A bus master in another process wrote bytes [offset, offset + length) of
   * the BAR memory named `memoryName` (offsets into the memory), as its
   * write notice says: the device hears of it as of any posted write
   * (PciFunction.postedWrite). False, and nothing happens, for memory no BAR
   * has or a write its function would not have claimed.
   */
  postedWrite(memoryName: string, offset: number, length: number): boolean {
    const owner = this.#owners.get(memoryName);
    if (owner === undefined) return false;
    return this.#run(owner.bdf, (fn) => fn.postedWrite(owner.bar, owner.base + offset, length));
  }

  /* ---- power, resets, hot-plug ---- */

  functionLevelReset(bdf: string): void {
    this.#run(bdf, (fn) => fn.functionLevelReset());
  }

  resetFunction(bdf: string): void {
    this.#run(bdf, (fn) => fn.reset());
  }

  /** Returns the previous state. */
  setPowerState(bdf: string, state: PowerState): PowerState {
    return this.#run(bdf, (fn) => fn.setPowerState(state));
  }

  /** Surprise hot-unplug, which also takes the function off its IOMMU domain; a no-op if already unplugged. */
  unplug(bdf: string): void {
    this.#run(bdf, (fn) => {
      fn.unplug();
      this.iommu.release(fn.bdf);
    });
  }

  /** Re-plug after unplug(); a no-op if present. */
  replug(bdf: string): void {
    this.#run(bdf, (fn) => fn.replug());
  }

  /* ---- events, lifetime ---- */

  /**
   * Every event of every function, in order; NVMe controller events only if
   * `filter.nvme`. Returns the unsubscribe function.
   */
  onEvent(listener: PciEventListener, filter: PciEventFilter = {}): () => void {
    if (filter.nvme !== true) {
      return this.#events.subscribe((event) => {
        if (event.type !== 'nvme') listener(event);
      });
    }
    this.#nvmeListeners++;
    const unsubscribe = this.#events.subscribe(listener);
    let subscribed = true;
    return () => {
      if (subscribed) this.#nvmeListeners--;
      subscribed = false;
      unsubscribe();
    };
  }

  /**
   * Every NVMe controller's events as they happen, synchronously and outside
   * the ordered stream (no sequence number, no queue): for counters and logs,
   * which need no order and must cost little per command. Returns the
   * unsubscribe function.
   */
  onNvmeEvent(observer: NvmeBusObserver): () => void {
    this.#nvmeObservers.add(observer);
    return () => {
      this.#nvmeObservers.delete(observer);
    };
  }

  /** Each NVMe function's queues and the entries waiting in them, as they stand between the controllers' turns. */
  nvmeQueueDepths(): NvmeQueueDepths[] {
    return [...this.#nvmeQueues].map(([bdf, queueDepths]) => ({ bdf, queues: queueDepths() }));
  }

  /** Closes every BAR memory and drops every IOMMU domain and host segment. */
  close(): void {
    this.iommu.close();
    for (const memory of this.#memories.splice(0)) {
      memory.close();
    }
    for (const store of this.#namespaces.splice(0)) store.close?.();
  }

  /* ---- internals ---- */

  #lookup(bdf: string): PciFunction {
    const canonical = canonicalBdf(bdf);
    const fn = this.#functions.get(canonical);
    if (!fn) {
      throw errno('ENODEV', `no PCI function at ${canonical}`);
    }
    return fn;
  }

  #present(bdf: string): PciFunction {
    const fn = this.#lookup(bdf);
    if (!fn.present) {
      throw errno('ENODEV', `${fn.bdf} has been hot-unplugged`);
    }
    return fn;
  }

  /**
   * Function `bdf` as a bus master: the port its device model was given
   * (DMA through the IOMMU). For a model built outside the bus, or a tool
   * acting as the device.
   */
  busMasterPort(bdf: string): DmaPort {
    return this.#dmaPort(this.#lookup(bdf).bdf);
  }

  /** An NVMe controller reported `event`: to the observers, and onto the stream only if a listener asked for NVMe events. */
  #nvmeEvent(bdf: string, event: NvmeEvent): void {
    for (const observer of this.#nvmeObservers) observer(bdf, event);
    if (this.#nvmeListeners > 0) this.#events.post({ type: 'nvme', bdf, nvme: event });
  }

  /** A CPU access to BAR `bar`, tallied once the function has taken it. */
  #access<T>(bdf: string, bar: number, op: 'read' | 'write', operation: (fn: PciFunction) => T): T {
    return this.#run(bdf, (fn) => {
      const result = operation(fn);
      this.#mmio.count(fn.bdf, bar, op);
      return result;
    });
  }

  /** Runs one operation, then delivers the events it caused. */
  #run<T>(bdf: string, operation: (fn: PciFunction) => T): T {
    return this.#events.batch(() => operation(this.#lookup(bdf)));
  }

  /** The bus-master port of function `bdf`'s device: its DMA goes through the IOMMU, and each transfer is an event. */
  #dmaPort(bdf: string): DmaPort {
    const platform: DmaPlatform = {
      iommu: this.iommu,
      busMaster: (requester) => this.#lookup(requester).busMaster,
      barWindow: (provider, bar, offset, length) => this.#lookup(provider).dmaWindow(bar, offset, length),
      barWritten: (provider, bar, offset, length) => this.#lookup(provider).postedWrite(bar, offset, length),
      receivedMasterAbort: (requester) => this.#lookup(requester).receivedMasterAbort(),
    };
    return {
      transfer: (request) => dmaTransfer(bdf, request, platform),
      read: (iova, target) => dmaRead(bdf, iova, target, platform),
      write: (iova, source) => dmaWrite(bdf, iova, source, platform),
      map: (iova, length, access) => dmaMap(bdf, iova, length, access, platform),
      defer: (work) => setImmediate(() => this.#events.batch(work)),
      completed: (request, outcome) =>
        this.#events.post({
          type: 'dma-completed',
          bdf,
          status: outcome.error === 'NONE' ? 'DONE' : 'ERROR',
          error: outcome.error,
          bytes: outcome.bytes,
          srcIova: request.src,
          dstIova: request.dst,
          faultIova: outcome.faultIova,
        }),
    };
  }
}
