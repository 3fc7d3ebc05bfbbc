/**
 * A buffer's dma_resv lock as an async mutex: FIFO, handed straight to the
 * next waiter on unlock. Idle it is two fields and no closure, so ten
 * thousand idle buffers cost next to nothing.
 */
export class ReservationLock {
  #held = false;
  #waiters: (() => void)[] | undefined;

  /** Runs `critical` holding the lock; waits first if someone else holds it. */
  async run<T>(critical: () => Promise<T>): Promise<T> {
    await this.#lock();
    try {
      return await critical();
    } finally {
      this.#unlock();
    }
  }

  async #lock(): Promise<void> {
    if (!this.#held) {
      this.#held = true;
      return;
    }
    await new Promise<void>((resolve) => {
      (this.#waiters ??= []).push(resolve);
    });
  }

  #unlock(): void {
    const next = this.#waiters?.shift();
    if (next !== undefined) {
      // Ownership passes to the next waiter: #held stays set.
      next();
      return;
    }
    this.#held = false;
    this.#waiters = undefined;
  }
}
