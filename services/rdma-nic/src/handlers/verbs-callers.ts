import type { Authenticator, Caller } from '@p2p/auth';
import { actingPid } from '@p2p/auth';
import { callerOf, type CallWithMetadata } from '@p2p/server';
import type { RdmaDevice } from '../context/rdma-device';
import type { VerbsContext } from '../context/verbs-context';

/** What names a verbs context in a request: the process and its context fd. */
export interface ContextRef {
  readonly pid: number;
  readonly contextFd: number;
}

/**
 * The caller's side of every verb: the process a call acts in, proven by its
 * credential (the registry is asked once per credential, then the answer is
 * remembered until the process exits), and the context it names in that
 * process's fd table.
 */
export class VerbsCallers {
  constructor(
    private readonly device: RdmaDevice,
    private readonly auth: Authenticator,
  ) {}

  /** Who makes `call` (see Authenticator.callerOf). */
  caller(call: CallWithMetadata): Caller | Promise<Caller> {
    return callerOf(this.auth, call);
  }

  /** The pid `call` acts in when it names `pid`: EPERM for another process's. */
  async pid(call: CallWithMetadata, pid: number, what: string): Promise<number> {
    return actingPid(await this.caller(call), pid, what);
  }

  /** The context `ref` names, in the fd table of the process `call` proves. */
  async context(call: CallWithMetadata, ref: ContextRef, what: string): Promise<VerbsContext> {
    return this.device.context(await this.pid(call, ref.pid, what), ref.contextFd);
  }

  /** The same for a caller already known (a stream's, checked once at its start). */
  contextAs(caller: Caller, ref: ContextRef, what: string): Promise<VerbsContext> {
    return this.device.context(actingPid(caller, ref.pid, what), ref.contextFd);
  }
}
