import { errno } from '@p2p/errno';

/* include/uapi/asm-generic/mman-common.h */
export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;

/** The bits mmap here accepts: the model maps no code, so PROT_EXEC and the rest are EINVAL. */
const VALID_PROT = PROT_READ | PROT_WRITE;

/** `prot` if it is made of PROT_READ and PROT_WRITE only, else EINVAL. */
export function checkProt(prot: number, what: string): number {
  if (!Number.isSafeInteger(prot) || prot < 0 || (prot & ~VALID_PROT) !== 0) {
    throw errno('EINVAL', `${what}: prot ${prot} has bits other than PROT_READ (1) and PROT_WRITE (2)`);
  }
  return prot;
}

/** The permission letters of /proc/<pid>/maps ("rw-s"): always shared, as a dma-buf mapping is. */
export function protString(prot: number): string {
  return `${prot & PROT_READ ? 'r' : '-'}${prot & PROT_WRITE ? 'w' : '-'}-s`;
}
