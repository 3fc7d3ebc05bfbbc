import { NVME_SC_PRP_INVALID_OFFSET, NVME_SC_SUCCESS, nvmeInvalid } from './nvme-status';

/** One physically contiguous piece of a command's data: at most a memory page, except after coalescing. */
export interface PrpSegment {
  readonly address: bigint;
  readonly length: number;
}

/**
 * Reads the PRP entries of a list into `target` (the walk sizes it):
 * NVME_SC_SUCCESS, or the status that ends the walk (the list is in host
 * memory the controller cannot reach, or in a CMB that does not take lists).
 */
export type PrpListReader = (address: bigint, target: Buffer) => number;

const PRP_ENTRY_SIZE = 8;

/**
 * The memory behind `length` bytes of data described by PRP1/PRP2 (NVMe 1.4
 * section 4.3, "Physical Region Page Entry and List"), with pages of
 * `pageSize` bytes (CC.MPS):
 *   - PRP1 is the first page and may start at an offset in it;
 *   - if the data ends in the next page, PRP2 is that page's address;
 *   - beyond that, PRP2 points at a PRP list (at any qword offset of a page),
 *     whose entries are page addresses; when the pages left do not fit in the
 *     rest of a list page, its last entry points at the next list page.
 * Every entry but PRP1 must be page aligned, and PRP1 dword aligned, else
 * Invalid PRP Offset (the status's definition among the generic command
 * statuses). The caller
 * bounds `length` by MDTS first, which bounds the walk.
 */
export function nvmePrpSegments(prp1: bigint, prp2: bigint, length: number, pageSize: number, readList: PrpListReader): PrpSegment[] | number {
  const page = BigInt(pageSize);
  const offsetIn = (address: bigint): number => Number(address % page);
  if (length === 0) return [];
  if ((prp1 & 0x3n) !== 0n) return nvmeInvalid(NVME_SC_PRP_INVALID_OFFSET);
  const first = Math.min(length, pageSize - offsetIn(prp1));
  const segments: PrpSegment[] = [{ address: prp1, length: first }];
  let remaining = length - first;
  if (remaining === 0) return segments;
  if (remaining <= pageSize) {
    if (offsetIn(prp2) !== 0) return nvmeInvalid(NVME_SC_PRP_INVALID_OFFSET);
    segments.push({ address: prp2, length: remaining });
    return segments;
  }
  // A list pointer addresses qword entries: it must be qword aligned, so a list page holds at least one.
  if ((prp2 & 0x7n) !== 0n) return nvmeInvalid(NVME_SC_PRP_INVALID_OFFSET);
  let list = prp2;
  while (remaining > 0) {
    const slots = (pageSize - offsetIn(list)) / PRP_ENTRY_SIZE;
    const pagesLeft = Math.ceil(remaining / pageSize);
    const chained = pagesLeft > slots;
    const entries = Buffer.alloc((chained ? slots : pagesLeft) * PRP_ENTRY_SIZE);
    const status = readList(list, entries);
    if (status !== NVME_SC_SUCCESS) return status;
    const dataEntries = chained ? slots - 1 : pagesLeft;
    for (let i = 0; i < dataEntries; i++) {
      const address = entries.readBigUInt64LE(i * PRP_ENTRY_SIZE);
      if (offsetIn(address) !== 0) return nvmeInvalid(NVME_SC_PRP_INVALID_OFFSET);
      const piece = Math.min(remaining, pageSize);
      segments.push({ address, length: piece });
      remaining -= piece;
    }
    if (chained) {
      list = entries.readBigUInt64LE((slots - 1) * PRP_ENTRY_SIZE);
      if (offsetIn(list) !== 0) return nvmeInvalid(NVME_SC_PRP_INVALID_OFFSET);
    }
  }
  return segments;
}
