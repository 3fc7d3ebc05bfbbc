import { expect } from 'chai';
import { ErrnoError, type ErrnoName } from '@p2p/errno';
import type { DmaRange } from '../dma-buf/dma-buf-feature';
import type { PciBar } from '../ports/pci-port';
import { O_RDWR } from '../uapi/fcntl';
import { VFIO_DEVICE_FEATURE_DMA_BUF, VFIO_DEVICE_FEATURE_GET } from '../uapi/vfio';
import type { VfioPciVariants } from '../variants';
import { VfioPci } from '../vfio-pci';
import { FakeIommu } from './fake-iommu';
import { FakePci, type FakeFunctionSpec } from './fake-pci';
import { FakeRegistry } from './fake-registry';
import { FakeUserMemory } from './fake-user-memory';

export const MiB = 0x10_0000n;
export const PAGE = 0x1000n;

/** NVMe-like: 16 KiB register BAR0, 4 MiB memory BAR2 (a CMB), 256-byte I/O BAR4, 64 KiB ROM. */
export const NVME = '0000:03:00.0';
export const NVME_BARS: readonly PciBar[] = [
  { index: 0, size: 0x4000n, is64Bit: true, prefetchable: false, kind: 'registers', busAddress: 0xfebf_0000n },
  { index: 2, size: 4n * MiB, is64Bit: true, prefetchable: true, kind: 'memory', busAddress: 0x38_0000_0000n },
  { index: 4, size: 0x100n, is64Bit: false, prefetchable: false, kind: 'io', busAddress: 0xe000n },
  { index: 6, size: 0x1_0000n, is64Bit: false, prefetchable: false, kind: 'rom', busAddress: 0xfeb0_0000n },
];
/** A memory BAR0 of 1 MiB near the top of the 64-bit address space: for overflow. */
export const HIGH = '0000:0a:00.0';
export const HIGH_BAR = 0xffff_ffff_ff00_0000n;
/** Two functions of one device on bus 05: one hot-reset set. */
export const FN0 = '0000:05:00.0';
export const FN1 = '0000:05:00.1';
/** A function on bus 06 next to one that will not be bound. */
export const LONE = '0000:06:00.0';
export const OTHER = '0000:06:00.1';

const memoryBar = (busAddress: bigint): PciBar[] => [{ index: 0, size: MiB, is64Bit: false, prefetchable: false, kind: 'memory', busAddress }];

export const DEFAULT_FUNCTIONS: readonly FakeFunctionSpec[] = [
  { bdf: NVME, bars: NVME_BARS },
  { bdf: HIGH, bars: memoryBar(HIGH_BAR) },
  { bdf: FN0, bars: memoryBar(0xc000_0000n) },
  { bdf: FN1, bars: memoryBar(0xc010_0000n) },
  { bdf: LONE, bars: memoryBar(0xd000_0000n) },
  { bdf: OTHER, bars: memoryBar(0xd010_0000n) },
];

/** A function whose 16 KiB register BAR0 has a memory window at pages 1-2 (doorbells): mmappable and exportable there only. */
export const DOORBELLS = '0000:0b:00.0';
export const DOORBELL_WINDOW = { offset: PAGE, length: 2n * PAGE } as const;
export const DOORBELL_BAR: PciBar = { index: 0, size: 0x4000n, is64Bit: true, prefetchable: false, kind: 'registers', busAddress: 0xfe00_0000n, window: DOORBELL_WINDOW };
/** DEFAULT_FUNCTIONS and DOORBELLS. */
export const WITH_DOORBELLS: readonly FakeFunctionSpec[] = [...DEFAULT_FUNCTIONS, { bdf: DOORBELLS, bars: [DOORBELL_BAR] }];

export const PID = 100;

export interface Harness {
  readonly log: string[];
  readonly pci: FakePci;
  readonly registry: FakeRegistry;
  readonly iommu: FakeIommu;
  readonly memory: FakeUserMemory;
  readonly vfio: VfioPci;
  /** Binds and opens `bdf` for `pid`; returns the device fd. */
  open(bdf?: string, pid?: number, variants?: Partial<VfioPciVariants>): Promise<number>;
  /** A DMA_BUF GET of `ranges` of `regionIndex`; returns the dma-buf fd. */
  exportBuf(fd: number, regionIndex?: number, ranges?: readonly DmaRange[], pid?: number): Promise<number>;
  /** The log from `mark` on. */
  since(mark: number): string[];
}

export function harness(options: { variants?: Partial<VfioPciVariants>; functions?: readonly FakeFunctionSpec[] } = {}): Harness {
  const log: string[] = [];
  const pci = new FakePci(log, options.functions ?? DEFAULT_FUNCTIONS);
  const registry = new FakeRegistry(log);
  const iommu = new FakeIommu(log);
  const memory = new FakeUserMemory(log);
  const vfio = new VfioPci(pci, registry, { iommu, userMemory: memory }, { variants: options.variants ?? {} });
  registry.owner = vfio;
  return {
    log,
    pci,
    registry,
    iommu,
    memory,
    vfio,
    async open(bdf = NVME, pid = PID, variants = {}) {
      await vfio.bind(bdf, variants);
      return vfio.openDevice(pid, bdf);
    },
    async exportBuf(fd, regionIndex = 2, ranges = [{ offset: 0n, length: 2n * PAGE }], pid = PID) {
      const { fd: bufFd } = await vfio.deviceFeature(pid, fd, {
        flags: VFIO_DEVICE_FEATURE_DMA_BUF | VFIO_DEVICE_FEATURE_GET,
        payload: { kind: 'dma-buf', feature: { regionIndex, openFlags: O_RDWR, ranges } },
      });
      return bufFd;
    },
    since(mark) {
      return log.slice(mark);
    },
  };
}

/** Expects `promise` to reject with ErrnoError `name` (and a message containing `detail`, if given). */
export async function expectErrno(promise: Promise<unknown> | (() => unknown), name: ErrnoName, detail?: string): Promise<ErrnoError> {
  let caught: unknown;
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected ${name}`).to.be.instanceOf(ErrnoError);
  const error = caught as ErrnoError;
  expect(error.errno, error.message).to.equal(name);
  if (detail !== undefined) expect(error.message).to.contain(detail);
  return error;
}

/** Lets every pending promise callback run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
