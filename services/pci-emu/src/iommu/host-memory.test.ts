import { expect } from 'chai';
import { SegmentStore } from '@p2p/shm';
import { useTempShmDir } from '@p2p/testing';
import { expectErrno, openDescriptors, PAGE } from '../testing/platform';
import { HostSegmentCache, NO_HOST_MEMORY } from './host-memory';

describe('host segment cache', () => {
  const dir = useTempShmDir();
  let store: SegmentStore;
  let cache: HostSegmentCache;

  beforeEach(() => {
    store = new SegmentStore({ dir: dir() });
    store.create('heap.1', 4 * PAGE).close();
    cache = new HostSegmentCache(store, { refuse: (name) => name.startsWith('pci-emu.') });
  });

  afterEach(() => cache.close());

  it('opens a segment once however many holders it has, and closes it when the last lets go', () => {
    const file = store.pathOf('heap.1');
    const first = cache.hold('heap.1');
    expect(cache.hold('heap.1')).to.equal(first);
    expect(openDescriptors(file)).to.equal(1);
    cache.release('heap.1');
    expect(openDescriptors(file)).to.equal(1);
    expect(cache.held).to.equal(1);
    cache.release('heap.1');
    expect(openDescriptors(file)).to.equal(0);
    expect(cache.held).to.equal(0);
  });

  it('hands out a live mapping: a write through it is in the file', () => {
    const segment = cache.hold('heap.1');
    segment.view(PAGE, 5).write('heap!');
    expect(store.open('heap.1').read(PAGE, 5).toString()).to.equal('heap!');
  });

  it('refuses a name that could leave the directory with EINVAL', () => {
    expectErrno(() => cache.hold('../etc/passwd'), 'EINVAL', 'segment name');
    expectErrno(() => cache.hold('.platform-token'), 'EINVAL', 'segment name');
  });

  it('refuses a segment that does not exist with ENOENT', () => {
    expectErrno(() => cache.hold('heap.2'), 'ENOENT');
    expect(cache.held).to.equal(0);
  });

  it('refuses device memory with EINVAL', () => {
    store.create('pci-emu.0a1b.0000-07-00.0-bar2.g0.0', PAGE).close();
    expectErrno(() => cache.hold('pci-emu.0a1b.0000-07-00.0-bar2.g0.0'), 'EINVAL', 'device memory');
    expect(openDescriptors(store.pathOf('pci-emu.0a1b.0000-07-00.0-bar2.g0.0'))).to.equal(0);
  });

  it('answers EBADF for a segment nobody holds', () => {
    expectErrno(() => cache.get('heap.1'), 'EBADF');
  });

  it('closes every segment on close()', () => {
    cache.hold('heap.1');
    cache.hold('heap.1');
    cache.close();
    expect(openDescriptors(store.pathOf('heap.1'))).to.equal(0);
    expect(cache.held).to.equal(0);
  });

  it('without a segment directory, refuses every host segment with EOPNOTSUPP', () => {
    expectErrno(() => NO_HOST_MEMORY.hold('heap.1'), 'EOPNOTSUPP');
  });
});
