import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'chai';
import { ErrnoError, type ErrnoName } from '@p2p/errno';
import { SegmentStore } from '@p2p/shm';
import { PciBus } from '../bus/pci-bus';
import type { PciEventBody } from '../bus/pci-events';
import { PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY } from '../config-space/pci-regs';
import type { BarMemoryFactory } from '../devices/bar-memory';
import { heapBarMemoryFactory } from '../devices/heap-bar-memory';
import { HostSegmentCache } from '../iommu/host-memory';
import { DEFAULT_TOPOLOGY } from '../topology/default-topology';
import { topologyFromObject } from '../topology/load-topology';
import type { TopologyInput } from '../topology/topology-schema';

/* The default topology's functions: nvme0 and nic0 under switch A, the rest under switch B. */
export const NVME0 = '0000:03:00.0';
export const NIC0 = '0000:04:00.0';
export const ACCEL0 = '0000:07:00.0';
export const NVME1 = '0000:08:00.0';
export const NIC1 = '0000:09:00.0';
/** The memory BAR of the accelerator (device memory) and of the NVMe controllers (CMB). */
export const MEMORY_BAR = 2;
export const PAGE = 4096;

/** The default topology whose host bridge refuses P2P: peers under different switches cannot reach each other. */
export const NO_HOST_BRIDGE_P2P: TopologyInput = (() => {
  const copy = structuredClone(DEFAULT_TOPOLOGY);
  copy.hostBridges[0]!.p2pAllowed = false;
  return copy;
})();

/** The generic test device of WINDOWED_TOPOLOGY, under switch B with accel0 and nic1. */
export const TESTDEV = '0000:0a:00.0';
/** Its BAR0: 64 KiB of scratch registers, pages 1 and 2 a memory window whose writes it reports as events. */
export const WINDOW = { offset: 0x1000, length: 0x2000 } as const;

/** The default topology with the test device added: BAR0 windowed, BAR2 four pages of plain memory. */
export const WINDOWED_TOPOLOGY: TopologyInput = (() => {
  const copy = structuredClone(DEFAULT_TOPOLOGY);
  copy.hostBridges[0]!.rootPorts[1]!.switch!.downstreamPorts.push({
    bdf: '06:03.0',
    functions: [
      {
        kind: 'generic',
        name: 'testdev',
        bdf: '0a:00.0',
        bars: [
          { index: 0, size: 0x1_0000, bits: 64, window: WINDOW },
          { index: 2, size: 4 * PAGE, bits: 64 },
        ],
      },
    ],
  });
  return copy;
})();

/** A bus whose IOMMU maps host memory from a segment directory, as pci-emu runs it. */
export interface Platform {
  readonly bus: PciBus;
  readonly store: SegmentStore;
  /** The events delivered since the last call, in order, without their sequence numbers and times. */
  events(): PciEventBody[];
  /** A host segment file of `size` bytes holding `data` at 0, as the registry's heap makes them. */
  hostSegment(name: string, size: number, data?: Uint8Array): string;
}

/**
 * pci-emu's platform on `dir`: heap BAR memory unless `barMemory` is given,
 * host memory from the directory (pci-emu.* files refused), the firmware's
 * memory decode on.
 */
export function platform(dir: string, input: TopologyInput = DEFAULT_TOPOLOGY, barMemory: BarMemoryFactory = heapBarMemoryFactory): Platform {
  const store = new SegmentStore({ dir });
  const hostMemory = new HostSegmentCache(store, { refuse: (name) => name.startsWith('pci-emu.') });
  const bus = new PciBus(topologyFromObject(input), barMemory, { hostMemory });
  const seen: PciEventBody[] = [];
  bus.onEvent(({ sequence: _sequence, time: _time, ...event }) => seen.push(event));
  return {
    bus,
    store,
    events: () => seen.splice(0),
    hostSegment: (name, size, data) => {
      const segment = store.create(name, size);
      if (data !== undefined) segment.write(0, data);
      segment.close();
      return name;
    },
  };
}

/** Memory decode and bus mastering on, as a driver enables a device before it DMAs. */
export function enableDma(bus: PciBus, bdf: string): void {
  bus.configWrite(bdf, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
}

/** Asserts that `operation` throws the ErrnoError `name`, its detail naming `fragment`. */
export function expectErrno(operation: () => unknown, name: ErrnoName, fragment?: string): ErrnoError {
  try {
    operation();
  } catch (error) {
    expect(error).to.be.instanceOf(ErrnoError);
    const failure = error as ErrnoError;
    expect(failure.errno, failure.message).to.equal(name);
    if (fragment !== undefined) expect(failure.detail).to.include(fragment);
    return failure;
  }
  return expect.fail(`expected ${name}, but the operation succeeded`);
}

/** How many descriptors of this process are open on `file`. */
export function openDescriptors(file: string): number {
  const fds = '/proc/self/fd';
  return fs.readdirSync(fds).filter((fd) => {
    try {
      return fs.readlinkSync(path.join(fds, fd)) === file;
    } catch {
      return false;
    }
  }).length;
}
