import { expect } from 'chai';
import { useTempShmDir } from '@p2p/testing';
import { PCI_COMMAND } from '../config-space/pci-regs';
import { DMA_DOORBELL_START, DMA_DST_IOVA, DMA_LEN, DMA_SRC_IOVA, DMA_STATUS, DMA_STATUS_DONE } from '../devices/dma-engine';
import { IOMMU_READ, IOMMU_WRITE } from '../iommu/iova';
import { topologyFromObject } from '../topology/load-topology';
import { ACCEL0, enableDma, expectErrno, PAGE, platform, type Platform, TESTDEV, WINDOW, WINDOWED_TOPOLOGY } from '../testing/platform';

const RW = IOMMU_READ | IOMMU_WRITE;
const HOST_IOVA = 0x1000_0000n;
const WINDOW_IOVA = 0x2000_0000n;
const DOORBELL = WINDOW.offset + 0x10;
const MEMORY_NAME = '0000-0a-00.0-bar0';

describe('register BARs with a memory window', () => {
  const dir = useTempShmDir();
  let p: Platform;
  beforeEach(() => {
    p = platform(dir(), WINDOWED_TOPOLOGY);
    p.events();
  });
  afterEach(() => p.bus.close());

  it('describes the window: a register BAR whose pages 1-2 are memory with a name', () => {
    const bar0 = p.bus.getFunction(TESTDEV).bars.find((bar) => bar.index === 0)!;
    expect(bar0).to.deep.include({ kind: 'registers', size: 0x1_0000, memoryName: MEMORY_NAME, window: WINDOW });
  });

  describe('MMIO', () => {
    it('a write into the window lands in the memory, reads back, and the device hears of it (path mmio)', () => {
      p.bus.mmioWrite(TESTDEV, 0, DOORBELL, 4, 0x1234);
      expect(p.events()).to.deep.equal([{ type: 'bar-written', bdf: TESTDEV, bar: 0, offset: DOORBELL, length: 4, path: 'mmio' }]);
      expect(p.bus.mmioRead(TESTDEV, 0, DOORBELL, 4).value).to.equal(0x1234);
      const span = p.bus.barMemorySpan(TESTDEV, 0, DOORBELL, 4);
      expect(span).to.deep.equal({ memoryName: MEMORY_NAME, offset: 0x10, length: 4 });
    });

    it('outside the window the registers answer, and the device hears nothing', () => {
      p.bus.mmioWrite(TESTDEV, 0, 0x10, 4, 0xabcd);
      p.bus.mmioWrite(TESTDEV, 0, WINDOW.offset + WINDOW.length, 8, 0x1122334455667788n);
      expect(p.bus.mmioRead(TESTDEV, 0, 0x10, 4).value).to.equal(0xabcd);
      expect(p.bus.mmioRead(TESTDEV, 0, WINDOW.offset + WINDOW.length, 8).value).to.equal(0x1122334455667788n);
      expect(p.events()).to.deep.equal([]);
      expect(p.bus.mmioRead(TESTDEV, 0, WINDOW.offset + 0x10, 4).value).to.equal(0);
    });

    it('a bulk write across the window edge splits: registers before it, memory in it, told of the memory part only', () => {
      const data = Buffer.from(Array.from({ length: 32 }, (_, i) => i + 1));
      p.bus.bulkWrite(TESTDEV, 0, WINDOW.offset - 16, data);
      expect(p.events()).to.deep.equal([{ type: 'bar-written', bdf: TESTDEV, bar: 0, offset: WINDOW.offset, length: 16, path: 'mmio' }]);
      expect(p.bus.bulkRead(TESTDEV, 0, WINDOW.offset - 16, 32).data.equals(data)).to.equal(true);
      expect(p.bus.mmioRead(TESTDEV, 0, WINDOW.offset - 16, 4).value).to.equal(0x04030201);
    });

    it('a write the function does not claim (decode off) lands nowhere and is not told', () => {
      p.bus.configWrite(TESTDEV, PCI_COMMAND, 2, 0);
      expect(p.bus.mmioWrite(TESTDEV, 0, DOORBELL, 4, 1).decoded).to.equal(false);
      expect(p.events().filter((event) => event.type === 'bar-written')).to.deep.equal([]);
    });

    it('writes into a plain memory BAR of the device are not reported: only windows are', () => {
      p.bus.bulkWrite(TESTDEV, 2, 0, Buffer.alloc(8, 1));
      expect(p.events()).to.deep.equal([]);
    });

    it('a reset keeps the window memory (storage, not state) and clears the registers', () => {
      p.bus.mmioWrite(TESTDEV, 0, DOORBELL, 4, 7);
      p.bus.mmioWrite(TESTDEV, 0, 0x10, 4, 7);
      p.bus.resetFunction(TESTDEV);
      p.bus.configWrite(TESTDEV, PCI_COMMAND, 2, 2);
      expect([p.bus.mmioRead(TESTDEV, 0, DOORBELL, 4).value, p.bus.mmioRead(TESTDEV, 0, 0x10, 4).value]).to.deep.equal([7, 0]);
    });
  });

  describe('segments (GetBarSegments, RelocateBar)', () => {
    it('locate a range of the window in its memory; to its end when no length is given', () => {
      expect(p.bus.barMemorySpan(TESTDEV, 0, WINDOW.offset + PAGE)).to.deep.equal({ memoryName: MEMORY_NAME, offset: PAGE, length: PAGE });
    });

    it('EINVAL outside the window, across its edge, and for a BAR of only registers', () => {
      expectErrno(() => p.bus.barMemorySpan(TESTDEV, 0, 0, PAGE), 'EINVAL', 'leaves its memory window');
      expectErrno(() => p.bus.barMemorySpan(TESTDEV, 0, WINDOW.offset + PAGE, 2 * PAGE), 'EINVAL', 'leaves its memory window');
      expectErrno(() => p.bus.barMemorySpan(TESTDEV, 0, 0), 'EINVAL', 'leaves its memory window');
      expectErrno(() => p.bus.barMemorySpan(ACCEL0, 0, 0, PAGE), 'EINVAL', 'registers, not memory');
    });

    it('a memory BAR is memory from 0 to its end, as before', () => {
      expect(p.bus.barMemorySpan(TESTDEV, 2, PAGE, PAGE)).to.deep.equal({ memoryName: '0000-0a-00.0-bar2', offset: PAGE, length: PAGE });
      expectErrno(() => p.bus.barMemorySpan(TESTDEV, 2, 4 * PAGE, 1), 'EINVAL', 'outside');
    });
  });

  describe('posted writes from other processes (write notices)', () => {
    it('reach the device with path p2p, at the BAR offset of the memory offset', () => {
      expect(p.bus.postedWrite(MEMORY_NAME, 0x10, 4)).to.equal(true);
      expect(p.events()).to.deep.equal([{ type: 'bar-written', bdf: TESTDEV, bar: 0, offset: DOORBELL, length: 4, path: 'p2p' }]);
    });

    it('are dropped for memory no BAR has, past the window, or while decode is off: no event, no Unsupported Request', () => {
      expect(p.bus.postedWrite('0000-0a-00.0-bar9', 0, 4)).to.equal(false);
      expect(p.bus.postedWrite(MEMORY_NAME, WINDOW.length - 2, 4)).to.equal(false);
      expect(p.bus.postedWrite(MEMORY_NAME, 0, 0)).to.equal(false);
      p.bus.configWrite(TESTDEV, PCI_COMMAND, 2, 0);
      p.events();
      const devsta = p.bus.configRead(TESTDEV, 0x4a, 2);
      expect(p.bus.postedWrite(MEMORY_NAME, 0x10, 4)).to.equal(false);
      expect(p.events()).to.deep.equal([]);
      expect(p.bus.configRead(TESTDEV, 0x4a, 2)).to.equal(devsta);
    });
  });

  describe('DMA through the IOMMU', () => {
    let domain: number;
    beforeEach(() => {
      p.hostSegment('heap.1', PAGE, Buffer.from([0xde, 0xad, 0xbe, 0xef]));
      domain = p.bus.iommu.createDomain();
      p.bus.iommu.attach(domain, ACCEL0);
      p.bus.iommu.map(domain, HOST_IOVA, BigInt(PAGE), RW, { kind: 'host', extents: [{ segment: 'heap.1', offset: 0, length: PAGE }] });
      enableDma(p.bus, ACCEL0);
      p.events();
    });

    it('maps the window as a DMA target; a peer DMA into it is a posted write the device hears of (path p2p)', () => {
      p.bus.iommu.map(domain, WINDOW_IOVA, BigInt(WINDOW.length), RW, { kind: 'bar', bdf: TESTDEV, bar: 0, offset: WINDOW.offset });
      p.events();
      p.bus.mmioWrite(ACCEL0, 0, DMA_SRC_IOVA, 8, HOST_IOVA);
      p.bus.mmioWrite(ACCEL0, 0, DMA_DST_IOVA, 8, WINDOW_IOVA + 0x10n);
      p.bus.mmioWrite(ACCEL0, 0, DMA_LEN, 8, 4n | (BigInt(DMA_DOORBELL_START) << 32n));
      expect(p.bus.mmioRead(ACCEL0, 0, DMA_STATUS, 4).value).to.equal(DMA_STATUS_DONE);
      expect(p.events().map((event) => event.type)).to.deep.equal(['bar-written', 'dma-completed']);
      expect(p.bus.mmioRead(TESTDEV, 0, DOORBELL, 4).value).to.equal(0xefbeadde);
    });

    it('a DMA reads the window as a source too, and tells nobody', () => {
      p.bus.mmioWrite(TESTDEV, 0, DOORBELL, 4, 0x11223344);
      p.bus.iommu.map(domain, WINDOW_IOVA, BigInt(WINDOW.length), RW, { kind: 'bar', bdf: TESTDEV, bar: 0, offset: WINDOW.offset });
      p.events();
      p.bus.mmioWrite(ACCEL0, 0, DMA_SRC_IOVA, 8, WINDOW_IOVA + 0x10n);
      p.bus.mmioWrite(ACCEL0, 0, DMA_DST_IOVA, 8, HOST_IOVA);
      p.bus.mmioWrite(ACCEL0, 0, DMA_LEN, 8, 4n | (BigInt(DMA_DOORBELL_START) << 32n));
      expect(p.events().map((event) => event.type)).to.deep.equal(['dma-completed']);
      expect(p.store.open('heap.1').read(0, 4).readUInt32LE(0)).to.equal(0x11223344);
    });

    it('EINVAL for a mapping of the registers around the window, or across its edge', () => {
      expectErrno(() => p.bus.iommu.map(domain, WINDOW_IOVA, BigInt(PAGE), RW, { kind: 'bar', bdf: TESTDEV, bar: 0, offset: 0 }), 'EINVAL', 'leaves its memory window');
      expectErrno(
        () => p.bus.iommu.map(domain, WINDOW_IOVA, BigInt(WINDOW.length), RW, { kind: 'bar', bdf: TESTDEV, bar: 0, offset: WINDOW.offset + PAGE }),
        'EINVAL',
        'leaves its memory window',
      );
    });
  });

  describe('the topology', () => {
    const withWindow = (bar: object): (() => unknown) => () => {
      const input = structuredClone(WINDOWED_TOPOLOGY);
      const fn = input.hostBridges[0]!.rootPorts[1]!.switch!.downstreamPorts[3]!.functions![0]!;
      if (fn.kind === 'generic') fn.bars = [{ index: 0, size: 0x1_0000, ...bar }];
      return topologyFromObject(input);
    };

    it('EINVAL for a window not in whole pages, past the BAR, in an I/O BAR, or in a BAR past 1 MiB', () => {
      expectErrno(withWindow({ window: { offset: 0x800, length: 0x1000 } }), 'EINVAL', 'multiples of the 4096-byte page');
      expectErrno(withWindow({ window: { offset: 0xf000, length: 0x2000 } }), 'EINVAL', 'runs past');
      expectErrno(withWindow({ size: 256, space: 'io', window: { offset: 0, length: 0x1000 } }), 'EINVAL', 'no memory window');
      expectErrno(withWindow({ size: 0x20_0000, bits: 64, window: { offset: 0, length: 0x1000 } }), 'EINVAL');
    });
  });
});
