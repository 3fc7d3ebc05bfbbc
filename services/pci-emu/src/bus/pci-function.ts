import { errno } from '@p2p/errno';
import { checkConfigAccess, checkConfigValue } from '../config-space/config-access';
import { ConfigSpace } from '../config-space/config-space';
import { EXP_CAP_OFFSET, layoutEndpointConfig, PM_CAP_OFFSET } from '../config-space/endpoint-config';
import {
  PCI_COMMAND,
  PCI_COMMAND_IO,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_EXP_DEVCTL,
  PCI_EXP_DEVCTL_BCR_FLR,
  PCI_EXP_DEVSTA,
  PCI_EXP_DEVSTA_URD,
  PCI_PM_CAP_D1,
  PCI_PM_CAP_D2,
  PCI_PM_CTRL,
  PCI_PM_CTRL_NO_SOFT_RESET,
  PCI_PM_CTRL_STATE_MASK,
  PCI_PM_PMC,
  PCI_ROM_ADDRESS,
  PCI_ROM_ADDRESS_ENABLE,
  PCI_ROM_RESOURCE,
  PCI_STATUS,
  PCI_STATUS_REC_MASTER_ABORT,
} from '../config-space/pci-regs';
import { PM_STATE_D0, PM_STATE_D3HOT } from '../config-space/pm-capability';
import type { BarMemory } from '../devices/bar-memory';
import { BAR_WINDOW_ALIGNMENT, type BarWindow, type BarWritePath, type DeviceModel } from '../devices/device-model';
import type { RegisterOps } from '../devices/register-ops';
import type { FunctionSpec } from '../topology/topology-schema';
import { liesInMemory, memoryOffsetOf } from './bar-memory-range';
import type { BarInfo, FunctionInfo } from './function-info';
import {
  checkAligned,
  checkMmioWidth,
  checkRange,
  decodeValue,
  encodeValue,
  MAX_BULK_LENGTH,
  type MmioWidth,
} from './mmio-access';
import type { DecodeReason, PciEventBody, PowerState, ResetKind } from './pci-events';

/**
 * 'strict': the service's ConfigWrite. A write that would change only
 * read-only bits (a write to a read-only field) fails with EPERM and changes
 * nothing; any write that also changes a writable bit or clears an RW1C bit is
 * applied masked, so idioms like BAR sizing with ~0 or clearing PCI_STATUS
 * errors work. 'hardware': what a config TLP does, read-only bits silently
 * keep their value (the path a vfio model passes guest writes through).
 */
export type ConfigWriteMode = 'strict' | 'hardware';

/** What MMIO to one BAR reaches. Index 6 is the expansion ROM. */
type BarTarget = { readonly index: number; readonly size: number; readonly is64Bit: boolean } & (
  | { readonly kind: 'registers'; readonly registers: RegisterOps; readonly window?: BarWindow }
  | { readonly kind: 'io'; readonly registers: RegisterOps }
  | { readonly kind: 'memory'; readonly memory: BarMemory }
  | { readonly kind: 'rom'; readonly image: Buffer }
);

/** Where BAR offsets [offset, ...) of a DMA land: `memory` from `offset` on (an offset into the memory, not the BAR). */
export interface BarSpan {
  readonly memory: BarMemory;
  readonly offset: number;
}

/** One part of an access to a register BAR: registers, or its window's memory. */
interface AccessPart {
  readonly at: number;
  readonly length: number;
  readonly window: BarWindow | undefined;
}

interface Snapshot {
  readonly present: boolean;
  readonly power: PowerState;
  readonly memory: boolean;
  readonly master: boolean;
}

/** Bus addresses firmware assigned: one per device BAR (same order), and the ROM's. */
export interface BarAddresses {
  readonly bars: readonly number[];
  readonly rom: number;
}

const overlaps = (offset: number, width: number, field: number, fieldWidth: number): boolean =>
  offset < field + fieldWidth && field < offset + width;

const PM_CTRL = PM_CAP_OFFSET + PCI_PM_CTRL;
const EXP_DEVCTL = EXP_CAP_OFFSET + PCI_EXP_DEVCTL;

