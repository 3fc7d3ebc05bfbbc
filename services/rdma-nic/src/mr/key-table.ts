/**
 * mkey allocation the way mlx5 builds them: a 24-bit index and an 8-bit
 * variant byte, `index << 8 | variant`. Indices start at 1, so no key is
 * ever 0, and the variant bumps on reuse so a stale key misses.
 */
export class KeyTable<T> {
  readonly #byKey = new Map<number, T>();
  #nextIndex = 1;
  #variant = 0;

  /** A fresh key, not yet resolving to anything. */
  allocate(): number {
    this.#variant = (this.#variant + 1) & 0xff;
    return (((this.#nextIndex++ & 0xffffff) << 8) | this.#variant) >>> 0;
  }

  set(key: number, value: T): void {
    this.#byKey.set(key, value);
  }

  get(key: number): T | undefined {
    return this.#byKey.get(key);
  }

  delete(key: number): void {
    this.#byKey.delete(key);
  }
}
