/**
 * vdev->memory_lock, a read-write semaphore as in the kernel: BAR accesses
 * (vfio_pci_core_do_io_rw() with test_mem) hold it for reading and run side
 * by side; everything that changes whether the BARs decode, and every move
 * of the device's dma-bufs, holds it for writing, alone. Waiters are served
 * in arrival order, and a reader that arrives behind a waiting writer waits
 * too, so BAR traffic cannot starve a reset or a revoke (rwsem's handoff).
 */
export class MemoryLock {
  readonly #waiting: { readonly write: boolean; readonly grant: () => void }[] = [];
  #readers = 0;
  #writer = false;

  /** down_write(): resolves with the release function once this caller holds the lock alone. */
  acquire(): Promise<() => void> {
    return this.#enqueue(true);
  }

  /** down_read(): resolves with the release function once no writer holds or waits ahead of this caller. */
  acquireRead(): Promise<() => void> {
    return this.#enqueue(false);
  }

  /** down_write_trylock(): the release function, or undefined if anyone holds or waits for the lock. */
  tryAcquire(): (() => void) | undefined {
    if (this.#writer || this.#readers > 0 || this.#waiting.length > 0) return undefined;
    this.#writer = true;
    return this.#release(true);
  }

  /** `operation` holding the lock for writing. */
  run<T>(operation: () => Promise<T>): Promise<T> {
    return this.#hold(this.acquire(), operation);
  }

  /** `operation` holding the lock for reading. */
  read<T>(operation: () => Promise<T>): Promise<T> {
    return this.#hold(this.acquireRead(), operation);
  }

  async #hold<T>(acquired: Promise<() => void>, operation: () => Promise<T>): Promise<T> {
    const release = await acquired;
    try {
      return await operation();
    } finally {
      release();
    }
  }

  #enqueue(write: boolean): Promise<() => void> {
    return new Promise((resolve) => {
      this.#waiting.push({ write, grant: () => resolve(this.#release(write)) });
      this.#dispatch();
    });
  }

  /** Grants the lock to the waiters at the head of the queue that may hold it now. */
  #dispatch(): void {
    for (;;) {
      const next = this.#waiting[0];
      if (next === undefined || this.#writer) return;
      if (next.write && this.#readers > 0) return;
      this.#waiting.shift();
      if (next.write) this.#writer = true;
      else this.#readers++;
      next.grant();
      if (next.write) return;
    }
  }

  #release(write: boolean): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (write) this.#writer = false;
      else this.#readers--;
      this.#dispatch();
    };
  }
}
