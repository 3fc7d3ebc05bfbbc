/**
 * open(2) flags with their Linux values (include/uapi/asm-generic/fcntl.h),
 * for heapAllocate, createFile and exportDmaBuf; the registry accepts the
 * access mode, O_CLOEXEC and (except for heap buffers) O_NONBLOCK.
 */
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
