import { expect } from 'chai';
import { PAGE_SIZE } from '@p2p/shm';
import { useTempShmDir } from '@p2p/testing';
import { O_RDWR } from '../files/open-flags';
import { expectRejects } from '../testing/harness';
import { heapHarness } from '../testing/heap-harness';
import { TASK_SIZE } from './layout';

const P = PAGE_SIZE;

describe('Registry: munmap', () => {
  const dir = useTempShmDir();

  /** A process with a `pages`-page heap buffer mapped whole at `addr`. */
  async function mapped(pages = 4, maxMapCount?: number) {
    const h = heapHarness(dir(), maxMapCount === undefined ? {} : { maxMapCount });
    const pid = h.registry.openProcess('spdk');
    const { fd, bufferId } = h.registry.heapAllocate(pid, pages * P, O_RDWR);
    const { addr } = await h.registry.mmap(pid, fd, 0, pages * P);
    const layout = (): [number, number, number][] => h.registry.maps(pid).map((v) => [v.addr - addr, v.length, v.offset]);
    const refcount = (): number | undefined => h.registry.bufInfo().find((b) => b.bufferId === bufferId)?.refcount;
    return { ...h, pid, fd, bufferId, addr, layout, refcount };
  }

  describe('refusals', () => {
    it('is EINVAL for an address that is not page aligned', async () => {
      const { registry, pid, addr } = await mapped();
      await expectRejects(registry.munmap(pid, addr + 1, P), 'EINVAL');
    });

    it('is EINVAL for length 0', async () => {
      const { registry, pid, addr } = await mapped();
      await expectRejects(registry.munmap(pid, addr, 0), 'EINVAL');
    });

    it('is EINVAL for a range past the end of user space', async () => {
      const { registry, pid } = await mapped();
      await expectRejects(registry.munmap(pid, TASK_SIZE - P, 2 * P), 'EINVAL');
    });

    it('is ESRCH for an unknown pid', async () => {
      const { registry, pid, addr } = await mapped();
      await expectRejects(registry.munmap(pid + 100, addr, P), 'ESRCH');
    });

    it('is ENOMEM for a split past vm.max_map_count, and leaves the VMA whole', async () => {
      const { registry, pid, addr, layout } = await mapped(4, 1);
      const error = await expectRejects(registry.munmap(pid, addr + P, P), 'ENOMEM');
      expect(error.detail).to.contain('max_map_count');
      expect(layout()).to.deep.equal([[0, 4 * P, 0]]);
    });
  });

  it('succeeds for a range with no mapping, changing nothing', async () => {
    const { registry, pid, layout } = await mapped();
    await registry.munmap(pid, 0x4000_0000, 16 * P);
    expect(layout()).to.deep.equal([[0, 4 * P, 0]]);
  });

  it('succeeds for a process that never mapped anything', async () => {
    const { registry } = await mapped();
    const other = registry.openProcess('idle');
    await registry.munmap(other, 0x4000_0000, P);
    expect(registry.maps(other)).to.deep.equal([]);
  });

  it('splits a VMA with the range inside it: two VMAs, each holding the buffer', async () => {
    const { registry, pid, addr, layout, refcount } = await mapped();
    await registry.munmap(pid, addr + P, P);
    expect(layout()).to.deep.equal([
      [0, P, 0],
      [2 * P, 2 * P, 2 * P],
    ]);
    expect(refcount()).to.equal(3);
  });

  it('trims a VMA at either end, a length rounded up to whole pages', async () => {
    const { registry, pid, addr, layout } = await mapped();
    await registry.munmap(pid, addr, 1);
    await registry.munmap(pid, addr + 3 * P, P);
    expect(layout()).to.deep.equal([[P, 2 * P, P]]);
  });

  it('unmaps every VMA in a range that spans several, skipping the holes between them', async () => {
    const { registry, pid, fd, addr, layout } = await mapped();
    const below = await registry.mmap(pid, fd, 0, P, { addr: addr - 2 * P });
    expect(below.addr).to.equal(addr - 2 * P);
    await registry.munmap(pid, addr - 2 * P, 3 * P);
    expect(layout()).to.deep.equal([[P, 3 * P, P]]);
  });

  it('drops the buffer with its last VMA, once the fd is closed', async () => {
    const { registry, store, pid, fd, addr, refcount } = await mapped();
    await registry.munmap(pid, addr + P, P);
    await registry.close(pid, fd);
    await registry.munmap(pid, addr, P);
    expect(refcount()).to.equal(1);
    expect(store.list()).to.have.length(1);
    await registry.munmap(pid, addr + 2 * P, 2 * P);
    expect(refcount()).to.equal(undefined);
    expect(store.list()).to.deep.equal([]);
  });

  it('is announced as a MUNMAP event when it unmapped something', async () => {
    const { registry, events, pid, addr } = await mapped();
    await registry.munmap(pid, 0x4000_0000, P);
    expect(events.at(-1)?.kind).to.equal('MMAP');
    await registry.munmap(pid, addr, P);
    expect(events.at(-1)).to.include({ kind: 'MUNMAP', pid });
  });
});
