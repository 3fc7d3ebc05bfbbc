import { errno } from '@p2p/errno';
import { IOMMU_READ, IOMMU_WRITE } from '../ports/iommu-port';
import {
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_FLAGS,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  IOMMU_VFIO_IOAS_CLEAR,
  IOMMU_VFIO_IOAS_GET,
  IOMMU_VFIO_IOAS_SET,
} from '../uapi/iommufd';
import { hex, PAGE_SIZE, U32_MAX, U64_MAX } from '../uapi/u64';
import type { OpenFile } from './files';
import type { IommufdCtx } from './iommufd-ctx';
import { DmaBufPages, FilePages, type IoptPages, UserPages } from './iopt-pages';
import { hexRange, intersects, type IovaRange, ULONG_MAX } from './iova-range';

/** Ranges one IOMMU_IOAS_ALLOW_IOVAS may carry: past it the allocation fails as the kernel's would (ENOMEM). */
export const MAX_ALLOWED_IOVAS = 1024;

/** SIZE_MAX - PAGE_SIZE: iopt_alloc_pages()'s largest length. */
const MAX_PAGES_LENGTH = U64_MAX - PAGE_SIZE;

/** struct iommu_ioas_iova_ranges, as answered. */
export interface IovaRanges {
  /** How many ranges there are (num_iovas as written back). */
  readonly numIovas: number;
  /** The first min(num_iovas asked, numIovas) of them. */
  readonly ranges: readonly IovaRange[];
  readonly alignment: bigint;
}

/** struct iommu_ioas_map. */
export interface IoasMapCmd {
  readonly flags: number;
  readonly ioasId: number;
  readonly reserved: number;
  readonly userVa: bigint;
  readonly length: bigint;
  /** In with FIXED_IOVA. */
  readonly iova: bigint;
}

/** struct iommu_ioas_map_file. */
export interface IoasMapFileCmd {
  readonly flags: number;
  readonly ioasId: number;
  readonly fd: number;
  /** Byte offset in the file. */
  readonly start: bigint;
  readonly length: bigint;
  readonly iova: bigint;
}

/** struct iommu_ioas_copy. */
export interface IoasCopyCmd {
  readonly flags: number;
  readonly dstIoasId: number;
  readonly srcIoasId: number;
  readonly length: bigint;
  readonly dstIova: bigint;
  readonly srcIova: bigint;
}

/** IOMMU_IOAS_ALLOC: flags must be 0 (EOPNOTSUPP); the new IOAS's id (ENOMEM past the object limit). */
export function ioasAlloc(ictx: IommufdCtx, flags: number): number {
  if (flags !== 0) throw errno('EOPNOTSUPP', `flags ${hex(flags)}: IOMMU_IOAS_ALLOC takes none`);
  return ictx.allocIoas().id;
}

/**
 * IOMMU_IOAS_IOVA_RANGES (iommufd_ioas_iova_ranges()): the holes of the
 * IOAS's reserved ranges, not cut by the allowed list. __reserved set
 * EOPNOTSUPP; unknown IOAS ENOENT; more ranges than `numIovas` EMSGSIZE,
 * after the kernel wrote back num_iovas (the message carries it).
 */
export function ioasIovaRanges(ictx: IommufdCtx, cmd: { readonly ioasId: number; readonly numIovas: number; readonly reserved: number }): IovaRanges {
  if (cmd.reserved !== 0) throw errno('EOPNOTSUPP', '__reserved must be 0');
  const ioas = ictx.getIoas(cmd.ioasId);
  const ranges = ioas.iopt.iovaRanges();
  if (ranges.length > cmd.numIovas) {
    throw errno('EMSGSIZE', `num_iovas ${cmd.numIovas} is too small: num_iovas ${ranges.length} written back`);
  }
  return { numIovas: ranges.length, ranges, alignment: ioas.iopt.iovaAlignment };
}

/**
 * IOMMU_IOAS_ALLOW_IOVAS: __reserved set EOPNOTSUPP; unknown IOAS ENOENT;
 * too many ranges ENOMEM; a range with start >= last, or overlapping an
 * earlier one, EINVAL; a range meeting a reserved one EADDRINUSE. No ranges
 * clears the list. Only automatic IOVA allocation honours it.
 */
