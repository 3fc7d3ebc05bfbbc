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
