import type { FunctionKind, FunctionSpec } from '../topology/topology-schema';
import { accelBars, ACCEL_DEFAULTS } from './accel';
import type { DeviceDefaults } from './device-defaults';
import type { BarMemoryAllocator, DeviceBar, DeviceModel } from './device-model';
import type { DmaPort } from './dma-engine';
import { buildExpansionRom } from './expansion-rom';
import { genericBars, GENERIC_DEFAULTS } from './generic';
import { nicBars, NIC_DEFAULTS } from './nic';
import { nvmeBars, NVME_DEFAULTS } from './nvme';

const DEFAULTS: Readonly<Record<FunctionKind, DeviceDefaults>> = {
  nvme: NVME_DEFAULTS,
  accel: ACCEL_DEFAULTS,
  nic: NIC_DEFAULTS,
  generic: GENERIC_DEFAULTS,
};

function barsOf(spec: FunctionSpec, allocate: BarMemoryAllocator, dma: DmaPort): DeviceBar[] {
  switch (spec.kind) {
    case 'nvme':
      return nvmeBars(spec, allocate);
    case 'accel':
      return accelBars(spec, allocate, dma);
    case 'nic':
      return nicBars();
    case 'generic':
      return genericBars(spec, allocate);
  }
}

/**
 * Builds the device model of a topology function, its kind's defaults
 * overridden by the file's ids/romSize. `dma` is the function's bus-master
 * port, for devices that DMA (the accelerator's engine).
 */
export function createDevice(spec: FunctionSpec, allocate: BarMemoryAllocator, dma: DmaPort): DeviceModel {
  const defaults = DEFAULTS[spec.kind];
  const overrides = Object.fromEntries(Object.entries(spec.ids ?? {}).filter(([, value]) => value !== undefined));
  const ids = { ...defaults.ids, ...overrides };
  const romSize = spec.romSize ?? defaults.romSize;
  return {
    kind: spec.kind,
    ids,
    linkWidth: defaults.linkWidth,
    bars: barsOf(spec, allocate, dma),
    rom: romSize === 0 ? undefined : buildExpansionRom(ids, romSize),
  };
}
