/**
 * mulberry32: a 32-bit generator small enough to read at a glance, with a
 * period of 2^32 and good enough statistics for choosing test inputs. The
 * same seed gives the same sequence on every machine, so a fuzz run's
 * request stream (P2P_FUZZ_SEED) and a chaos campaign (--seed) replay.
 */
export class Prng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** A uniform integer in [0, n), n <= 2^32. */
  below(n: number): number {
    return Math.floor((this.u32() / 0x1_0000_0000) * n);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[this.below(items.length)]!;
  }

  /** A uniform 64-bit unsigned integer. */
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }

  /** `length` pseudo-random bytes (a repeated 4 KiB block past that, to stay fast for megabytes). */
  bytes(length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    const block = Math.min(length, 4096);
    for (let i = 0; i + 4 <= block; i += 4) out.writeUInt32LE(this.u32(), i);
    for (let i = block - (block % 4); i < block; i++) out[i] = this.below(256);
    for (let i = block; i < length; i += block) out.copy(out, i, 0, Math.min(block, length - i));
    return out;
  }

  /** Shuffles `items` in place (Fisher-Yates) and returns it. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.below(i + 1);
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return items;
  }
}