export function ioasAllowIovas(ictx: IommufdCtx, cmd: { readonly ioasId: number; readonly reserved: number; readonly ranges: readonly IovaRange[] }): void {
  if (cmd.reserved !== 0) throw errno('EOPNOTSUPP', '__reserved must be 0');
  const ioas = ictx.getIoas(cmd.ioasId);
  if (cmd.ranges.length > MAX_ALLOWED_IOVAS) throw errno('ENOMEM', `${cmd.ranges.length} allowed ranges: at most ${MAX_ALLOWED_IOVAS}`);
  cmd.ranges.forEach((range, i) => {
    if (range.start >= range.last) throw errno('EINVAL', `allowed range ${i} ${hexRange(range.start, range.last)}: start must be below last`);
    const earlier = cmd.ranges.slice(0, i).find((other) => intersects(other, range.start, range.last));
    if (earlier !== undefined) throw errno('EINVAL', `allowed range ${i} ${hexRange(range.start, range.last)} overlaps ${hexRange(earlier.start, earlier.last)}`);
  });
  ioas.iopt.setAllowIovas(cmd.ranges);
}

/**
 * IOMMU_IOAS_MAP (iommufd_ioas_map() -> iopt_map_user_pages()): `pid`'s
 * memory at user_va. In order: unknown flags or __reserved set
 * EOPNOTSUPP; iova or length >= ULONG_MAX EOVERFLOW; neither READABLE nor
 * WRITEABLE EINVAL; unknown IOAS ENOENT; user_va + length overflowing
 * EOVERFLOW; length 0 EINVAL; then iopt_map_pages()' checks (EINVAL,
 * ENOSPC, EEXIST, EOVERFLOW) and, only if a domain is attached, pinning
 * (EFAULT for an address nothing maps or a BAR's mmap). Returns the IOVA.
 */
export async function ioasMap(ictx: IommufdCtx, pid: number, cmd: IoasMapCmd): Promise<bigint> {
  if ((cmd.flags & ~IOMMU_IOAS_MAP_FLAGS) !== 0 || cmd.reserved !== 0) {
    throw errno('EOPNOTSUPP', `flags ${hex(cmd.flags)} or __reserved ${cmd.reserved}: only FIXED_IOVA, WRITEABLE and READABLE, and __reserved 0`);
  }
  checkIovaAndLength(cmd.iova, cmd.length);
  const prot = convIommuProt(cmd.flags);
  const ioas = ictx.getIoas(cmd.ioasId);
  const pages = allocUserPages(ictx, pid, cmd.userVa, cmd.length, (cmd.flags & IOMMU_IOAS_MAP_WRITEABLE) !== 0);
  return ioas.iopt.mapPages([{ pages, startByte: pages.startByte, length: cmd.length }], cmd.length, fixedIova(cmd.flags, cmd.iova), prot, cmd.userVa);
}

/**
 * IOMMU_IOAS_MAP_FILE (iommufd_ioas_map_file() -> iopt_map_file_pages()):
 * [start, start + length) of the file at `fd`. After MAP's flag, overflow,
 * prot and IOAS checks: length 0 EINVAL; start + length - 1 overflowing
 * EOVERFLOW; an fd the caller does not hold EBADF (`openFile` says what
 * the fd names, or throws that). A dma-buf must be
 * vfio-pci's own (any other exporter: EOPNOTSUPP), the range inside it
 * (EINVAL), not revoked (ENODEV) and the buffer one range (EOPNOTSUPP); it
 * is mapped as MMIO, the BAR itself, and a revoke of the buffer unmaps it
 * from every domain for good. Any other file is taken as a memfd would be
 * and fails to pin (EINVAL) once a domain needs it. Returns the IOVA.
 */
export async function ioasMapFile(ictx: IommufdCtx, cmd: IoasMapFileCmd, openFile: () => OpenFile): Promise<bigint> {
  if ((cmd.flags & ~IOMMU_IOAS_MAP_FLAGS) !== 0) throw errno('EOPNOTSUPP', `flags ${hex(cmd.flags)}: only FIXED_IOVA, WRITEABLE and READABLE`);
  checkIovaAndLength(cmd.iova, cmd.length);
  const prot = convIommuProt(cmd.flags);
  const ioas = ictx.getIoas(cmd.ioasId);
  if (cmd.length === 0n) throw errno('EINVAL', 'length is 0');
  const last = cmd.start + cmd.length - 1n;
  if (last > U64_MAX) throw errno('EOVERFLOW', `start ${hex(cmd.start)} + length ${hex(cmd.length)} overflows`);
  if (cmd.fd < 0) throw errno('EBADF', `fd ${cmd.fd} is not open`);
  const file = openFile();
  const writable = (prot & IOMMU_WRITE) !== 0;
  const pages = importFile(ictx, file, cmd, last, writable);
  return ioas.iopt.mapPages([{ pages, startByte: pages.startByte, length: cmd.length }], cmd.length, fixedIova(cmd.flags, cmd.iova), prot, cmd.start);
}

