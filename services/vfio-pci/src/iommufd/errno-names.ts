import { errno, type ErrnoError, type ErrnoName } from '@p2p/errno';

/**
 * Two errno values iommufd returns that @p2p/errno does not list: where the
 * kernel answers EADDRINUSE (98: IOVA ranges reserved, allowed or mapped in
 * a way that conflicts) the model answers EBUSY, and where it answers EBADFD
 * (77: an fd that is open but not an iommufd) the model answers EBADF. The
 * message names the kernel's errno.
 */
const EADDRINUSE: ErrnoName = 'EBUSY';
const EBADFD: ErrnoName = 'EBADF';

export function addressInUse(detail: string): ErrnoError {
  return errno(EADDRINUSE, `${detail} (EADDRINUSE in the kernel)`);
}

export function notAnIommufd(detail: string): ErrnoError {
  return errno(EBADFD, `${detail} (EBADFD in the kernel)`);
}
