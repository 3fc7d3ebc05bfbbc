/**
 * The errno names the model uses, with the numeric values of Linux
 * (include/uapi/asm-generic/errno-base.h and errno.h), so a client can hold a
 * status against what the kernel would have returned from the ioctl.
 */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  EMFILE: 24,
  ENOTTY: 25,
  ENOSPC: 28,
  ESPIPE: 29,
  ERANGE: 34,
  ENOSYS: 38,
  EOVERFLOW: 75,
  EBADFD: 77,
  EMSGSIZE: 90,
  EOPNOTSUPP: 95,
  EADDRINUSE: 98,
  ECONNRESET: 104,
  ENOTCONN: 107,
  ESHUTDOWN: 108,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  ESTALE: 116,
  ECANCELED: 125,
} as const;

export type ErrnoName = keyof typeof Errno;

export const ERRNO_NAMES: readonly ErrnoName[] = Object.keys(Errno) as ErrnoName[];

export function isErrnoName(name: string): name is ErrnoName {
  return Object.prototype.hasOwnProperty.call(Errno, name);
}

export function errnoValue(name: ErrnoName): number {
  return Errno[name];
}