/**
 * IOMMU_IOAS_UNMAP (iommufd_ioas_unmap()): unknown IOAS ENOENT first; iova
 * 0 with length U64_MAX unmaps everything (an empty IOAS too); else iova or
 * length >= ULONG_MAX EOVERFLOW, length 0 EINVAL, iova + length - 1
 * overflowing EOVERFLOW, an area only partly covered ENOENT, nothing in
 * the range ENOENT. Returns the bytes unmapped.
 */
export async function ioasUnmap(ictx: IommufdCtx, cmd: { readonly ioasId: number; readonly iova: bigint; readonly length: bigint }): Promise<bigint> {
  const ioas = ictx.getIoas(cmd.ioasId);
  if (cmd.iova === 0n && cmd.length === U64_MAX) return ioas.iopt.unmapAll();
  if (cmd.iova >= ULONG_MAX || cmd.length >= ULONG_MAX) throw errno('EOVERFLOW', `iova ${hex(cmd.iova)} or length ${hex(cmd.length)} is ULONG_MAX or more`);
  if (cmd.length === 0n) throw errno('EINVAL', 'length is 0');
  const last = cmd.iova + cmd.length - 1n;
  if (last > ULONG_MAX) throw errno('EOVERFLOW', `iova ${hex(cmd.iova)} + length ${hex(cmd.length)} overflows`);
  const unmapped = await ioas.iopt.unmapRange(cmd.iova, last);
  if (unmapped === 0n) throw errno('ENOENT', `nothing is mapped in ${hexRange(cmd.iova, last)}`);
  return unmapped;
}

/**
 * IOMMU_IOAS_COPY (iommufd_ioas_copy()): the pages behind a source range,
 * mapped again in the destination IOAS without pinning anew. Unknown flags
 * EOPNOTSUPP; length, src_iova or dst_iova >= ULONG_MAX EOVERFLOW; no R/W
 * EINVAL; unknown source ENOENT; the source range not covered by areas
 * without a hole ENOENT (length 0 EINVAL, overflow EOVERFLOW); unknown
 * destination ENOENT; then the map's checks (WRITEABLE over read-only pages
 * EPERM). Returns the destination IOVA.
 */
export async function ioasCopy(ictx: IommufdCtx, cmd: IoasCopyCmd): Promise<bigint> {
  if ((cmd.flags & ~IOMMU_IOAS_MAP_FLAGS) !== 0) throw errno('EOPNOTSUPP', `flags ${hex(cmd.flags)}: only FIXED_IOVA, WRITEABLE and READABLE`);
  if (cmd.length >= ULONG_MAX || cmd.srcIova >= ULONG_MAX || cmd.dstIova >= ULONG_MAX) {
    throw errno('EOVERFLOW', 'length, src_iova or dst_iova is ULONG_MAX or more');
  }
  const prot = convIommuProt(cmd.flags);
  const slices = ictx.getIoas(cmd.srcIoasId).iopt.getPages(cmd.srcIova, cmd.length);
  const dst = ictx.getIoas(cmd.dstIoasId);
  const first = slices[0]!;
  return dst.iopt.mapPages(slices, cmd.length, fixedIova(cmd.flags, cmd.dstIova), prot, first.pages.origin + first.startByte);
}

/**
 * IOMMU_VFIO_IOAS: which IOAS the type1 ioctls use. __reserved set
 * EOPNOTSUPP; GET with none ENODEV; SET of an unknown IOAS ENOENT; an
 * unknown op EOPNOTSUPP. Returns the id for GET, else 0.
 */
