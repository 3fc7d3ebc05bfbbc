import * as fs from 'node:fs';
import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { dmabuf, fault } from '@p2p/proto';
import { errnoOf } from '@p2p/status';
import { PAGE_SIZE, SegmentStore, SharedMemory } from '@p2p/shm';
import { O_RDONLY } from './open-flags';
import { OwnerSession } from './owner-session';
import { PROT_READ, PROT_WRITE, RegistrySession } from './registry-session';
import { SharedMemoryExporter } from './shared-memory-exporter';
import { asAdmin, eventually, platformSecretsOf, rejection } from '@p2p/testing';
import { type RegistryProcess, startRegistry } from './testing/registry-process';

const SIZE = 64 * 1024;

describe('RegistrySession against a dmabuf-registry process', function () {
  this.timeout(30_000);
  let registry: RegistryProcess | undefined;
  const sessions: RegistrySession[] = [];

  before(async function () {
    registry = await startRegistry();
  });
  after(async () => registry?.stop());
  afterEach(async () => {
    await Promise.all(sessions.splice(0).map((session) => session.close()));
  });

  /** A process; `as` 'platform' or 'admin' makes it one that acts beyond itself (a NIC driver, a debugging tool). */
  async function open(name: string, shmDir = registry!.shmDir, as?: 'platform' | 'admin'): Promise<RegistrySession> {
    const secrets = platformSecretsOf(registry!.shmDir);
    const privilegedCredential = as === 'platform' ? secrets.platformToken : as === 'admin' ? secrets.adminToken : undefined;
    const session = await RegistrySession.open(registry!.address, { name, shmDir, privilegedCredential });
    sessions.push(session);
    return session;
  }

  it('sends a detach the registry did not take again until it does: dma_buf_detach() cannot fail', async () => {
    const app = await open('app');
    const nic = await open('nic', registry!.shmDir, 'platform');
    const { fd, bufferId } = await app.heapAllocate(SIZE);
    const importer = await nic.importDmaBuf({ fd, holderPid: app.pid, importerBdf: '' });
    const attachments = async (): Promise<number> => (await nic.bufInfo()).find((b) => b.bufferId === bufferId)?.attachments.length ?? 0;
    expect(await attachments()).to.equal(1);
    const admin = asAdmin(registry!.shmDir);
    const faults = new fault.FaultInjectionServiceClient(registry!.address, admin.credentials, admin.options);
    try {
      // The first two Detach calls fail as a cut link does.
      await new Promise<void>((resolve, reject) =>
        faults.addFaultRule(
          { rule: { id: '', methodPattern: '/p2p.dmabuf.v1.DmaBufRegistryService/Detach', delay: undefined, abort: { errno: 'ECONNRESET', grpcCode: 0, percentage: 100 }, maxActivations: 2, activations: 0n } },
          (error) => (error ? reject(error) : resolve()),
        ),
      );
      await importer.detach();
      expect(importer.state).to.equal('detached');
      expect(await attachments(), 'before the registry takes it').to.equal(1);
      await eventually('the detach to be taken', async () => (await attachments()) === 0);
    } finally {
      faults.close();
    }
  });

  it('opens a session: a pid of this incarnation, listed under its name', async () => {
    const a = await open('spdk');
    const b = await open('rdma-nic-a');
    expect(a.pid).to.be.greaterThan(0);
    expect(b.pid).to.not.equal(a.pid);
    expect(a.incarnation).to.be.a('string').and.not.equal('');
    expect(b.incarnation).to.equal(a.incarnation);
    expect(a.state).to.equal('open');
    const { processes } = await a.listProcesses();
    expect(processes.find((p) => p.pid === a.pid)?.name).to.equal('spdk');
  });

  it("passes fds between processes, and a failed call keeps the registry's errno and names the method", async () => {
    const a = await open('sender');
    const b = await open('receiver');
    const { fd, bufferId } = await a.heapAllocate(SIZE);
    const dup = await a.dupFd(fd);
    expect(dup).to.not.equal(fd);
    const token = await a.sendFd(fd, b.pid);
    const received = await b.receiveFd(token);
    const resolved = await b.resolveFd(received);
    expect(resolved.kind).to.equal(dmabuf.FileKind.FILE_KIND_DMA_BUF);
    expect(resolved.fileId).to.equal(bufferId);
    await a.closeFd(dup);
    const error = await rejection(a.closeFd(dup));
    expect(errnoOf(error)).to.equal('EBADF');
    expect(error).to.be.instanceOf(ErrnoError).with.property('detail').that.matches(/^dmabuf-registry CloseFd: EBADF/);
  });

  it('maps a heap buffer into the importer: reads see cpuWrite through the shared mapping', async () => {
    const session = await open('importer');
    const { fd, bufferId } = await session.heapAllocate(SIZE);
    await session.cpuWrite(fd, 100, Buffer.from('hello'));
    const importer = await session.importDmaBuf({ fd, importerBdf: '0000:01:00.0' });
    expect(importer.bufferId).to.equal(bufferId);
    expect(importer.size).to.equal(SIZE);
    expect(importer.mapped).to.equal(false);

    expect((await importer.read(100, 5)).toString()).to.equal('hello');
    expect(importer.mapped).to.equal(true);
    const info = await importer.map();
    expect(info.transport).to.equal(dmabuf.Transport.TRANSPORT_SHARED_MEMORY);
    expect(info.mapType).to.equal(dmabuf.DmaMapType.DMA_MAP_TYPE_HOST_MEMORY);

    // No copy is cached: a later write by someone else shows through the same mapping.
    await session.cpuWrite(fd, SIZE - 5, Buffer.from('again'));
    expect((await importer.read(SIZE - 5, 5)).toString()).to.equal('again');
    expect((await importer.map()).generation).to.equal(info.generation);

    // And writes go straight into the buffer.
    await importer.write(4096, Buffer.from('from the importer'));
    expect((await session.cpuRead(fd, 4096, 17)).toString()).to.equal('from the importer');

    const target = Buffer.alloc(10, '.');
    await importer.copyToBuffer(100, target, 2, 5);
    expect(target.toString()).to.equal('..hello...');
    await importer.copyFromBuffer(8000, Buffer.from('xxWORLDxx'), 2, 5);
    expect((await session.cpuRead(fd, 8000, 5)).toString()).to.equal('WORLD');

    const mmapped = await session.mmapFd(fd, 0, SIZE);
    expect(mmapped.extents.reduce((sum, e) => sum + e.length, 0n)).to.equal(BigInt(SIZE));
    expect(mmapped.extents.map((e) => e.segment)).to.deep.equal(info.extents.map((e) => e.segment));

    const outOfRange = await rejection(importer.read(SIZE - 1, 2));
    expect(outOfRange).to.be.instanceOf(ErrnoError).with.property('errno', 'ERANGE');

    const debugfs = await open('bufinfo-reader', registry!.shmDir, 'admin');
    const buffer = (await debugfs.bufInfo()).find((b) => b.bufferId === bufferId);
    expect(buffer?.attachments.map((a) => a.mapped)).to.deep.equal([true]);
    await importer.unmap();
    expect(importer.mapped).to.equal(false);
    expect((await importer.read(100, 5)).toString()).to.equal('hello');
    expect((await importer.map()).generation > info.generation).to.equal(true);

    await importer.detach();
    expect(importer.state).to.equal('detached');
    expect(await rejection(importer.read(0, 1))).to.be.instanceOf(ErrnoError).with.property('errno', 'EBADF');
    expect((await debugfs.bufInfo()).find((b) => b.bufferId === bufferId)?.attachments).to.deep.equal([]);
  });

  it('maps from its own directory when its path to the same tmpfs differs from the owner\'s', async () => {
    // Another container would mount the volume elsewhere; a symlink plays that here.
    const alias = `${registry!.shmDir}-alias`;
    fs.symlinkSync(registry!.shmDir, alias);
    try {
      const holder = await open('holder');
      const elsewhere = await open('other-container', alias, 'platform');
      expect(elsewhere.shmId).to.equal(holder.shmId);
      const { fd } = await holder.heapAllocate(SIZE);
      await holder.cpuWrite(fd, 0, Buffer.from('same memory'));
      const importer = await elsewhere.importDmaBuf({ fd, holderPid: holder.pid, importerBdf: '0000:02:00.0' });
      expect((await importer.map()).transport).to.equal(dmabuf.Transport.TRANSPORT_SHARED_MEMORY);
      expect((await holder.mmapFd(fd, 0, SIZE)).directory).to.equal(registry!.shmDir);
      expect((await importer.read(0, 11)).toString()).to.equal('same memory');
    } finally {
      fs.unlinkSync(alias);
    }
  });

  it('falls back to ReadAttachment and WriteAttachment for a process on another tmpfs', async () => {
    const elsewhere = fs.mkdtempSync('/dev/shm/p2p-dmabuf-client-other-');
    try {
      const holder = await open('holder');
      const remote = await open('remote', elsewhere, 'platform');
      expect(remote.shmId).to.not.equal(holder.shmId);
      const size = 3 * 1024 * 1024 + 4096;
      const { fd } = await holder.heapAllocate(size);
      const importer = await remote.importDmaBuf({ fd, holderPid: holder.pid, importerBdf: '0000:02:00.0' });
      expect((await importer.map()).transport).to.equal(dmabuf.Transport.TRANSPORT_STREAM);
      // No views to hand out: every byte goes through the registry.
      expect(importer.views(0, 1, [])).to.equal(false);
      const data = Buffer.alloc(size - 10);
      for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
      await importer.write(10, data);
      expect((await holder.cpuRead(fd, size - 4, 4)).equals(data.subarray(-4))).to.equal(true);
      expect((await importer.read(10, data.length)).equals(data)).to.equal(true);
    } finally {
      fs.rmSync(elsewhere, { recursive: true, force: true });
    }
  });

  it('heapAllocate takes open flags', async () => {
    const session = await open('flags');
    const { fd } = await session.heapAllocate(SIZE, O_RDONLY);
    expect((await session.resolveFd(fd)).openFlags).to.equal(O_RDONLY);
  });

  it('close() ends the process: its fds go, importers drop their mappings, later calls reject ESHUTDOWN', async () => {
    const observer = await open('observer');
    const session = await RegistrySession.open(registry!.address, { name: 'short-lived', shmDir: registry!.shmDir });
    const { fd } = await session.heapAllocate(SIZE);
    const importer = await session.importDmaBuf({ fd, importerBdf: '' });
    await importer.read(0, 1);
    await session.close();
    expect(session.state).to.equal('closed');
    expect(importer.mapped).to.equal(false);
    expect(importer.state).to.equal('session-ended');
    const error = await rejection(importer.read(0, 1));
    expect(error).to.be.instanceOf(ErrnoError).with.property('errno', 'ESHUTDOWN');
    expect(await rejection(session.dupFd(fd))).to.be.instanceOf(ErrnoError).with.property('errno', 'ESHUTDOWN');
    await eventually('the closed process to leave the listing', async () =>
      (await observer.listProcesses()).processes.every((p) => p.pid !== session.pid),
    );
  });

  describe('address spaces and user page pins', () => {
    /** Where top-down placement starts (mmap_base). */
    const MMAP_BASE = 0x7f00_0000_0000n;
    const P = BigInt(PAGE_SIZE);

    /** The heap segment files of buffer `bufferId` in the registry's directory. */
    const segmentsOf = (bufferId: bigint): string[] => fs.readdirSync(registry!.shmDir).filter((name) => name.startsWith('dmabuf-heap.') && name.includes(`.${bufferId}.`));

    /** A process with a heap buffer of `pages` pages mapped whole, and a platform service's session to pin it. */
    async function guest(pages = 4) {
      const qemu = await open('qemu');
      const vfio = await open('vfio-pci', registry!.shmDir, 'platform');
      const { fd, bufferId } = await qemu.heapAllocate(BigInt(pages) * P);
      const { addr } = await qemu.mmapFd(fd, 0, BigInt(pages) * P);
      const buffer = async (): Promise<dmabuf.BufInfo | undefined> => (await vfio.bufInfo()).find((b) => b.bufferId === bufferId);
      return { qemu, vfio, fd, bufferId, addr, buffer };
    }

    it('mmapFd gives each VMA its address: page aligned, top-down below mmap_base, with its protection', async () => {
      const session = await open('mapper');
      const { fd, bufferId } = await session.heapAllocate(SIZE);
      const first = await session.mmapFd(fd, 0, SIZE);
      const second = await session.mmapFd(fd, 0, 100, { prot: PROT_READ });
      expect(first.addr).to.equal(MMAP_BASE - BigInt(SIZE));
      expect(second.addr).to.equal(first.addr - P);
      expect([first.prot, second.prot]).to.deep.equal([PROT_READ | PROT_WRITE, PROT_READ]);
      expect(first.extents.reduce((sum, e) => sum + e.length, 0n)).to.equal(BigInt(SIZE));
      expect(await session.maps()).to.deep.equal([
        { addr: second.addr, length: P, bufferId, offset: 0n, prot: PROT_READ, deviceMemory: false },
        { addr: first.addr, length: BigInt(SIZE), bufferId, offset: 0n, prot: PROT_READ | PROT_WRITE, deviceMemory: false },
      ]);
    });

    it('munmap splits a VMA, MAP_FIXED fills the hole, and mmapFd keeps its errnos (PROT_WRITE on O_RDONLY: EACCES)', async () => {
      const { qemu, fd, addr } = await guest(4);
      await qemu.munmap(addr + P, P);
      expect((await qemu.maps()).map((v) => [v.addr - addr, v.length, v.offset])).to.deep.equal([
        [0n, P, 0n],
        [2n * P, 2n * P, 2n * P],
      ]);
      expect((await qemu.mmapFd(fd, 3n * P, P, { addr: addr + P, fixed: true, prot: PROT_READ })).addr).to.equal(addr + P);
      expect((await qemu.maps()).map((v) => [v.addr - addr, v.offset, v.prot])).to.deep.equal([
        [0n, 0n, PROT_READ | PROT_WRITE],
        [P, 3n * P, PROT_READ],
        [2n * P, 2n * P, PROT_READ | PROT_WRITE],
      ]);
      await qemu.munmap(0x4000_0000, P);
      expect(errnoOf(await rejection(qemu.munmap(addr + 1n, P)))).to.equal('EINVAL');
      const readOnly = await qemu.heapAllocate(SIZE, O_RDONLY);
      expect(errnoOf(await rejection(qemu.mmapFd(readOnly.fd, 0, SIZE, { prot: PROT_READ | PROT_WRITE })))).to.equal('EACCES');
      expect(errnoOf(await rejection(qemu.mmapFd(fd, 1, P)))).to.equal('EINVAL');
    });

    it('pins the host memory behind a range for the platform, and only for it (EACCES)', async () => {
      const { qemu, vfio, bufferId, addr, buffer } = await guest(4);
      const pinned = await vfio.pinUserPages(qemu.pid, addr + P, 2n * P, true);
      expect(pinned.directory).to.equal(registry!.shmDir);
      expect(pinned.shm?.id).to.equal(qemu.shmId);
      expect(pinned.extents).to.have.length(1);
      expect(segmentsOf(bufferId)).to.include(pinned.extents[0]!.segment);
      expect([pinned.extents[0]!.segmentOffset, pinned.extents[0]!.length]).to.deep.equal([P, 2n * P]);
      expect((await buffer())?.userPins).to.equal(1);
      expect((await vfio.listProcesses()).processes.find((p) => p.pid === vfio.pid)?.pinCount).to.equal(1);
      const refused = await rejection(qemu.pinUserPages(qemu.pid, addr, P, false));
      expect(errnoOf(refused)).to.equal('EACCES');
    });

    it('is EFAULT for pages with no mapping and for device memory', async () => {
      const { qemu, vfio, addr } = await guest(1);
      expect(errnoOf(await rejection(vfio.pinUserPages(qemu.pid, addr - P, 2n * P, false)))).to.equal('EFAULT');
      const store = new SegmentStore({ dir: registry!.shmDir });
      const exporter = new SharedMemoryExporter(store);
      const owner = await OwnerSession.open(registry!.address, { credential: platformSecretsOf(registry!.shmDir).platformToken, name: 'bar-exporter', shmDir: registry!.shmDir, ops: exporter });
      try {
        exporter.addBuffer('bar', SharedMemory.create(store, 'bar-exporter-bar', PAGE_SIZE), 0xf000_0000n);
        const bar = await owner.exportDmaBuf({ pid: qemu.pid, size: PAGE_SIZE, handle: 'bar', cpuAccess: true, providerBdf: '0000:03:00.0', requirePeer2peer: true });
        const mapped = await qemu.mmapFd(bar.fd, 0, PAGE_SIZE);
        expect((await qemu.maps()).find((v) => v.addr === mapped.addr)?.deviceMemory).to.equal(true);
        const error = await rejection(vfio.pinUserPages(qemu.pid, mapped.addr, P, false));
        expect(errnoOf(error)).to.equal('EFAULT');
        expect(error).to.be.instanceOf(ErrnoError).with.property('detail').that.contains('device memory');
        await qemu.munmap(mapped.addr, P);
        await qemu.closeFd(bar.fd);
      } finally {
        await owner.close();
      }
    });

    it('keeps pinned pages through munmap, close and exit of the process; unpinning frees them, segments included', async () => {
      const { qemu, vfio, fd, bufferId, addr, buffer } = await guest(2);
      const { pinId } = await vfio.pinUserPages(qemu.pid, addr, 2n * P, true);
      await qemu.munmap(addr, 2n * P);
      await qemu.closeFd(fd);
      await qemu.close();
      await eventually('the process to exit', async () => (await vfio.listProcesses()).processes.every((p) => p.pid !== qemu.pid));
      expect(await buffer()).to.include({ userPins: 1, refcount: 1 });
      expect(segmentsOf(bufferId)).to.have.length(1);
      await vfio.unpinUserPages(pinId);
      expect(await buffer()).to.equal(undefined);
      expect(segmentsOf(bufferId)).to.deep.equal([]);
      expect(errnoOf(await rejection(vfio.unpinUserPages(pinId)))).to.equal('ENOENT');
    });

    it('releases the pins of a pinning session that ends, leaking no segment', async () => {
      const { qemu, vfio, fd, bufferId, addr, buffer } = await guest(2);
      await vfio.pinUserPages(qemu.pid, addr, P, false);
      await vfio.pinUserPages(qemu.pid, addr + P, P, false);
      await qemu.munmap(addr, 2n * P);
      await qemu.closeFd(fd);
      expect(await buffer()).to.include({ userPins: 2 });
      await vfio.close();
      const observer = await open('observer', registry!.shmDir, 'admin');
      await eventually('the pinned buffer to be released', async () => (await observer.bufInfo()).every((b) => b.bufferId !== bufferId));
      expect(segmentsOf(bufferId)).to.deep.equal([]);
    });
  });
});
