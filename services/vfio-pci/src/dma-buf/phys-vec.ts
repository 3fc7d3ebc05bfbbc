import { errno } from '@p2p/errno';
import type { PciBar } from '../ports/pci-port';
import { checkAddOverflow, hex, U64_MAX } from '../uapi/u64';
import type { DmaRange } from './dma-buf-feature';

/** struct phys_vec, with the BAR offset it came from. */
export interface PhysVec {
  readonly paddr: bigint;
  readonly len: bigint;
  /** The range's offset in the BAR. */
  readonly offset: bigint;
}

/**
 * vfio_pci_core_get_dmabuf_phys(): the BAR must be memory space
 * (pcim_p2pdma_provider() is NULL for port I/O and for an absent BAR:
 * EINVAL), then vfio_pci_core_fill_phys_vec() turns each range into a
 * physical range: start + offset (+ length) overflowing is EOVERFLOW, a range
 * ending past the BAR is EINVAL, checked range by range in order. (Its check
 * for an empty range cannot fire: validate_dmabuf_input() ran first.)
 *
 * A register BAR with a memory window exports that window only: a range
 * reaching outside it is EINVAL too, in the same walk, as a variant driver's
 * get_dmabuf_phys() bounds the ranges by the memory it has
 * (nvgrace_get_dmabuf_phys() -> vfio_pci_core_fill_phys_vec() with the
 * region's start and length). The export is what the region info's sparse
 * mmap areas offer: the registers around them are no P2P memory.
 */
export function getDmaBufPhys(bars: readonly PciBar[], regionIndex: number, ranges: readonly DmaRange[]): { bar: PciBar; phys: PhysVec[] } {
  const bar = bars.find((candidate) => candidate.index === regionIndex);
  if (bar === undefined || (bar.kind !== 'memory' && bar.kind !== 'registers')) {
    throw errno('EINVAL', `BAR ${regionIndex} is ${bar === undefined ? 'not implemented' : 'port I/O'}: no P2P provider for it`);
  }
  // phys_addr_t arithmetic: max_addr wraps as the kernel's would.
  const maxAddr = (bar.busAddress + bar.size) & U64_MAX;
  const phys = ranges.map((range, i) => {
    const paddr = checkAddOverflow(bar.busAddress, range.offset);
    const end = paddr === undefined ? undefined : checkAddOverflow(paddr, range.length);
    if (paddr === undefined || end === undefined) {
      throw errno(
        'EOVERFLOW',
        `dma range ${i}: BAR ${regionIndex} start ${hex(bar.busAddress)} + offset ${hex(range.offset)} + length ${hex(range.length)} overflows 64 bits`,
      );
    }
    if (end > maxAddr) {
      throw errno('EINVAL', `dma range ${i} (offset ${hex(range.offset)}, length ${hex(range.length)}) ends past the ${hex(bar.size)}-byte BAR ${regionIndex}`);
    }
    const window = bar.kind === 'registers' ? bar.window : undefined;
    if (window !== undefined && (range.offset < window.offset || range.offset + range.length > window.offset + window.length)) {
      throw errno(
        'EINVAL',
        `dma range ${i} (offset ${hex(range.offset)}, length ${hex(range.length)}) leaves the memory window [${hex(window.offset)}, +${hex(window.length)}) of register BAR ${regionIndex}: the rest is registers, not P2P memory`,
      );
    }
    return { paddr, len: range.length, offset: range.offset };
  });
  return { bar, phys };
}
