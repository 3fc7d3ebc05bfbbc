import { PAGE_SIZE } from '@p2p/shm';

/*
 * The user address space of an x86-64 process with 4-level paging, as far as
 * mmap(2) sees it: nothing below mmap_min_addr, nothing at or above
 * TASK_SIZE, and mappings without a hint placed top-down below mmap_base
 * (mm->mmap_base sits below the stack and its gap; the model has no stack).
 */

/** vm.mmap_min_addr's default: MAP_FIXED below it is EPERM (security_mmap_addr()). */
export const MMAP_MIN_ADDR = 0x1_0000;
/** mm->mmap_base: where top-down placement starts (arch_get_unmapped_area_topdown()). */
export const MMAP_BASE = 0x7f00_0000_0000;
/** TASK_SIZE_MAX with 4-level paging: the end of user space. */
export const TASK_SIZE = 0x7fff_ffff_f000;
/** vm.max_map_count's default (DEFAULT_MAX_MAP_COUNT in include/linux/mm.h). */
export const DEFAULT_MAX_MAP_COUNT = 65530;

/** PAGE_ALIGN(): rounds up to a whole number of pages. */
export function pageAlign(size: number): number {
  return Math.ceil(size / PAGE_SIZE) * PAGE_SIZE;
}

/** A non-negative safe integer that is a multiple of the page size (offset_in_page() == 0). */
export function isPageAligned(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0 && value % PAGE_SIZE === 0;
}

/** An address as /proc/<pid>/maps and error messages print it. */
export function hex(address: number): string {
  return `0x${address.toString(16)}`;
}
