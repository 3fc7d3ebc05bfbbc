/**
 * vdev->memory_lock as a writer lock: one holder at a time, waiters served in
 * order. Everything that changes whether the BARs decode, and every move of
 * the device's dma-bufs, runs under it.
 */
export class MemoryLock {
  #tail: Promise<void> = Promise.resolve();
  #users = 0;

  /** down_write(): resolves with the release function once this caller holds the lock. */
  async acquire(): Promise<() => void> {
    const release = this.#enqueue();
    await release.previous;
    return release.release;
  }

  /** down_write_trylock(): the release function, or undefined if anyone holds or waits for the lock. */
  tryAcquire(): (() => void) | undefined {
    return this.#users > 0 ? undefined : this.#enqueue().release;
  }

  async run<T>(operation: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await operation();
    } finally {
      release();
    }
  }

  #enqueue(): { previous: Promise<void>; release: () => void } {
    this.#users++;
    const previous = this.#tail;
    let open!: () => void;
    this.#tail = new Promise<void>((resolve) => (open = resolve));
    let released = false;
    return {
      previous,
      release: () => {
        if (released) return;
        released = true;
        this.#users--;
        open();
      },
    };
  }
}
