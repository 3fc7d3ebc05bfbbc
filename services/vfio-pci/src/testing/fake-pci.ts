import { errno } from '@p2p/errno';
import type { BarExtent, ConfigWidth, MmioWidth, PciBar, PciFunctionInfo, PciPort, PowerState } from '../ports/pci-port';

/** Where the fake's capabilities sit (pci-emu's layout). */
export const PM_CAP = 0x40;
export const EXP_CAP = 0x60;

export interface FakeFunctionSpec {
  readonly bdf: string;
  readonly bars: readonly PciBar[];
  /** PMCSR No_Soft_Reset (default false: D3hot -> D0 resets the function). */
  readonly noSoftReset?: boolean;
  /** DevCap FLR (default true). */
  readonly flr?: boolean;
  /** Header type (default 0). */
  readonly headerType?: number;
  /** PCI_COMMAND at power-on (default PCI_COMMAND_MEMORY, as firmware leaves it). */
  readonly command?: number;
}

/** Writable bits per config offset (hardware-style: read-only bits keep their value). */
const WRITABLE = new Map<number, number>([
  [0x04, 0x07],
  [0x05, 0x05],
  [0x30, 0x01],
  [PM_CAP + 4, 0x03],
  [EXP_CAP + 8, 0xff],
  [EXP_CAP + 9, 0xff],
]);

class FakeFunction {
  readonly config = new Uint8Array(0x1000);
  readonly #memory = new Map<number, Uint8Array>();
  present = true;
  /** Fence generation per BAR. */
  readonly generations = new Map<number, number>();

  constructor(readonly spec: FakeFunctionSpec) {
    this.powerOn();
  }

  /** A BAR's bytes, allocated on first use. */
  memory(bar: number): Uint8Array {
    let bytes = this.#memory.get(bar);
    if (bytes === undefined) {
      bytes = new Uint8Array(Number(this.spec.bars.find((candidate) => candidate.index === bar)!.size));
      this.#memory.set(bar, bytes);
    }
    return bytes;
  }

  powerOn(): void {
    const c = this.config;
    c.fill(0);
    c[0x0e] = this.spec.headerType ?? 0;
    this.write16(0x04, this.spec.command ?? 0x0002);
    this.write16(0x06, 0x0010);
    c[0x34] = PM_CAP;
    c[PM_CAP] = 0x01;
    c[PM_CAP + 1] = EXP_CAP;
    this.write16(PM_CAP + 4, this.spec.noSoftReset ? 0x0008 : 0);
    c[EXP_CAP] = 0x10;
    this.write32(EXP_CAP + 4, this.spec.flr === false ? 0 : 0x1000_0000);
    const rom = this.spec.bars.find((bar) => bar.index === 6);
    if (rom) this.write32(0x30, Number(rom.busAddress & 0xffff_f800n));
  }

  read(offset: number, width: number): number {
    let value = 0;
    for (let i = 0; i < width; i++) value += this.config[offset + i]! * 2 ** (8 * i);
    return value;
  }

  write16(offset: number, value: number): void {
    this.config[offset] = value & 0xff;
    this.config[offset + 1] = (value >>> 8) & 0xff;
  }

  write32(offset: number, value: number): void {
    for (let i = 0; i < 4; i++) this.config[offset + i] = (value >>> (8 * i)) & 0xff;
  }

  get power(): PowerState {
    return (this.config[PM_CAP + 4]! & 3) === 3 ? 'D3hot' : 'D0';
  }

  get memoryEnabled(): boolean {
    return this.present && this.power === 'D0' && (this.config[0x04]! & 0x02) !== 0;
  }
}

/**
 * A PciPort over a few in-memory functions, with pci-emu's semantics where
 * vfio-pci can see them: hardware-style config writes, decode from
 * PCI_COMMAND and the power state, D3hot -> D0 resetting NoSoftRst-
 * functions, resets to the power-on image, all ones for unclaimed reads, and
 * ENODEV for everything but functionInfo once unplugged. Every call that
 * changes something is appended to `log` (shared with the fake registry) so
 * tests can check the order of events.
 */
