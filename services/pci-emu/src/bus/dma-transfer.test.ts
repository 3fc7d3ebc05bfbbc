import * as fs from 'node:fs';
import { expect } from 'chai';
import { SegmentStore } from '@p2p/shm';
import { useTempShmDir } from '@p2p/testing';
import { EXP_CAP_OFFSET } from '../config-space/endpoint-config';
import { PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY, PCI_EXP_DEVSTA, PCI_EXP_DEVSTA_URD, PCI_STATUS, PCI_STATUS_REC_MASTER_ABORT } from '../config-space/pci-regs';
import {
  DMA_DOORBELL_START,
  DMA_DST_IOVA,
  DMA_ERROR,
  DMA_ERRORS,
  DMA_FAULT_IOVA,
  DMA_LEN,
  DMA_SRC_IOVA,
  DMA_STATUS,
  DMA_STATUS_DONE,
  DMA_STATUS_ERROR,
  DMA_STATUS_IDLE,
  type DmaErrorName,
  type DmaPort,
  type DmaRequest,
} from '../devices/dma-engine';
import {
  decodeDmaCompletion,
  DMA_DESCRIPTOR_SIZE,
  DMA_RING_BASE,
  DMA_RING_CTRL,
  DMA_RING_CTRL_ENABLE,
  DMA_RING_FAULT_IOVA,
  DMA_RING_HEAD,
  DMA_RING_SIZE,
  DMA_RING_STATUS,
  DMA_RING_STATUS_DISABLED,
  DMA_RING_STATUS_HALTED,
  DMA_RING_TAIL,
  encodeDmaDescriptor,
} from '../devices/dma-ring';
import { IOMMU_READ, IOMMU_WRITE } from '../iommu/iova';
import { RelocatableMemory } from '../relocatable-memory';
import { ACCEL0, enableDma, MEMORY_BAR, NVME1, PAGE, platform, type Platform } from '../testing/platform';

const RW = IOMMU_READ | IOMMU_WRITE;
const HOST_IOVA = 0x1000_0000n;
const HOST2_IOVA = 0x1800_0000n;
const ACCEL_IOVA = 0x2000_0000n;
const NVME_IOVA = 0x3000_0000n;
const PAGES = 4;

/** STATUS, ERROR and FAULT_IOVA as the driver reads them after ringing. */
interface Completion {
  readonly status: number;
  readonly error: number;
  readonly faultIova: bigint;
}

const done: Completion = { status: DMA_STATUS_DONE, error: 0, faultIova: 0n };
const failed = (error: DmaErrorName, faultIova = 0n): Completion => ({ status: DMA_STATUS_ERROR, error: DMA_ERRORS[error], faultIova });