/**
 * One endpoint function: config space, BARs, decode, power state, resets and
 * presence, around a device model. All state lives in the config space and
 * the device's registers, so "reset" is one copy of the power-on image.
 *
 * Events of one operation are posted in a fixed, kernel-like order: the
 * hot-plug event, then power-changed, then reset, then decode-changed, since
 * decode is derived from all the rest. So D3hot -> D0 with No_Soft_Reset
 * clear posts power-changed then reset (POWER_ON_RESET); D0 -> D3hot with
 * memory enabled posts power-changed then decode-changed (POWER).
 */
export class PciFunction {
  readonly #config: ConfigSpace;
  readonly #targets = new Map<number, BarTarget>();
  readonly #bars: readonly BarInfo[];
  #present = true;

  constructor(
    readonly bdf: string,
    private readonly spec: FunctionSpec,
    private readonly device: DeviceModel,
    addresses: BarAddresses,
    multiFunction: boolean,
    private readonly post: (event: PciEventBody) => void,
  ) {
    this.#config = new ConfigSpace(
      layoutEndpointConfig({
        ids: device.ids,
        multiFunction,
        bars: device.bars.map((shape, i) => ({ shape, busAddress: addresses.bars[i]! })),
        rom: { size: device.rom?.length ?? 0, busAddress: addresses.rom },
        noSoftReset: spec.noSoftReset,
        linkWidth: device.linkWidth,
      }),
    );
    const bars: BarInfo[] = device.bars.map((bar, i) => {
      this.#targets.set(bar.index, bar);
      const window = bar.kind === 'registers' ? bar.window : undefined;
      if (window !== undefined) checkWindow(bdf, bar.index, bar.size, window);
      return {
        index: bar.index,
        size: bar.size,
        is64Bit: bar.is64Bit,
        prefetchable: bar.prefetchable,
        kind: bar.kind,
        busAddress: addresses.bars[i]!,
        ...(bar.kind === 'memory' ? { memoryName: bar.memoryName } : {}),
        ...(window !== undefined ? { memoryName: window.memoryName, window: { offset: window.offset, length: window.memory.size } } : {}),
      };
    });
    if (device.rom) {
      this.#targets.set(PCI_ROM_RESOURCE, {
        index: PCI_ROM_RESOURCE,
        size: device.rom.length,
        is64Bit: false,
        kind: 'rom',
        image: device.rom,
      });
      bars.push({
        index: PCI_ROM_RESOURCE,
        size: device.rom.length,
        is64Bit: false,
        prefetchable: false,
        kind: 'rom',
        busAddress: addresses.rom,
      });
    }
    this.#bars = bars.sort((a, b) => a.index - b.index);
  }

  get present(): boolean {
    return this.#present;
  }

  /** Effective bus mastering: PCI_COMMAND_MASTER, in D0, present. */
  get busMaster(): boolean {
    return this.#snapshot().master;
  }

  info(): FunctionInfo {
    const now = this.#snapshot();
    return {
      bdf: this.bdf,
      name: this.spec.name,
      kind: this.device.kind,
      ...this.device.ids,
      bars: this.#bars,
      powerState: now.power,
      command: this.#config.read(PCI_COMMAND, 2),
      memoryEnabled: now.memory,
      busMaster: now.master,
      present: now.present,
    };
  }

  /* ---- config space ---- */

  configRead(offset: number, width: number): number {
    this.#requirePresent();
    checkConfigAccess(offset, width);
    return this.#config.read(offset, width);
  }

  configWrite(offset: number, width: number, value: number, mode: ConfigWriteMode): void {
    this.#requirePresent();
    checkConfigAccess(offset, width);
    checkConfigValue(value, width);
    if (mode === 'strict' && this.#config.isReadOnlyWrite(offset, width, value)) {
      throw errno(
        'EPERM',
        `${this.bdf}: config write of 0x${value.toString(16)} at 0x${offset.toString(16)} would change only read-only bits`,
      );
    }
    const before = this.#snapshot();
    const oldState = this.#config.read(PM_CTRL, 2) & PCI_PM_CTRL_STATE_MASK;
    this.#config.write(offset, width, value);

    let reason: DecodeReason = 'COMMAND_WRITE';
    let reset: ResetKind | undefined;
    if (overlaps(offset, width, PM_CTRL, 1)) {
      reason = 'POWER';
      reset = this.#applyPowerState(oldState);
    }
    // pcie_flr(): setting PCI_EXP_DEVCTL_BCR_FLR starts the reset; the bit always reads 0.
    if (overlaps(offset, width, EXP_DEVCTL, 2) && (this.#config.read(EXP_DEVCTL, 2) & PCI_EXP_DEVCTL_BCR_FLR) !== 0) {
      this.#resetState();
      reason = 'RESET';
      reset = 'FLR';
    }
    this.#commit(before, reason, reset);
  }

  /* ---- power, resets, hot-plug ---- */

  /** Writes PMCSR PowerState as pci_raw_set_power_state() does; returns the previous state. */
  setPowerState(state: PowerState): PowerState {
    this.#requirePresent();
    if (state !== 'D0' && state !== 'D3hot') {
      throw errno('EINVAL', `power state ${String(state)} is not D0 or D3hot`);
    }
    const previous = this.#powerState();
    const pmcsr = this.#config.read(PM_CTRL, 2);
    const encoded = state === 'D0' ? PM_STATE_D0 : PM_STATE_D3HOT;
    this.configWrite(PM_CTRL, 2, (pmcsr & ~PCI_PM_CTRL_STATE_MASK) | encoded, 'hardware');
    return previous;
  }

  /** Function-level reset exactly as pcie_flr() starts it: set PCI_EXP_DEVCTL_BCR_FLR. */
  functionLevelReset(): void {
    this.#requirePresent();
    this.configWrite(EXP_DEVCTL, 2, this.#config.read(EXP_DEVCTL, 2) | PCI_EXP_DEVCTL_BCR_FLR, 'hardware');
  }

  /** Conventional reset: config space and registers to power-on values; BAR memory keeps its content. */
  reset(): void {
    this.#requirePresent();
    const before = this.#snapshot();
    this.#resetState();
    this.#commit(before, 'RESET', 'RESET');
  }

  /** Surprise removal: state is frozen and every access fails with ENODEV until replug(). */
  unplug(): void {
    if (!this.#present) {
      return;
    }
    const before = this.#snapshot();
    this.#present = false;
    this.#commit(before, 'HOTPLUG', undefined, 'unplugged');
  }

  /** The function comes back powered up from scratch: D0, power-on config and registers. */
  replug(): void {
    if (this.#present) {
      return;
    }
    const before = this.#snapshot();
    this.#resetState();
    this.#present = true;
    this.#commit(before, 'HOTPLUG', 'POWER_ON_RESET', 'replugged');
  }

  /* ---- MMIO ---- */

  mmioRead(barIndex: number, offset: number, width: number): { value: number | bigint; decoded: boolean } {
    this.#requirePresent();
    const target = this.#target(barIndex);
    checkMmioWidth(width, target.kind === 'io');
    this.#checkAccess(target, offset, width, width);
    if (!this.#claims(target)) {
      return { value: decodeValue(Buffer.alloc(width, 0xff), width), decoded: false };
    }
    return { value: decodeValue(this.#readBytes(target, offset, width), width), decoded: true };
  }

  mmioWrite(barIndex: number, offset: number, width: number, value: number | bigint): { decoded: boolean } {
    this.#requirePresent();
    const target = this.#target(barIndex);
    checkMmioWidth(width, target.kind === 'io');
    this.#checkAccess(target, offset, width, width);
    const bytes = encodeValue(value, width as MmioWidth);
    if (!this.#claims(target)) {
      return { decoded: false };
    }
    this.#writeBytes(target, offset, bytes);
    return { decoded: true };
  }

  bulkRead(barIndex: number, offset: number, length: number): { data: Buffer; decoded: boolean } {
    this.#requirePresent();
    const target = this.#target(barIndex);
    this.#checkBulk(target, offset, length);
    if (!this.#claims(target)) {
      return { data: Buffer.alloc(length, 0xff), decoded: false };
    }
    return { data: this.#readBytes(target, offset, length), decoded: true };
  }

  bulkWrite(barIndex: number, offset: number, data: Uint8Array): { decoded: boolean } {
    this.#requirePresent();
    const target = this.#target(barIndex);
    this.#checkBulk(target, offset, data.length);
    if (!this.#claims(target)) {
      return { decoded: false };
    }
    this.#writeBytes(target, offset, data);
    return { decoded: true };
  }

  /* ---- DMA ---- */

  /**
   * The memory a peer's DMA reaches at BAR offsets [offset, offset + length)
   * of BAR `index` (a memory BAR, or a register BAR's window: EINVAL
   * elsewhere), or undefined when the function does not claim the request:
   * unplugged, or not claimed by #claims() (decode off or not D0, logged as
   * an Unsupported Request).
   */
  dmaWindow(index: number, offset: number, length: number): BarSpan | undefined {
    if (!this.#present) return undefined;
    const target = this.#target(index);
    const at = memoryOffsetOf(this.bdf, this.#barInfo(index), offset, length);
    const memory = target.kind === 'memory' ? target.memory : target.kind === 'registers' ? target.window?.memory : undefined;
    return memory !== undefined && this.#claims(target) ? { memory, offset: at } : undefined;
  }

  /**
   * A bus master's write of BAR offsets [offset, offset + length) of BAR
   * `index` is complete and in its memory: the device hears of it
   * (memoryWritten, path 'p2p'). Nothing happens, and false is returned,
   * where the function would not have claimed the write (unplugged, decode
   * off, not D0) or the range is not memory: a notice from another process
   * is no TLP and logs no Unsupported Request, and one that is stale
   * (decode went off after the write) or forged must not reach the device.
   */
  postedWrite(index: number, offset: number, length: number): boolean {
    const info = this.#bars.find((bar) => bar.index === index);
    if (!this.#snapshot().memory || info === undefined || !liesInMemory(info, offset, length)) return false;
    this.#written(index, offset, length, 'p2p');
    return true;
  }

  /** The requester's side of an Unsupported Request completion: PCI_STATUS_REC_MASTER_ABORT (RW1C). */
  receivedMasterAbort(): void {
    this.#config.setBits(PCI_STATUS, 2, PCI_STATUS_REC_MASTER_ABORT);
  }

  /* ---- internals ---- */

  #requirePresent(): void {
    if (!this.#present) {
      throw errno('ENODEV', `${this.bdf} has been hot-unplugged`);
    }
  }

  /** A BAR's info; its target (#target) was found first, so it exists. */
  #barInfo(index: number): BarInfo {
    return this.#bars.find((bar) => bar.index === index)!;
  }

  #target(index: number): BarTarget {
    if (!Number.isInteger(index) || index < 0 || index > PCI_ROM_RESOURCE) {
      throw errno('EINVAL', `BAR index ${index} is not 0-5 or 6 (expansion ROM)`);
    }
    const target = this.#targets.get(index);
    if (target) {
      return target;
    }
    throw errno(
      'EINVAL',
      this.#targets.get(index - 1)?.is64Bit
        ? `${this.bdf}: BAR ${index} is the upper half of 64-bit BAR ${index - 1}`
        : `${this.bdf}: BAR ${index} is not implemented`,
    );
  }

  #checkAccess(target: BarTarget, offset: number, length: number, alignment: number): void {
    const what = `${this.bdf} BAR ${target.index}`;
    checkRange(offset, length, target.size, what);
    checkAligned(offset, alignment, what);
  }

  /**
   * Bulk access: any byte range of memory or ROM; register BARs only in whole
   * dwords (4-byte aligned offset and length), since registers are defined
   * per dword and a partial register in a bulk transfer is almost surely a bug.
   */
  #checkBulk(target: BarTarget, offset: number, length: number): void {
    if (length > MAX_BULK_LENGTH) {
      throw errno('E2BIG', `bulk access of ${length} bytes exceeds ${MAX_BULK_LENGTH}; map the BAR segments instead`);
    }
    const registers = target.kind === 'registers' || target.kind === 'io';
    this.#checkAccess(target, offset, length, registers ? 4 : 1);
    if (registers && length % 4 !== 0) {
      throw errno('EINVAL', `${this.bdf} BAR ${target.index}: register BAR bulk length ${length} is not a multiple of 4`);
    }
  }

  /**
   * Whether the function claims a request to `target`: memory BARs need
   * PCI_COMMAND_MEMORY, I/O BARs PCI_COMMAND_IO, the ROM also
   * PCI_ROM_ADDRESS_ENABLE, and only in D0. The function handles an
   * unclaimed request as an Unsupported Request and logs PCI_EXP_DEVSTA_URD;
   * the requester gets all ones for a read, and a write is dropped.
   */
  #claims(target: BarTarget): boolean {
    const command = this.#config.read(PCI_COMMAND, 2);
    const enable = target.kind === 'io' ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY;
    const romEnabled = target.kind !== 'rom' || (this.#config.read(PCI_ROM_ADDRESS, 4) & PCI_ROM_ADDRESS_ENABLE) !== 0;
    const claimed = this.#powerState() === 'D0' && (command & enable) !== 0 && romEnabled;
    if (!claimed) {
      this.#config.setBits(EXP_CAP_OFFSET + PCI_EXP_DEVSTA, 2, PCI_EXP_DEVSTA_URD);
    }
    return claimed;
  }

  #readBytes(target: BarTarget, offset: number, length: number): Buffer {
    switch (target.kind) {
      case 'memory':
        return target.memory.read(offset, length);
      case 'rom':
        return Buffer.from(target.image.subarray(offset, offset + length));
      case 'io':
        return readRegisters(target.registers, offset, Buffer.alloc(length));
      case 'registers': {
        const out = Buffer.alloc(length);
        for (const part of accessParts(target.window, offset, length)) {
          const into = out.subarray(part.at - offset, part.at - offset + part.length);
          if (part.window === undefined) readRegisters(target.registers, part.at, into);
          else part.window.memory.readInto(part.at - part.window.offset, into);
        }
        return out;
      }
    }
  }

  /**
   * Register writes become dword writes with byte enables; ROM ignores
   * writes, as ROM does. Memory (a memory BAR, a register BAR's window) is
   * written, then the device told (memoryWritten, path 'mmio').
   */
  #writeBytes(target: BarTarget, offset: number, data: Uint8Array): void {
    switch (target.kind) {
      case 'memory':
        target.memory.write(offset, data);
        if (data.length > 0) this.#written(target.index, offset, data.length, 'mmio');
        return;
      case 'rom':
        return;
      case 'io':
        writeRegisters(target.registers, offset, data);
        return;
      case 'registers':
        for (const part of accessParts(target.window, offset, data.length)) {
          const from = data.subarray(part.at - offset, part.at - offset + part.length);
          if (part.window === undefined) {
            writeRegisters(target.registers, part.at, from);
          } else {
            part.window.memory.write(part.at - part.window.offset, from);
            this.#written(target.index, part.at, part.length, 'mmio');
          }
        }
    }
  }

  #written(index: number, offset: number, length: number, path: BarWritePath): void {
    this.device.memoryWritten?.(index, offset, length, path);
  }

  #powerState(): PowerState {
    return (this.#config.read(PM_CTRL, 2) & PCI_PM_CTRL_STATE_MASK) === PM_STATE_D3HOT ? 'D3hot' : 'D0';
  }

  /**
   * After a PMCSR write: an unsupported state (D1/D2, not in PMC) is discarded
   * with no state change, as the PM spec requires; D3hot -> D0 with
   * No_Soft_Reset clear resets the function (what pci_pm_reset() relies on).
   */
  #applyPowerState(oldState: number): ResetKind | undefined {
    const pmcsr = this.#config.read(PM_CTRL, 2);
    const requested = pmcsr & PCI_PM_CTRL_STATE_MASK;
    const pmc = this.#config.read(PM_CAP_OFFSET + PCI_PM_PMC, 2);
    const supported =
      requested === PM_STATE_D0 ||
      requested === PM_STATE_D3HOT ||
      (requested === 1 && (pmc & PCI_PM_CAP_D1) !== 0) ||
      (requested === 2 && (pmc & PCI_PM_CAP_D2) !== 0);
    if (!supported) {
      this.#config.store(PM_CTRL, 2, (pmcsr & ~PCI_PM_CTRL_STATE_MASK) | oldState);
      return undefined;
    }
    if (oldState === PM_STATE_D3HOT && requested === PM_STATE_D0 && (pmcsr & PCI_PM_CTRL_NO_SOFT_RESET) === 0) {
      this.#resetState();
      return 'POWER_ON_RESET';
    }
    return undefined;
  }

  /**
   * Config space and registers to power-on values. BAR memory, a register
   * BAR's window included, is storage, not state: it is kept (a device whose
   * window holds state clears it in its own reset()).
   */
  #resetState(): void {
    this.#config.reset();
    for (const bar of this.device.bars) {
      if (bar.kind !== 'memory') {
        bar.registers.reset();
      }
    }
  }

  #snapshot(): Snapshot {
    const command = this.#config.read(PCI_COMMAND, 2);
    const power = this.#powerState();
    const active = this.#present && power === 'D0';
    return {
      present: this.#present,
      power,
      memory: active && (command & PCI_COMMAND_MEMORY) !== 0,
      master: active && (command & PCI_COMMAND_MASTER) !== 0,
    };
  }

  #commit(before: Snapshot, reason: DecodeReason, reset?: ResetKind, hotplug?: 'unplugged' | 'replugged'): void {
    const after = this.#snapshot();
    const bdf = this.bdf;
    if (hotplug) {
      this.post({ type: hotplug, bdf });
    }
    if (before.power !== after.power) {
      this.post({ type: 'power-changed', bdf, from: before.power, to: after.power });
    }
    if (reset) {
      this.post({ type: 'reset', bdf, kind: reset });
    }
    if (before.memory !== after.memory || before.master !== after.master) {
      this.post({ type: 'decode-changed', bdf, memoryEnabled: after.memory, busMaster: after.master, reason });
    }
  }
}

