import type { Metadata } from '@grpc/grpc-js';
import { actingPid, type Authenticator, type Caller } from '@p2p/auth';

/** What a handler has of a call: its metadata, which carries the credential. */
export interface CallWithMetadata {
  readonly metadata: Metadata;
}

/**
 * Who makes `call`. Synchronous where the server can tell at once (the
 * administrator's and platform's tokens, a credential it has seen), a
 * promise where it must ask the registry.
 */
export function callerOf(auth: Authenticator, call: CallWithMetadata): Caller | Promise<Caller> {
  return auth.callerOf(call.metadata);
}

/**
 * The pid `call` acts in when its request names `pid`: the caller's own for
 * a process (EPERM if it names another), the named one for the platform and
 * the administrator, EPERM for an anonymous caller (see actingPid).
 */
export function actingPidOf(auth: Authenticator, call: CallWithMetadata, pid: number, what: string): number | Promise<number> {
  const caller = auth.callerOf(call.metadata);
  return caller instanceof Promise ? caller.then((c) => actingPid(c, pid, what)) : actingPid(caller, pid, what);
}

/**
 * Runs `fn` in the pid `call` acts in (see actingPidOf), and answers what
 * it answers: at once when the server can tell who calls, once the registry
 * has said otherwise. An async handler awaiting the pid would wait for the
 * microtask queue even when it is known.
 */
export function withActingPid<T>(auth: Authenticator, call: CallWithMetadata, pid: number, what: string, fn: (pid: number) => T | Promise<T>): T | Promise<T> {
  const acting = actingPidOf(auth, call, pid, what);
  return acting instanceof Promise ? acting.then(fn) : fn(acting);
}