export function vfioIoas(ictx: IommufdCtx, cmd: { readonly op: number; readonly ioasId: number; readonly reserved: number }): number {
  if (cmd.reserved !== 0) throw errno('EOPNOTSUPP', '__reserved must be 0');
  switch (cmd.op) {
    case IOMMU_VFIO_IOAS_GET:
      if (ictx.vfioIoas === undefined) throw errno('ENODEV', 'the iommufd has no compat IOAS');
      return ictx.vfioIoas.id;
    case IOMMU_VFIO_IOAS_SET:
      ictx.vfioIoas = ictx.getIoas(cmd.ioasId);
      return 0;
    case IOMMU_VFIO_IOAS_CLEAR:
      ictx.vfioIoas = undefined;
      return 0;
    default:
      throw errno('EOPNOTSUPP', `op ${cmd.op}: GET (0), SET (1) or CLEAR (2)`);
  }
}

/* ---- shared steps ---- */

/** iova >= ULONG_MAX || length >= ULONG_MAX: EOVERFLOW (U64_MAX itself is refused). */
function checkIovaAndLength(iova: bigint, length: bigint): void {
  if (iova >= ULONG_MAX || length >= ULONG_MAX) throw errno('EOVERFLOW', `iova ${hex(iova)} or length ${hex(length)} is ULONG_MAX or more`);
}

/** conv_iommu_prot(): neither READABLE nor WRITEABLE is EINVAL. */
function convIommuProt(flags: number): number {
  if ((flags & (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)) === 0) throw errno('EINVAL', 'neither READABLE nor WRITEABLE');
  return ((flags & IOMMU_IOAS_MAP_READABLE) !== 0 ? IOMMU_READ : 0) | ((flags & IOMMU_IOAS_MAP_WRITEABLE) !== 0 ? IOMMU_WRITE : 0);
}

function fixedIova(flags: number, iova: bigint): bigint | undefined {
  return (flags & IOMMU_IOAS_MAP_FIXED_IOVA) !== 0 ? iova : undefined;
}

/** iopt_alloc_pages(): length 0 or past SIZE_MAX - PAGE_SIZE is EINVAL. */
function checkPagesLength(length: bigint): void {
  if (length === 0n || length > MAX_PAGES_LENGTH) throw errno('EINVAL', `length ${hex(length)} is 0 or too large`);
}

/** iopt_alloc_user_pages(): user_va + length overflowing EOVERFLOW, then iopt_alloc_pages(). */
export function allocUserPages(ictx: IommufdCtx, pid: number, userVa: bigint, length: bigint, writable: boolean): UserPages {
  if (userVa + length > U64_MAX) throw errno('EOVERFLOW', `user_va ${hex(userVa)} + length ${hex(length)} overflows`);
  checkPagesLength(length);
  return new UserPages(ictx.ports.iommu, ictx.ports.userMemory, pid, userVa, length, writable);
}

/**
 * The pages of a MAP_FILE: a dma-buf through iopt_alloc_dmabuf_pages()
 * (the range must end inside the buffer, EINVAL; then the exporter: only
 * vfio-pci's, vfio_pci_dma_buf_iommufd_map()), any other file through
 * iopt_alloc_file_pages(). Another exporter's buffer is EOPNOTSUPP
 * without the size check: the registry does not say its size.
 */
function importFile(ictx: IommufdCtx, file: OpenFile, cmd: IoasMapFileCmd, last: bigint, writable: boolean): IoptPages {
  const { iommu } = ictx.ports;
  switch (file.kind) {
    case 'vfio-dma-buf': {
      const { buffer } = file;
      if (buffer === undefined) throw errno('ENODEV', `fd ${cmd.fd} is a vfio dma-buf of an earlier vfio-pci: revoked for good`);
      if (buffer.size <= last || cmd.length / PAGE_SIZE >= BigInt(U32_MAX)) {
        throw errno('EINVAL', `${hexRange(cmd.start, last)} does not end inside the ${hex(buffer.size)}-byte dma-buf`);
      }
      checkPagesLength(cmd.length);
      const pages = new DmaBufPages(iommu, buffer, cmd.start, cmd.length, writable);
      pages.attach();
      return pages;
    }
    case 'dma-buf':
      throw errno('EOPNOTSUPP', `fd ${cmd.fd} is a dma-buf of another exporter: iommufd maps only vfio-pci's`);
    default:
      checkPagesLength(cmd.length);
      return new FilePages(iommu, cmd.fd, cmd.start, cmd.length, writable);
  }
}
