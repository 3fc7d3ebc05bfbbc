import { ErrnoError } from '@p2p/errno';
import type { DmaOutcome, DmaRequest } from '../devices/dma-engine';
import { IommuFault } from '../iommu/iommu-fault';
import type { Iommu, IommuPiece } from '../iommu/iommu';
import type { BarSpan } from './pci-function';

/** What a bus-master transfer needs of the platform. */
export interface DmaPlatform {
  readonly iommu: Iommu;
  /** Effective PCI_COMMAND_MASTER of the requester: set, in D0, present. */
  busMaster(bdf: string): boolean;
  /**
   * The memory behind BAR offsets [offset, offset + length) of a BAR, if its
   * function claims the request; undefined if it does not (decode off,
   * D3hot, unplugged), which the function logs as an Unsupported Request.
   */
  barWindow(bdf: string, bar: number, offset: number, length: number): BarSpan | undefined;
  /** A write into BAR memory is complete: its device hears of it (PciFunction.postedWrite). */
  barWritten(bdf: string, bar: number, offset: number, length: number): void;
  /** Sets PCI_STATUS_REC_MASTER_ABORT in the requester's config space. */
  receivedMasterAbort(bdf: string): void;
}

/** A source piece: read once, straight into the destination. */
interface Source {
  readonly length: number;
  readInto(offset: number, target: Uint8Array): void;
}

const failed = (error: DmaOutcome['error'], faultIova = 0n, bytes = 0): DmaOutcome => ({ error, bytes, faultIova });

/**
 * One DMA by `requester`: bus mastering first, then the whole of both ranges
 * through the IOMMU (read on the source, write on the destination) and to
 * the memory behind them, and only then the copy, so an IOMMU fault or a
 * master abort moves no byte.
 *
 * The copy is one pass: each source piece is pread straight into the
 * destination's shared mapping. Never reading the source through a mapping
 * keeps its holes unallocated (a DMA out of untouched device memory costs no
 * tmpfs page), and a destination page the kernel cannot provide (a full
 * tmpfs, a file its owner truncated) fails the pread with EFAULT instead of
 * killing pci-emu with SIGBUS. Such a failure is reported as DATA after the
 * bytes before it landed. Overlapping source and destination memory gives
 * undefined contents, as memcpy does. Once the bytes are in place, each BAR
 * they landed in hears of them, as a device hears a posted write.
 */
export function dmaTransfer(requester: string, request: DmaRequest, platform: DmaPlatform): DmaOutcome {
  if (!platform.busMaster(requester)) return failed('NO_BUS_MASTER');
  const from = resolve(requester, request.src, request.length, 'read', platform);
  if ('error' in from) return from;
  const to = resolve(requester, request.dst, request.length, 'write', platform);
  if ('error' in to) return to;
  const sources = sourcesOf(requester, from, platform);
  if ('error' in sources) return sources;
  const targets = targetsOf(requester, to, platform);
  if ('error' in targets) return targets;
  return announce(to, copy(sources, targets), platform);
}

/**
 * A bus-master read of `target.length` bytes at `iova` into the device's own
 * buffer (a descriptor fetch, a queue entry): the same checks as a transfer's
 * source side, and no byte read on a failure.
 */
export function dmaRead(requester: string, iova: bigint, target: Buffer, platform: DmaPlatform): DmaOutcome {
  if (!platform.busMaster(requester)) return failed('NO_BUS_MASTER');
  const from = resolve(requester, iova, target.length, 'read', platform);
  if ('error' in from) return from;
  const sources = sourcesOf(requester, from, platform);
  if ('error' in sources) return sources;
  return copy(sources, [target]);
}

/** A bus-master write of `source` at `iova` (a completion record, a queue entry): a transfer's destination side. */
export function dmaWrite(requester: string, iova: bigint, source: Uint8Array, platform: DmaPlatform): DmaOutcome {
  if (!platform.busMaster(requester)) return failed('NO_BUS_MASTER');
  const to = resolve(requester, iova, source.length, 'write', platform);
  if ('error' in to) return to;
  const targets = targetsOf(requester, to, platform);
  if ('error' in targets) return targets;
  const local: Source = { length: source.length, readInto: (offset, target) => target.set(source.subarray(offset, offset + target.length)) };
  return announce(to, copy([local], targets), platform);
}

/**
 * The memory behind [iova, iova + length) as a bus master would reach it for
 * `access`, checked whole first (bus mastering, the IOMMU, every BAR's
 * decode): the scatter list of a data transfer that a device moves with one
 * system call (an NVMe command's preadv or pwritev against its namespace
 * file), so the bytes are copied once. The views are for the kernel only:
 * a page it cannot provide fails that call with EFAULT, where a load or
 * store from JavaScript would raise SIGBUS. Writes through them are not
 * announced to the BARs they land in.
 */
