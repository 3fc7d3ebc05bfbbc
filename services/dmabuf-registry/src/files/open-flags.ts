import { errno } from '@p2p/errno';

/*
 * open(2) flags with their Linux values (include/uapi/asm-generic/fcntl.h).
 * A file keeps them as its f_flags, which is what bufinfo prints; the model
 * has no exec, so O_CLOEXEC is recorded but changes nothing.
 */
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_ACCMODE = 3;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;

/** What dma_buf_fd() and fd_install() accept here: the access mode, close-on-exec and non-blocking. */
const VALID_OPEN_FLAGS = O_ACCMODE | O_CLOEXEC | O_NONBLOCK;

/** include/uapi/linux/dma-heap.h: DMA_HEAP_VALID_FD_FLAGS (no O_NONBLOCK). */
export const DMA_HEAP_VALID_FD_FLAGS = O_CLOEXEC | O_ACCMODE;

/**
 * Returns `flags` if it is a non-negative integer made only of `valid` bits
 * with a real access mode, else EINVAL. Access mode 3 is refused: Linux
 * gives it to open(2) as "ioctl only", which means nothing for a buffer.
 */
export function checkOpenFlags(flags: number, what: string, valid: number = VALID_OPEN_FLAGS): number {
  if (!Number.isSafeInteger(flags) || flags < 0) {
    throw errno('EINVAL', `${what}: open flags ${flags} are not a non-negative integer`);
  }
  const unknown = flags & ~valid;
  if (unknown !== 0) {
    throw errno('EINVAL', `${what}: open flags 0o${flags.toString(8)} have bits 0o${unknown.toString(8)} outside 0o${valid.toString(8)}`);
  }
  if ((flags & O_ACCMODE) === O_ACCMODE) {
    throw errno('EINVAL', `${what}: access mode 3 (O_RDONLY|O_WRONLY|O_RDWR are 0, 1, 2)`);
  }
  return flags;
}

/** FMODE_READ: the file was opened O_RDONLY or O_RDWR. */
export function openedForReading(flags: number): boolean {
  return (flags & O_ACCMODE) !== O_WRONLY;
}

/** FMODE_WRITE: the file was opened O_WRONLY or O_RDWR. */
export function openedForWriting(flags: number): boolean {
  return (flags & O_ACCMODE) !== O_RDONLY;
}
