import { ErrnoError } from '@p2p/errno';
import { errnoOf } from '@p2p/status';

/**
 * A failed registry call as an ErrnoError: the errno the status carries (EIO
 * if it carries none, e.g. UNAVAILABLE from a dead connection), `what` and the
 * server's detail. The gRPC error stays reachable as `cause`.
 */
export function asErrnoError(error: unknown, what: string): ErrnoError {
  if (error instanceof ErrnoError) return error;
  const name = errnoOf(error) ?? 'EIO';
  const message = error instanceof Error ? error.message : String(error);
  // The status message is "<ERRNO>: <detail>" (toStatus); keep only the detail.
  const detail = message.startsWith(`${name}: `) ? message.slice(name.length + 2) : message;
  const converted = new ErrnoError(name, `${what}: ${detail}`);
  converted.cause = error;
  return converted;
}
