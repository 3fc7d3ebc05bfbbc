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
    // One digest per call, compared in constant time with the secrets' own.
    const digest = tokenDigest(token);
    if (timingSafeEqual(digest, this.#admin)) return ADMIN;
    if (timingSafeEqual(digest, this.#platform)) return PLATFORM;
    if (!this.processes) return ANONYMOUS;
    const pid = this.processes.resolve(token);
    return pid instanceof Promise ? pid.then(processCaller) : processCaller(pid);
  }
}

function processCaller(pid: number | undefined): Caller {
  if (pid === undefined) throw errno('EPERM', 'the credential proves no live process of this registry incarnation');
  return { kind: 'process', pid };
}

/** Who may call a method at all; finer rules (which pid) are the handlers'. */
export type Access = 'any' | 'privileged' | 'admin';

/**
 * A server interceptor that refuses a call its caller may not make, before
 * the handler (or a fault rule) sees it. `access` maps a full method path to
 * the role it needs.
 */
export function accessInterceptor(auth: Authenticator, access: (method: string) => Access): ServerInterceptor {
  return (methodDescriptor, call) =>
    new ServerInterceptingCall(call, {
      start: (next) => {
        const listener = new ServerListenerBuilder()
          .withOnReceiveMetadata((metadata, proceed) => {
            const method = methodDescriptor.path;
            const needed = access(method);
            if (needed === 'any') {
              proceed(metadata);
              return;
            }
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
}
