import { errno } from '@p2p/errno';
import {
  IBV_ACCESS_LOCAL_WRITE,
  IBV_ACCESS_FLUSH_GLOBAL,
  IBV_ACCESS_FLUSH_PERSISTENT,
  IBV_ACCESS_ON_DEMAND,
  IBV_ACCESS_REMOTE_ATOMIC,
  IBV_ACCESS_REMOTE_READ,
  IBV_ACCESS_REMOTE_WRITE,
  IBV_ACCESS_RELAXED_ORDERING,
  IBV_ACCESS_SUPPORTED,
} from '../verbs/access-flags';

export const PAGE_SIZE = 4096;

/** The flags ib_uverbs_reg_dmabuf_mr() takes (uverbs_get_flags32()'s mask): any other is EINVAL. */
const DMABUF_ACCESS = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC | IBV_ACCESS_RELAXED_ORDERING;

/**
 * ib_check_mr_access(): REMOTE_WRITE and REMOTE_ATOMIC need LOCAL_WRITE
 * (EINVAL); a flag outside IB_ACCESS_SUPPORTED is EINVAL (the optional range,
 * RELAXED_ORDERING and the rest, is accepted, and ignored by a device that
 * does not know it; so is HUGETLB, a hint); ON_DEMAND on a device without
 * ODP, and the FLUSH flags on one without persistent placement, are
 * EOPNOTSUPP (this model has neither).
 */
export function checkMrAccess(access: number): void {
  if (!Number.isInteger(access) || access < 0 || access > 0xffff_ffff) throw errno('EINVAL', `access ${access} is not a u32 of flags`);
  if ((access & (IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)) !== 0 && (access & IBV_ACCESS_LOCAL_WRITE) === 0) {
    throw errno('EINVAL', 'IBV_ACCESS_REMOTE_WRITE and IBV_ACCESS_REMOTE_ATOMIC need IBV_ACCESS_LOCAL_WRITE');
  }
  if ((access & ~IBV_ACCESS_SUPPORTED) !== 0) throw errno('EINVAL', `access 0x${access.toString(16)} has flags outside IB_ACCESS_SUPPORTED (0x${IBV_ACCESS_SUPPORTED.toString(16)})`);
  if ((access & IBV_ACCESS_ON_DEMAND) !== 0) throw errno('EOPNOTSUPP', 'IBV_ACCESS_ON_DEMAND: this device has no on-demand paging (IBV_ODP_SUPPORT is clear)');
  if ((access & (IBV_ACCESS_FLUSH_GLOBAL | IBV_ACCESS_FLUSH_PERSISTENT)) !== 0) throw errno('EOPNOTSUPP', 'IBV_ACCESS_FLUSH_*: this device has no flush placement types');
}

/** ib_uverbs_reg_dmabuf_mr(): the uverbs attribute takes DMABUF_ACCESS only, then ib_check_mr_access(). */
function checkDmabufAccess(access: number): void {
  if (!Number.isInteger(access) || access < 0 || (access & ~DMABUF_ACCESS) !== 0) {
    throw errno('EINVAL', `access 0x${access.toString(16)} has flags a dma-buf MR does not take`);
  }
  checkMrAccess(access);
}

function checkU64(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw errno('EINVAL', `${what} ${value} is not an address this model holds (a non-negative safe integer)`);
  }
}

/** ibv_reg_mr_iova() checks: access, a non-empty window within the memory, iova + length not wrapping. */
export function checkRegMr(memoryLength: number, length: number, iova: number, access: number): void {
  checkMrAccess(access);
  checkU64(iova, 'iova');
  checkU64(length, 'length');
  if (length === 0 || length > memoryLength) {
    throw errno('EINVAL', `length ${length} is empty or past the ${memoryLength}-byte memory`);
  }
  checkU64(iova + length, 'iova + length');
}

/**
 * ib_uverbs_reg_dmabuf_mr() and ib_umem_dmabuf_get(): the iova shares the
 * offset's page offset, access is within the dma-buf flags, and
 * [offset, offset + length) neither wraps nor runs past the buffer.
 */
export function checkRegDmabufMr(size: number, offset: number, length: number, iova: number, access: number): void {
  checkDmabufAccess(access);
  checkU64(offset, 'offset');
  checkU64(length, 'length');
  checkU64(iova, 'iova');
  if ((offset % PAGE_SIZE) !== (iova % PAGE_SIZE)) {
    throw errno('EINVAL', `iova 0x${iova.toString(16)} and offset 0x${offset.toString(16)} differ in their page offset`);
  }
  if (length === 0) {
    throw errno('EINVAL', 'a dma-buf MR of length 0');
  }
  const end = offset + length;
  if (!Number.isSafeInteger(end) || end > size) {
    throw errno('EINVAL', `offset 0x${offset.toString(16)} + length 0x${length.toString(16)} runs past the ${size}-byte dma-buf`);
  }
  checkU64(iova + length, 'iova + length');
}
