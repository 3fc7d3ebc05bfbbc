import { expect } from 'chai';
import { useTempShmDir } from '@p2p/testing';
import { PCI_COMMAND } from '../config-space/pci-regs';
import { ACCEL0, expectErrno, MEMORY_BAR, NIC0, NIC1, NO_HOST_BRIDGE_P2P, NVME0, NVME1, openDescriptors, PAGE, platform, type Platform } from '../testing/platform';
import { MAX_DOMAIN_MAPPINGS, MAX_HOST_EXTENTS, MAX_IOMMU_DOMAINS } from './iommu';
import { IommuFault } from './iommu-fault';
import type { MappingTarget } from './iommu-mapping';
import { IOMMU_READ, IOMMU_WRITE, IOVA_APERTURE_END, MSI_WINDOW } from './iova';

const RW = IOMMU_READ | IOMMU_WRITE;
const P = BigInt(PAGE);
const IOVA = 0x10000000n;

const host = (...extents: Array<[segment: string, offset: number, length: number]>): MappingTarget => ({
  kind: 'host',
  extents: extents.map(([segment, offset, length]) => ({ segment, offset, length })),
});
const bar = (bdf: string, offset = 0, index = MEMORY_BAR): MappingTarget => ({ kind: 'bar', bdf, bar: index, offset });

