import { Metadata, status as Code, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { ErrnoError, type ErrnoName, errnoValue, isErrnoName } from '@p2p/errno';
import { protobufAny, rpcErrorDetails, rpcStatus } from '@p2p/proto';

/** Plain-text trailer with the errno name, for clients without rich-error helpers. */
export const ERRNO_METADATA_KEY = 'p2p-errno';
/** google.rpc.ErrorInfo.domain of every errno error. */
export const ERROR_DOMAIN = 'errno.p2p-dmabuf';

const STATUS_DETAILS_KEY = 'grpc-status-details-bin';
const ERROR_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.ErrorInfo';

/**
 * The gRPC code a client sees for each errno. The errno name itself travels in
 * the details, so the code only has to sort errors into what a generic client
 * would do about them (retry, fix the request, give up).
 */
const CODES: Partial<Record<ErrnoName, Code>> = {
  EPERM: Code.PERMISSION_DENIED,
  EACCES: Code.PERMISSION_DENIED,
  ENOENT: Code.NOT_FOUND,
  ENODEV: Code.NOT_FOUND,
  ENXIO: Code.NOT_FOUND,
  ESRCH: Code.NOT_FOUND,
  ESTALE: Code.FAILED_PRECONDITION,
  EBADF: Code.FAILED_PRECONDITION,
  EBADFD: Code.FAILED_PRECONDITION,
  EBUSY: Code.FAILED_PRECONDITION,
  EADDRINUSE: Code.FAILED_PRECONDITION,
  EEXIST: Code.ALREADY_EXISTS,
  EOVERFLOW: Code.OUT_OF_RANGE,
  ERANGE: Code.OUT_OF_RANGE,
  EOPNOTSUPP: Code.UNIMPLEMENTED,
  ENOTTY: Code.UNIMPLEMENTED,
  ENOSYS: Code.UNIMPLEMENTED,
  ENOMEM: Code.RESOURCE_EXHAUSTED,
  ENOSPC: Code.RESOURCE_EXHAUSTED,
  EMFILE: Code.RESOURCE_EXHAUSTED,
  // The code grpc-js gives a message over the limit, so both read the same to a generic client.
  EMSGSIZE: Code.RESOURCE_EXHAUSTED,
  EAGAIN: Code.UNAVAILABLE,
  ECONNRESET: Code.UNAVAILABLE,
  ECONNREFUSED: Code.UNAVAILABLE,
  ENOTCONN: Code.UNAVAILABLE,
  ESHUTDOWN: Code.UNAVAILABLE,
  ETIMEDOUT: Code.DEADLINE_EXCEEDED,
  ECANCELED: Code.CANCELLED,
  // A device (or a peer standing in for one) failed the transfer. INTERNAL is
  // kept for bugs in the server, so a client can tell the two apart.
  EIO: Code.DATA_LOSS,
};

/**
 * The most of a message a status carries. Messages quote what a caller sent;
 * a 1 MB field echoed back would make trailers a stock client rejects before
 * it ever reads the errno, so the tail is cut.
 */
export const MAX_STATUS_MESSAGE = 512;

export function grpcCodeFor(name: ErrnoName): Code {
  return CODES[name] ?? Code.INVALID_ARGUMENT;
}

/**
 * The status for a failed call. An ErrnoError keeps its errno; anything else
 * is a bug in the server: INTERNAL, carrying EIO and the bug's message.
 */
export function toStatus(error: unknown, overrideCode?: Code): StatusObject {
  const bug = !(error instanceof ErrnoError);
  const failure = bug ? new ErrnoError('EIO', `internal error: ${error instanceof Error ? error.message : String(error)}`) : error;
  const code = overrideCode ?? (bug ? Code.INTERNAL : grpcCodeFor(failure.errno));
  const message = bounded(failure.message);
  const metadata = new Metadata();
  metadata.set(ERRNO_METADATA_KEY, failure.errno);
  const info = rpcErrorDetails.ErrorInfo.encode({
    reason: failure.errno,
    domain: ERROR_DOMAIN,
    metadata: { errno: String(errnoValue(failure.errno)), detail: bounded(failure.detail) },
  }).finish();
  const details = rpcStatus.Status.encode({
    code,
    message,
    details: [protobufAny.Any.fromPartial({ typeUrl: ERROR_INFO_TYPE_URL, value: Buffer.from(info) })],
  }).finish();
  metadata.set(STATUS_DETAILS_KEY, Buffer.from(details));
  return { code, details: message, metadata };
}

function bounded(text: string): string {
  return text.length <= MAX_STATUS_MESSAGE ? text : `${text.slice(0, MAX_STATUS_MESSAGE - 15)}... (truncated)`;
}

/** The same, shaped as the error object grpc-js callbacks take. */
export function toServiceError(error: unknown, overrideCode?: Code): ServiceError {
  const status = toStatus(error, overrideCode);
  return Object.assign(new Error(status.details), status);
}

/**
 * The errno an error carries: an ErrnoError's own; for a grpc-js
 * ServiceError, from the rich details when present, else from the plain
 * trailer; for a nice-grpc RichClientError, from its decoded details.
 * Undefined for a status with no errno (for instance UNAVAILABLE from a dead
 * connection).
 */
export function errnoOf(error: unknown): ErrnoName | undefined {
  if (error instanceof ErrnoError) return error.errno;
  if (typeof error !== 'object' || error === null) return undefined;
  if ('extra' in error && Array.isArray(error.extra)) return errnoOfDetails(error.extra as readonly unknown[]);
  if (!('metadata' in error)) return undefined;
  const metadata = (error as { metadata?: unknown }).metadata;
  if (!(metadata instanceof Metadata)) return undefined;
  const [details] = metadata.get(STATUS_DETAILS_KEY);
  if (details instanceof Buffer) {
    const decoded = rpcStatus.Status.decode(details);
    for (const any of decoded.details) {
      if (any.typeUrl !== ERROR_INFO_TYPE_URL) continue;
      const reason = rpcErrorDetails.ErrorInfo.decode(any.value).reason;
      if (isErrnoName(reason)) return reason;
    }
  }
  const [plain] = metadata.get(ERRNO_METADATA_KEY);
  return typeof plain === 'string' && isErrnoName(plain) ? plain : undefined;
}

/** The errno among decoded status details (nice-grpc-error-details' RichClientError.extra): our domain's ErrorInfo reason. */
function errnoOfDetails(details: readonly unknown[]): ErrnoName | undefined {
  for (const detail of details) {
    const info = detail as { $type?: string; domain?: string; reason?: string };
    if (info.$type === 'google.rpc.ErrorInfo' && info.domain === ERROR_DOMAIN && info.reason !== undefined && isErrnoName(info.reason)) return info.reason;
  }
  return undefined;
}
