import { randomUUID } from 'node:crypto';
import { errno } from '@p2p/errno';
import type { RegistryFile } from './registry-file';

interface InFlight {
  readonly file: RegistryFile;
  readonly fromPid: number;
  readonly toPid: number;
}

/**
 * fds in flight, as SCM_RIGHTS carries them in a unix socket's queue: a token
 * holds a reference to the file until its one recipient receives it
 * (receive_fd() installs that same reference) or it is dropped.
 */
export class FdTransfers {
  readonly #inFlight = new Map<string, InFlight>();

  /** Takes over a reference the caller has already taken. Tokens are unguessable. */
  send(file: RegistryFile, fromPid: number, toPid: number): string {
    const token = randomUUID();
    this.#inFlight.set(token, { file, fromPid, toPid });
    return token;
  }

  /**
   * Hands the token's reference to `pid`. ENOENT for an unknown or redeemed
   * token; EPERM for anyone but the recipient, and the token stays valid.
   */
  receive(token: string, pid: number): RegistryFile {
    const entry = this.#inFlight.get(token);
    if (entry === undefined) throw errno('ENOENT', 'no fd in flight under this token (never sent, or already received)');
    if (entry.toPid !== pid) throw errno('EPERM', `the fd in flight is addressed to pid ${entry.toPid}, not ${pid}`);
    this.#inFlight.delete(token);
    return entry.file;
  }

  /** Forgets every token `pid` sent or was sent; returns their files, whose references the caller drops. */
  dropInvolving(pid: number): RegistryFile[] {
    const dropped: RegistryFile[] = [];
    for (const [token, entry] of this.#inFlight) {
      if (entry.fromPid === pid || entry.toPid === pid) {
        this.#inFlight.delete(token);
        dropped.push(entry.file);
      }
    }
    return dropped;
  }
}
