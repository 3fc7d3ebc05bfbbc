import { timingSafeEqual } from 'node:crypto';
import { type Metadata, type ServerInterceptor, ServerInterceptingCall, ServerListenerBuilder } from '@grpc/grpc-js';
import { errno } from '@p2p/errno';
import { toStatus } from '@p2p/status';
import { ADMIN, ANONYMOUS, type Caller, PLATFORM, requireAdmin, requirePrivileged } from './caller';
import { bearerOf } from './metadata';
import { type PlatformSecrets, tokenDigest } from './tokens';

/** Turns a process credential into the pid it proves; undefined for none. */
export interface CredentialResolver {
  resolve(credential: string): number | undefined | Promise<number | undefined>;
}

/** Process credentials an Authenticator remembers as proven; past it the oldest is digested again. */
const PROVEN_CAPACITY = 16_384;

/**
 * Tells who a call comes from: the administrator's and the platform's tokens
 * are checked here, anything else is a process credential for `processes`.
 * A server that knows no processes (pci-emu) takes any other token as
 * anonymous; one that does rejects an unknown credential with EPERM rather
 * than let a dead or forged one pass for no credential at all.
 */
export class Authenticator {
  readonly #admin: Buffer;
  readonly #platform: Buffer;
  /**
   * Tokens `processes` proved to be a live process's credential. Each was
   * digested and found to be neither secret on its way in, and the secrets
   * never change, so a token found here skips the digest: the hot path of
   * every process's calls. Whether a token is found tells its presenter
   * nothing about the secrets, which are never in the set; only whether its
   * own token is a credential, which the answer to its call says anyway.
   */
  readonly #proven = new Set<string>();

  constructor(
    secrets: PlatformSecrets,
    private readonly processes?: CredentialResolver,
  ) {
    this.#admin = tokenDigest(secrets.adminToken);
    this.#platform = tokenDigest(secrets.platformToken);
  }

  callerOf(metadata: Metadata): Caller | Promise<Caller> {
    const token = bearerOf(metadata);
    if (token === undefined) return ANONYMOUS;
    if (!this.#proven.has(token)) {
      // One digest per call that may carry a secret, compared in constant time with the secrets' own.
      const digest = tokenDigest(token);
      if (timingSafeEqual(digest, this.#admin)) return ADMIN;
      if (timingSafeEqual(digest, this.#platform)) return PLATFORM;
    }
    if (!this.processes) return ANONYMOUS;
    const pid = this.processes.resolve(token);
    return pid instanceof Promise ? pid.then((resolved) => this.#processCaller(token, resolved)) : this.#processCaller(token, pid);
  }

  #processCaller(token: string, pid: number | undefined): Caller {
    if (pid === undefined) {
      // Forged, foreign or dead: one proven before has outlived its process.
      this.#proven.delete(token);
      throw errno('EPERM', 'the credential proves no live process of this registry incarnation');
    }
    if (!this.#proven.has(token)) this.#remember(token);
    return { kind: 'process', pid };
  }

  #remember(token: string): void {
    if (this.#proven.size >= PROVEN_CAPACITY) {
      const [oldest] = this.#proven;
      if (oldest !== undefined) this.#proven.delete(oldest);
    }
    this.#proven.add(token);
  }
}

/** Who may call a method at all; finer rules (which pid) are the handlers'. */
export type Access = 'any' | 'privileged' | 'admin';

/**
 * A server interceptor that refuses a call its caller may not make, before
 * the handler (or a fault rule) sees it. `access` maps a full method path to
 * the role it needs.
 */
export function accessInterceptor(auth: Authenticator, access: (method: string) => Access): ServerInterceptor {
  return (methodDescriptor, call) => {
    const method = methodDescriptor.path;
    const needed = access(method);
    // Open to anyone: the call goes on as it is, without a layer of its own.
    // (grpc-js types an interceptor's result as its ServerInterceptingCall
    // class, but calls only the methods of the interface `call` has.)
    if (needed === 'any') return call as ServerInterceptingCall;
    return new ServerInterceptingCall(call, {
      start: (next) => {
        const listener = new ServerListenerBuilder()
          .withOnReceiveMetadata((metadata, proceed) => {
            const allowed = (caller: Caller): boolean => {
              try {
                if (needed === 'admin') requireAdmin(caller, method);
                else requirePrivileged(caller, method);
                return true;
              } catch (error) {
                call.sendStatus(toStatus(error));
                return false;
              }
            };
            let caller: Caller | Promise<Caller>;
            try {
              caller = auth.callerOf(metadata);
            } catch (error) {
              call.sendStatus(toStatus(error));
              return;
            }
            if (!(caller instanceof Promise)) {
              if (allowed(caller)) proceed(metadata);
              return;
            }
            caller.then(
              (resolved) => {
                if (allowed(resolved)) proceed(metadata);
              },
              (error: unknown) => call.sendStatus(toStatus(error)),
            );
          })
          .build();
        next(listener);
      },
    });
  };
}
