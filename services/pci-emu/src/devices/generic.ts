import type { FunctionSpecOf } from '../topology/topology-schema';
import type { BarMemoryAllocator, DeviceBar } from './device-model';
import type { DeviceDefaults } from './device-defaults';
import { ScratchRegisters } from './scratch-registers';

/** QEMU pci-testdev identity: class 0x00ff00 (unclassified). */
export const GENERIC_DEFAULTS: DeviceDefaults = {
  ids: { vendorId: 0x1b36, deviceId: 0x0005, classCode: 0x00ff00, revision: 0, subsystemVendorId: 0x1af4, subsystemId: 0x1100 },
  linkWidth: 1,
  romSize: 0,
};

/** BARs exactly as the topology file describes them: memory BARs backed by BarMemory, I/O BARs as plain registers. */
export function genericBars(spec: FunctionSpecOf<'generic'>, allocate: BarMemoryAllocator): DeviceBar[] {
  return spec.bars.map((bar): DeviceBar => {
    const shape = { index: bar.index, size: bar.size, is64Bit: bar.bits === 64, prefetchable: bar.prefetchable, space: bar.space };
    return bar.space === 'io'
      ? { ...shape, kind: 'io', registers: new ScratchRegisters(bar.size) }
      : { ...shape, kind: 'memory', ...allocate(bar.index, bar.size) };
  });
}
