import type { CredentialResolver } from '@p2p/auth';

/** How many credentials a service remembers; past it the oldest is asked again. */
const DEFAULT_CAPACITY = 16_384;

/**
 * A service's memory of which process each credential proves, so that a
 * verb on the hot path (PostSend, an ioctl) pays no round trip to the
 * registry. An entry lives until its process exits (the owner session says
 * so: processExited) or the registry goes (clear). A credential the registry
 * does not know is not remembered: it is asked again next time.
 */
export class CredentialCache implements CredentialResolver {
  readonly #pidOf = new Map<string, number>();
  /** One credential per process, so exits find theirs at once. */
  readonly #credentialOf = new Map<number, string>();
  readonly #capacity: number;
  /** Lookups in flight, and the pids that exited while any was: their answers are stale. */
  #inFlight = 0;
  readonly #exitedInFlight = new Set<number>();
  #generation = 0;

  /** @param ask the registry's ResolveCredential: the pid, or undefined for none. */
  constructor(
    private readonly ask: (credential: string) => Promise<number | undefined>,
    capacity = DEFAULT_CAPACITY,
  ) {
    this.#capacity = capacity;
  }

  resolve(credential: string): number | Promise<number | undefined> {
    const known = this.#pidOf.get(credential);
    if (known !== undefined) return known;
    return this.#lookUp(credential);
  }

  /** The process exited: its credential proves nothing any more. */
  processExited(pid: number): void {
    const credential = this.#credentialOf.get(pid);
    if (credential !== undefined) this.#forget(credential, pid);
    if (this.#inFlight > 0) this.#exitedInFlight.add(pid);
  }

  /** The registry is gone (or a new incarnation): every credential with it. */
  clear(): void {
    this.#pidOf.clear();
    this.#credentialOf.clear();
    this.#generation++;
  }

  get size(): number {
    return this.#pidOf.size;
  }

  async #lookUp(credential: string): Promise<number | undefined> {
    const generation = this.#generation;
    this.#inFlight++;
    try {
      const pid = await this.ask(credential);
      if (pid === undefined || this.#exitedInFlight.has(pid)) return undefined;
      if (generation === this.#generation) this.#remember(credential, pid);
      return pid;
    } finally {
      if (--this.#inFlight === 0) this.#exitedInFlight.clear();
    }
  }

  #remember(credential: string, pid: number): void {
    if (this.#pidOf.size >= this.#capacity) {
      const [oldest, owner] = this.#pidOf.entries().next().value ?? [];
      if (oldest !== undefined && owner !== undefined) this.#forget(oldest, owner);
    }
    this.#pidOf.set(credential, pid);
    this.#credentialOf.set(pid, credential);
  }

  #forget(credential: string, pid: number): void {
    this.#pidOf.delete(credential);
    this.#credentialOf.delete(pid);
  }
}
