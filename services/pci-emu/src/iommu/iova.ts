import { errno } from '@p2p/errno';

/** The one page size of the platform's page tables (pgsize_bitmap = SZ_4K): the granule of iommu_map(). */
export const IOMMU_PAGE_SIZE = 4096;

/** include/linux/iommu.h: the prot bits of iommu_map(). */
export const IOMMU_READ = 1 << 0;
export const IOMMU_WRITE = 1 << 1;

/** The domain's aperture (domain->geometry): 48-bit IOVAs, four levels of page table. */
export const IOVA_APERTURE_END = 2 ** 48;

/**
 * The x86 interrupt window [0xfee00000, 0xfeefffff], reported as an
 * IOMMU_RESV_MSI region (intel_iommu_get_resv_regions()): a DMA write there
 * is an interrupt, so no domain may map it. End exclusive.
 */
export const MSI_WINDOW = { start: 0xfee00000, end: 0xfef00000 } as const;

const U64_END = 1n << 64n;

/** A checked IOVA range inside the aperture: JS numbers are exact there. */
export interface IovaRange {
  readonly iova: number;
  readonly length: number;
}

/**
 * The checks every range of iommu_map() and iommu_unmap() passes, in the
 * order iommufd runs them: a length of 0 (EINVAL), an IOVA or length that is
 * not a whole number of pages (EINVAL, __iommu_map()'s IS_ALIGNED test), and
 * a last byte past 2^64 (EOVERFLOW, iopt_check_iova()'s check_add_overflow()).
 */
export function checkIovaRange(iova: bigint, length: bigint, what: string): void {
  if (iova < 0n || iova >= U64_END || length < 0n || length >= U64_END) {
    throw errno('EINVAL', `${what}: IOVA ${iova} and length ${length} must be u64 values`);
  }
  if (length === 0n) throw errno('EINVAL', `${what}: length is 0`);
  const page = BigInt(IOMMU_PAGE_SIZE);
  if (iova % page !== 0n || length % page !== 0n) {
    throw errno('EINVAL', `${what}: IOVA 0x${iova.toString(16)} and length 0x${length.toString(16)} must be multiples of the ${IOMMU_PAGE_SIZE}-byte page`);
  }
  if (iova + length > U64_END) {
    throw errno('EOVERFLOW', `${what}: IOVA 0x${iova.toString(16)} + 0x${length.toString(16)} runs past 2^64`);
  }
}

/**
 * A range iommu_map() may fill: inside the aperture and clear of the MSI
 * window, else EINVAL, as iopt_check_iova() refuses a range that meets a
 * reserved region (iommufd reserves what lies outside the aperture too).
 */
export function mappableRange(iova: bigint, length: bigint, what: string): IovaRange {
  if (iova + length > BigInt(IOVA_APERTURE_END)) {
    throw errno('EINVAL', `${what}: [0x${iova.toString(16)}, +0x${length.toString(16)}) leaves the aperture [0, 2^48)`);
  }
  const range = { iova: Number(iova), length: Number(length) };
  if (range.iova < MSI_WINDOW.end && MSI_WINDOW.start < range.iova + range.length) {
    throw errno('EINVAL', `${what}: [0x${iova.toString(16)}, +0x${length.toString(16)}) meets the reserved MSI window [0xfee00000, 0xfeefffff]`);
  }
  return range;
}

/** The part of a checked range inside the aperture (nothing can be mapped past it); undefined if none. */
export function clipToAperture(iova: bigint, length: bigint): IovaRange | undefined {
  const end = BigInt(IOVA_APERTURE_END);
  if (iova >= end) return undefined;
  const last = iova + length > end ? end : iova + length;
  return { iova: Number(iova), length: Number(last - iova) };
}