describe('accelerator DMA through the platform IOMMU', () => {
  const dir = useTempShmDir();
  let p: Platform;
  let domain: number;

  /** Programs the engine by MMIO as a driver would (a qword at LEN rings the doorbell too), then reads the result. */
  const dma = (src: bigint, dst: bigint, length: number): Completion => {
    p.bus.mmioWrite(ACCEL0, 0, DMA_SRC_IOVA, 8, src);
    p.bus.mmioWrite(ACCEL0, 0, DMA_DST_IOVA, 8, dst);
    p.bus.mmioWrite(ACCEL0, 0, DMA_LEN, 8, BigInt(length) | (BigInt(DMA_DOORBELL_START) << 32n));
    return {
      status: p.bus.mmioRead(ACCEL0, 0, DMA_STATUS, 4).value,
      error: p.bus.mmioRead(ACCEL0, 0, DMA_ERROR, 4).value,
      faultIova: p.bus.mmioRead(ACCEL0, 0, DMA_FAULT_IOVA, 8).value,
    };
  };
  const hostBytes = (name: string, offset: number, length: number): Buffer => p.store.open(name).read(offset, length);
  const barBytes = (bdf: string, offset: number, length: number): Buffer => p.bus.bulkRead(bdf, MEMORY_BAR, offset, length).data;
  const pattern = (length: number, seed: number): Buffer => Buffer.from(Array.from({ length }, (_, i) => (i * 7 + seed) & 0xff));
  const zeros = (length: number): Buffer => Buffer.alloc(length);

  /** The accelerator attached to a domain mapping host memory, its own BAR2 and nvme1's CMB, with bus mastering on. */
  function setUp(barMemory?: Parameters<typeof platform>[2]): void {
    p = platform(dir(), undefined, barMemory);
    p.hostSegment('heap.1', PAGES * PAGE, pattern(PAGES * PAGE, 1));
    p.hostSegment('heap.2', PAGES * PAGE);
    domain = p.bus.iommu.createDomain();
    p.bus.iommu.attach(domain, ACCEL0);
    const size = BigInt(PAGES * PAGE);
    p.bus.iommu.map(domain, HOST_IOVA, size, RW, { kind: 'host', extents: [{ segment: 'heap.1', offset: 0, length: PAGES * PAGE }] });
    // heap.2 mapped back to front, so host-to-host crosses extents in the middle.
    p.bus.iommu.map(domain, HOST2_IOVA, size, RW, {
      kind: 'host',
      extents: [
        { segment: 'heap.2', offset: 2 * PAGE, length: 2 * PAGE },
        { segment: 'heap.2', offset: 0, length: 2 * PAGE },
      ],
    });
    p.bus.iommu.map(domain, ACCEL_IOVA, size, RW, { kind: 'bar', bdf: ACCEL0, bar: MEMORY_BAR, offset: 0 });
    p.bus.iommu.map(domain, NVME_IOVA, size, RW, { kind: 'bar', bdf: NVME1, bar: MEMORY_BAR, offset: 0 });
    enableDma(p.bus, ACCEL0);
    p.events();
  }

  afterEach(() => p.bus.close());

  describe('moving bytes', () => {
    beforeEach(() => setUp());

    it('host to device: bytes land in the CMB and the transfer is an event', () => {
      expect(dma(HOST_IOVA + 100n, NVME_IOVA + 8n, 5000)).to.deep.equal(done);
      expect(barBytes(NVME1, 8, 5000).equals(pattern(PAGES * PAGE, 1).subarray(100, 5100))).to.equal(true);
      expect(p.events()).to.deep.equal([
        { type: 'dma-completed', bdf: ACCEL0, status: 'DONE', error: 'NONE', bytes: 5000, srcIova: HOST_IOVA + 100n, dstIova: NVME_IOVA + 8n, faultIova: 0n },
      ]);
    });

    it('device to host: from the accelerator’s own memory BAR', () => {
      p.bus.bulkWrite(ACCEL0, MEMORY_BAR, PAGE, pattern(PAGE, 9));
      expect(dma(ACCEL_IOVA + BigInt(PAGE), HOST2_IOVA, PAGE)).to.deep.equal(done);
      expect(hostBytes('heap.2', 2 * PAGE, PAGE).equals(pattern(PAGE, 9))).to.equal(true);
    });

    it('device to device: the accelerator’s memory into a peer’s CMB (P2P)', () => {
      p.bus.bulkWrite(ACCEL0, MEMORY_BAR, 0, pattern(3 * PAGE, 3));
      expect(dma(ACCEL_IOVA, NVME_IOVA + BigInt(PAGE), 3 * PAGE)).to.deep.equal(done);
      expect(barBytes(NVME1, PAGE, 3 * PAGE).equals(pattern(3 * PAGE, 3))).to.equal(true);
    });

    it('host to host, across extents, in one transfer', () => {
      expect(dma(HOST_IOVA, HOST2_IOVA + BigInt(PAGE), 2 * PAGE)).to.deep.equal(done);
      const source = pattern(PAGES * PAGE, 1);
      expect(hostBytes('heap.2', 3 * PAGE, PAGE).equals(source.subarray(0, PAGE))).to.equal(true);
      expect(hostBytes('heap.2', 0, PAGE).equals(source.subarray(PAGE, 2 * PAGE))).to.equal(true);
    });

    it('goes back to IDLE with every register 0 when the accelerator is reset (FLR)', () => {
      dma(HOST_IOVA, NVME_IOVA, 64);
      p.bus.functionLevelReset(ACCEL0);
      enableDma(p.bus, ACCEL0);
      expect(p.bus.mmioRead(ACCEL0, 0, DMA_STATUS, 4).value).to.equal(DMA_STATUS_IDLE);
      expect(p.bus.mmioRead(ACCEL0, 0, DMA_LEN, 4).value).to.equal(0);
    });
  });

  describe('a function that may not DMA', () => {
    beforeEach(() => setUp());

    it('NO_BUS_MASTER with PCI_COMMAND.MASTER clear: nothing moves and the IOMMU sees nothing', () => {
      p.bus.configWrite(ACCEL0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
      expect(dma(HOST_IOVA, NVME_IOVA, PAGE)).to.deep.equal(failed('NO_BUS_MASTER'));
      expect(barBytes(NVME1, 0, PAGE).equals(zeros(PAGE))).to.equal(true);
      expect(p.events().map((e) => e.type)).to.deep.equal(['decode-changed', 'dma-completed']);
    });

    it('does not even see the doorbell with its own memory decode off', () => {
      p.bus.configWrite(ACCEL0, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
      p.bus.mmioWrite(ACCEL0, 0, DMA_SRC_IOVA, 8, HOST_IOVA);
      p.bus.mmioWrite(ACCEL0, 0, DMA_DST_IOVA, 8, NVME_IOVA);
      expect(p.bus.mmioWrite(ACCEL0, 0, DMA_LEN, 8, BigInt(PAGE) | (1n << 32n)).decoded).to.equal(false);
      enableDma(p.bus, ACCEL0);
      expect(p.bus.mmioRead(ACCEL0, 0, DMA_STATUS, 4).value).to.equal(DMA_STATUS_IDLE);
      expect(barBytes(NVME1, 0, PAGE).equals(zeros(PAGE))).to.equal(true);
    });

    it('BAD_LENGTH for 0 bytes, with no IOMMU access', () => {
      expect(dma(HOST_IOVA, NVME_IOVA, 0)).to.deep.equal(failed('BAD_LENGTH'));
      expect(p.events()).to.deep.equal([
        { type: 'dma-completed', bdf: ACCEL0, status: 'ERROR', error: 'BAD_LENGTH', bytes: 0, srcIova: HOST_IOVA, dstIova: NVME_IOVA, faultIova: 0n },
      ]);
    });
  });

  describe('IOMMU faults: the whole transfer is checked first, so a fault moves nothing', () => {
    beforeEach(() => setUp());

    it('IOMMU_FAULT_READ for a function with no domain, reported as a fault event then the completion', () => {
      p.bus.iommu.detach(domain, ACCEL0);
      expect(dma(HOST_IOVA, NVME_IOVA, PAGE)).to.deep.equal(failed('IOMMU_FAULT_READ', HOST_IOVA));
      expect(p.events()).to.deep.equal([
        { type: 'iommu-fault', bdf: ACCEL0, domainId: 0, iova: HOST_IOVA, write: false, reason: 'NO_DOMAIN' },
        { type: 'dma-completed', bdf: ACCEL0, status: 'ERROR', error: 'IOMMU_FAULT_READ', bytes: 0, srcIova: HOST_IOVA, dstIova: NVME_IOVA, faultIova: HOST_IOVA },
      ]);
    });

    it('IOMMU_FAULT_READ at the first unmapped page of the source, the destination untouched', () => {
      const end = HOST_IOVA + BigInt(PAGES * PAGE);
      expect(dma(end - BigInt(PAGE), NVME_IOVA, 2 * PAGE)).to.deep.equal(failed('IOMMU_FAULT_READ', end));
      expect(barBytes(NVME1, 0, 2 * PAGE).equals(zeros(2 * PAGE))).to.equal(true);
    });

    it('IOMMU_FAULT_WRITE when only the last page of the destination is unmapped: not one byte lands', () => {
      p.bus.iommu.unmap(domain, NVME_IOVA + 3n * BigInt(PAGE), BigInt(PAGE));
      expect(dma(HOST_IOVA, NVME_IOVA, PAGES * PAGE)).to.deep.equal(failed('IOMMU_FAULT_WRITE', NVME_IOVA + 3n * BigInt(PAGE)));
      expect(barBytes(NVME1, 0, PAGES * PAGE).equals(zeros(PAGES * PAGE))).to.equal(true);
      expect(p.events().filter((e) => e.type === 'iommu-fault')).to.deep.equal([
        { type: 'iommu-fault', bdf: ACCEL0, domainId: domain, iova: NVME_IOVA + 3n * BigInt(PAGE), write: true, reason: 'NOT_MAPPED' },
      ]);
    });

    it('IOMMU_FAULT_WRITE into a read-only mapping, IOMMU_FAULT_READ out of a write-only one', () => {
      p.bus.iommu.unmap(domain, HOST2_IOVA, BigInt(PAGE));
      p.bus.iommu.map(domain, HOST2_IOVA, BigInt(PAGE), IOMMU_READ, { kind: 'host', extents: [{ segment: 'heap.2', offset: 2 * PAGE, length: PAGE }] });
      p.bus.iommu.unmap(domain, HOST_IOVA, BigInt(PAGE));
      p.bus.iommu.map(domain, HOST_IOVA, BigInt(PAGE), IOMMU_WRITE, { kind: 'host', extents: [{ segment: 'heap.1', offset: 0, length: PAGE }] });
      expect(dma(NVME_IOVA, HOST2_IOVA, 16)).to.deep.equal(failed('IOMMU_FAULT_WRITE', HOST2_IOVA));
      expect(dma(HOST_IOVA, NVME_IOVA, 16)).to.deep.equal(failed('IOMMU_FAULT_READ', HOST_IOVA));
      expect(p.events().filter((e) => e.type === 'iommu-fault').map((e) => 'reason' in e && e.reason)).to.deep.equal(['PERMISSION', 'PERMISSION']);
    });
  });

  describe('a BAR whose function does not claim the DMA: a master abort', () => {
    beforeEach(() => setUp());

    const masterAbortSeen = (): boolean => (p.bus.configRead(ACCEL0, PCI_STATUS, 2) & PCI_STATUS_REC_MASTER_ABORT) !== 0;

    it('MASTER_ABORT into a peer with memory decode off: nothing lands, both ends log it', () => {
      p.bus.configWrite(NVME1, PCI_COMMAND, 2, 0);
      expect(dma(HOST_IOVA, NVME_IOVA, PAGE)).to.deep.equal(failed('MASTER_ABORT', NVME_IOVA));
      expect(masterAbortSeen()).to.equal(true);
      expect(p.bus.configRead(NVME1, EXP_CAP_OFFSET + PCI_EXP_DEVSTA, 2) & PCI_EXP_DEVSTA_URD).to.equal(PCI_EXP_DEVSTA_URD);
      p.bus.configWrite(NVME1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
      expect(barBytes(NVME1, 0, PAGE).equals(zeros(PAGE))).to.equal(true);
    });

    it('MASTER_ABORT out of a peer in D3hot, with nothing written to the destination', () => {
      p.bus.setPowerState(NVME1, 'D3hot');
      expect(dma(NVME_IOVA + 16n, HOST2_IOVA, PAGE)).to.deep.equal(failed('MASTER_ABORT', NVME_IOVA + 16n));
      expect(hostBytes('heap.2', 2 * PAGE, PAGE).equals(zeros(PAGE))).to.equal(true);
    });

    it('MASTER_ABORT into an unplugged peer; after re-plug and memory decode the same mapping works again', () => {
      p.bus.unplug(NVME1);
      expect(dma(HOST_IOVA, NVME_IOVA, PAGE)).to.deep.equal(failed('MASTER_ABORT', NVME_IOVA));
      p.bus.replug(NVME1);
      p.bus.configWrite(NVME1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
      expect(dma(HOST_IOVA, NVME_IOVA, PAGE)).to.deep.equal(done);
      expect(barBytes(NVME1, 0, PAGE).equals(pattern(PAGES * PAGE, 1).subarray(0, PAGE))).to.equal(true);
    });

    it('MASTER_ABORT after the peer’s FLR clears its decode; its memory is kept and reachable once decode is back', () => {
      expect(dma(HOST_IOVA, NVME_IOVA, PAGE)).to.deep.equal(done);
      p.bus.functionLevelReset(NVME1);
      expect(dma(HOST_IOVA + BigInt(PAGE), NVME_IOVA + BigInt(PAGE), PAGE)).to.deep.equal(failed('MASTER_ABORT', NVME_IOVA + BigInt(PAGE)));
      p.bus.configWrite(NVME1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
      expect(barBytes(NVME1, 0, PAGE).equals(pattern(PAGES * PAGE, 1).subarray(0, PAGE))).to.equal(true);
      expect(dma(HOST_IOVA + BigInt(PAGE), NVME_IOVA + BigInt(PAGE), PAGE)).to.deep.equal(done);
    });
  });

  describe('a mapped data transfer (dmaMap: one system call moves the bytes)', () => {
    beforeEach(() => setUp());
    const port = (): DmaPort => p.bus.busMasterPort(ACCEL0);

    it('maps host memory across extents and a peer BAR as views of the memory itself', () => {
      const views = port().map(HOST2_IOVA + BigInt(PAGE), 2 * PAGE, 'write');
      expect(Array.isArray(views)).to.equal(true);
      (views as Buffer[]).forEach((view, i) => view.fill(0x30 + i));
      expect(hostBytes('heap.2', 3 * PAGE, PAGE).every((b) => b === 0x30)).to.equal(true);
      expect(hostBytes('heap.2', 0, PAGE).every((b) => b === 0x31)).to.equal(true);
      const cmb = port().map(NVME_IOVA, PAGE, 'read') as Buffer[];
      expect(cmb.reduce((n, view) => n + view.length, 0)).to.equal(PAGE);
    });

    it('checks the whole range first: a fault on its last page, or no bus mastering, maps nothing', () => {
      expect(port().map(HOST_IOVA + BigInt((PAGES - 1) * PAGE), 2 * PAGE, 'read')).to.include({ error: 'IOMMU_FAULT_READ' });
      p.bus.configWrite(ACCEL0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
      expect(port().map(HOST_IOVA, PAGE, 'read')).to.include({ error: 'NO_BUS_MASTER' });
    });

    it('a peer BAR with decode off is a master abort', () => {
      p.bus.configWrite(NVME1, PCI_COMMAND, 2, 0);
      expect(port().map(NVME_IOVA, PAGE, 'write')).to.include({ error: 'MASTER_ABORT' });
    });
  });

  describe('a descriptor ring in host memory', () => {
    beforeEach(() => setUp());
    /** The ring: heap.2's first two pages as the IOMMU maps them (HOST2_IOVA is heap.2 at 2 * PAGE). */
    const RING = HOST2_IOVA;
    const ringBytes = (index: number): Buffer => hostBytes('heap.2', 2 * PAGE + index * DMA_DESCRIPTOR_SIZE, DMA_DESCRIPTOR_SIZE);
    const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
    const ring = (requests: DmaRequest[]): void => {
      const descriptors = Buffer.alloc(requests.length * DMA_DESCRIPTOR_SIZE);
      requests.forEach((request, i) => encodeDmaDescriptor(request, descriptors, i * DMA_DESCRIPTOR_SIZE));
      p.store.open('heap.2').write(2 * PAGE, descriptors);
      p.bus.mmioWrite(ACCEL0, 0, DMA_RING_BASE, 8, RING);
      p.bus.mmioWrite(ACCEL0, 0, DMA_RING_SIZE, 4, 16n);
      p.bus.mmioWrite(ACCEL0, 0, DMA_RING_CTRL, 4, BigInt(DMA_RING_CTRL_ENABLE));
      p.bus.mmioWrite(ACCEL0, 0, DMA_RING_TAIL, 4, BigInt(requests.length));
    };

    it('runs the descriptors after the doorbell, host to CMB then CMB to its own BAR, each completion in host memory and an event', async () => {
      ring([
        { src: HOST_IOVA, dst: NVME_IOVA, length: 3000 },
        { src: NVME_IOVA, dst: ACCEL_IOVA + 16n, length: 3000 },
      ]);
      expect(barBytes(NVME1, 0, 3000).equals(zeros(3000)), 'nothing moved within the doorbell write').to.equal(true);
      await turn();
      expect(barBytes(ACCEL0, 16, 3000).equals(pattern(PAGES * PAGE, 1).subarray(0, 3000))).to.equal(true);
      expect([0, 1].map((i) => decodeDmaCompletion(ringBytes(i)))).to.deep.equal([
        { status: DMA_STATUS_DONE, error: 'NONE', bytes: 3000 },
        { status: DMA_STATUS_DONE, error: 'NONE', bytes: 3000 },
      ]);
      expect(p.bus.mmioRead(ACCEL0, 0, DMA_RING_HEAD, 4).value).to.equal(2);
      expect(p.events().filter((e) => e.type === 'dma-completed')).to.have.length(2);
    });

    it('an unmap between the doorbell and the engine\'s turn: the descriptor faults and not one byte lands', async () => {
      ring([{ src: HOST_IOVA, dst: NVME_IOVA, length: PAGE }]);
      p.bus.iommu.unmap(domain, NVME_IOVA, BigInt(PAGES * PAGE));
      await turn();
      expect(barBytes(NVME1, 0, PAGE).equals(zeros(PAGE))).to.equal(true);
      expect(decodeDmaCompletion(ringBytes(0))).to.deep.equal({ status: DMA_STATUS_ERROR, error: 'IOMMU_FAULT_WRITE', bytes: 0 });
      expect(p.bus.mmioRead(ACCEL0, 0, DMA_RING_STATUS, 4).value).to.equal(DMA_RING_STATUS_HALTED);
      expect(p.bus.mmioRead(ACCEL0, 0, DMA_RING_FAULT_IOVA, 8).value).to.equal(NVME_IOVA);
    });

    it('an FLR between the doorbell and the turn: the work rung is dropped, the ring DISABLED', async () => {
      ring([{ src: HOST_IOVA, dst: NVME_IOVA, length: PAGE }]);
      p.bus.functionLevelReset(ACCEL0);
      await turn();
      expect(barBytes(NVME1, 0, PAGE).equals(zeros(PAGE))).to.equal(true);
      expect(decodeDmaCompletion(ringBytes(0)).status).to.equal(0);
      enableDma(p.bus, ACCEL0);
      expect(p.bus.mmioRead(ACCEL0, 0, DMA_RING_STATUS, 4).value).to.equal(DMA_RING_STATUS_DISABLED);
    });
  });

  describe('host memory that fails under the copy', () => {
    beforeEach(() => setUp());

    it('DATA when the owner truncated a destination segment: EFAULT from the copy, not SIGBUS', () => {
      fs.truncateSync(p.store.pathOf('heap.2'), 0);
      expect(dma(HOST_IOVA, HOST2_IOVA, PAGE)).to.deep.equal(failed('DATA'));
      expect(p.events().map((e) => e.type === 'dma-completed' && e.error)).to.deep.equal(['DATA']);
    });
  });

  describe('BARs in shared-memory segments', () => {
    let store: SegmentStore;
    let cmb: RelocatableMemory;

    beforeEach(() => {
      store = new SegmentStore({ dir: dir() });
      setUp((name, size) => {
        const memory = new RelocatableMemory(store, `pci-emu.test.${name}`, size);
        if (name === '0000-08-00.0-bar2') cmb = memory;
        return memory;
      });
    });

    it('reaches a relocated BAR in its new files: a stale mapping of the old ones sees nothing', () => {
      const [old] = cmb.extents(0, PAGE);
      const stale = store.open(old!.segment).view(0, PAGE);
      cmb.relocate();
      expect(dma(HOST_IOVA, NVME_IOVA, PAGE)).to.deep.equal(done);
      expect(barBytes(NVME1, 0, PAGE).equals(pattern(PAGES * PAGE, 1).subarray(0, PAGE))).to.equal(true);
      expect(stale.equals(zeros(PAGE))).to.equal(true);
    });

    it('reads untouched device memory without allocating it', () => {
      expect(dma(ACCEL_IOVA, HOST2_IOVA, PAGES * PAGE)).to.deep.equal(done);
      const [source] = store.list().filter((s) => s.name.startsWith('pci-emu.test.0000-07-00.0-bar2'));
      expect(source!.allocatedBytes).to.equal(0);
    });
  });
});
