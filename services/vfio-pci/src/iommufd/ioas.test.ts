import { expect } from 'chai';
import { IOMMU_APERTURE_END, IOMMU_MSI_WINDOW } from '../ports/iommu-port';
import { expectErrno, harness, MiB, PAGE, PID } from '../testing/harness';
import { FIXED, IOVA, iommufdHarness, RW, VA } from '../testing/iommufd-fixture';
import { IOMMU_IOAS_MAP_READABLE, IOMMU_VFIO_IOAS_CLEAR, IOMMU_VFIO_IOAS_GET, IOMMU_VFIO_IOAS_SET } from '../uapi/iommufd';
import { U64_MAX } from '../uapi/u64';
import { MAX_IOAS_AREAS } from './io-pagetable';
import { MAX_ALLOWED_IOVAS } from './ioas-ioctls';
import { MAX_IOMMUFD_OBJECTS } from './iommufd-ctx';

const ALL_RANGES_AFTER_ATTACH = [
  { start: 0n, last: IOMMU_MSI_WINDOW.start - 1n },
  { start: IOMMU_MSI_WINDOW.last + 1n, last: IOMMU_APERTURE_END - 1n },
];

describe('iommufd: /dev/iommu and its IOAS ioctls, errno by errno and in order', () => {
  describe('the iommufd file', () => {
    it('opens as a file in the caller’s fd table; an ioctl on another file is ENOTTY, on an fd not held EBADF', async () => {
      const h = await iommufdHarness();
      expect(h.ictx).to.be.greaterThan(h.dev);
      await expectErrno(h.vfio.iommufd.ioasAlloc(PID, h.dev, 0), 'ENOTTY', 'not an iommufd');
      await expectErrno(h.vfio.iommufd.ioasAlloc(PID, 99, 0), 'EBADF');
      await expectErrno(h.vfio.iommufd.ioasAlloc(PID + 1, h.ictx, 0), 'EBADF');
    });
  });

  describe('IOMMU_IOAS_ALLOC', () => {
    it('EOPNOTSUPP for any flag', async () => {
      const h = await iommufdHarness();
      await expectErrno(h.vfio.iommufd.ioasAlloc(PID, h.ictx, 1), 'EOPNOTSUPP', 'flags 0x1');
    });

    it('hands out ids from 1, the lowest free one first', async () => {
      const h = await iommufdHarness();
      expect(h.ioas).to.equal(1);
      expect(await h.vfio.iommufd.ioasAlloc(PID, h.ictx, 0)).to.equal(2);
      await h.vfio.iommufd.destroy(PID, h.ictx, 1);
      expect(await h.vfio.iommufd.ioasAlloc(PID, h.ictx, 0)).to.equal(1);
    });

    it('ENOMEM past the object limit of a context', async () => {
      const h = await iommufdHarness();
      for (let i = 1; i < MAX_IOMMUFD_OBJECTS; i++) await h.vfio.iommufd.ioasAlloc(PID, h.ictx, 0);
      await expectErrno(h.vfio.iommufd.ioasAlloc(PID, h.ictx, 0), 'ENOMEM', `at most ${MAX_IOMMUFD_OBJECTS}`);
    });
  });

  describe('IOMMU_DESTROY', () => {
    it('ENOENT for an id no object has', async () => {
      const h = await iommufdHarness();
      await expectErrno(h.vfio.iommufd.destroy(PID, h.ictx, 0), 'ENOENT');
      await expectErrno(h.vfio.iommufd.destroy(PID, h.ictx, 7), 'ENOENT');
    });

    it('EBUSY for an IOAS with a device attached, its HWPT and the device object', async () => {
      const h = await iommufdHarness();
      const hwpt = await h.attach();
      const devid = h.vfio.iommufd.contexts()[0]!.objects.find((o) => o.type === 'device')!.id;
      await expectErrno(h.vfio.iommufd.destroy(PID, h.ictx, h.ioas), 'EBUSY', 'in use');
      await expectErrno(h.vfio.iommufd.destroy(PID, h.ictx, hwpt), 'EBUSY');
      await expectErrno(h.vfio.iommufd.destroy(PID, h.ictx, devid), 'EBUSY');
    });

    it('destroys an IOAS no device uses, and everything mapped in it', async () => {
      const h = await iommufdHarness();
      await h.attach();
      await h.map({ length: 2n * PAGE });
      await h.vfio.detachIommufdPt(PID, h.dev, 0);
      await h.vfio.iommufd.destroy(PID, h.ictx, h.ioas);
      await expectErrno(h.unmap(IOVA, 2n * PAGE), 'ENOENT', 'no object');
      expect(h.memory.pins).to.equal(0);
      expect(h.iommu.domains.size).to.equal(0);
    });
  });

  describe('IOMMU_IOAS_IOVA_RANGES', () => {
    it('EOPNOTSUPP for __reserved, then ENOENT for an unknown IOAS or an object of another type', async () => {
      const h = await iommufdHarness();
      await expectErrno(h.vfio.iommufd.ioasIovaRanges(PID, h.ictx, { ioasId: 99, numIovas: 4, reserved: 1 }), 'EOPNOTSUPP');
      await expectErrno(h.vfio.iommufd.ioasIovaRanges(PID, h.ictx, { ioasId: 99, numIovas: 4, reserved: 0 }), 'ENOENT');
      const hwpt = await h.attach();
      await expectErrno(h.vfio.iommufd.ioasIovaRanges(PID, h.ictx, { ioasId: hwpt, numIovas: 4, reserved: 0 }), 'ENOENT', 'not an IOAS');
    });

    it('a fresh IOAS has all of [0, U64_MAX] at alignment 1', async () => {
      const h = await iommufdHarness();
      expect(await h.vfio.iommufd.ioasIovaRanges(PID, h.ictx, { ioasId: h.ioas, numIovas: 4, reserved: 0 })).to.deep.equal({
        numIovas: 1,
        ranges: [{ start: 0n, last: U64_MAX }],
        alignment: 1n,
      });
    });

    it('once a device is attached: the aperture less the MSI window, at the 4 KiB alignment', async () => {
      const h = await iommufdHarness();
      await h.attach();
      expect(await h.vfio.iommufd.ioasIovaRanges(PID, h.ictx, { ioasId: h.ioas, numIovas: 2, reserved: 0 })).to.deep.equal({
        numIovas: 2,
        ranges: ALL_RANGES_AFTER_ATTACH,
        alignment: PAGE,
      });
    });

    it('EMSGSIZE when num_iovas is too small, saying how many there are', async () => {
      const h = await iommufdHarness();
      await expectErrno(h.vfio.iommufd.ioasIovaRanges(PID, h.ictx, { ioasId: h.ioas, numIovas: 0, reserved: 0 }), 'EMSGSIZE', 'num_iovas 1 written back');
      await h.attach();
      await expectErrno(h.vfio.iommufd.ioasIovaRanges(PID, h.ictx, { ioasId: h.ioas, numIovas: 1, reserved: 0 }), 'EMSGSIZE', 'num_iovas 2 written back');
    });
  });

  describe('IOMMU_IOAS_ALLOW_IOVAS', () => {
    const allow = (h: Awaited<ReturnType<typeof iommufdHarness>>, ranges: Array<{ start: bigint; last: bigint }>, reserved = 0, ioasId = h.ioas): Promise<void> =>
      h.vfio.iommufd.ioasAllowIovas(PID, h.ictx, { ioasId, reserved, ranges });

    it('EOPNOTSUPP for __reserved, then ENOENT for an unknown IOAS', async () => {
      const h = await iommufdHarness();
      await expectErrno(allow(h, [], 1, 99), 'EOPNOTSUPP');
      await expectErrno(allow(h, [], 0, 99), 'ENOENT');
    });

    it('ENOMEM past the range limit', async () => {
      const h = await iommufdHarness();
      const ranges = Array.from({ length: MAX_ALLOWED_IOVAS + 1 }, (_, i) => ({ start: BigInt(i) * MiB, last: BigInt(i) * MiB + PAGE }));
      await expectErrno(allow(h, ranges), 'ENOMEM');
    });

    it('EINVAL for a range whose start is not below its last, then for one overlapping an earlier one', async () => {
      const h = await iommufdHarness();
      await expectErrno(allow(h, [{ start: MiB, last: MiB }]), 'EINVAL', 'start must be below last');
      await expectErrno(
        allow(h, [
          { start: MiB, last: 2n * MiB },
          { start: 2n * MiB, last: 3n * MiB },
        ]),
        'EINVAL',
        'overlaps',
      );
    });

    it('EADDRINUSE for a range meeting a reserved one, keeping the old list', async () => {
      const h = await iommufdHarness();
      await allow(h, [{ start: 16n * MiB, last: 16n * MiB + 2n * PAGE - 1n }]);
      await h.attach();
      await expectErrno(allow(h, [{ start: IOMMU_MSI_WINDOW.start, last: IOMMU_MSI_WINDOW.last + PAGE }]), 'EADDRINUSE', 'meets the reserved');
      expect(await h.map({ flags: RW, length: PAGE })).to.equal(16n * MiB);
    });

    it('an automatic IOVA comes from the allowed ranges; a FIXED one need not; none allowed clears the list', async () => {
      const h = await iommufdHarness();
      await allow(h, [{ start: 64n * MiB, last: 65n * MiB - 1n }]);
      expect(await h.map({ flags: RW })).to.equal(64n * MiB);
      expect(await h.map({ iova: 2n * MiB })).to.equal(2n * MiB);
      await expectErrno(h.map({ flags: RW, length: 2n * MiB }), 'ENOSPC');
      await allow(h, []);
      expect(await h.map({ flags: RW, length: 2n * MiB, userVa: VA + PAGE })).to.equal(2n * MiB + PAGE);
    });
  });

  describe('IOMMU_IOAS_MAP', () => {
    it('(1) EOPNOTSUPP for unknown flags or __reserved', async () => {
      const h = await iommufdHarness();
      await expectErrno(h.map({ flags: RW | 8, iova: U64_MAX, ioasId: 99 }), 'EOPNOTSUPP');
      await expectErrno(h.map({ reserved: 1, iova: U64_MAX, ioasId: 99 }), 'EOPNOTSUPP');
    });

    it('(2) EOVERFLOW for an iova or length of ULONG_MAX', async () => {
      const h = await iommufdHarness();
      await expectErrno(h.map({ flags: FIXED, iova: U64_MAX, ioasId: 99 }), 'EOVERFLOW');
      await expectErrno(h.map({ flags: FIXED, length: U64_MAX, ioasId: 99 }), 'EOVERFLOW');
    });

    it('(3) EINVAL with neither READABLE nor WRITEABLE', async () => {
      const h = await iommufdHarness();
      await expectErrno(h.map({ flags: FIXED, ioasId: 99 }), 'EINVAL', 'neither READABLE nor WRITEABLE');
    });

    it('(4) ENOENT for an unknown IOAS', async () => {
      const h = await iommufdHarness();
      await expectErrno(h.map({ ioasId: 99, length: 0n }), 'ENOENT');
    });

    it('(5) EOVERFLOW when user_va + length overflows, then EINVAL for length 0', async () => {
      const h = await iommufdHarness();
      await expectErrno(h.map({ userVa: U64_MAX - PAGE, length: 2n * PAGE }), 'EOVERFLOW', 'user_va');
      await expectErrno(h.map({ length: 0n }), 'EINVAL', 'length');
    });

    it('(6) ENOMEM past the area limit of an IOAS', async () => {
      const h = await iommufdHarness();
      for (let i = 0n; i < BigInt(MAX_IOAS_AREAS); i++) await h.map({ iova: i, length: 1n });
      await expectErrno(h.map({ iova: MiB, length: 1n }), 'ENOMEM', `at most ${MAX_IOAS_AREAS}`);
    });

    it('(6) with a domain: EINVAL for a length, FIXED iova or user_va off the 4 KiB alignment', async () => {
      const h = await iommufdHarness();
      await h.attach();
      await expectErrno(h.map({ length: PAGE + 1n }), 'EINVAL', 'IOVA alignment');
      await expectErrno(h.map({ iova: IOVA + 16n }), 'EINVAL', 'IOVA alignment');
      await expectErrno(h.map({ userVa: VA + 16n }), 'EINVAL', "first byte's offset");
    });

    it('(6) FIXED: EOVERFLOW past 2^64, EINVAL on a reserved range, EEXIST over a mapping', async () => {
      const h = await iommufdHarness();
      await expectErrno(h.map({ iova: U64_MAX - PAGE + 1n, length: 2n * PAGE }), 'EOVERFLOW');
      await h.attach();
      await expectErrno(h.map({ iova: IOMMU_MSI_WINDOW.start }), 'EINVAL', 'reserved');
      await expectErrno(h.map({ iova: IOMMU_APERTURE_END }), 'EINVAL', 'reserved');
      await h.map({ length: 2n * PAGE });
      await expectErrno(h.map({ iova: IOVA + PAGE, userVa: VA + 4n * PAGE }), 'EEXIST', 'overlaps');
    });

    it('(6) automatic: the first fitting hole from PAGE_SIZE on, aligned as user_va and length suggest; ENOSPC when none fits', async () => {
      const h = await iommufdHarness();
      expect(await h.map({ flags: RW, length: PAGE })).to.equal(PAGE);
      expect(await h.map({ flags: RW, length: 2n * PAGE })).to.equal(2n * PAGE);
      expect(await h.map({ flags: RW, length: 1n, userVa: VA + 0x123n })).to.equal(4n * PAGE + 0x123n);
      await h.vfio.iommufd.ioasAllowIovas(PID, h.ictx, { ioasId: h.ioas, reserved: 0, ranges: [{ start: MiB, last: MiB + PAGE }] });
      await expectErrno(h.map({ flags: RW, length: 2n * PAGE }), 'ENOSPC');
    });

    it('(7) with a domain: pins the memory and maps it into the domain, WRITE only if WRITEABLE', async () => {
      const h = await iommufdHarness();
      await h.attach();
      const mark = h.log.length;
      expect(await h.map({ flags: FIXED | IOMMU_IOAS_MAP_READABLE, length: 2n * PAGE })).to.equal(IOVA);
      expect(h.since(mark)).to.deep.equal([`pin ${PID} 0x${VA.toString(16)}+0x2000`, `iommu map 1 0x100000+0x2000 host`]);
      expect(h.iommu.domains.get(1)!.mappings[0]!.prot).to.equal(1);
    });

    it('(7) with a domain: EFAULT for memory nothing maps or a device mapping, and nothing is left behind', async () => {
      const h = await iommufdHarness();
      await h.attach();
      h.memory.mmap(PID, 0x5000_0000n, PAGE, { device: true });
      await expectErrno(h.map({ userVa: 0x1000n }), 'EFAULT', 'nothing mapped');
      await expectErrno(h.map({ userVa: 0x5000_0000n }), 'EFAULT', 'VM_IO');
      expect(h.iommu.mapped()).to.deep.equal([]);
      expect(await h.map()).to.equal(IOVA);
    });

    it('(7) without a domain nothing is pinned: a bad user_va maps, and the attach fails with EFAULT', async () => {
      const h = await iommufdHarness();
      expect(await h.map({ userVa: 0x1000n })).to.equal(IOVA);
      expect(h.memory.pins).to.equal(0);
      await expectErrno(h.attach(), 'EFAULT');
      expect(h.iommu.domains.size).to.equal(0);
    });

    it('(7) EFAULT for a WRITEABLE map of memory the process maps read-only; READABLE alone maps', async () => {
      const h = await iommufdHarness();
      await h.attach();
      h.memory.mmap(PID, 0x6000_0000n, PAGE, { writable: false });
      await expectErrno(h.map({ userVa: 0x6000_0000n }), 'EFAULT', 'read-only');
      expect(await h.map({ userVa: 0x6000_0000n, flags: FIXED | IOMMU_IOAS_MAP_READABLE })).to.equal(IOVA);
    });
  });

  describe('IOMMU_IOAS_UNMAP', () => {
    it('ENOENT for an unknown IOAS before anything else', async () => {
      const h = await iommufdHarness();
      await expectErrno(h.unmap(0n, 0n, 99), 'ENOENT');
    });

    it('iova 0 with length U64_MAX unmaps everything, an empty IOAS too', async () => {
      const h = await iommufdHarness();
      expect(await h.unmap(0n, U64_MAX)).to.equal(0n);
      await h.map();
      await h.map({ iova: IOVA + MiB, length: 2n * PAGE });
      expect(await h.unmap(0n, U64_MAX)).to.equal(3n * PAGE);
    });

    it('EOVERFLOW for an iova or length of ULONG_MAX, EINVAL for length 0, EOVERFLOW past 2^64', async () => {
      const h = await iommufdHarness();
      await expectErrno(h.unmap(U64_MAX, 1n), 'EOVERFLOW');
      await expectErrno(h.unmap(1n, U64_MAX), 'EOVERFLOW');
      await expectErrno(h.unmap(IOVA, 0n), 'EINVAL');
      await expectErrno(h.unmap(U64_MAX - 1n, 4n), 'EOVERFLOW');
    });

    it('ENOENT for a range that only partly covers an area, and for an empty range', async () => {
      const h = await iommufdHarness();
      await h.map({ length: 2n * PAGE });
      await expectErrno(h.unmap(IOVA, PAGE), 'ENOENT', 'partly covers');
      await expectErrno(h.unmap(IOVA + PAGE, 2n * PAGE), 'ENOENT', 'partly covers');
      await expectErrno(h.unmap(IOVA + MiB, PAGE), 'ENOENT', 'nothing is mapped');
      expect(await h.unmap(IOVA - PAGE, 4n * PAGE)).to.equal(2n * PAGE);
    });

    it('unmaps whole areas from every domain and unpins them; returns the bytes', async () => {
      const h = await iommufdHarness();
      await h.attach();
      await h.map({ length: 2n * PAGE });
      await h.map({ iova: IOVA + 2n * PAGE, userVa: VA + 2n * PAGE });
      expect(h.memory.pins).to.equal(2);
      expect(await h.unmap(IOVA, 3n * PAGE)).to.equal(3n * PAGE);
      expect(h.memory.pins).to.equal(0);
      expect(h.iommu.mapped()).to.deep.equal([]);
    });
  });

  describe('IOMMU_IOAS_COPY', () => {
    const copy = (h: Awaited<ReturnType<typeof iommufdHarness>>, cmd: Partial<Parameters<typeof h.vfio.iommufd.ioasCopy>[2]>): Promise<bigint> =>
      h.vfio.iommufd.ioasCopy(PID, h.ictx, { flags: RW | FIXED, dstIoasId: h.ioas, srcIoasId: h.ioas, length: PAGE, dstIova: 2n * MiB, srcIova: IOVA, ...cmd });

    it('EOPNOTSUPP, EOVERFLOW, EINVAL, then ENOENT for the source, its range, then the destination', async () => {
      const h = await iommufdHarness();
      await expectErrno(copy(h, { flags: 16, srcIoasId: 99 }), 'EOPNOTSUPP');
      await expectErrno(copy(h, { srcIova: U64_MAX, srcIoasId: 99 }), 'EOVERFLOW');
      await expectErrno(copy(h, { flags: FIXED, srcIoasId: 99 }), 'EINVAL');
      await expectErrno(copy(h, { srcIoasId: 99 }), 'ENOENT');
      await expectErrno(copy(h, { dstIoasId: 99 }), 'ENOENT', 'not covered');
      await h.map({ length: 2n * PAGE });
      await expectErrno(copy(h, { length: 0n }), 'EINVAL');
      await expectErrno(copy(h, { dstIoasId: 99 }), 'ENOENT', 'no object 99');
      await expectErrno(copy(h, { length: 3n * PAGE }), 'ENOENT', 'not covered');
    });

    it('maps the same pages again, a slice too, without pinning anew; WRITEABLE over read-only pages is EPERM', async () => {
      const h = await iommufdHarness();
      const dst = await h.vfio.iommufd.ioasAlloc(PID, h.ictx, 0);
      await h.map({ length: 2n * PAGE });
      await h.map({ flags: FIXED | IOMMU_IOAS_MAP_READABLE, iova: IOVA + MiB, userVa: VA + 8n * PAGE });
      await h.attach(h.dev, dst);
      expect(await copy(h, { dstIoasId: dst, srcIova: IOVA + PAGE })).to.equal(2n * MiB);
      expect(h.memory.pins).to.equal(1);
      expect(h.iommu.mapped()).to.deep.equal(['1:0x200000+0x1000']);
      await expectErrno(copy(h, { dstIoasId: dst, srcIova: IOVA + MiB, dstIova: 3n * MiB }), 'EPERM');
      expect(await copy(h, { flags: FIXED | IOMMU_IOAS_MAP_READABLE, dstIoasId: dst, srcIova: IOVA + MiB, dstIova: 3n * MiB })).to.equal(3n * MiB);
      await h.unmap(IOVA, 2n * PAGE);
      expect(h.memory.pins).to.equal(2);
      expect(await h.unmap(2n * MiB, PAGE, dst)).to.equal(PAGE);
      expect(h.memory.pins).to.equal(1);
    });
  });

  describe('IOMMU_VFIO_IOAS', () => {
    it('EOPNOTSUPP for __reserved or an unknown op; GET ENODEV with no compat IOAS; SET ENOENT for an unknown one', async () => {
      const h = await iommufdHarness();
      const vfioIoas = (op: number, ioasId = h.ioas, reserved = 0): Promise<number> => h.vfio.iommufd.vfioIoas(PID, h.ictx, { op, ioasId, reserved });
      await expectErrno(vfioIoas(IOMMU_VFIO_IOAS_GET, h.ioas, 1), 'EOPNOTSUPP');
      await expectErrno(vfioIoas(3), 'EOPNOTSUPP');
      await expectErrno(vfioIoas(IOMMU_VFIO_IOAS_GET), 'ENODEV');
      await expectErrno(vfioIoas(IOMMU_VFIO_IOAS_SET, 99), 'ENOENT');
      expect(await vfioIoas(IOMMU_VFIO_IOAS_SET)).to.equal(0);
      expect(await vfioIoas(IOMMU_VFIO_IOAS_GET)).to.equal(h.ioas);
      await vfioIoas(IOMMU_VFIO_IOAS_CLEAR);
      await expectErrno(vfioIoas(IOMMU_VFIO_IOAS_GET), 'ENODEV');
    });
  });

  it('a context is reached through any fd of it: one sent to another process works there after the sender closed its own', async () => {
    const h = harness();
    const ictx = await h.vfio.iommufd.open(PID, 'iommu');
    const sent = h.registry.sendFd(PID, ictx, PID + 1);
    expect(await h.vfio.iommufd.ioasAlloc(PID + 1, sent, 0)).to.equal(1);
    await h.registry.closeFd(PID, ictx);
    expect(await h.vfio.iommufd.ioasAlloc(PID + 1, sent, 0)).to.equal(2);
    await expectErrno(h.vfio.iommufd.ioasAlloc(PID, ictx, 0), 'EBADF');
  });
});
