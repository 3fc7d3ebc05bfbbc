import type { FunctionKind, FunctionSpec } from '../topology/topology-schema';
import { accelBars, ACCEL_DEFAULTS } from './accel';
import type { DeviceDefaults } from './device-defaults';
import type { BarMemoryAllocator, BarWriteReport, DeviceModel } from './device-model';
import type { DmaPort } from './dma-engine';
import { buildExpansionRom } from './expansion-rom';
import { genericDevice, GENERIC_DEFAULTS } from './generic';
import { nicBars, NIC_DEFAULTS } from './nic';
import type { NamespaceStore } from './nvme/namespace-store';
import { nvmeDevice, NVME_DEFAULTS } from './nvme/nvme-device';
import type { NvmeObserver } from './nvme/nvme-events';

const DEFAULTS: Readonly<Record<FunctionKind, DeviceDefaults>> = {
  nvme: NVME_DEFAULTS,
  accel: ACCEL_DEFAULTS,
  nic: NIC_DEFAULTS,
  generic: GENERIC_DEFAULTS,
};

/** What each kind contributes: its BARs, the hook if it watches writes into its BAR memory, an NVMe controller's queue depths. */
type DeviceParts = Pick<DeviceModel, 'bars' | 'memoryWritten' | 'nvmeQueueDepths'>;

/** What the bus gives a device model beyond its spec. */
export interface DevicePlatform {
  readonly allocate: BarMemoryAllocator;
  /** The function's bus-master port, for devices that DMA. */
  readonly dma: DmaPort;
  /** Posts a BarWritten event, for devices that report writes into their memory. */
  readonly report: BarWriteReport;
  /** The store behind an NVMe namespace (NSID from 1). */
  readonly namespace: (nsid: number, blocks: number, blockSize: number) => NamespaceStore;
  /** Where an NVMe controller reports commands, queues, doorbells and state. */
  readonly nvmeObserver: NvmeObserver;
}

function partsOf(spec: FunctionSpec, platform: DevicePlatform): DeviceParts {
  const { allocate, dma, report } = platform;
  switch (spec.kind) {
    case 'nvme': {
      const namespaces = spec.namespaces.map((ns, i) => platform.namespace(i + 1, ns.size / ns.blockSize, ns.blockSize));
      return nvmeDevice(spec, { allocate, dma, namespaces, observer: platform.nvmeObserver });
    }
    case 'accel':
      return { bars: accelBars(spec, allocate, dma) };
    case 'nic':
      return { bars: nicBars() };
    case 'generic':
      return genericDevice(spec, allocate, report);
  }
}

/** Builds the device model of a topology function, its kind's defaults overridden by the file's ids/romSize. */
export function createDevice(spec: FunctionSpec, platform: DevicePlatform): DeviceModel {
  const defaults = DEFAULTS[spec.kind];
  const overrides = Object.fromEntries(Object.entries(spec.ids ?? {}).filter(([, value]) => value !== undefined));
  const ids = { ...defaults.ids, ...overrides };
  const romSize = spec.romSize ?? defaults.romSize;
  return {
    kind: spec.kind,
    ids,
    linkWidth: defaults.linkWidth,
    ...partsOf(spec, platform),
    rom: romSize === 0 ? undefined : buildExpansionRom(ids, romSize),
  };
}
