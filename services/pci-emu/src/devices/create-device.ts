import type { FunctionKind, FunctionSpec } from '../topology/topology-schema';
import { accelBars, ACCEL_DEFAULTS } from './accel';
import type { DeviceDefaults } from './device-defaults';
import type { BarMemoryAllocator, BarWriteReport, DeviceModel } from './device-model';
import type { DmaPort } from './dma-engine';
import { buildExpansionRom } from './expansion-rom';
import { genericDevice, GENERIC_DEFAULTS } from './generic';
import { nicBars, NIC_DEFAULTS } from './nic';
import { nvmeBars, NVME_DEFAULTS } from './nvme';

const DEFAULTS: Readonly<Record<FunctionKind, DeviceDefaults>> = {
  nvme: NVME_DEFAULTS,
  accel: ACCEL_DEFAULTS,
  nic: NIC_DEFAULTS,
  generic: GENERIC_DEFAULTS,
};

/** What each kind contributes: its BARs, and the hook if it watches writes into its BAR memory. */
type DeviceParts = Pick<DeviceModel, 'bars' | 'memoryWritten'>;

function partsOf(spec: FunctionSpec, allocate: BarMemoryAllocator, dma: DmaPort, report: BarWriteReport): DeviceParts {
  switch (spec.kind) {
    case 'nvme':
      return { bars: nvmeBars(spec, allocate) };
    case 'accel':
      return { bars: accelBars(spec, allocate, dma) };
    case 'nic':
      return { bars: nicBars() };
    case 'generic':
      return genericDevice(spec, allocate, report);
  }
}

/**
 * Builds the device model of a topology function, its kind's defaults
 * overridden by the file's ids/romSize. `dma` is the function's bus-master
 * port, for devices that DMA (the accelerator's engine); `report` posts a
 * BarWritten event, for devices that report writes into their memory.
 */
export function createDevice(spec: FunctionSpec, allocate: BarMemoryAllocator, dma: DmaPort, report: BarWriteReport): DeviceModel {
  const defaults = DEFAULTS[spec.kind];
  const overrides = Object.fromEntries(Object.entries(spec.ids ?? {}).filter(([, value]) => value !== undefined));
  const ids = { ...defaults.ids, ...overrides };
  const romSize = spec.romSize ?? defaults.romSize;
  return {
    kind: spec.kind,
    ids,
    linkWidth: defaults.linkWidth,
    ...partsOf(spec, allocate, dma, report),
    rom: romSize === 0 ? undefined : buildExpansionRom(ids, romSize),
  };
}
