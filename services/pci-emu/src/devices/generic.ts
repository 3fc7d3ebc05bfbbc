import type { FunctionSpecOf } from '../topology/topology-schema';
import type { BarMemoryAllocator, BarWriteReport, DeviceBar, DeviceModel } from './device-model';
import type { DeviceDefaults } from './device-defaults';
import { ScratchRegisters } from './scratch-registers';

/** QEMU pci-testdev identity: class 0x00ff00 (unclassified). */
export const GENERIC_DEFAULTS: DeviceDefaults = {
  ids: { vendorId: 0x1b36, deviceId: 0x0005, classCode: 0x00ff00, revision: 0, subsystemVendorId: 0x1af4, subsystemId: 0x1100 },
  linkWidth: 1,
  romSize: 0,
};

/**
 * BARs exactly as the topology file describes them: memory BARs backed by
 * BarMemory, I/O BARs as plain registers, and a memory BAR with a window as
 * scratch registers around memory. Writes into a window, by MMIO or by a
 * bus master, are reported as BarWritten events: the test device's whole
 * behaviour, for watching doorbell-style memory from outside.
 */
export function genericDevice(spec: FunctionSpecOf<'generic'>, allocate: BarMemoryAllocator, report: BarWriteReport): Pick<DeviceModel, 'bars' | 'memoryWritten'> {
  const bars = spec.bars.map((bar): DeviceBar => {
    const shape = { index: bar.index, size: bar.size, is64Bit: bar.bits === 64, prefetchable: bar.prefetchable, space: bar.space };
    if (bar.space === 'io') return { ...shape, kind: 'io', registers: new ScratchRegisters(bar.size) };
    if (bar.window === undefined) return { ...shape, kind: 'memory', ...allocate(bar.index, bar.size) };
    const window = { offset: bar.window.offset, ...allocate(bar.index, bar.window.length) };
    return { ...shape, kind: 'registers', registers: new ScratchRegisters(bar.size), window };
  });
  const windowed = new Set(spec.bars.filter((bar) => bar.window !== undefined).map((bar) => bar.index));
  if (windowed.size === 0) return { bars };
  return {
    bars,
    memoryWritten: (bar, offset, length, path) => {
      if (windowed.has(bar)) report(bar, offset, length, path);
    },
  };
}
