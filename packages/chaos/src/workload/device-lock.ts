/**
 * One holder at a time for the device's memory decode: the owner's revoke
 * (clear, read, read, set) and the nemesis's device faults must not
 * interleave, or a revoke would read a BAR that a fault, not DMA, changed.
 */
export class DeviceLock {
  #tail: Promise<void> = Promise.resolve();

  async hold<T>(run: () => Promise<T>): Promise<T> {
    const previous = this.#tail;
    let release!: () => void;
    this.#tail = new Promise<void>((resolve) => (release = resolve));
    await previous;
    try {
      return await run();
    } finally {
      release();
    }
  }
}