describe('platform IOMMU', () => {
  const dir = useTempShmDir();
  let p: Platform;

  beforeEach(() => {
    p = platform(dir());
  });

  afterEach(() => p.bus.close());

  /** The IOMMU's whole visible state, to show that a refused call changed nothing. */
  const state = (): unknown => p.bus.iommu.listDomains();

  describe('domains', () => {
    it('numbers domains up from the first and never reuses an id', () => {
      const first = p.bus.iommu.createDomain();
      const second = p.bus.iommu.createDomain();
      p.bus.iommu.destroyDomain(first);
      expect(first).to.be.at.least(1);
      expect([second, p.bus.iommu.createDomain()]).to.deep.equal([first + 1, first + 2]);
    });

    it('a platform started again does not hand out the ids of the one before: a domain id held from it is ENOENT for every call', () => {
      const segment = p.hostSegment('heap.1', PAGE);
      const held = p.bus.iommu.createDomain();
      p.bus.iommu.attach(held, ACCEL0);
      p.bus.iommu.map(held, IOVA, P, RW, host([segment, 0, PAGE]));
      p.bus.close();

      p = platform(dir());
      const fresh = p.bus.iommu.createDomain();
      p.bus.iommu.attach(fresh, ACCEL0);
      p.bus.iommu.map(fresh, IOVA, P, RW, host([segment, 0, PAGE]));
      expect(fresh, 'the first domain of the new platform').to.not.equal(held);
      const before = state();
      expectErrno(() => p.bus.iommu.map(held, IOVA + P, P, RW, host([segment, 0, PAGE])), 'ENOENT', `no IOMMU domain ${held}`);
      expectErrno(() => p.bus.iommu.unmap(held, IOVA, P), 'ENOENT', `no IOMMU domain ${held}`);
      expectErrno(() => p.bus.iommu.detach(held, ACCEL0), 'ENOENT', `no IOMMU domain ${held}`);
      expectErrno(() => p.bus.iommu.destroyDomain(held), 'ENOENT', `no IOMMU domain ${held}`);
      expect(state(), 'the new platform\'s domains').to.deep.equal(before);
    });

    it(`ENOSPC past ${MAX_IOMMU_DOMAINS} live domains`, () => {
      for (let i = 0; i < MAX_IOMMU_DOMAINS; i++) p.bus.iommu.createDomain();
      expectErrno(() => p.bus.iommu.createDomain(), 'ENOSPC', `${MAX_IOMMU_DOMAINS} IOMMU domains`);
    });

    it('ENOENT when destroying a domain that does not exist', () => {
      expectErrno(() => p.bus.iommu.destroyDomain(7), 'ENOENT', 'no IOMMU domain 7');
    });

    it('EBUSY when destroying a domain with a function attached, and destroys it once detached', () => {
      const domain = p.bus.iommu.createDomain();
      p.bus.iommu.attach(domain, ACCEL0);
      const before = state();
      expectErrno(() => p.bus.iommu.destroyDomain(domain), 'EBUSY', ACCEL0);
      expect(state()).to.deep.equal(before);
      p.bus.iommu.detach(domain, ACCEL0);
      p.bus.iommu.destroyDomain(domain);
      expect(p.bus.iommu.listDomains()).to.deep.equal([]);
    });

    it('unmaps everything when destroyed: its host segments are closed and the unmap is an event', () => {
      const segment = p.hostSegment('heap.1', 2 * PAGE);
      const domain = p.bus.iommu.createDomain();
      p.bus.iommu.map(domain, IOVA, 2n * P, RW, host([segment, 0, 2 * PAGE]));
      p.events();
      p.bus.iommu.destroyDomain(domain);
      expect(openDescriptors(p.store.pathOf(segment))).to.equal(0);
      expect(p.events()).to.deep.equal([
        { type: 'iommu-unmapped', bdf: '', domainId: domain, iova: 0, length: IOVA_APERTURE_END, unmapped: 2 * PAGE, devices: [] },
      ]);
    });

    it('lists domains with their functions, mappings and mapped bytes; ENOENT for an unknown one', () => {
      const domain = p.bus.iommu.createDomain();
      p.bus.iommu.attach(domain, NVME1);
      p.bus.iommu.attach(domain, ACCEL0);
      p.bus.iommu.map(domain, IOVA, P, IOMMU_READ, bar(NVME1));
      expect(p.bus.iommu.listDomains(domain)).to.deep.equal([
        { id: domain, devices: [ACCEL0, NVME1], mappings: [{ iova: Number(IOVA), length: PAGE, prot: IOMMU_READ, target: bar(NVME1) }], mappedBytes: PAGE },
      ]);
      expectErrno(() => p.bus.iommu.listDomains(domain + 1), 'ENOENT');
    });
  });

  describe('attach and detach', () => {
    it('ENOENT for an unknown domain', () => {
      expectErrno(() => p.bus.iommu.attach(9, ACCEL0), 'ENOENT');
    });

    it('EINVAL for a malformed BDF, ENODEV for a function that is not there', () => {
      const domain = p.bus.iommu.createDomain();
      expectErrno(() => p.bus.iommu.attach(domain, 'accel0'), 'EINVAL');
      expectErrno(() => p.bus.iommu.attach(domain, '0000:7f:00.0'), 'ENODEV');
    });

    it('ENODEV for an unplugged function', () => {
      const domain = p.bus.iommu.createDomain();
      p.bus.unplug(ACCEL0);
      expectErrno(() => p.bus.iommu.attach(domain, ACCEL0), 'ENODEV', 'hot-unplugged');
    });

    it('EBUSY for a function attached to another domain, and to this one', () => {
      const first = p.bus.iommu.createDomain();
      const second = p.bus.iommu.createDomain();
      p.bus.iommu.attach(first, ACCEL0);
      expectErrno(() => p.bus.iommu.attach(second, ACCEL0), 'EBUSY', `domain ${first}`);
      expectErrno(() => p.bus.iommu.attach(first, ACCEL0), 'EBUSY', `domain ${first}`);
      expect(p.bus.iommu.domainOf(ACCEL0)).to.equal(first);
    });

    it('gives each function its own group: two functions attach to one domain', () => {
      const domain = p.bus.iommu.createDomain();
      p.bus.iommu.attach(domain, ACCEL0);
      p.bus.iommu.attach(domain, NIC1);
      expect(p.bus.iommu.listDomains(domain)[0]!.devices).to.deep.equal([ACCEL0, NIC1]);
    });

    it('EINVAL when detaching a function that is not attached to the domain', () => {
      const first = p.bus.iommu.createDomain();
      const second = p.bus.iommu.createDomain();
      expectErrno(() => p.bus.iommu.detach(first, ACCEL0), 'EINVAL', 'not attached');
      p.bus.iommu.attach(first, ACCEL0);
      expectErrno(() => p.bus.iommu.detach(second, ACCEL0), 'EINVAL', `domain ${second}`);
      expect(p.bus.iommu.domainOf(ACCEL0)).to.equal(first);
    });

    it('takes an unplugged function off its domain, which stays and may be destroyed; a later detach succeeds', () => {
      const domain = p.bus.iommu.createDomain();
      p.bus.iommu.attach(domain, ACCEL0);
      p.bus.unplug(ACCEL0);
      expect(p.bus.iommu.domainOf(ACCEL0)).to.equal(undefined);
      expect(p.bus.iommu.listDomains().find((d) => d.id === domain)?.devices).to.deep.equal([]);
      p.bus.iommu.detach(domain, ACCEL0);
      p.bus.iommu.destroyDomain(domain);
    });

    it('a function plugged back in starts blocked: its DMA faults until it is attached again', () => {
      const domain = p.bus.iommu.createDomain();
      p.bus.iommu.attach(domain, ACCEL0);
      p.bus.unplug(ACCEL0);
      p.bus.replug(ACCEL0);
      expect(p.bus.iommu.domainOf(ACCEL0)).to.equal(undefined);
      p.bus.iommu.attach(domain, ACCEL0);
      expect(p.bus.iommu.domainOf(ACCEL0)).to.equal(domain);
    });
  });

  describe('iommu_map: the checks in order', () => {
    let domain: number;

    beforeEach(() => {
      domain = p.bus.iommu.createDomain();
    });

    it('ENOENT for an unknown domain', () => {
      expectErrno(() => p.bus.iommu.map(domain + 1, IOVA, P, RW, bar(ACCEL0)), 'ENOENT');
    });

    it('EOPNOTSUPP for prot bits other than IOMMU_READ and IOMMU_WRITE, before the range', () => {
      expectErrno(() => p.bus.iommu.map(domain, 1n, 0n, RW | 4, bar(ACCEL0)), 'EOPNOTSUPP', 'prot 0x7');
    });

    it('EINVAL for prot with neither IOMMU_READ nor IOMMU_WRITE', () => {
      expectErrno(() => p.bus.iommu.map(domain, IOVA, P, 0, bar(ACCEL0)), 'EINVAL', 'neither');
    });

    it('EINVAL for a length of 0', () => {
      expectErrno(() => p.bus.iommu.map(domain, IOVA, 0n, RW, bar(ACCEL0)), 'EINVAL', 'length is 0');
    });

    it('EINVAL for an IOVA or a length that is not a whole number of pages', () => {
      expectErrno(() => p.bus.iommu.map(domain, IOVA + 512n, P, RW, bar(ACCEL0)), 'EINVAL', 'multiples');
      expectErrno(() => p.bus.iommu.map(domain, IOVA, P + 1n, RW, bar(ACCEL0)), 'EINVAL', 'multiples');
    });

    it('EOVERFLOW for a range whose end passes 2^64', () => {
      expectErrno(() => p.bus.iommu.map(domain, (1n << 64n) - P, 2n * P, RW, bar(ACCEL0)), 'EOVERFLOW', '2^64');
    });

    it('EINVAL for a range leaving the 48-bit aperture, up to the last page in it', () => {
      const end = BigInt(IOVA_APERTURE_END);
      expectErrno(() => p.bus.iommu.map(domain, end - P, 2n * P, RW, bar(ACCEL0)), 'EINVAL', 'aperture');
      expectErrno(() => p.bus.iommu.map(domain, (1n << 64n) - P, P, RW, bar(ACCEL0)), 'EINVAL', 'aperture');
      p.bus.iommu.map(domain, end - P, P, RW, bar(ACCEL0));
    });

    it('EINVAL for a range meeting the reserved MSI window, and maps right up to its edges', () => {
      const start = BigInt(MSI_WINDOW.start);
      const end = BigInt(MSI_WINDOW.end);
      expectErrno(() => p.bus.iommu.map(domain, start - P, 2n * P, RW, bar(ACCEL0)), 'EINVAL', 'MSI');
      expectErrno(() => p.bus.iommu.map(domain, end - P, P, RW, bar(ACCEL0)), 'EINVAL', 'MSI');
      p.bus.iommu.map(domain, start - P, P, RW, bar(ACCEL0));
      p.bus.iommu.map(domain, end, P, RW, bar(ACCEL0));
    });

    it('EEXIST for a range overlapping a mapping, even by one page at either end', () => {
      p.bus.iommu.map(domain, IOVA, 4n * P, RW, bar(ACCEL0));
      const before = state();
      expectErrno(() => p.bus.iommu.map(domain, IOVA - P, 2n * P, RW, bar(ACCEL0)), 'EEXIST');
      expectErrno(() => p.bus.iommu.map(domain, IOVA + 3n * P, 2n * P, RW, bar(ACCEL0)), 'EEXIST');
      expectErrno(() => p.bus.iommu.map(domain, IOVA + P, P, RW, bar(ACCEL0)), 'EEXIST');
      expect(state()).to.deep.equal(before);
      p.bus.iommu.map(domain, IOVA - P, P, RW, bar(ACCEL0));
      p.bus.iommu.map(domain, IOVA + 4n * P, P, RW, bar(ACCEL0));
    });

    it(`ENOSPC past ${MAX_DOMAIN_MAPPINGS} mappings in a domain`, () => {
      for (let i = 0n; i < BigInt(MAX_DOMAIN_MAPPINGS); i++) p.bus.iommu.map(domain, i * P, P, RW, bar(ACCEL0));
      expectErrno(() => p.bus.iommu.map(domain, BigInt(MAX_DOMAIN_MAPPINGS) * P, P, RW, bar(ACCEL0)), 'ENOSPC');
    });

    it('reports a mapping as an event naming the functions attached', () => {
      p.bus.iommu.attach(domain, ACCEL0);
      p.events();
      p.bus.iommu.map(domain, IOVA, 2n * P, IOMMU_READ, bar(NVME1));
      expect(p.events()).to.deep.equal([
        { type: 'iommu-mapped', bdf: '', domainId: domain, iova: Number(IOVA), length: 2 * PAGE, prot: IOMMU_READ, devices: [ACCEL0] },
      ]);
    });
  });

  describe('iommu_map of a BAR (P2P)', () => {
    let domain: number;

    beforeEach(() => {
      domain = p.bus.iommu.createDomain();
    });

    it('ENODEV for a function that is not there or is unplugged', () => {
      expectErrno(() => p.bus.iommu.map(domain, IOVA, P, RW, bar('0000:7f:00.0')), 'ENODEV');
      p.bus.unplug(NVME1);
      expectErrno(() => p.bus.iommu.map(domain, IOVA, P, RW, bar(NVME1)), 'ENODEV', 'hot-unplugged');
    });

    it('EINVAL for a BAR the function does not have', () => {
      expectErrno(() => p.bus.iommu.map(domain, IOVA, P, RW, bar(ACCEL0, 0, 4)), 'EINVAL', 'no BAR 4');
    });

    it('EINVAL for a BAR that is not memory: registers, the ROM', () => {
      expectErrno(() => p.bus.iommu.map(domain, IOVA, P, RW, bar(NIC1, 0, 0)), 'EINVAL', 'registers, not memory');
      expectErrno(() => p.bus.iommu.map(domain, IOVA, P, RW, bar(NVME1, 0, 0)), 'EINVAL', 'BAR 0');
      expectErrno(() => p.bus.iommu.map(domain, IOVA, P, RW, bar(NIC1, 0, 6)), 'EINVAL', 'rom, not memory');
    });

    it('EINVAL for a BAR offset that is not page aligned', () => {
      expectErrno(() => p.bus.iommu.map(domain, IOVA, P, RW, bar(NVME1, 100)), 'EINVAL', 'BAR offset 100');
    });

    it('EINVAL for a range running past the BAR, and maps its last page', () => {
      const cmb = p.bus.getFunction(NVME1).bars.find((b) => b.index === MEMORY_BAR)!.size;
      expectErrno(() => p.bus.iommu.map(domain, IOVA, 2n * P, RW, bar(NVME1, cmb - PAGE)), 'EINVAL', 'runs past BAR 2');
      p.bus.iommu.map(domain, IOVA, P, RW, bar(NVME1, cmb - PAGE));
    });

    it('maps a peer under the same switch (BUS_ADDR) and across the host bridge when it allows P2P (THRU_HOST_BRIDGE)', () => {
      p.bus.iommu.attach(domain, ACCEL0);
      p.bus.iommu.map(domain, IOVA, P, RW, bar(NVME1));
      p.bus.iommu.map(domain, IOVA + P, P, RW, bar(NVME0));
      expect(p.bus.iommu.listDomains(domain)[0]!.mappedBytes).to.equal(2 * PAGE);
    });

    describe('where the host bridge refuses P2P', () => {
      beforeEach(() => {
        p.bus.close();
        p = platform(dir(), NO_HOST_BRIDGE_P2P);
        domain = p.bus.iommu.createDomain();
      });

      it('EINVAL for a BAR an attached function cannot reach (NOT_SUPPORTED), changing nothing', () => {
        p.bus.iommu.attach(domain, ACCEL0);
        const before = state();
        expectErrno(() => p.bus.iommu.map(domain, IOVA, P, RW, bar(NVME0)), 'EINVAL', `${ACCEL0} cannot reach BAR memory of ${NVME0}`);
        expect(state()).to.deep.equal(before);
        p.bus.iommu.map(domain, IOVA, P, RW, bar(NVME1));
      });

      it('checks every attached function', () => {
        p.bus.iommu.attach(domain, NIC0);
        p.bus.iommu.attach(domain, ACCEL0);
        expectErrno(() => p.bus.iommu.map(domain, IOVA, P, RW, bar(NVME1)), 'EINVAL', `${NIC0} cannot reach`);
        expectErrno(() => p.bus.iommu.map(domain, IOVA, P, RW, bar(NVME0)), 'EINVAL', `${ACCEL0} cannot reach`);
      });

      it('refuses to attach a function that cannot reach a BAR the domain maps (EINVAL), leaving it with no domain', () => {
        p.bus.iommu.map(domain, IOVA, P, RW, bar(NVME0));
        p.bus.iommu.attach(domain, NIC0);
        expectErrno(() => p.bus.iommu.attach(domain, ACCEL0), 'EINVAL', `${ACCEL0} cannot reach BAR memory of ${NVME0}`);
        expect(p.bus.iommu.domainOf(ACCEL0)).to.equal(undefined);
        expect(p.bus.iommu.listDomains(domain)[0]!.devices).to.deep.equal([NIC0]);
      });

      it('lets a function attach once the unreachable BAR is unmapped', () => {
        p.bus.iommu.map(domain, IOVA, P, RW, bar(NVME0));
        p.bus.iommu.unmap(domain, IOVA, P);
        p.bus.iommu.attach(domain, ACCEL0);
      });
    });
  });

  describe('iommu_map of host memory', () => {
    let domain: number;

    beforeEach(() => {
      domain = p.bus.iommu.createDomain();
      p.hostSegment('heap.1', 4 * PAGE);
      p.hostSegment('heap.2', 4 * PAGE);
    });

    it('maps extents of several segments laid end to end, holding each file open once', () => {
      p.bus.iommu.map(domain, IOVA, 3n * P, RW, host(['heap.1', PAGE, PAGE], ['heap.2', 0, PAGE], ['heap.1', 3 * PAGE, PAGE]));
      expect(p.bus.iommu.listDomains(domain)[0]!.mappedBytes).to.equal(3 * PAGE);
      expect(openDescriptors(p.store.pathOf('heap.1'))).to.equal(1);
      expect(p.bus.iommu.heldHostSegments).to.equal(2);
    });

    it('EINVAL for no extents', () => {
      expectErrno(() => p.bus.iommu.map(domain, IOVA, P, RW, host()), 'EINVAL', 'at least one extent');
    });

    it(`E2BIG for more than ${MAX_HOST_EXTENTS} extents`, () => {
      const extents = Array.from({ length: MAX_HOST_EXTENTS + 1 }, (): [string, number, number] => ['heap.1', 0, PAGE]);
      expectErrno(() => p.bus.iommu.map(domain, IOVA, BigInt(extents.length) * P, RW, host(...extents)), 'E2BIG');
    });

    it('EINVAL for a segment name that could leave the directory', () => {
      expectErrno(() => p.bus.iommu.map(domain, IOVA, P, RW, host(['../heap.1', 0, PAGE])), 'EINVAL', 'segment name');
    });

    it('EINVAL for an extent whose offset or length is not a page multiple, or is empty', () => {
      expectErrno(() => p.bus.iommu.map(domain, IOVA, P, RW, host(['heap.1', 8, PAGE])), 'EINVAL', 'page multiples');
      expectErrno(() => p.bus.iommu.map(domain, IOVA, P, RW, host(['heap.1', 0, PAGE - 8], ['heap.2', 0, 8])), 'EINVAL', 'page multiples');
      expectErrno(() => p.bus.iommu.map(domain, IOVA, P, RW, host(['heap.1', 0, PAGE], ['heap.2', 0, 0])), 'EINVAL', 'length not 0');
    });

    it('EINVAL for extents that do not add up to the mapping', () => {
      expectErrno(() => p.bus.iommu.map(domain, IOVA, 2n * P, RW, host(['heap.1', 0, PAGE])), 'EINVAL', 'cover 4096 bytes of a 8192-byte');
    });

    it('ENOENT for a segment that does not exist, holding nothing', () => {
      expectErrno(() => p.bus.iommu.map(domain, IOVA, 2n * P, RW, host(['heap.1', 0, PAGE], ['heap.9', 0, PAGE])), 'ENOENT');
      expect(openDescriptors(p.store.pathOf('heap.1'))).to.equal(0);
      expect(state()).to.deep.equal([{ id: domain, devices: [], mappings: [], mappedBytes: 0 }]);
    });

    it('EINVAL for an extent running past its file, holding nothing', () => {
      expectErrno(() => p.bus.iommu.map(domain, IOVA, 3n * P, RW, host(['heap.2', 0, PAGE], ['heap.1', 3 * PAGE, 2 * PAGE])), 'EINVAL', 'runs past it');
      expect(p.bus.iommu.heldHostSegments).to.equal(0);
    });

    it("EINVAL for pci-emu's own BAR segments: a BAR is mapped as a BAR", () => {
      p.hostSegment('pci-emu.0a1b.0000-08-00.0-bar2.g0.0', PAGE);
      expectErrno(() => p.bus.iommu.map(domain, IOVA, P, RW, host(['pci-emu.0a1b.0000-08-00.0-bar2.g0.0', 0, PAGE])), 'EINVAL', 'device memory');
    });
  });

  describe('iommu_unmap', () => {
    let domain: number;

    beforeEach(() => {
      domain = p.bus.iommu.createDomain();
      p.bus.iommu.attach(domain, ACCEL0);
    });

    it('ENOENT for an unknown domain', () => {
      expectErrno(() => p.bus.iommu.unmap(domain + 1, IOVA, P), 'ENOENT');
    });

    it('EINVAL for a length of 0 or a range not in whole pages, EOVERFLOW past 2^64', () => {
      expectErrno(() => p.bus.iommu.unmap(domain, IOVA, 0n), 'EINVAL', 'length is 0');
      expectErrno(() => p.bus.iommu.unmap(domain, IOVA + 1n, P), 'EINVAL', 'multiples');
      expectErrno(() => p.bus.iommu.unmap(domain, (1n << 64n) - P, 2n * P), 'EOVERFLOW');
    });

    it('removes every mapping inside the range and returns the bytes that were mapped', () => {
      p.bus.iommu.map(domain, IOVA, P, RW, bar(NVME1));
      p.bus.iommu.map(domain, IOVA + 2n * P, 2n * P, RW, bar(NVME1, PAGE));
      p.bus.iommu.map(domain, IOVA + 8n * P, P, RW, bar(NVME1));
      expect(p.bus.iommu.unmap(domain, IOVA, 8n * P)).to.equal(3 * PAGE);
      expect(p.bus.iommu.listDomains(domain)[0]!.mappings.map((m) => m.iova)).to.deep.equal([Number(IOVA + 8n * P)]);
    });

    it('answers 0 for a range with nothing mapped, even past the aperture, and posts no event', () => {
      p.bus.iommu.map(domain, IOVA, P, RW, bar(NVME1));
      p.events();
      expect(p.bus.iommu.unmap(domain, IOVA + P, 16n * P)).to.equal(0);
      expect(p.bus.iommu.unmap(domain, BigInt(IOVA_APERTURE_END), P)).to.equal(0);
      expect(p.events()).to.deep.equal([]);
    });

    it('splits a mapping the range cuts: the pages outside stay mapped to the same memory', () => {
      p.hostSegment('heap.1', 4 * PAGE);
      p.hostSegment('heap.2', 4 * PAGE);
      p.bus.iommu.map(domain, IOVA, 4n * P, RW, host(['heap.1', 0, 2 * PAGE], ['heap.2', 2 * PAGE, 2 * PAGE]));
      expect(p.bus.iommu.unmap(domain, IOVA + P, 2n * P)).to.equal(2 * PAGE);
      expect(p.bus.iommu.listDomains(domain)[0]!.mappings).to.deep.equal([
        { iova: Number(IOVA), length: PAGE, prot: RW, target: host(['heap.1', 0, PAGE]) },
        { iova: Number(IOVA + 3n * P), length: PAGE, prot: RW, target: host(['heap.2', 3 * PAGE, PAGE]) },
      ]);
      expectErrno(() => p.bus.iommu.translate(ACCEL0, IOVA + P, PAGE, 'read'), 'EFAULT', 'NOT_MAPPED');
    });

    it('closes a host segment when its last mapped page goes, not before', () => {
      p.hostSegment('heap.1', 4 * PAGE);
      const file = p.store.pathOf('heap.1');
      p.bus.iommu.map(domain, IOVA, 4n * P, RW, host(['heap.1', 0, 4 * PAGE]));
      p.bus.iommu.unmap(domain, IOVA + P, 2n * P);
      expect(openDescriptors(file)).to.equal(1);
      p.bus.iommu.unmap(domain, IOVA, P);
      expect(openDescriptors(file)).to.equal(1);
      p.bus.iommu.unmap(domain, IOVA + 3n * P, P);
      expect(openDescriptors(file)).to.equal(0);
      expect(p.bus.iommu.heldHostSegments).to.equal(0);
    });

    it('reports the unmap as an event with the bytes cleared', () => {
      p.bus.iommu.map(domain, IOVA, 2n * P, RW, bar(NVME1));
      p.events();
      p.bus.iommu.unmap(domain, IOVA - P, 2n * P);
      expect(p.events()).to.deep.equal([
        { type: 'iommu-unmapped', bdf: '', domainId: domain, iova: Number(IOVA - P), length: 2 * PAGE, unmapped: PAGE, devices: [ACCEL0] },
      ]);
    });
  });

  describe('translate', () => {
    let domain: number;

    beforeEach(() => {
      domain = p.bus.iommu.createDomain();
      p.bus.iommu.attach(domain, ACCEL0);
      p.hostSegment('heap.1', 4 * PAGE);
    });

    const faultOf = (operation: () => unknown): IommuFault => {
      const error = expectErrno(operation, 'EFAULT');
      expect(error).to.be.instanceOf(IommuFault);
      return error as IommuFault;
    };

    it('walks the range across mappings and extents, mid-page start and end included', () => {
      p.bus.iommu.map(domain, IOVA, 2n * P, RW, host(['heap.1', 2 * PAGE, PAGE], ['heap.1', 0, PAGE]));
      p.bus.iommu.map(domain, IOVA + 2n * P, P, IOMMU_READ, bar(NVME1, 3 * PAGE));
      const pieces = p.bus.iommu.translate(ACCEL0, IOVA + 100n, 2 * PAGE + 200, 'read');
      expect(pieces.map((piece) => (piece.kind === 'host' ? [piece.segment.name, piece.offset, piece.length] : [piece.bdf, piece.offset, piece.length]))).to.deep.equal([
        ['heap.1', 2 * PAGE + 100, PAGE - 100],
        ['heap.1', 0, PAGE],
        [NVME1, 3 * PAGE, 300],
      ]);
    });

    it('faults a function with no domain (NO_DOMAIN), reporting it as an event', () => {
      p.events();
      const fault = faultOf(() => p.bus.iommu.translate(NIC1, IOVA, PAGE, 'write'));
      expect(fault.fault).to.deep.equal({ bdf: NIC1, domainId: 0, iova: IOVA, write: true, reason: 'NO_DOMAIN' });
      expect(p.events()).to.deep.equal([{ type: 'iommu-fault', bdf: NIC1, domainId: 0, iova: IOVA, write: true, reason: 'NO_DOMAIN' }]);
    });

    it('faults at the first IOVA with no mapping (NOT_MAPPED)', () => {
      p.bus.iommu.map(domain, IOVA, P, RW, host(['heap.1', 0, PAGE]));
      const fault = faultOf(() => p.bus.iommu.translate(ACCEL0, IOVA + 8n, 2 * PAGE, 'read'));
      expect(fault.fault).to.include({ domainId: domain, iova: IOVA + P, reason: 'NOT_MAPPED', write: false });
    });

    it('faults a write through a read-only mapping, and a read through a write-only one (PERMISSION)', () => {
      p.bus.iommu.map(domain, IOVA, P, IOMMU_READ, host(['heap.1', 0, PAGE]));
      p.bus.iommu.map(domain, IOVA + P, P, IOMMU_WRITE, host(['heap.1', PAGE, PAGE]));
      expect(faultOf(() => p.bus.iommu.translate(ACCEL0, IOVA, PAGE, 'write')).fault).to.include({ iova: IOVA, reason: 'PERMISSION', write: true });
      expect(faultOf(() => p.bus.iommu.translate(ACCEL0, IOVA, 2 * PAGE, 'read')).fault).to.include({ iova: IOVA + P, reason: 'PERMISSION' });
    });

    it('faults an IOVA past the aperture (NOT_MAPPED)', () => {
      expect(faultOf(() => p.bus.iommu.translate(ACCEL0, 1n << 60n, 1, 'read')).fault).to.include({ reason: 'NOT_MAPPED', iova: 1n << 60n });
    });

    it('faults a function detached from its domain (NO_DOMAIN)', () => {
      p.bus.iommu.map(domain, IOVA, P, RW, host(['heap.1', 0, PAGE]));
      p.bus.iommu.detach(domain, ACCEL0);
      expect(faultOf(() => p.bus.iommu.translate(ACCEL0, IOVA, 1, 'read')).fault.reason).to.equal('NO_DOMAIN');
    });

    it('keeps translating a BAR mapping whatever the BAR owner does: the owner decides at DMA time', () => {
      p.bus.iommu.map(domain, IOVA, P, RW, bar(NVME1));
      p.bus.configWrite(NVME1, PCI_COMMAND, 2, 0);
      expect(p.bus.iommu.translate(ACCEL0, IOVA, PAGE, 'write')).to.have.length(1);
    });
  });
});
