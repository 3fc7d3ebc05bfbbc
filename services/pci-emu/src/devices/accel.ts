import type { FunctionSpecOf } from '../topology/topology-schema';
import type { BarMemoryAllocator, DeviceBar } from './device-model';
import type { DeviceDefaults } from './device-defaults';
import { DMA_ENGINE_BASE, DMA_ENGINE_END, DmaEngine, type DmaPort } from './dma-engine';
import { DmaRing } from './dma-ring';
import type { RegisterOps } from './register-ops';
import { ScratchRegisters } from './scratch-registers';

const REGISTER_BAR_SIZE = 64 * 1024;
const MEMORY_BAR = 2;

/** Habana Gaudi2-class accelerator: class 0x120000 (processing accelerator). */
export const ACCEL_DEFAULTS: DeviceDefaults = {
  ids: { vendorId: 0x1da3, deviceId: 0x1020, classCode: 0x120000, revision: 1, subsystemVendorId: 0x1da3, subsystemId: 0x1020 },
  linkWidth: 16,
  romSize: 0,
};

/** BAR0: the DMA engine's registers at DMA_ENGINE_BASE, its descriptor ring's right after, plain scratch registers everywhere else. */
class AccelRegisters implements RegisterOps {
  readonly #scratch = new ScratchRegisters(REGISTER_BAR_SIZE);
  readonly #engine: DmaEngine;
  readonly #ring: DmaRing;

  constructor(dma: DmaPort) {
    this.#engine = new DmaEngine(dma);
    this.#ring = new DmaRing(dma);
  }

  read(offset: number): number {
    return this.#owner(offset).read(offset);
  }

  write(offset: number, value: number, mask: number): void {
    this.#owner(offset).write(offset, value, mask);
  }

  reset(): void {
    this.#scratch.reset();
    this.#engine.reset();
    this.#ring.reset();
  }

  #owner(offset: number): RegisterOps {
    if (offset >= DMA_ENGINE_BASE && offset < DMA_ENGINE_END) return this.#engine;
    return DmaRing.owns(offset) ? this.#ring : this.#scratch;
  }
}

/**
 * BAR0: 64 KiB of registers, the DMA engine's among them (dma-engine.ts,
 * one transfer per doorbell; dma-ring.ts, a descriptor ring), which moves
 * bytes as this function through `dma`. BAR2: device memory
 * (default 16 GiB, up to 64 GiB), 64-bit prefetchable, the memory a
 * GPU-style exporter hands out through dma-buf. Backed sparsely, so
 * untouched memory costs nothing.
 */
export function accelBars(spec: FunctionSpecOf<'accel'>, allocate: BarMemoryAllocator, dma: DmaPort): DeviceBar[] {
  return [
    {
      index: 0,
      size: REGISTER_BAR_SIZE,
      is64Bit: false,
      prefetchable: false,
      space: 'memory',
      kind: 'registers',
      registers: new AccelRegisters(dma),
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
