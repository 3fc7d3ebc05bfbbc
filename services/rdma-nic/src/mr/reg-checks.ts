import { errno } from '@p2p/errno';
import {
  IBV_ACCESS_LOCAL_WRITE,
  IBV_ACCESS_MW_BIND,
  IBV_ACCESS_REMOTE_ATOMIC,
  IBV_ACCESS_REMOTE_READ,
  IBV_ACCESS_REMOTE_WRITE,
  IBV_ACCESS_RELAXED_ORDERING,
  IBV_ACCESS_ZERO_BASED,
} from '../verbs/access-flags';

export const PAGE_SIZE = 4096;

/** The flags a dma-buf MR may carry (ib_uverbs_reg_dmabuf_mr() / ib_check_mr_access()). */
const DMABUF_ACCESS = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC | IBV_ACCESS_RELAXED_ORDERING;

/** The flags a host-memory MR may carry in this model (no ODP, no MW). */
const HOST_ACCESS = DMABUF_ACCESS | IBV_ACCESS_MW_BIND | IBV_ACCESS_ZERO_BASED;

/**
 * ib_check_mr_access(): REMOTE_WRITE and REMOTE_ATOMIC require LOCAL_WRITE,
 * a flag outside `allowed` is EINVAL.
 */
function checkMrAccess(access: number, allowed: number, what: string): void {
  if (!Number.isInteger(access) || access < 0 || (access & ~allowed) !== 0) {
    throw errno('EINVAL', `access 0x${access.toString(16)} has flags a ${what} MR does not take`);
  }
  if ((access & (IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)) !== 0 && (access & IBV_ACCESS_LOCAL_WRITE) === 0) {
    throw errno('EINVAL', 'IBV_ACCESS_REMOTE_WRITE and IBV_ACCESS_REMOTE_ATOMIC need IBV_ACCESS_LOCAL_WRITE');
  }
}

function checkU64(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw errno('EINVAL', `${what} ${value} is not an address this model holds (a non-negative safe integer)`);
  }
}

/** ibv_reg_mr_iova() checks: access, a non-empty window within the memory, iova + length not wrapping. */
export function checkRegMr(memoryLength: number, length: number, iova: number, access: number): void {
  checkMrAccess(access, HOST_ACCESS, 'host');
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
  checkMrAccess(access, DMABUF_ACCESS, 'dma-buf');
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
