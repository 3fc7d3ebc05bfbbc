import mmap from '@riaskov/mmap-io';

/** The system page size, as mmap-io reports it: mapping offsets and chunk sizes are multiples of it. */
export const PAGE_SIZE: number = mmap.PAGESIZE;

export const GiB = 2 ** 30;

/**
 * The largest mapping made at once. mmap-io reads `size` as a C int, so 2 GiB
 * already wraps negative (mmap fails with ENOMEM); 1 GiB keeps a wide margin
 * and is also the size of one segment file by default.
 */
export const MAX_MAP_BYTES = GiB;

/**
 * Mapping offsets must stay below this. mmap-io reads `offset` as a C int: an
 * offset of 2^31 fails with EOVERFLOW, and 4 GiB wraps to 0 and silently maps
 * the start of the file instead.
 */
export const MAP_OFFSET_LIMIT = 2 ** 31;

/** One file per GiB: each file is mapped whole, at offset 0. */
export const DEFAULT_CHUNK_SIZE = GiB;

/** unix(7): sun_path holds 108 bytes with the NUL; libuv cuts a longer path silently. */
export const MAX_SOCKET_PATH = 107;
