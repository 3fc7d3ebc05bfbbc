import { PCI_CFG_SPACE_EXP_SIZE } from './pci-regs';
import type { ConfigWidth } from './config-access';

/** Per-bit behaviour of a field: bits in neither mask are read-only. */
export interface FieldAccess {
  /** Bits software may set and clear. */
  readonly writable?: number;
  /** Bits cleared by writing 1 (RW1C), set only by the device. */
  readonly rw1c?: number;
}

/**
 * The power-on image of a config space: default bytes plus per-byte write
 * and RW1C masks. Built field by field by the header and capability builders.
 */
export class ConfigLayout {
  readonly defaults = Buffer.alloc(PCI_CFG_SPACE_EXP_SIZE);
  readonly writable = Buffer.alloc(PCI_CFG_SPACE_EXP_SIZE);
  readonly rw1c = Buffer.alloc(PCI_CFG_SPACE_EXP_SIZE);

  field(offset: number, width: ConfigWidth, value: number, access: FieldAccess = {}): this {
    this.defaults.writeUIntLE(value >>> 0, offset, width);
    this.writable.writeUIntLE((access.writable ?? 0) >>> 0, offset, width);
    this.rw1c.writeUIntLE((access.rw1c ?? 0) >>> 0, offset, width);
    return this;
  }
}

/**
 * 4 KiB of config space with hardware write semantics. Callers validate
 * offset and width first (checkConfigAccess); this class only stores bytes.
 */
export class ConfigSpace {
  readonly #bytes: Buffer;
  readonly #layout: ConfigLayout;

  constructor(layout: ConfigLayout) {
    this.#layout = layout;
    this.#bytes = Buffer.from(layout.defaults);
  }

  read(offset: number, width: ConfigWidth): number {
    return this.#bytes.readUIntLE(offset, width);
  }

  /**
   * A write as the function's hardware sees it: writable bits take the new
   * value, RW1C bits written 1 clear, everything else keeps its value.
   */
  write(offset: number, width: ConfigWidth, value: number): void {
    for (let i = 0; i < width; i++) {
      const at = offset + i;
      const byte = (value >>> (8 * i)) & 0xff;
      const w = this.#layout.writable[at]!;
      const c = this.#layout.rw1c[at]!;
      const old = this.#bytes[at]!;
      this.#bytes[at] = (old & ~w & ~(byte & c)) | (byte & w);
    }
  }

  /**
   * True when the write differs from the current value, yet every differing
   * bit is read-only and it neither changes a writable bit nor clears an RW1C
   * bit: a write to a read-only field, which hardware would silently drop.
   */
  isReadOnlyWrite(offset: number, width: ConfigWidth, value: number): boolean {
    let readOnlyChange = 0;
    let effect = 0;
    for (let i = 0; i < width; i++) {
      const at = offset + i;
      const byte = (value >>> (8 * i)) & 0xff;
      const w = this.#layout.writable[at]!;
      const c = this.#layout.rw1c[at]!;
      const old = this.#bytes[at]!;
      const diff = old ^ byte;
      readOnlyChange |= diff & ~(w | c) & 0xff;
      effect |= (diff & w) | (byte & old & c);
    }
    return readOnlyChange !== 0 && effect === 0;
  }

  /** The device itself sets bits (an RW1C error bit it detected), bypassing the masks. */
  setBits(offset: number, width: ConfigWidth, bits: number): void {
    this.#bytes.writeUIntLE((this.read(offset, width) | bits) >>> 0, offset, width);
  }

  /** The device itself stores a field value, bypassing the masks. */
  store(offset: number, width: ConfigWidth, value: number): void {
    this.#bytes.writeUIntLE(value >>> 0, offset, width);
  }

  /** Every byte back to its power-on default. */
  reset(): void {
    this.#layout.defaults.copy(this.#bytes);
  }
}
