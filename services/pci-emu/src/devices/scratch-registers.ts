import { mergeLanes, type RegisterOps } from './register-ops';

/**
 * Plain read/write registers that reset to zero: the register BARs of the
 * accelerator and NIC (whose behaviour their own services model on top) and
 * generic I/O BARs.
 */
export class ScratchRegisters implements RegisterOps {
  readonly #dwords: Uint32Array;

  constructor(size: number) {
    this.#dwords = new Uint32Array(Math.ceil(size / 4));
  }

  read(offset: number): number {
    return this.#dwords[offset / 4]!;
  }

  write(offset: number, value: number, mask: number): void {
    this.#dwords[offset / 4] = mergeLanes(this.#dwords[offset / 4]!, value, mask);
  }

  reset(): void {
    this.#dwords.fill(0);
  }
}
