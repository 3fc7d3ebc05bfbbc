/**
 * A sleeping lock (struct mutex): one holder at a time, waiters served in
 * order. iommufd serialises a context's ioctls with one (the model's stand-in
 * for its object, IOVA and domain locks) and each dma-buf's pages with
 * another (pages->mutex), which a revoke takes without the first.
 */
export class Mutex {
  #tail: Promise<void> = Promise.resolve();

  async run<T>(operation: () => Promise<T>): Promise<T> {
    const previous = this.#tail;
    let release!: () => void;
    this.#tail = new Promise<void>((resolve) => (release = resolve));
    await previous;
    try {
      return await operation();
    } finally {
      release();
    }
  }
}
