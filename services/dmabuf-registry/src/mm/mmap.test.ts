import { expect } from 'chai';
import { PAGE_SIZE } from '@p2p/shm';
import { useTempShmDir } from '@p2p/testing';
import { O_RDONLY, O_RDWR, O_WRONLY } from '../files/open-flags';
import { expectRejects } from '../testing/harness';
import { heapHarness } from '../testing/heap-harness';
import { MMAP_BASE, MMAP_MIN_ADDR, TASK_SIZE } from './layout';
import { PROT_NONE, PROT_READ, PROT_WRITE } from './prot';

const P = PAGE_SIZE;

describe('Registry: mmap of a dma-buf into the process’s address space', () => {
  const dir = useTempShmDir();

  /** A registry with a heap, a process, and a heap buffer of `pages` pages open with `flags`. */
  function withBuffer(pages = 4, flags = O_RDWR, maxMapCount?: number) {
    const h = heapHarness(dir(), maxMapCount === undefined ? {} : { maxMapCount });
    const pid = h.registry.openProcess('qemu');
    const { fd, bufferId } = h.registry.heapAllocate(pid, pages * P, flags);
    return { ...h, pid, fd, bufferId };
  }

  describe('addresses', () => {
    it('places mappings top-down from mmap_base, page aligned, each below the last', async () => {
      const { registry, pid, fd } = withBuffer();
      const first = await registry.mmap(pid, fd, 0, 2 * P);
      const second = await registry.mmap(pid, fd, 0, P);
      expect([first.addr, second.addr]).to.deep.equal([MMAP_BASE - 2 * P, MMAP_BASE - 3 * P]);
    });

    it('spans the length rounded up to whole pages', async () => {
      const { registry, pid, fd, bufferId } = withBuffer();
      const { addr } = await registry.mmap(pid, fd, P, 100);
      expect(registry.maps(pid)).to.deep.equal([{ addr, length: P, bufferId, offset: P, prot: PROT_READ | PROT_WRITE, deviceMemory: false }]);
      expect((await registry.mmap(pid, fd, 0, P + 1)).addr).to.equal(addr - 2 * P);
    });

    it('takes a free hint, rounded up to a page', async () => {
      const { registry, pid, fd } = withBuffer();
      expect((await registry.mmap(pid, fd, 0, P, { addr: 0x2000_0000 + 1 })).addr).to.equal(0x2000_0000 + P);
    });

    it('places as without a hint when the hinted range is taken', async () => {
      const { registry, pid, fd } = withBuffer();
      await registry.mmap(pid, fd, 0, P, { addr: 0x2000_0000 });
      expect((await registry.mmap(pid, fd, 0, P, { addr: 0x2000_0000 })).addr).to.equal(MMAP_BASE - P);
    });

    it('maps exactly at a MAP_FIXED address, replacing what was mapped there', async () => {
      const { registry, pid, fd, bufferId } = withBuffer();
      const { addr } = await registry.mmap(pid, fd, 0, 4 * P);
      await registry.mmap(pid, fd, 0, P, { addr: addr + P, fixed: true, prot: PROT_READ });
      expect(registry.maps(pid).map((v) => [v.addr - addr, v.length, v.offset, v.prot])).to.deep.equal([
        [0, P, 0, PROT_READ | PROT_WRITE],
        [P, P, 0, PROT_READ],
        [2 * P, 2 * P, 2 * P, PROT_READ | PROT_WRITE],
      ]);
      // The fd and three VMAs.
      expect(registry.bufInfo().find((b) => b.bufferId === bufferId)?.refcount).to.equal(4);
    });
  });

  describe('protection', () => {
    it('defaults to PROT_READ | PROT_WRITE for an fd open O_RDWR', async () => {
      const { registry, pid, fd } = withBuffer(1, O_RDWR);
      expect((await registry.mmap(pid, fd, 0, P)).prot).to.equal(PROT_READ | PROT_WRITE);
    });

    it('defaults to PROT_READ for an fd open O_RDONLY', async () => {
      const { registry, pid, fd } = withBuffer(1, O_RDONLY);
      expect((await registry.mmap(pid, fd, 0, P)).prot).to.equal(PROT_READ);
    });

    it('grants what is asked, PROT_NONE included', async () => {
      const { registry, pid, fd } = withBuffer(1, O_RDWR);
      expect((await registry.mmap(pid, fd, 0, P, { prot: PROT_READ })).prot).to.equal(PROT_READ);
      expect((await registry.mmap(pid, fd, 0, P, { prot: PROT_NONE })).prot).to.equal(PROT_NONE);
      expect(registry.maps(pid).map((v) => v.prot)).to.deep.equal([PROT_NONE, PROT_READ]);
    });
  });

  describe('refusals, in the order they are checked', () => {
    it('is EINVAL for prot bits other than PROT_READ and PROT_WRITE (PROT_EXEC), before the fd is looked at', async () => {
      const { registry, pid } = withBuffer();
      const error = await expectRejects(registry.mmap(pid, 99, 0, P, { prot: 4 }), 'EINVAL');
      expect(error.detail).to.contain('prot 4');
    });

    it('is EINVAL for a negative address hint', async () => {
      const { registry, pid, fd } = withBuffer();
      await expectRejects(registry.mmap(pid, fd, 0, P, { addr: -P }), 'EINVAL');
    });

    it('is ESRCH for an unknown pid and EBADF for an fd not held', async () => {
      const { registry, pid } = withBuffer();
      await expectRejects(registry.mmap(pid + 100, 3, 0, P), 'ESRCH');
      await expectRejects(registry.mmap(pid, 99, 0, P), 'EBADF');
    });

    it('is EACCES for any mapping of an fd not open for reading', async () => {
      const { registry, pid, fd } = withBuffer(1, O_WRONLY);
      await expectRejects(registry.mmap(pid, fd, 0, P, { prot: PROT_WRITE }), 'EACCES');
    });

    it('is EACCES for PROT_WRITE on an fd open O_RDONLY', async () => {
      const { registry, pid, fd } = withBuffer(1, O_RDONLY);
      const error = await expectRejects(registry.mmap(pid, fd, 0, P, { prot: PROT_READ | PROT_WRITE }), 'EACCES');
      expect(error.detail).to.contain('not open for writing');
    });

    it('is EINVAL for a buffer without CPU access (no ->mmap)', async () => {
      const { registry, owner, pid } = withBuffer();
      const bar = owner.export(registry, pid, { size: P });
      await expectRejects(registry.mmap(pid, bar.fd, 0, P), 'EINVAL');
    });

    it('is EINVAL for an offset that is not page aligned, a range past the buffer, or length 0', async () => {
      const { registry, pid, fd } = withBuffer(1);
      await expectRejects(registry.mmap(pid, fd, 1, P - 1), 'EINVAL');
      await expectRejects(registry.mmap(pid, fd, 0, P + 1), 'EINVAL');
      await expectRejects(registry.mmap(pid, fd, 0, 0), 'EINVAL');
    });

    it('is EINVAL for a MAP_FIXED address that is not page aligned', async () => {
      const { registry, pid, fd } = withBuffer();
      await expectRejects(registry.mmap(pid, fd, 0, P, { addr: 0x2000_0001, fixed: true }), 'EINVAL');
    });

    it('is EPERM for a MAP_FIXED address below mmap_min_addr', async () => {
      const { registry, pid, fd } = withBuffer();
      await expectRejects(registry.mmap(pid, fd, 0, P, { addr: MMAP_MIN_ADDR - P, fixed: true }), 'EPERM');
    });

    it('is ENOMEM for a MAP_FIXED range past the end of user space', async () => {
      const { registry, pid, fd } = withBuffer();
      await expectRejects(registry.mmap(pid, fd, 0, 2 * P, { addr: TASK_SIZE - P, fixed: true }), 'ENOMEM');
    });

    it('is ENOMEM for one VMA more than vm.max_map_count, and maps again once one goes', async () => {
      const { registry, pid, fd } = withBuffer(4, O_RDWR, 2);
      const { addr } = await registry.mmap(pid, fd, 0, P);
      await registry.mmap(pid, fd, 0, P);
      const error = await expectRejects(registry.mmap(pid, fd, 0, P), 'ENOMEM');
      expect(error.detail).to.contain('max_map_count');
      await registry.munmap(pid, addr, P);
      await registry.mmap(pid, fd, 0, P);
    });

    it('lets a MAP_FIXED mapping at the limit replace one VMA with another', async () => {
      const { registry, pid, fd } = withBuffer(4, O_RDWR, 1);
      const { addr } = await registry.mmap(pid, fd, 0, P);
      await registry.mmap(pid, fd, P, P, { addr, fixed: true });
      expect(registry.maps(pid).map((v) => [v.addr, v.offset])).to.deep.equal([[addr, P]]);
    });

    it('is ENODEV while the buffer is revoked', async () => {
      const { registry, owner, pid } = withBuffer();
      const revoked = owner.export(registry, pid, { cpuAccess: true, revoked: true, size: P });
      await expectRejects(registry.mmap(pid, revoked.fd, 0, P), 'ENODEV');
    });

    it('leaves no VMA and no reference behind a refusal', async () => {
      const { registry, pid, fd } = withBuffer(1, O_RDONLY);
      await expectRejects(registry.mmap(pid, fd, 0, P, { prot: PROT_WRITE | PROT_READ }), 'EACCES');
      await expectRejects(registry.mmap(pid, fd, 0, 2 * P), 'EINVAL');
      expect(registry.maps(pid)).to.deep.equal([]);
      expect(registry.bufInfo()[0]!.refcount).to.equal(1);
    });
  });

  describe('what a VMA holds', () => {
    it('keeps its buffer after close(fd): the segments stay until the munmap', async () => {
      const { registry, store, pid, fd, bufferId } = withBuffer(2);
      const { addr } = await registry.mmap(pid, fd, 0, 2 * P);
      await registry.close(pid, fd);
      expect(registry.bufInfo().map((b) => [b.bufferId, b.refcount])).to.deep.equal([[bufferId, 1]]);
      expect(store.list()).to.have.length(1);
      await registry.munmap(pid, addr, 2 * P);
      expect(registry.bufInfo()).to.deep.equal([]);
      expect(store.list()).to.deep.equal([]);
    });

    it('records device memory (a PCI BAR’s dma-buf: VM_IO | VM_PFNMAP) apart from host memory', async () => {
      const { registry, owner, pid, fd, bufferId } = withBuffer(1);
      const bar = owner.export(registry, pid, { cpuAccess: true, size: P });
      await registry.mmap(pid, fd, 0, P);
      await registry.mmap(pid, bar.fd, 0, P);
      expect(registry.maps(pid).map((v) => [v.bufferId, v.deviceMemory])).to.deep.equal([
        [bar.bufferId, true],
        [bufferId, false],
      ]);
    });

    it('is dropped with the whole address space at exit, releasing a buffer nothing else holds', async () => {
      const { registry, store, pid, fd } = withBuffer(2);
      await registry.mmap(pid, fd, 0, P);
      await registry.mmap(pid, fd, P, P);
      await registry.close(pid, fd);
      await registry.exitProcess(pid);
      expect(registry.bufInfo()).to.deep.equal([]);
      expect(store.list()).to.deep.equal([]);
    });

    it('is not made for a process that exits while the exporter answers: ESRCH, and its reference is dropped', async () => {
      const { registry, owner, pid } = withBuffer(1);
      const bar = owner.export(registry, pid, { cpuAccess: true, size: P });
      const open = owner.hold('cpuExtents');
      const mapping = registry.mmap(pid, bar.fd, 0, P);
      const exited = registry.exitProcess(pid);
      open();
      await expectRejects(mapping, 'ESRCH');
      await exited;
      expect(owner.calls).to.include(`release ${bar.bufferId}`);
    });

    it('is announced as an MMAP event naming the buffer, the process and the range', async () => {
      const { registry, events, pid, fd, bufferId } = withBuffer(1);
      const { addr } = await registry.mmap(pid, fd, 0, P);
      expect(events.at(-1)).to.include({ kind: 'MMAP', bufferId, pid });
      expect(events.at(-1)?.detail).to.contain(`0x${addr.toString(16)}`);
    });
  });
});
