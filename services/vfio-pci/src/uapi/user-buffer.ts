import { errno } from '@p2p/errno';

/**
 * The memory an ioctl argument points at, as copy_from_user() sees it. The
 * model's rule: the caller's buffer is `argsz` bytes long (what it says it
 * passed), so only the first min(argsz, bytes given) bytes are readable and
 * a copy that reaches past them faults with EFAULT.
 */
export class UserBuffer {
  readonly #bytes: Uint8Array;

  constructor(bytes: Uint8Array, readable: number) {
    this.#bytes = bytes.subarray(0, Math.max(0, Math.min(bytes.length, readable)));
  }

  get length(): number {
    return this.#bytes.length;
  }

  /** copy_from_user(): `length` bytes at `offset`, little-endian as on x86, or EFAULT. */
  copy(offset: number, length: number, what: string): DataView {
    if (offset + length > this.#bytes.length) {
      throw errno(
        'EFAULT',
        `copying ${what} (${length} bytes at ${offset}) reaches past the ${this.#bytes.length} readable bytes of the argument`,
      );
    }
    return new DataView(this.#bytes.buffer, this.#bytes.byteOffset + offset, length);
  }
}
