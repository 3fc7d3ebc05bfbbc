import type { FunctionSpecOf } from '../topology/topology-schema';
import type { BarMemoryAllocator, DeviceBar } from './device-model';
import type { DeviceDefaults } from './device-defaults';
import { ScratchRegisters } from './scratch-registers';

const REGISTER_BAR_SIZE = 64 * 1024;
const MEMORY_BAR = 2;

/** Habana Gaudi2-class accelerator: class 0x120000 (processing accelerator). */
export const ACCEL_DEFAULTS: DeviceDefaults = {
  ids: { vendorId: 0x1da3, deviceId: 0x1020, classCode: 0x120000, revision: 1, subsystemVendorId: 0x1da3, subsystemId: 0x1020 },
  linkWidth: 16,
  romSize: 0,
};

/**
 * BAR0: 64 KiB of plain registers. BAR2: device memory (default 16 GiB,
 * up to 64 GiB), 64-bit prefetchable, the memory a GPU-style exporter hands
 * out through dma-buf. Backed sparsely, so untouched memory costs nothing.
 */
export function accelBars(spec: FunctionSpecOf<'accel'>, allocate: BarMemoryAllocator): DeviceBar[] {
  return [
    {
      index: 0,
      size: REGISTER_BAR_SIZE,
      is64Bit: false,
      prefetchable: false,
      space: 'memory',
      kind: 'registers',
      registers: new ScratchRegisters(REGISTER_BAR_SIZE),
    },
    {
      index: MEMORY_BAR,
      size: spec.memorySize,
      is64Bit: true,
      prefetchable: true,
      space: 'memory',
      kind: 'memory',
      ...allocate(MEMORY_BAR, spec.memorySize),
    },
  ];
}
