/** How long a set-up or a clean-up may take before a worker gives up on it. */
export const STEP_TIMEOUT_MS = 10_000;

/** `promise`, or ETIMEDOUT after `ms`: a worker that waits on a hurt service must not wait forever. */
export function withTimeout<T>(promise: Promise<T>, what: string, ms = STEP_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`ETIMEDOUT: ${what} took over ${ms} ms`)), ms))),
  ]);
}

/** An error's first line, for the history and the log. */
export function message(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0]!;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A nap that wake() cuts short: a worker waits for a while, or until it has something to look at. */
export class Nap {
  #wake: () => void = () => undefined;

  /** Resolves after `ms`, or at the next wake(). */
  nap(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  wake(): void {
    this.#wake();
  }
}

/** Anything with a close a hurt deployment may refuse: a registry session. */
interface Closable {
  close(): Promise<void>;
}

/**
 * A worker's life: whether it was told to stop, a nap that stop (or
 * wake) cuts short, and the processes whose close failed while the deployment was
 * hurt, closed again at the end.
 */
export class WorkerLife extends Nap {
  #stopped = false;
  readonly #unclosed: Closable[] = [];

  constructor(
    /** "dma", "nvme": how the log names the worker's processes. */
    private readonly kind: string,
    private readonly log: (line: string) => void,
  ) {
    super();
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  /** Stops the worker, cutting its nap short. */
  stop(): void {
    this.#stopped = true;
    this.wake();
  }

  /** Closes `process`; one that cannot be closed now is kept for closeLeftovers(). */
  async close(process: Closable): Promise<void> {
    await withTimeout(process.close(), `closing the ${this.kind} process`).catch(() => this.#unclosed.push(process));
  }

  async closeLeftovers(): Promise<void> {
    for (const process of this.#unclosed.splice(0)) {
      await withTimeout(process.close(), `closing a left-over ${this.kind} process`).catch((error: unknown) => this.log(`left-over ${this.kind} process: ${message(error)}`));
    }
  }
}