export class FakePci implements PciPort {
  readonly #functions = new Map<string, FakeFunction>();

  constructor(
    readonly log: string[],
    specs: readonly FakeFunctionSpec[],
    /** Segment size for barExtents (an extent never crosses one). */
    readonly segmentSize = 0x10_0000,
  ) {
    for (const spec of specs) this.#functions.set(spec.bdf, new FakeFunction(spec));
  }

  /* ---- test controls ---- */

  unplug(bdf: string): void {
    this.#fn(bdf).present = false;
    this.log.push(`unplug ${bdf}`);
  }

  command(bdf: string): number {
    return this.#fn(bdf).read(0x04, 2);
  }

  /** Sets bits directly, as firmware or another agent would (not logged). */
  poke(bdf: string, offset: number, width: 1 | 2 | 4, value: number): void {
    const fn = this.#fn(bdf);
    for (let i = 0; i < width; i++) fn.config[offset + i] = (value >>> (8 * i)) & 0xff;
  }

  /* ---- PciPort ---- */

  async listFunctions(): Promise<readonly string[]> {
    return [...this.#functions.keys()];
  }

  async functionInfo(bdf: string): Promise<PciFunctionInfo> {
    const fn = this.#fn(bdf);
    return { bdf, bars: fn.spec.bars, memoryEnabled: fn.memoryEnabled, powerState: fn.power, present: fn.present };
  }

  async configRead(bdf: string, offset: number, width: ConfigWidth): Promise<number> {
    return this.#present(bdf).read(offset, width);
  }

  async configWrite(bdf: string, offset: number, width: ConfigWidth, value: number): Promise<void> {
    const fn = this.#present(bdf);
    this.log.push(`config-write ${bdf} 0x${offset.toString(16)}/${width} 0x${value.toString(16)}`);
    const before = fn.power;
    let flr = false;
    for (let i = 0; i < width; i++) {
      const at = offset + i;
      const byte = (value >>> (8 * i)) & 0xff;
      if (at === EXP_CAP + 9 && (byte & 0x80) !== 0) flr = true;
      const mask = WRITABLE.get(at) ?? 0;
      fn.config[at] = (fn.config[at]! & ~mask) | (byte & mask & (at === EXP_CAP + 9 ? 0x7f : 0xff));
    }
    if (flr) fn.powerOn();
    else if (before === 'D3hot' && fn.power === 'D0' && !fn.spec.noSoftReset) fn.powerOn();
  }

  async mmioRead(bdf: string, bar: number, offset: number, width: MmioWidth): Promise<{ value: bigint; decoded: boolean }> {
    const decoded = this.#claims(bdf, bar);
    const data = await this.bulkRead(bdf, bar, offset, width);
    let value = 0n;
    data.forEach((byte, lane) => (value |= BigInt(byte) << BigInt(8 * lane)));
    return { value, decoded };
  }

  async mmioWrite(bdf: string, bar: number, offset: number, width: MmioWidth, value: bigint): Promise<boolean> {
    const decoded = this.#claims(bdf, bar);
    const data = new Uint8Array(width);
    for (let lane = 0; lane < width; lane++) data[lane] = Number((value >> BigInt(8 * lane)) & 0xffn);
    this.log.push(`mmio-write ${bdf} bar${bar} 0x${offset.toString(16)}/${width}`);
    this.#store(bdf, bar, offset, data);
    return decoded;
  }

  async bulkRead(bdf: string, bar: number, offset: number, length: number): Promise<Uint8Array> {
    const fn = this.#present(bdf);
    const info = fn.spec.bars.find((candidate) => candidate.index === bar)!;
    const romOn = info.kind !== 'rom' || (fn.read(0x30, 1) & 1) === 1;
    const claimed = info.kind === 'io' ? (fn.config[0x04]! & 1) === 1 : fn.memoryEnabled && romOn;
    if (!claimed) return new Uint8Array(length).fill(0xff);
    return fn.memory(bar).slice(offset, offset + length);
  }

  async bulkWrite(bdf: string, bar: number, offset: number, data: Uint8Array): Promise<void> {
    this.log.push(`bulk-write ${bdf} bar${bar} 0x${offset.toString(16)}+${data.length}`);
    this.#store(bdf, bar, offset, data);
  }

  async functionLevelReset(bdf: string): Promise<void> {
    const fn = this.#present(bdf);
    this.log.push(`flr ${bdf}`);
    fn.powerOn();
  }

  async resetFunction(bdf: string): Promise<void> {
    const fn = this.#present(bdf);
    this.log.push(`reset ${bdf}`);
    fn.powerOn();
  }

  async setPowerState(bdf: string, state: PowerState): Promise<void> {
    const fn = this.#present(bdf);
    this.log.push(`set-power ${bdf} ${state}`);
    const pmcsr = fn.read(PM_CAP + 4, 2);
    const before = fn.power;
    fn.write16(PM_CAP + 4, (pmcsr & ~3) | (state === 'D3hot' ? 3 : 0));
    if (before === 'D3hot' && state === 'D0' && !fn.spec.noSoftReset) fn.powerOn();
  }

  /** pci-emu's GetBarSegments: the segments of a memory BAR, or of a register BAR's window (offsets into it), EINVAL elsewhere. */
  async barExtents(bdf: string, bar: number, offset: number, length: number): Promise<readonly BarExtent[]> {
    const fn = this.#present(bdf);
    const info = fn.spec.bars.find((candidate) => candidate.index === bar);
    const memory = info?.kind === 'memory' ? { offset: 0, length: Number(info.size) } : info?.window && { offset: Number(info.window.offset), length: Number(info.window.length) };
    if (memory === undefined) {
      throw errno('EINVAL', `BAR ${bar} of ${bdf} has no segments`);
    }
    if (offset < memory.offset || offset + length > memory.offset + memory.length) {
      throw errno('EINVAL', `[${offset}, +${length}) of BAR ${bar} of ${bdf} leaves its memory window`);
    }
    const generation = fn.generations.get(bar) ?? 0;
    const extents: BarExtent[] = [];
    const stop = offset - memory.offset + length;
    for (let at = offset - memory.offset; at < stop; ) {
      const chunk = Math.floor(at / this.segmentSize);
      const end = Math.min(stop, (chunk + 1) * this.segmentSize);
      extents.push({ segment: `${bdf}-bar${bar}-c${chunk}-g${generation}`, segmentOffset: at - chunk * this.segmentSize, length: end - at });
      at = end;
    }
    return extents;
  }

  async relocateBar(bdf: string, bar: number): Promise<void> {
    const fn = this.#present(bdf);
    this.log.push(`relocate ${bdf} bar${bar}`);
    fn.generations.set(bar, (fn.generations.get(bar) ?? 0) + 1);
  }

  /* ---- internals ---- */

  #fn(bdf: string): FakeFunction {
    const fn = this.#functions.get(bdf);
    if (!fn) throw errno('ENODEV', `no PCI function at ${bdf}`);
    return fn;
  }

  #present(bdf: string): FakeFunction {
    const fn = this.#fn(bdf);
    if (!fn.present) throw errno('ENODEV', `${bdf} has been hot-unplugged`);
    return fn;
  }

  /** Whether the function claims an access to BAR `bar`: I/O or memory decode, as its kind needs. */
  #claims(bdf: string, bar: number): boolean {
    const fn = this.#present(bdf);
    const info = fn.spec.bars.find((candidate) => candidate.index === bar)!;
    return info.kind === 'io' ? (fn.config[0x04]! & 1) === 1 : fn.memoryEnabled;
  }

  #store(bdf: string, bar: number, offset: number, data: Uint8Array): void {
    const fn = this.#present(bdf);
    const info = fn.spec.bars.find((candidate) => candidate.index === bar)!;
    const claimed = info.kind === 'io' ? (fn.config[0x04]! & 1) === 1 : fn.memoryEnabled;
    if (claimed) fn.memory(bar).set(data, offset);
  }
}
