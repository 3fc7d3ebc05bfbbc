import { type ErrnoName, errnoValue } from './errno';

/**
 * The one error type of the model: an errno name and a sentence a human can
 * act on. Domain code throws it; the transport maps it to a gRPC status.
 */
export class ErrnoError extends Error {
  override readonly name = 'ErrnoError';

  constructor(
    readonly errno: ErrnoName,
    readonly detail: string,
  ) {
    super(`${errno}: ${detail}`);
  }

  /** The negative return value the kernel would hand back, e.g. -22 for EINVAL. */
  get kernelReturn(): number {
    return -errnoValue(this.errno);
  }
}

/** Shorthand for `new ErrnoError(name, detail)`, for `throw errno('EINVAL', ...)`. */
export function errno(name: ErrnoName, detail: string): ErrnoError {
  return new ErrnoError(name, detail);
}
