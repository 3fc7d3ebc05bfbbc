import type { BarShape } from '../config-space/bar-register';
import type { PciIds } from '../config-space/type0-header';
import { IOMMU_PAGE_SIZE } from '../iommu/iova';
import type { FunctionKind } from '../topology/topology-schema';
import type { BarMemory } from './bar-memory';
import type { NvmeQueueDepth } from './nvme/nvme-queue';
import type { RegisterOps } from './register-ops';

/** Registers modelled in JS (MMIO or, for 'io', port I/O), or memory another process may map. */
export type BarKind = 'registers' | 'memory' | 'io';

/** A window's granule: the page, which vfio mmaps and exports and the IOMMU maps. */
export const BAR_WINDOW_ALIGNMENT = IOMMU_PAGE_SIZE;

/**
 * The part [offset, offset + memory.size) of a register BAR that is memory
 * rather than registers (NVMe's doorbells): page aligned, backed by BarMemory
 * as a memory BAR is, so that vfio-pci can export it and bus masters reach
 * it (a peer's DMA, an RDMA NIC writing through a dma-buf). MMIO in it reads
 * and writes the memory, then tells the device (memoryWritten); the
 * registers never see it.
 */
export interface BarWindow {
  readonly offset: number;
  readonly memory: BarMemory;
  readonly memoryName: string;
}

export type DeviceBar =
  | (BarShape & { readonly kind: 'registers'; readonly registers: RegisterOps; readonly window?: BarWindow })
  | (BarShape & { readonly kind: 'io'; readonly registers: RegisterOps })
  | (BarShape & { readonly kind: 'memory'; readonly memory: BarMemory; readonly memoryName: string });

/**
 * How a write reached BAR memory: 'mmio', a CPU's MmioWrite or BulkWrite;
 * 'p2p', a bus master's posted write (a peer's DMA through the IOMMU, or an
 * RDMA NIC's write through a dma-buf, which another process reports with a
 * write notice).
 */
export type BarWritePath = 'mmio' | 'p2p';

/** Posts a BarWritten event on the bus's event stream, for a device whose users watch its BAR writes. */
export type BarWriteReport = (bar: number, offset: number, length: number, path: BarWritePath) => void;

/**
 * What a device model gives the bus: identity, BARs with the ops or memory
 * behind each, and an optional expansion ROM image. The bus adds config
 * space, decode, power and reset around it.
 */
export interface DeviceModel {
  readonly kind: FunctionKind;
  readonly ids: PciIds;
  /** PCIe link width, informative (PCI_EXP_LNKCAP/LNKSTA). */
  readonly linkWidth: number;
  readonly bars: readonly DeviceBar[];
  /** ROM image; its length is the ROM BAR size. Undefined: no ROM. */
  readonly rom: Buffer | undefined;
  /**
   * Bytes [offset, offset + length) of BAR `bar` (BAR offsets, inside a
   * memory BAR or a register BAR's window) were written and are in place:
   * a doorbell rung by whoever wrote it. Called once the write is complete,
   * synchronously and inside the bus operation that made it, so events the
   * device posts come with that operation's. The notice carries no data:
   * the device reads its memory, so a spurious notice must be harmless.
   * A device with work to do defers it (DmaPort.defer) rather than run it here.
   */
  memoryWritten?(bar: number, offset: number, length: number, path: BarWritePath): void;
  /** An NVMe controller's queues and the entries waiting in each, read when /metrics is scraped. */
  nvmeQueueDepths?(): readonly NvmeQueueDepth[];
}

/** Creates the memory behind BAR `index` of the function being built (all of a memory BAR, or a register BAR's window). */
export type BarMemoryAllocator = (index: number, size: number) => { memory: BarMemory; memoryName: string };
