import { newToken } from '@p2p/auth';

/**
 * The credentials of one registry incarnation: an unguessable token per live
 * process, the only proof of being that process on any service. A token dies
 * with its process, and all of them with the incarnation (this table is not
 * persisted: a new registry knows none of the old tokens).
 */
export class ProcessCredentials {
  readonly #pidOf = new Map<string, number>();
  readonly #tokenOf = new Map<number, string>();

  /** A fresh credential for `pid`, replacing none: one per process for its whole life. */
  issue(pid: number): string {
    if (this.#tokenOf.has(pid)) throw new Error(`pid ${pid} has a credential already`);
    const token = newToken();
    this.#pidOf.set(token, pid);
    this.#tokenOf.set(pid, token);
    return token;
  }

  /** The live process `token` proves, or undefined for a forged, dead or foreign one. */
  resolve(token: string): number | undefined {
    return this.#pidOf.get(token);
  }

  /** Process exit: from now on the token proves nothing. */
  revoke(pid: number): void {
    const token = this.#tokenOf.get(pid);
    if (token === undefined) return;
    this.#tokenOf.delete(pid);
    this.#pidOf.delete(token);
  }
}
