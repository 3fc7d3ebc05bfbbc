/**
 * Runs `open` until it succeeds, fails with an error `retryable` refuses, or
 * `timeoutMs` passes (then its last error is thrown), waiting `intervalMs`
 * between attempts: how a service waits for its peers (pci-emu, the registry)
 * to come up, as they may still be starting under compose.
 */
export async function retryUntil<T>(
  timeoutMs: number,
  open: () => Promise<T>,
  retryable: (error: unknown) => boolean = () => true,
  intervalMs = 500,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await open();
    } catch (error) {
      if (!retryable(error) || Date.now() >= deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  }
}
