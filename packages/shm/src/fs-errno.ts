import { type ErrnoError, errno, isErrnoName } from '@p2p/errno';

/**
 * Turns a Node fs error into an ErrnoError carrying the same errno name, so
 * callers see ENOENT/EEXIST/EACCES exactly as the syscall reported them.
 * Codes the model has no name for become EIO with the original code kept in
 * the detail.
 */
export function fsErrno(err: unknown, detail: string): ErrnoError {
  if (err instanceof Error && 'code' in err && typeof err.code === 'string') {
    if (isErrnoName(err.code)) return errno(err.code, detail);
    return errno('EIO', `${detail} (${err.code})`);
  }
  return errno('EIO', `${detail}: ${err instanceof Error ? err.message : String(err)}`);
}

/** Runs one fs call, rethrowing its failure as an ErrnoError. */
export function fsCall<T>(call: () => T, detail: string): T {
  try {
    return call();
  } catch (err) {
    throw fsErrno(err, detail);
  }
}
