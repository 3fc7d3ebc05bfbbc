import { errno } from '@p2p/errno';
import type { PciPort } from '../ports/pci-port';
import type { VfioDmaBuf } from './vfio-dma-buf';

/** A piece of the buffer, as an sg_table entry names it: bytes in a BAR segment, and the bus address for them. */
export interface DmaBufExtent {
  readonly segment: string;
  readonly segmentOffset: number;
  readonly length: number;
  /** pci_p2pdma_bus_addr_map(): BAR bus address + offset in the BAR. */
  readonly dmaAddress: bigint;
}

/** vfio_pci_dma_buf_attach(): importers must allow peer2peer (EOPNOTSUPP), and a revoked buffer takes none (ENODEV). */
export function attachDmaBuf(buffer: VfioDmaBuf, peer2peer: boolean): void {
  if (!peer2peer) {
    throw errno('EOPNOTSUPP', `dma-buf ${buffer.handle} is device memory: the importer must allow peer2peer`);
  }
  if (buffer.revoked) {
    throw errno('ENODEV', `dma-buf ${buffer.handle} is revoked`);
  }
}

/**
 * dma_buf_ops.pin: upstream vfio-pci has none (EOPNOTSUPP: importers must be
 * dynamic so a revoke can reach them); the pin variant counts pins.
 */
export function pinDmaBuf(buffer: VfioDmaBuf): void {
  if (!buffer.allowPin) {
    throw errno('EOPNOTSUPP', `dma-buf ${buffer.handle} cannot be pinned: its importers must be dynamic`);
  }
  if (buffer.revoked) {
    throw errno('ENODEV', `dma-buf ${buffer.handle} is revoked`);
  }
  buffer.pins++;
}

/** dma_buf_ops.unpin: undoes one pin. */
export function unpinDmaBuf(buffer: VfioDmaBuf): void {
  buffer.pins = Math.max(0, buffer.pins - 1);
}

/**
 * vfio_pci_dma_buf_map(): ENODEV while revoked, else the whole buffer in
 * order, each range's BAR segments with the bus address of the bytes
 * (dma_buf_phys_vec_to_sgt() for a P2P mapping).
 */
export async function mapDmaBuf(buffer: VfioDmaBuf, pci: PciPort): Promise<DmaBufExtent[]> {
  if (buffer.revoked) {
    throw errno('ENODEV', `dma-buf ${buffer.handle} is revoked`);
  }
  const extents: DmaBufExtent[] = [];
  for (const range of buffer.phys) {
    let dmaAddress = range.paddr;
    for (const piece of await pci.barExtents(buffer.providerBdf, buffer.bar.index, Number(range.offset), Number(range.len))) {
      extents.push({ ...piece, dmaAddress });
      dmaAddress += BigInt(piece.length);
    }
  }
  return extents;
}

/** The exporter side of dma_buf_mmap() and CPU access: the cpu-mmap variant only, the same memory as a map. */
export async function cpuMapDmaBuf(buffer: VfioDmaBuf, pci: PciPort): Promise<DmaBufExtent[]> {
  if (!buffer.cpuAccess) {
    throw errno('EOPNOTSUPP', `dma-buf ${buffer.handle} has no CPU access`);
  }
  return mapDmaBuf(buffer, pci);
}

/** An importer was fenced: the BAR's memory moves to fresh segments, so its stale mapping writes nowhere anybody reads. */
export async function fenceDmaBuf(buffer: VfioDmaBuf, pci: PciPort): Promise<void> {
  await pci.relocateBar?.(buffer.providerBdf, buffer.bar.index);
}
