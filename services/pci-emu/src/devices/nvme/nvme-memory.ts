import { ErrnoError } from '@p2p/errno';
import type { DmaOutcome } from '../dma-engine';
import type { NvmeDataDirection } from './nvme-command';
import type { ControllerMemoryBuffer } from './nvme-cmb';
import type { PrpSegment } from './nvme-prp';
import { NVME_SC_CMB_INVALID_USE, NVME_SC_DATA_XFER_ERROR, NVME_SC_SUCCESS, nvmeInvalid } from './nvme-status';

/**
 * The controller's way onto the bus, given by the platform: every access is a
 * bus-master request of this function, translated by the IOMMU, and may land
 * in host memory or in a peer's BAR (P2P). A failure (IOMMU fault, master
 * abort, bus mastering off) is an outcome, never a throw.
 */
export interface NvmeMemoryPort {
  /** Reads `target.length` bytes at `address` into the controller (a submission queue entry, a PRP list). */
  read(address: bigint, target: Buffer): DmaOutcome;
  /** Writes `source` at `address` (a completion queue entry). */
  write(address: bigint, source: Uint8Array): DmaOutcome;
  /**
   * The memory behind [address, address + length) as views, in order, for a
   * one-copy data transfer: the controller reads them ('read': a Write
   * command's data) or fills them ('write': a Read command's data). All of
   * the range is translated before any view is returned.
   */
  map(address: bigint, length: number, access: 'read' | 'write'): Buffer[] | DmaOutcome;
  /** Runs `work` once the access that asked for it has returned: the controller acting on its own. */
  defer(work: () => void): void;
}

interface Run {
  readonly address: bigint;
  readonly length: number;
  /** The offset in the CMB, or undefined for bus memory. */
  readonly cmb: number | undefined;
}

/**
 * Resolves every address the host gives: into the CMB when it falls there
 * (CMBMSC.CMSE), else onto the bus through the port. Queue entries and PRP
 * lists are small copies; data is mapped so the namespace store reads or
 * writes it in place.
 */
export class NvmeMemory {
  constructor(
    private readonly port: NvmeMemoryPort,
    private readonly cmb: ControllerMemoryBuffer,
  ) {}

  /** Reads a queue entry (a fetch, or an Abort looking at a waiting command); false if it could not be read. */
  read(address: bigint, target: Buffer): boolean {
    const at = this.cmb.locate(address, target.length);
    if (at === 'partial') return false;
    if (at === 'host') return this.port.read(address, target).error === 'NONE';
    return cmbAccess(() => this.cmb.memory.readInto(at, target));
  }

  /** A queue entry post; false if it could not be written. */
  write(address: bigint, source: Uint8Array): boolean {
    const at = this.cmb.locate(address, source.length);
    if (at === 'partial') return false;
    if (at === 'host') return this.port.write(address, source).error === 'NONE';
    return cmbAccess(() => this.cmb.memory.write(at, source));
  }

  /** Reads a PRP list (a PrpListReader): in the CMB only if CMBSZ.LISTS. */
  readonly readPrpList = (address: bigint, target: Buffer): number => {
    const at = this.cmb.locate(address, target.length);
    if (at === 'partial' || (at !== 'host' && !this.cmb.support.prpLists)) return nvmeInvalid(NVME_SC_CMB_INVALID_USE);
    const read = at === 'host' ? this.port.read(address, target).error === 'NONE' : cmbAccess(() => this.cmb.memory.readInto(at, target));
    return read ? NVME_SC_SUCCESS : NVME_SC_DATA_XFER_ERROR;
  };

  /**
   * Views of a command's data, in order: CMB pieces directly (if CMBSZ.RDS
   * or WDS allows data of this direction there), the rest mapped through the
   * port. Contiguous pieces of one memory are mapped as one. A DMA failure is
   * Data Transfer Error; nothing has been read or written when it returns.
   */
  mapData(segments: readonly PrpSegment[], direction: NvmeDataDirection): Buffer[] | number {
    const allowed = direction === 'controller-to-host' ? this.cmb.support.readData : this.cmb.support.writeData;
    const runs: Run[] = [];
    for (const segment of segments) {
      const at = this.cmb.locate(segment.address, segment.length);
      if (at === 'partial' || (at !== 'host' && !allowed)) return nvmeInvalid(NVME_SC_CMB_INVALID_USE);
      const cmb = at === 'host' ? undefined : at;
      const last = runs[runs.length - 1];
      if (last !== undefined && (last.cmb === undefined) === (cmb === undefined) && last.address + BigInt(last.length) === segment.address) {
        runs[runs.length - 1] = { ...last, length: last.length + segment.length };
      } else {
        runs.push({ address: segment.address, length: segment.length, cmb });
      }
    }
    const access = direction === 'controller-to-host' ? 'write' : 'read';
    const views: Buffer[] = [];
    for (const run of runs) {
      if (run.cmb !== undefined) {
        const { cmb, length } = run;
        if (!cmbAccess(() => views.push(...this.cmb.memory.views(cmb, length)))) return NVME_SC_DATA_XFER_ERROR;
        continue;
      }
      const mapped = this.port.map(run.address, run.length, access);
      if (!Array.isArray(mapped)) return NVME_SC_DATA_XFER_ERROR;
      views.push(...mapped);
    }
    return views;
  }
}

/** A CMB access fails only if the memory is gone (closed): the same as a bus failure to the controller. */
function cmbAccess(access: () => void): boolean {
  try {
    access();
    return true;
  } catch (error) {
    if (error instanceof ErrnoError) return false;
    throw error;
  }
}

/** Copies `data` into consecutive views (controller-to-host data of an admin command). */
export function copyToViews(data: Uint8Array, views: readonly Buffer[]): void {
  let at = 0;
  for (const view of views) {
    view.set(data.subarray(at, at + view.length));
    at += view.length;
  }
}
