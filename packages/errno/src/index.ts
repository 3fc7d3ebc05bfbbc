export { Errno, ERRNO_NAMES, isErrnoName, errnoValue, type ErrnoName } from './errno';
export { ErrnoError, errno } from './errno-error';
