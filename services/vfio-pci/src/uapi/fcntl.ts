/* open(2) flags with their Linux values (include/uapi/asm-generic/fcntl.h). */
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_ACCMODE = 3;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;

/**
 * What the model keeps of a dma-buf's open_flags (the project's rule): the
 * access mode and O_NONBLOCK; every other bit is dropped without an error.
 */
export const DMA_BUF_KEPT_OPEN_FLAGS = O_ACCMODE | O_NONBLOCK;
