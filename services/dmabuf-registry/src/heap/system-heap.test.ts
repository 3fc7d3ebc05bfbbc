import { expect } from 'chai';
import { PAGE_SIZE, SegmentStore } from '@p2p/shm';
import { O_CLOEXEC, O_NONBLOCK, O_RDONLY, O_RDWR } from '../files/open-flags';
import { MMAP_BASE } from '../mm/layout';
import { PROT_READ, PROT_WRITE } from '../mm/prot';
import { Registry } from '../registry';
import { SegmentFileAccess } from '../segments/segment-file-access';
import { FakeOwner } from '../testing/fake-owner';
import { FakeOracle, expectErrno, expectRejects } from '../testing/harness';
import { MemorySegments } from '../testing/memory-segments';
import { useTempShmDir } from '@p2p/testing';
import { SYSTEM_HEAP } from './system-heap';

describe('Registry: the system heap', () => {
  const dir = useTempShmDir();
  const chunk = 4 * PAGE_SIZE;

  function heapRegistry(maxBytes = 64 * PAGE_SIZE, processMaxBytes?: number): { registry: Registry; store: SegmentStore } {
    const store = new SegmentStore({ dir: dir(), chunkSize: chunk });
    const registry = new Registry({
      p2p: new FakeOracle(),
      segments: new SegmentFileAccess(),
      heap: { store, directory: dir(), shmId: 'tmpfs-test', prefix: 'heap', maxBytes, ...(processMaxBytes !== undefined ? { processMaxBytes } : {}) },
    });
    return { registry, store };
  }

  it('allocates page-aligned host memory as a dma-buf in the caller’s table', () => {
    const { registry, store } = heapRegistry();
    const pid = registry.openProcess('app');
    expect(registry.heapAllocate(pid, 1, O_RDWR | O_CLOEXEC)).to.deep.equal({ fd: 3, bufferId: 1 });
    expect(registry.heapAllocate(pid, PAGE_SIZE + 1, O_RDWR)).to.deep.equal({ fd: 4, bufferId: 2 });
    expect(registry.bufInfo().map((b) => [b.bufferId, b.size, b.exporter, b.cpuAccess, b.providerBdf, b.revoked])).to.deep.equal([
      [1, PAGE_SIZE, SYSTEM_HEAP, true, '', false],
      [2, 2 * PAGE_SIZE, SYSTEM_HEAP, true, '', false],
    ]);
    expect(registry.resolveFd(pid, 3)).to.deep.equal({ kind: 'dma-buf', fileId: 1, owner: SYSTEM_HEAP, handle: 'heap.1', openFlags: O_RDWR | O_CLOEXEC });
    expect(store.list().map((s) => [s.name, s.size])).to.deep.equal([
      ['heap.1.0', PAGE_SIZE],
      ['heap.2.0', 2 * PAGE_SIZE],
    ]);
    expect(registry.processes().owners).to.deep.equal([SYSTEM_HEAP]);
  });

  it('refuses bad sizes and flags with EINVAL, leaving no buffer and no segment', () => {
    const { registry, store } = heapRegistry();
    const pid = registry.openProcess('app');
    expectErrno(() => registry.heapAllocate(pid, 0, O_RDWR), 'EINVAL');
    expectErrno(() => registry.heapAllocate(pid, -4096, O_RDWR), 'EINVAL');
    expectErrno(() => registry.heapAllocate(pid, 4096, O_RDWR | O_NONBLOCK), 'EINVAL');
    expectErrno(() => registry.heapAllocate(pid, 4096, O_RDWR, 1), 'EINVAL');
    expectErrno(() => registry.heapAllocate(42, 4096, O_RDWR), 'ESRCH');
    expect(registry.bufInfo()).to.deep.equal([]);
    expect(store.list()).to.deep.equal([]);
    expect(registry.heapAllocate(pid, 4096, O_RDWR).bufferId).to.equal(1);
  });

  it('is ENOMEM past its cap, until a release gives memory back', async () => {
    const { registry, store } = heapRegistry(3 * PAGE_SIZE);
    const pid = registry.openProcess('app');
    const first = registry.heapAllocate(pid, 2 * PAGE_SIZE, O_RDWR);
    expectErrno(() => registry.heapAllocate(pid, 2 * PAGE_SIZE, O_RDWR), 'ENOMEM');
    expect(store.list()).to.have.length(1);
    await registry.close(pid, first.fd);
    expect(store.list()).to.deep.equal([]);
    expect(registry.heapAllocate(pid, 3 * PAGE_SIZE, O_RDWR).fd).to.equal(3);
  });

  it('destroys every segment of a buffer on release, after the last attachment', async () => {
    const { registry, store } = heapRegistry();
    const pid = registry.openProcess('app');
    const { fd } = registry.heapAllocate(pid, 6 * PAGE_SIZE, O_RDWR);
    expect(store.list().map((s) => s.name)).to.deep.equal(['heap.1.0', 'heap.1.1']);
    const { attachmentId } = await registry.attach({ pid, fd, dynamic: false, peer2peer: false });
    await registry.close(pid, fd);
    expect(store.list()).to.have.length(2);
    await registry.detach(pid, attachmentId);
    expect(store.list()).to.deep.equal([]);
  });

  it('maps as HOST_MEMORY over shared memory, with IOVAs, and pins', async () => {
    const { registry } = heapRegistry();
    const pid = registry.openProcess('app');
    const { fd } = registry.heapAllocate(pid, 6 * PAGE_SIZE, O_RDWR);
    const { attachmentId } = await registry.attach({ pid, fd, importerBdf: '0000:04:00.0', dynamic: false, peer2peer: false, shmId: 'tmpfs-test' });
    await registry.pin(pid, attachmentId);
    const mapping = await registry.map(pid, attachmentId);
    expect(mapping.mapType).to.equal('HOST_MEMORY');
    expect(mapping.transport).to.equal('shared-memory');
    expect(mapping.directory).to.equal(dir());
    expect(mapping.extents).to.deep.equal([
      { segment: 'heap.1.0', segmentOffset: 0, length: chunk, dmaAddress: 0x1_0000_0000n },
      { segment: 'heap.1.1', segmentOffset: 0, length: 2 * PAGE_SIZE, dmaAddress: 0x1_0000_0000n + BigInt(chunk) },
    ]);
  });

  it('gives CPU access across segment boundaries, through the streamed fallback too', async () => {
    const { registry } = heapRegistry();
    const pid = registry.openProcess('app');
    const { fd } = registry.heapAllocate(pid, 6 * PAGE_SIZE, O_RDWR);
    const data = Buffer.from(Array.from({ length: 300 }, (_, i) => i & 0xff));
    await registry.cpuWrite(pid, fd, chunk - 100, data);
    expect(await registry.cpuRead(pid, fd, chunk - 100, 300)).to.deep.equal(data);
    const { attachmentId } = await registry.attach({ pid, fd, dynamic: false, peer2peer: false });
    await registry.map(pid, attachmentId);
    expect(registry.readAttachment(pid, attachmentId, chunk - 100, 300)).to.deep.equal(data);
    registry.writeAttachment(pid, attachmentId, 0, Buffer.from('dma'));
    expect((await registry.cpuRead(pid, fd, 0, 3)).toString()).to.equal('dma');

    const mapped = await registry.mmap(pid, fd, chunk, PAGE_SIZE);
    expect(mapped).to.deep.equal({
      addr: MMAP_BASE - PAGE_SIZE,
      prot: PROT_READ | PROT_WRITE,
      directory: dir(),
      extents: [{ segment: 'heap.1.1', segmentOffset: 0, length: PAGE_SIZE, dmaAddress: 0x1_0000_0000n + BigInt(chunk) }],
    });
  });

  it('keeps CPU access within the fd’s access mode and the buffer', async () => {
    const { registry } = heapRegistry();
    const pid = registry.openProcess('app');
    const { fd } = registry.heapAllocate(pid, PAGE_SIZE, O_RDONLY);
    await expectRejects(registry.cpuWrite(pid, fd, 0, Buffer.from('x')), 'EACCES');
    expect(await registry.cpuRead(pid, fd, 0, 4)).to.deep.equal(Buffer.alloc(4));
    const mapped = await registry.mmap(pid, fd, 0, PAGE_SIZE);
    expect(mapped.prot).to.equal(PROT_READ);
    await expectRejects(registry.cpuRead(pid, fd, PAGE_SIZE - 1, 2), 'EINVAL');
    await expectRejects(registry.mmap(pid, fd, 1, 10), 'EINVAL');
    await expectRejects(registry.mmap(pid, fd, 0, 0), 'EINVAL');
    await expectRejects(registry.mmap(pid, fd, 0, PAGE_SIZE + 1), 'EINVAL');
    // The fd, and the VMA of the one mmap that succeeded; the refused ones hold nothing.
    expect(registry.bufInfo()[0]!.refcount).to.equal(2);
    await registry.munmap(pid, mapped.addr, PAGE_SIZE);
    expect(registry.bufInfo()[0]!.refcount).to.equal(1);
  });

  it('is built in: it cannot move, go away, or be registered twice', async () => {
    const { registry } = heapRegistry();
    const pid = registry.openProcess('app');
    const { bufferId } = registry.heapAllocate(pid, PAGE_SIZE, O_RDWR);
    await expectRejects(registry.move(SYSTEM_HEAP, bufferId, { revoked: true }), 'EPERM');
    await expectRejects(registry.ownerGone(SYSTEM_HEAP), 'EPERM');
    expectErrno(() => registry.registerOwner(new FakeOwner(SYSTEM_HEAP, new MemorySegments())), 'EBUSY');
    expect(registry.bufInfo()[0]!.revoked).to.equal(false);
    expect(registry.processes().owners).to.deep.equal([SYSTEM_HEAP]);
  });

  it('is ENODEV when no heap is configured', () => {
    const registry = new Registry({ p2p: new FakeOracle(), segments: new SegmentFileAccess() });
    const pid = registry.openProcess('app');
    expectErrno(() => registry.heapAllocate(pid, PAGE_SIZE, O_RDWR), 'ENODEV');
  });

  it('leaves no segment behind when a process exits', async () => {
    const { registry, store } = heapRegistry();
    const pid = registry.openProcess('app');
    registry.heapAllocate(pid, PAGE_SIZE, O_RDWR);
    registry.heapAllocate(pid, 5 * PAGE_SIZE, O_RDWR);
    await registry.exitProcess(pid);
    expect(store.list()).to.deep.equal([]);
  });

  describe('per-process limit (a buffer is charged to its allocator until released)', () => {
    const limit = 4 * PAGE_SIZE;

    it('is ENOMEM past the limit, naming the limit and what the pid has charged', () => {
      const { registry, store } = heapRegistry(64 * PAGE_SIZE, limit);
      const pid = registry.openProcess('greedy');
      registry.heapAllocate(pid, 3 * PAGE_SIZE, O_RDWR);
      const error = expectErrno(() => registry.heapAllocate(pid, 2 * PAGE_SIZE, O_RDWR), 'ENOMEM');
      expect(error.message).to.contain(`per-process limit of ${limit}`).and.to.contain(`pid ${pid} has ${3 * PAGE_SIZE} charged`);
      expect(store.list()).to.have.length(1);
    });

    it('allows allocations up to exactly the limit', () => {
      const { registry } = heapRegistry(64 * PAGE_SIZE, limit);
      const pid = registry.openProcess('app');
      registry.heapAllocate(pid, 3 * PAGE_SIZE, O_RDWR);
      expect(registry.heapAllocate(pid, PAGE_SIZE, O_RDWR).fd).to.equal(4);
    });

    it('leaves other processes their whole limit while one is at its own', () => {
      const { registry } = heapRegistry(64 * PAGE_SIZE, limit);
      const greedy = registry.openProcess('greedy');
      const other = registry.openProcess('other');
      registry.heapAllocate(greedy, limit, O_RDWR);
      expectErrno(() => registry.heapAllocate(greedy, PAGE_SIZE, O_RDWR), 'ENOMEM');
      expect(registry.heapAllocate(other, limit, O_RDWR).fd).to.equal(3);
    });

    it('still applies the heap’s cap below a process’s limit', () => {
      const { registry } = heapRegistry(6 * PAGE_SIZE, limit);
      const a = registry.openProcess('a');
      const b = registry.openProcess('b');
      registry.heapAllocate(a, limit, O_RDWR);
      const error = expectErrno(() => registry.heapAllocate(b, 3 * PAGE_SIZE, O_RDWR), 'ENOMEM');
      expect(error.message).to.contain(`cap of ${6 * PAGE_SIZE}`);
    });

    it('gives the allocator room back when its buffer is released', async () => {
      const { registry } = heapRegistry(64 * PAGE_SIZE, limit);
      const pid = registry.openProcess('app');
      const { fd } = registry.heapAllocate(pid, limit, O_RDWR);
      await registry.close(pid, fd);
      expect(registry.heapAllocate(pid, limit, O_RDWR).fd).to.equal(3);
    });

    it('keeps the charge on the allocator after it sent the buffer away and closed its fd', async () => {
      const { registry } = heapRegistry(64 * PAGE_SIZE, limit);
      const allocator = registry.openProcess('allocator');
      const receiver = registry.openProcess('receiver');
      const { fd } = registry.heapAllocate(allocator, limit, O_RDWR);
      registry.receiveFd(receiver, registry.sendFd(allocator, fd, receiver));
      await registry.close(allocator, fd);
      expectErrno(() => registry.heapAllocate(allocator, PAGE_SIZE, O_RDWR), 'ENOMEM');
    });

    it('charges nothing to a process that received a buffer', () => {
      const { registry } = heapRegistry(64 * PAGE_SIZE, limit);
      const allocator = registry.openProcess('allocator');
      const receiver = registry.openProcess('receiver');
      const { fd } = registry.heapAllocate(allocator, limit, O_RDWR);
      registry.receiveFd(receiver, registry.sendFd(allocator, fd, receiver));
      expect(registry.heapAllocate(receiver, limit, O_RDWR).fd).to.equal(4);
    });

    it('uncharges the allocator when the receiver closes the last fd', async () => {
      const { registry } = heapRegistry(64 * PAGE_SIZE, limit);
      const allocator = registry.openProcess('allocator');
      const receiver = registry.openProcess('receiver');
      const { fd } = registry.heapAllocate(allocator, limit, O_RDWR);
      const received = registry.receiveFd(receiver, registry.sendFd(allocator, fd, receiver));
      await registry.close(allocator, fd);
      await registry.close(receiver, received);
      expect(registry.heapAllocate(allocator, limit, O_RDWR).fd).to.equal(3);
    });

    it('keeps the charge while an attachment holds the buffer after every fd is closed', async () => {
      const { registry } = heapRegistry(64 * PAGE_SIZE, limit);
      const pid = registry.openProcess('app');
      const { fd } = registry.heapAllocate(pid, limit, O_RDWR);
      const { attachmentId } = await registry.attach({ pid, fd, dynamic: false, peer2peer: false });
      await registry.close(pid, fd);
      expectErrno(() => registry.heapAllocate(pid, PAGE_SIZE, O_RDWR), 'ENOMEM');
      await registry.detach(pid, attachmentId);
      expect(registry.heapAllocate(pid, limit, O_RDWR).fd).to.equal(3);
    });

    it('keeps an exited allocator’s buffer charged against the heap while another process holds it', async () => {
      const { registry } = heapRegistry(2 * limit, limit);
      const allocator = registry.openProcess('allocator');
      const holder = registry.openProcess('holder');
      const { fd } = registry.heapAllocate(allocator, limit, O_RDWR);
      const held = registry.receiveFd(holder, registry.sendFd(allocator, fd, holder));
      await registry.exitProcess(allocator);
      registry.heapAllocate(holder, limit, O_RDWR);
      const late = registry.openProcess('late');
      expectErrno(() => registry.heapAllocate(late, PAGE_SIZE, O_RDWR), 'ENOMEM');
      await registry.close(holder, held);
      expect(registry.heapAllocate(late, limit, O_RDWR).fd).to.equal(3);
    });

    it('refuses a limit above the heap’s cap with EINVAL', () => {
      expectErrno(() => heapRegistry(4 * PAGE_SIZE, 5 * PAGE_SIZE), 'EINVAL');
    });
  });
});
