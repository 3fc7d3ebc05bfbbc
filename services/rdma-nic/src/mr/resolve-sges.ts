import { IBV_ACCESS_LOCAL_WRITE } from '../verbs/access-flags';
import { WcStatus } from '../verbs/enums';
import type { Sge } from '../qp/work-request';
import type { KeyTable } from './key-table';
import type { MemoryRegion } from './memory-region';
import type { ProtectionDomain } from './protection-domain';

/**
 * The NIC walking a WQE's scatter/gather list: each lkey names an MR of the
 * QP's PD that holds [addr, addr + length) (and allows local write when the
 * NIC writes there). Any miss is IBV_WC_LOC_PROT_ERR, as is a translation
 * the NIC cannot fault in (a revoked dma-buf). Fills `out` with views of
 * the SGEs; a page fault under way is returned for the caller to wait on.
 */
export function resolveSges(
  keys: KeyTable<MemoryRegion>,
  pd: ProtectionDomain,
  sgList: readonly Sge[],
  write: boolean,
  out: Uint8Array[],
): WcStatus | Promise<void> {
  for (const sge of sgList) {
    const mr = keys.get(sge.lkey);
    if (mr === undefined || mr.pd !== pd || !mr.contains(sge.addr, sge.length)) {
      return WcStatus.LOC_PROT_ERR;
    }
    if (write && (mr.access & IBV_ACCESS_LOCAL_WRITE) === 0) {
      return WcStatus.LOC_PROT_ERR;
    }
    if (sge.length === 0) {
      continue;
    }
    const translated = mr.translate(sge.addr, sge.length, out);
    if (translated !== true) {
      return translated === false ? WcStatus.LOC_PROT_ERR : translated;
    }
  }
  return WcStatus.SUCCESS;
}

/**
 * The NIC wrote the first `length` bytes of a scatter list that
 * resolveSges() resolved (a receive's buffers, where a READ's answer
 * lands), and they are in place: each MR hears of its part
 * (MemoryRegion.written).
 */
export function sgesWritten(keys: KeyTable<MemoryRegion>, sgList: readonly Sge[], length: number): void {
  let left = length;
  for (const sge of sgList) {
    if (left <= 0) return;
    const written = Math.min(sge.length, left);
    if (written > 0) keys.get(sge.lkey)?.written(sge.addr, written);
    left -= written;
  }
}