/** A window is whole pages inside its BAR, with memory of its length: EINVAL otherwise (a device model's bug). */
function checkWindow(bdf: string, index: number, size: number, window: BarWindow): void {
  const { offset } = window;
  const length = window.memory.size;
  if (offset % BAR_WINDOW_ALIGNMENT !== 0 || length % BAR_WINDOW_ALIGNMENT !== 0 || length === 0 || offset + length > size) {
    throw errno('EINVAL', `${bdf} BAR ${index}: a memory window [0x${offset.toString(16)}, +0x${length.toString(16)}) must be whole ${BAR_WINDOW_ALIGNMENT}-byte pages inside the ${size}-byte BAR`);
  }
}

/** Splits [offset, offset + length) of a register BAR at its window's edges. */
function accessParts(window: BarWindow | undefined, offset: number, length: number): AccessPart[] {
  const end = offset + length;
  const from = window === undefined ? end : Math.max(offset, window.offset);
  const to = window === undefined ? end : Math.min(end, window.offset + window.memory.size);
  if (from >= to) return [{ at: offset, length, window: undefined }];
  const parts: AccessPart[] = [];
  if (offset < from) parts.push({ at: offset, length: from - offset, window: undefined });
  parts.push({ at: from, length: to - from, window });
  if (to < end) parts.push({ at: to, length: end - to, window: undefined });
  return parts;
}

/** Fills `out` from the registers at `offset`, a dword read per dword touched. */
function readRegisters(registers: RegisterOps, offset: number, out: Buffer): Buffer {
  for (let at = offset - (offset % 4); at < offset + out.length; at += 4) {
    const dword = registers.read(at);
    for (let lane = 0; lane < 4; lane++) {
      const position = at + lane - offset;
      if (position >= 0 && position < out.length) {
        out[position] = (dword >>> (8 * lane)) & 0xff;
      }
    }
  }
  return out;
}

/** Writes `data` into the registers at `offset`: dword writes with the byte enables of the lanes it covers. */
function writeRegisters(registers: RegisterOps, offset: number, data: Uint8Array): void {
  for (let at = offset - (offset % 4); at < offset + data.length; at += 4) {
    let value = 0;
    let mask = 0;
    for (let lane = 0; lane < 4; lane++) {
      const position = at + lane - offset;
      if (position >= 0 && position < data.length) {
        value |= data[position]! << (8 * lane);
        mask |= 0xff << (8 * lane);
      }
    }
    registers.write(at, value >>> 0, mask >>> 0);
  }
}