export function dmaMap(requester: string, iova: bigint, length: number, access: 'read' | 'write', platform: DmaPlatform): Buffer[] | DmaOutcome {
  if (!platform.busMaster(requester)) return failed('NO_BUS_MASTER');
  const pieces = resolve(requester, iova, length, access, platform);
  if ('error' in pieces) return pieces;
  return targetsOf(requester, pieces, platform);
}

/** The translation of [iova, iova + length) for `access`, or the fault that stops the DMA. */
function resolve(requester: string, iova: bigint, length: number, access: 'read' | 'write', platform: DmaPlatform): IommuPiece[] | DmaOutcome {
  try {
    return platform.iommu.translate(requester, iova, length, access);
  } catch (error) {
    if (error instanceof IommuFault) return failed(access === 'read' ? 'IOMMU_FAULT_READ' : 'IOMMU_FAULT_WRITE', error.fault.iova);
    throw error;
  }
}

function sourcesOf(requester: string, pieces: readonly IommuPiece[], platform: DmaPlatform): Source[] | DmaOutcome {
  const sources: Source[] = [];
  for (const piece of pieces) {
    const source = sourceOf(piece, platform);
    if (source === undefined) return masterAbort(requester, piece, platform);
    sources.push(source);
  }
  return sources;
}

function targetsOf(requester: string, pieces: readonly IommuPiece[], platform: DmaPlatform): Buffer[] | DmaOutcome {
  const targets: Buffer[] = [];
  for (const piece of pieces) {
    let views: Buffer[] | undefined;
    try {
      views = targetOf(piece, platform);
    } catch (error) {
      if (error instanceof ErrnoError) return failed('DATA');
      throw error;
    }
    if (views === undefined) return masterAbort(requester, piece, platform);
    targets.push(...views);
  }
  return targets;
}

/** The destination's mapped memory; undefined if a BAR does not claim the request. */
function targetOf(piece: IommuPiece, platform: DmaPlatform): Buffer[] | undefined {
  if (piece.kind === 'host') return [piece.segment.view(piece.offset, piece.length)];
  const span = platform.barWindow(piece.bdf, piece.bar, piece.offset, piece.length);
  return span?.memory.views(span.offset, piece.length);
}

function sourceOf(piece: IommuPiece, platform: DmaPlatform): Source | undefined {
  if (piece.kind === 'host') {
    return { length: piece.length, readInto: (offset, target) => piece.segment.readInto(piece.offset + offset, target) };
  }
  const span = platform.barWindow(piece.bdf, piece.bar, piece.offset, piece.length);
  return span && { length: piece.length, readInto: (offset, target) => span.memory.readInto(span.offset + offset, target) };
}

/** Tells each BAR among the destination pieces of the bytes that landed in it (all of them, or those before a DATA failure). */
function announce(pieces: readonly IommuPiece[], outcome: DmaOutcome, platform: DmaPlatform): DmaOutcome {
  let start = 0;
  for (const piece of pieces) {
    const landed = Math.min(piece.length, outcome.bytes - start);
    if (landed <= 0) break;
    if (piece.kind === 'bar') platform.barWritten(piece.bdf, piece.bar, piece.offset, landed);
    start += piece.length;
  }
  return outcome;
}

/** A BAR that did not claim the request: the completer answered Unsupported Request. */
function masterAbort(requester: string, piece: IommuPiece, platform: DmaPlatform): DmaOutcome {
  platform.receivedMasterAbort(requester);
  return failed('MASTER_ABORT', BigInt(piece.iova));
}

/** Fills each target from the sources in order; the bytes before a failing piece stay written. */
function copy(sources: readonly Source[], targets: readonly Buffer[]): DmaOutcome {
  let source = 0;
  let sourceOffset = 0;
  let done = 0;
  try {
    for (const target of targets) {
      for (let at = 0; at < target.length; ) {
        const piece = sources[source]!;
        const length = Math.min(piece.length - sourceOffset, target.length - at);
        piece.readInto(sourceOffset, target.subarray(at, at + length));
        at += length;
        done += length;
        sourceOffset += length;
        if (sourceOffset === piece.length) {
          source++;
          sourceOffset = 0;
        }
      }
    }
  } catch (error) {
    if (error instanceof ErrnoError) return failed('DATA', 0n, done);
    throw error;
  }
  return { error: 'NONE', bytes: done, faultIova: 0n };
}
