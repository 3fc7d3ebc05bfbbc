import type { FunctionSpecOf } from '../topology/topology-schema';
import type { BarMemoryAllocator, DeviceBar } from './device-model';
import type { DeviceDefaults } from './device-defaults';
import { NvmeRegisters } from './nvme-registers';

const REGISTER_BAR_SIZE = 16 * 1024;
const CMB_BAR = 2;

/** Samsung PM173x-class controller: class 0x010802 (mass storage, NVM, NVMe I/O controller). */
export const NVME_DEFAULTS: DeviceDefaults = {
  ids: { vendorId: 0x144d, deviceId: 0xa824, classCode: 0x010802, revision: 0, subsystemVendorId: 0x144d, subsystemId: 0xa801 },
  linkWidth: 4,
  romSize: 0,
};

/**
 * BAR0: 16 KiB of controller registers, 64-bit non-prefetchable as NVMe
 * requires (MLBAR/MUBAR). BAR2: the Controller Memory Buffer, 64-bit
 * prefetchable memory that CMBLOC.BIR points at, so it can be a p2pdma provider
 * (the nvme driver's nvme_map_cmb() -> pci_p2pdma_add_resource()).
 */
export function nvmeBars(spec: FunctionSpecOf<'nvme'>, allocate: BarMemoryAllocator): DeviceBar[] {
  return [
    {
      index: 0,
      size: REGISTER_BAR_SIZE,
      is64Bit: true,
      prefetchable: false,
      space: 'memory',
      kind: 'registers',
      registers: new NvmeRegisters(CMB_BAR, spec.cmbSize),
    },
    {
      index: CMB_BAR,
      size: spec.cmbSize,
      is64Bit: true,
      prefetchable: true,
      space: 'memory',
      kind: 'memory',
      ...allocate(CMB_BAR, spec.cmbSize),
    },
  ];
}
