import type { DeviceBar } from './device-model';
import type { DeviceDefaults } from './device-defaults';
import { ScratchRegisters } from './scratch-registers';

const REGISTER_BAR_SIZE = 16 * 1024;

/** Mellanox ConnectX-6-class function in InfiniBand mode: class 0x020700, with a 64 KiB boot ROM. */
export const NIC_DEFAULTS: DeviceDefaults = {
  ids: { vendorId: 0x15b3, deviceId: 0x101b, classCode: 0x020700, revision: 0, subsystemVendorId: 0x15b3, subsystemId: 0x0007 },
  linkWidth: 16,
  romSize: 64 * 1024,
};

/**
 * BAR0: 16 KiB of plain 64-bit non-prefetchable registers. The RDMA behaviour
 * belongs to the rdma-nic instance that claims the function; here it is only
 * a PCI function that can master DMA.
 */
export function nicBars(): DeviceBar[] {
  return [
    {
      index: 0,
      size: REGISTER_BAR_SIZE,
      is64Bit: true,
      prefetchable: false,
      space: 'memory',
      kind: 'registers',
      registers: new ScratchRegisters(REGISTER_BAR_SIZE),
    },
  ];
}
