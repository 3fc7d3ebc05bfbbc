import { expect } from 'chai';
import { PAGE_SIZE } from '@p2p/shm';
import { useTempShmDir } from '@p2p/testing';
import { O_RDWR } from '../files/open-flags';
import { FakeOwner } from '../testing/fake-owner';
import { expectRejects } from '../testing/harness';
import { HEAP_CHUNK_PAGES, heapHarness } from '../testing/heap-harness';
import { TASK_SIZE } from './layout';
import { PROT_NONE, PROT_READ, PROT_WRITE } from './prot';

const P = PAGE_SIZE;

describe('Registry: pin_user_pages for platform services', () => {
  const dir = useTempShmDir();

  /**
   * A process ("qemu") with a heap buffer of `pages` pages mapped whole at
   * `addr`, and the pinning service's own process ("vfio-pci").
   */
  async function guest(pages = 2, options: { maxPinPages?: number } = {}) {
    const h = heapHarness(dir(), options);
    const pid = h.registry.openProcess('qemu');
    const pinner = h.registry.openProcess('vfio-pci');
    const { fd, bufferId } = h.registry.heapAllocate(pid, pages * P, O_RDWR);
    const { addr } = await h.registry.mmap(pid, fd, 0, pages * P);
    const info = () => h.registry.bufInfo().find((b) => b.bufferId === bufferId);
    const pin = (at: number, length: number, write = true) => h.registry.pinUserPages({ pid, addr: at, length, write, pinnerPid: pinner });
    return { ...h, pid, pinner, fd, bufferId, addr, info, pin };
  }

  describe('what it pins', () => {
    it('returns the host memory behind the range, in order, in the heap’s directory', async () => {
      const { pin, addr } = await guest(2);
      expect(await pin(addr + P, P)).to.deep.equal({
        pinId: 1,
        directory: dir(),
        shmId: 'tmpfs-a',
        extents: [{ segment: 'heap.1.0', segmentOffset: P, length: P }],
      });
    });

    it('gives one extent per segment file of a buffer larger than a chunk', async () => {
      const { pin, addr } = await guest(HEAP_CHUNK_PAGES + 1);
      const pinned = await pin(addr + P, HEAP_CHUNK_PAGES * P);
      expect(pinned.extents).to.deep.equal([
        { segment: 'heap.1.0', segmentOffset: P, length: (HEAP_CHUNK_PAGES - 1) * P },
        { segment: 'heap.1.1', segmentOffset: 0, length: P },
      ]);
    });

    it('walks adjacent VMAs of different buffers in address order', async () => {
      const { registry, pin, pid, addr } = await guest(2);
      const other = registry.heapAllocate(pid, P, O_RDWR);
      await registry.mmap(pid, other.fd, 0, P, { addr: addr - P });
      const pinned = await pin(addr - P, 2 * P);
      expect(pinned.extents.map((e) => [e.segment, e.segmentOffset])).to.deep.equal([
        ['heap.2.0', 0],
        ['heap.1.0', 0],
      ]);
      expect(registry.bufInfo().map((b) => [b.bufferId, b.userPins])).to.deep.equal([
        [1, 1],
        [2, 1],
      ]);
    });

    it('merges the pieces of a split VMA that lie end to end in one segment', async () => {
      const { registry, pin, pid, fd, addr } = await guest(4);
      await registry.munmap(pid, addr + P, P);
      await registry.mmap(pid, fd, P, P, { addr: addr + P, fixed: true });
      expect((await pin(addr, 4 * P)).extents).to.deep.equal([{ segment: 'heap.1.0', segmentOffset: 0, length: 4 * P }]);
    });

    it('pins a write-only mapping for writing', async () => {
      const { registry, pin, pid, fd } = await guest(1);
      const { addr } = await registry.mmap(pid, fd, 0, P, { prot: PROT_WRITE });
      expect((await pin(addr, P, true)).extents).to.have.length(1);
    });
  });

  describe('refusals, in the order they are checked', () => {
    it('is ESRCH for an unknown process or pinner', async () => {
      const { registry, pid, pinner, addr } = await guest();
      await expectRejects(registry.pinUserPages({ pid: pid + 100, addr, length: P, write: false, pinnerPid: pinner }), 'ESRCH');
      await expectRejects(registry.pinUserPages({ pid, addr, length: P, write: false, pinnerPid: pinner + 100 }), 'ESRCH');
    });

    it('is EINVAL for an address that is not page aligned', async () => {
      const { pin, addr } = await guest();
      await expectRejects(pin(addr + 8, P), 'EINVAL');
    });

    it('is EINVAL for a length that is not whole pages', async () => {
      const { pin, addr } = await guest();
      await expectRejects(pin(addr, P + 8), 'EINVAL');
    });

    it('is EINVAL for length 0', async () => {
      const { pin, addr } = await guest();
      await expectRejects(pin(addr, 0), 'EINVAL');
    });

    it('is EINVAL for a range past the end of user space', async () => {
      const { pin } = await guest();
      await expectRejects(pin(TASK_SIZE - P, 2 * P), 'EINVAL');
    });

    it('is EINVAL for more pages than one call pins', async () => {
      const { pin, addr } = await guest(4, { maxPinPages: 2 });
      expect((await pin(addr, 2 * P)).extents).to.have.length(1);
      const error = await expectRejects(pin(addr, 3 * P), 'EINVAL');
      expect(error.detail).to.contain('at most 2');
    });

    it('is EFAULT for a page with no mapping, after mapped ones too', async () => {
      const { pin, addr } = await guest(2);
      expect((await expectRejects(pin(addr - P, 2 * P), 'EFAULT')).detail).to.contain('no mapping');
      await expectRejects(pin(addr + P, 2 * P), 'EFAULT');
    });

    it('is EFAULT for device memory (VM_IO | VM_PFNMAP)', async () => {
      const { registry, owner, pin, pid } = await guest();
      const bar = owner.export(registry, pid, { cpuAccess: true, size: P });
      const { addr } = await registry.mmap(pid, bar.fd, 0, P);
      expect((await expectRejects(pin(addr, P, false), 'EFAULT')).detail).to.contain('device memory');
    });

    it('is EFAULT for a write pin of a mapping without PROT_WRITE', async () => {
      const { registry, pin, pid, fd } = await guest(1);
      const { addr } = await registry.mmap(pid, fd, 0, P, { prot: PROT_READ });
      expect((await pin(addr, P, false)).extents).to.have.length(1);
      expect((await expectRejects(pin(addr, P, true), 'EFAULT')).detail).to.contain('not writable');
    });

    it('is EFAULT for a read pin of a PROT_NONE mapping', async () => {
      const { registry, pin, pid, fd } = await guest(1);
      const { addr } = await registry.mmap(pid, fd, 0, P, { prot: PROT_NONE });
      expect((await expectRejects(pin(addr, P, false), 'EFAULT')).detail).to.contain('not readable');
    });

    it('is EFAULT for a page past the end of its buffer', async () => {
      const { registry, owner, pin, pid } = await guest();
      const small = owner.export(registry, pid, { cpuAccess: true, providerBdf: '', size: 100 });
      const { addr } = await registry.mmap(pid, small.fd, 0, 100);
      expect((await expectRejects(pin(addr, P, false), 'EFAULT')).detail).to.contain('past the end');
    });

    it('is EFAULT for host memory whose exporter revoked it', async () => {
      const { registry, owner, pin, pid } = await guest();
      const host = owner.export(registry, pid, { cpuAccess: true, providerBdf: '', requirePeer2peer: false, size: P });
      const { addr } = await registry.mmap(pid, host.fd, 0, P);
      await registry.move('vfio-pci', host.bufferId, { revoked: true });
      expect((await expectRejects(pin(addr, P, false), 'EFAULT')).detail).to.contain('revoked');
    });

    it('is EFAULT for a range across two tmpfs', async () => {
      const { registry, segments, pin, pid, addr } = await guest(1);
      const remote = new FakeOwner('remote-exporter', segments, 'tmpfs-b');
      registry.registerOwner(remote);
      const elsewhere = remote.export(registry, pid, { cpuAccess: true, providerBdf: '', size: P });
      await registry.mmap(pid, elsewhere.fd, 0, P, { addr: addr - P });
      expect((await expectRejects(pin(addr - P, 2 * P), 'EFAULT')).detail).to.contain('another tmpfs');
    });

    it('pins nothing when it fails', async () => {
      const { pin, addr, info } = await guest(2);
      const before = info();
      await expectRejects(pin(addr, 3 * P), 'EFAULT');
      expect(info()).to.deep.equal(before);
      expect(before?.userPins).to.equal(0);
    });
  });

  describe('how long the pages stay', () => {
    it('holds the buffer through munmap, close and exit of the process, until unpinned', async () => {
      const { registry, store, pin, pid, pinner, fd, addr, info } = await guest(2);
      const { pinId } = await pin(addr, 2 * P);
      expect(info()).to.include({ userPins: 1, refcount: 3 });
      await registry.munmap(pid, addr, 2 * P);
      await registry.close(pid, fd);
      await registry.exitProcess(pid);
      expect(info()).to.include({ userPins: 1, refcount: 1 });
      expect(store.list()).to.have.length(1);
      await registry.unpinUserPages(pinner, pinId);
      expect(info()).to.equal(undefined);
      expect(store.list()).to.deep.equal([]);
    });

    it('releases a pinner’s pins when it exits, and no other pinner’s', async () => {
      const { registry, store, pin, pid, pinner, fd, addr, info } = await guest(2);
      const other = registry.openProcess('iommufd-user');
      await pin(addr, P);
      await pin(addr + P, P);
      await registry.pinUserPages({ pid, addr, length: P, write: false, pinnerPid: other });
      expect(registry.processes().processes.map((p) => [p.name, p.vmaCount, p.pinCount])).to.deep.equal([
        ['qemu', 1, 0],
        ['vfio-pci', 0, 2],
        ['iommufd-user', 0, 1],
      ]);
      await registry.exitProcess(pinner);
      expect(info()?.userPins).to.equal(1);
      await registry.exitProcess(other);
      await registry.munmap(pid, addr, 2 * P);
      await registry.close(pid, fd);
      expect(info()).to.equal(undefined);
      expect(store.list()).to.deep.equal([]);
    });

    it('does not pin for a pinner that exits while the exporter answers: ESRCH, nothing held', async () => {
      const { registry, owner, pid, pinner } = await guest();
      const host = owner.export(registry, pid, { cpuAccess: true, providerBdf: '', size: P });
      const { addr } = await registry.mmap(pid, host.fd, 0, P);
      const open = owner.hold('cpuExtents');
      const pinning = registry.pinUserPages({ pid, addr, length: P, write: false, pinnerPid: pinner });
      const exited = registry.exitProcess(pinner);
      open();
      await expectRejects(pinning, 'ESRCH');
      await exited;
      expect(registry.bufInfo().find((b) => b.bufferId === host.bufferId)).to.include({ userPins: 0, refcount: 2 });
    });

    it('is ENOENT to unpin a pin that is unknown, already unpinned, or another pinner’s', async () => {
      const { registry, pin, pinner, pid, addr } = await guest();
      const { pinId } = await pin(addr, P);
      await expectRejects(registry.unpinUserPages(pinner, pinId + 1), 'ENOENT');
      await expectRejects(registry.unpinUserPages(pid, pinId), 'ENOENT');
      await registry.unpinUserPages(pinner, pinId);
      await expectRejects(registry.unpinUserPages(pinner, pinId), 'ENOENT');
    });

    it('is announced as PIN_USER_PAGES and UNPIN_USER_PAGES events', async () => {
      const { registry, events, pin, pid, pinner, addr, bufferId } = await guest();
      const { pinId } = await pin(addr, P);
      expect(events.at(-1)).to.include({ kind: 'PIN_USER_PAGES', bufferId, pid });
      await registry.unpinUserPages(pinner, pinId);
      expect(events.at(-1)).to.include({ kind: 'UNPIN_USER_PAGES', bufferId, pid });
    });

    it('releases every pin when the registry shuts down, leaving no segment', async () => {
      const { registry, store, pin, addr } = await guest(2);
      await pin(addr, 2 * P);
      await registry.shutdown();
      expect(registry.bufInfo()).to.deep.equal([]);
      expect(store.list()).to.deep.equal([]);
    });
  });
});
