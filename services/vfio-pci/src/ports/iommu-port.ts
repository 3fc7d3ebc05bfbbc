/**
 * What iommufd needs of the platform IOMMU (pci-emu behind it): paging
 * domains, attaching a function's group to one, and iommu_map()/iommu_unmap()
 * of host memory or of a peer's memory BAR. One IOMMU group per function (ACS
 * everywhere), 4 KiB pages, the aperture [0, 2^48) less the x86 MSI window.
 * Every call may reject with an ErrnoError; iommufd passes the errno on.
 */

/** include/linux/iommu.h: the prot bits of iommu_map() the platform takes. */
export const IOMMU_READ = 1 << 0;
export const IOMMU_WRITE = 1 << 1;

/** The platform's one page size (pgsize_bitmap = SZ_4K). */
export const IOMMU_PAGE_SIZE = 4096n;

/** The domain aperture (domain->geometry): IOVAs below 2^48. */
export const IOMMU_APERTURE_END = 1n << 48n;

/** The x86 interrupt window, an IOMMU_RESV_MSI region of every function: [start, last]. */
export const IOMMU_MSI_WINDOW = { start: 0xfee0_0000n, last: 0xfeef_ffffn } as const;

/** `length` bytes at `offset` of a segment file: pinned host memory. */
export interface HostExtent {
  readonly segment: string;
  readonly offset: number;
  readonly length: number;
}

/** What an IOVA range leads to: host memory laid end to end, or a peer's memory BAR from `offset` (P2P, mapped as MMIO). */
export type IommuTarget =
  | { readonly kind: 'host'; readonly extents: readonly HostExtent[] }
  | { readonly kind: 'bar'; readonly bdf: string; readonly bar: number; readonly offset: bigint };

export interface IommuPort {
  /** iommu_paging_domain_alloc(): a new empty domain's id. */
  createDomain(): Promise<number>;
  /** iommu_domain_free(): EBUSY while a function is attached. */
  destroyDomain(domainId: number): Promise<void>;
  /** iommu_attach_group(): EBUSY if the function is attached already, EINVAL if it cannot reach a BAR the domain maps. */
  attach(domainId: number, bdf: string): Promise<void>;
  /** iommu_detach_group(): the function is left blocked. */
  detach(domainId: number, bdf: string): Promise<void>;
  /** iommu_map() of [iova, iova + length), page-aligned, with IOMMU_READ/IOMMU_WRITE. */
  map(domainId: number, iova: bigint, length: bigint, prot: number, target: IommuTarget): Promise<void>;
  /** iommu_unmap(): the bytes that were mapped in the range. */
  unmap(domainId: number, iova: bigint, length: bigint): Promise<bigint>;
}
