import mmap from '@riaskov/mmap-io';
import { ERRNO_NAMES, type ErrnoError, type ErrnoName, errno, errnoValue } from '@p2p/errno';
import { MAP_OFFSET_LIMIT, MAX_MAP_BYTES, PAGE_SIZE } from './limits';

// mmap-io's d.ts types protection as a union of literals, which `|` widens to number.
const PROT_READ_WRITE = (mmap.PROT_READ | mmap.PROT_WRITE) as Parameters<typeof mmap.map>[1];

/**
 * The only door to mmap-io. mmap-io converts size and offset to 32-bit ints
 * without complaint, so a value it cannot represent either fails obscurely or,
 * worse, maps the wrong part of the file (offset 4 GiB becomes 0). Every value
 * is therefore checked here first and an out-of-range one is refused with
 * EOVERFLOW; malformed ones with EINVAL, a bad descriptor with EBADF.
 *
 * The mapping is read/write and MAP_SHARED. mmap-io has no munmap: the
 * returned Buffer owns the mapping, which is unmapped when V8 collects the
 * Buffer and every view (subarray) of it.
 */
export function mapShared(fd: number, size: number, offset = 0): Buffer {
  if (!Number.isSafeInteger(fd) || fd < 0) {
    throw errno('EBADF', `mmap: ${fd} is not a file descriptor`);
  }
  if (!Number.isInteger(size) || size <= 0) {
    throw errno('EINVAL', `mmap: size ${size} is not a positive integer`);
  }
  if (size > MAX_MAP_BYTES) {
    throw errno('EOVERFLOW', `mmap: size ${size} exceeds ${MAX_MAP_BYTES}, the most mapped at once`);
  }
  if (!Number.isInteger(offset) || offset < 0 || offset % PAGE_SIZE !== 0) {
    throw errno('EINVAL', `mmap: offset ${offset} is not a non-negative multiple of the page size ${PAGE_SIZE}`);
  }
  if (offset >= MAP_OFFSET_LIMIT) {
    throw errno('EOVERFLOW', `mmap: offset ${offset} is not below ${MAP_OFFSET_LIMIT}; mmap-io would truncate it`);
  }
  try {
    return mmap.map(size, PROT_READ_WRITE, mmap.MAP_SHARED, fd, offset);
  } catch (err) {
    throw mmapErrno(err, `mmap of ${size} bytes at ${offset} of fd ${fd}`);
  }
}

const NAME_BY_VALUE = new Map<number, ErrnoName>(ERRNO_NAMES.map((name) => [errnoValue(name), name]));

/** mmap-io reports failures as `Error("mmap failed, <errno>")`; recover the errno name. */
function mmapErrno(err: unknown, detail: string): ErrnoError {
  const message = err instanceof Error ? err.message : String(err);
  const match = /mmap failed, (\d+)/.exec(message);
  const name = match === null ? undefined : NAME_BY_VALUE.get(Number(match[1]));
  return name === undefined ? errno('EIO', `${detail}: ${message}`) : errno(name, detail);
}
