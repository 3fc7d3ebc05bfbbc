import * as fs from 'node:fs';
import * as path from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { expect } from 'chai';
import { bearerInterceptor } from '@p2p/auth';
import { ErrnoError } from '@p2p/errno';
import { dmabuf } from '@p2p/proto';
import { errnoOf } from '@p2p/status';
import { SegmentStore, SharedMemory, shmIdentity } from '@p2p/shm';
import type { MoveNotice } from './dmabuf-importer';
import type { OwnerCallInfo } from './owner-ops';
import { OwnerSession } from './owner-session';
import { RegistrySession } from './registry-session';
import { SharedMemoryExporter } from './shared-memory-exporter';
import { eventually, platformSecretsOf, rejection } from '@p2p/testing';
import { type RegistryProcess, startRegistry } from './testing/registry-process';

const SIZE = 64 * 1024;
const ACK_TIMEOUT_MS = 600;
const DMA_BASE = 0xf000_0000n;

describe('OwnerSession and importers against a dmabuf-registry process', function () {
  this.timeout(30_000);
  let registry: RegistryProcess | undefined;
  let store: SegmentStore;
  let exporter: SharedMemoryExporter;
  let owner: OwnerSession;
  let holder: RegistrySession;
  let nic: RegistrySession;

  before(async function () {
    registry = await startRegistry({ ackTimeoutMs: ACK_TIMEOUT_MS });
    store = new SegmentStore({ dir: registry.shmDir });
    exporter = new SharedMemoryExporter(store);
    owner = await OwnerSession.open(registry.address, { credential: platformSecretsOf(registry.shmDir).platformToken, name: 'test-exporter', shmDir: registry.shmDir, ops: exporter });
    holder = await RegistrySession.open(registry.address, { name: 'spdk', shmDir: registry.shmDir });
    nic = await RegistrySession.open(registry.address, { name: 'rdma-nic', shmDir: registry.shmDir, privilegedCredential: platformSecretsOf(registry.shmDir).platformToken });
  });
  after(async () => {
    await Promise.all([owner?.close(), holder?.close(), nic?.close()]);
    await registry?.stop();
  });

  /** A BAR-like region served by the exporter and exported to the holder process. */
  async function exportRegion(handle: string): Promise<{ memory: SharedMemory; bufferId: bigint; fd: number }> {
    const memory = SharedMemory.create(store, handle, SIZE);
    exporter.addBuffer(handle, memory, DMA_BASE);
    const { bufferId, fd } = await owner.exportDmaBuf({ pid: holder.pid, size: SIZE, handle, requirePeer2peer: true, cpuAccess: true });
    return { memory, bufferId, fd };
  }

  it('registers, and lists the owner', async () => {
    expect(owner.incarnation).to.equal(holder.incarnation);
    expect((await holder.listProcesses()).owners).to.include('test-exporter');
    const duplicate = await rejection(
      OwnerSession.open(registry!.address, { credential: platformSecretsOf(registry!.shmDir).platformToken, name: 'test-exporter', shmDir: registry!.shmDir, ops: exporter, openTimeoutMs: 3000 }),
    );
    expect(errnoOf(duplicate), String(duplicate)).to.equal('EBUSY');
  });

  it('rejects a refused request with an ErrnoError of the registry errno', async () => {
    expect(await rejection(owner.move(999_999n, true))).to.be.instanceOf(ErrnoError).with.property('errno', 'ENOENT');
    expect(await rejection(owner.exportDmaBuf({ pid: holder.pid, size: 0, handle: 'empty' }))).to.be.instanceOf(ErrnoError).with.property('errno', 'EINVAL');
  });

  it('revoke: move resolves only after the importer stopped, dropped its views, ran its hook and acked; un-revoke re-maps', async () => {
    const { memory, bufferId, fd } = await exportRegion('bar-a');
    memory.write(0, Buffer.from('bar contents'));
    const steps: string[] = [];
    const importer = await nic.importDmaBuf({
      fd,
      holderPid: holder.pid,
      importerBdf: '0000:02:00.0',
      onMoveNotify: async (notice: MoveNotice) => {
        steps.push(`hook: buffer ${notice.bufferId}, mapped=${importer.mapped}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        steps.push('hook done');
      },
    });
    const unmapped: Uint8Array[] = [];
    expect(importer.views(0, 12, unmapped)).to.equal(false);
    expect((await importer.read(0, 12)).toString()).to.equal('bar contents');
    const info = await importer.map();
    expect(info.extents.map((e) => [e.segment, e.dmaAddress])).to.deep.equal([['bar-a.0', DMA_BASE]]);
    const views: Uint8Array[] = [];
    expect(importer.views(4, 8, views)).to.equal(true);
    expect(Buffer.concat(views).toString()).to.equal('contents');

    const revoked = await owner.move(bufferId, true);
    steps.push('moved');
    expect(revoked).to.deep.equal({ notified: 1, fenced: 0 });
    expect(steps).to.deep.equal([`hook: buffer ${bufferId}, mapped=false`, 'hook done', 'moved']);
    expect(importer.mapped).to.equal(false);
    expect(importer.views(0, 1, [])).to.equal(false);
    const error = await rejection(importer.read(0, 1));
    expect(error).to.be.instanceOf(ErrnoError).with.property('errno', 'ENODEV');
    const buffer = (await nic.bufInfo()).find((b) => b.bufferId === bufferId)!;
    expect(buffer.revoked).to.equal(true);
    expect(buffer.attachments.map((a) => a.mapped)).to.deep.equal([false]);

    const restored = await owner.move(bufferId, false);
    expect(restored.fenced).to.equal(0);
    expect((await importer.read(0, 12)).toString()).to.equal('bar contents');
    expect((await importer.map()).generation > info.generation).to.equal(true);
    await importer.detach();
  });

  it('does not install a map answer that a move_notify overtook, and maps again', async () => {
    const { memory, bufferId, fd } = await exportRegion('bar-d');
    memory.write(0, Buffer.from('fresh bytes'));
    // A slow importer keeps the move (and the reservation lock) going for a while.
    const slow = await holder.importDmaBuf({ fd, importerBdf: '0000:03:00.0', onMoveNotify: () => new Promise((resolve) => setTimeout(resolve, 300)) });
    const importer = await nic.importDmaBuf({ fd, holderPid: holder.pid, importerBdf: '0000:02:00.0' });
    const before = (await importer.map()).generation;
    await owner.move(bufferId, true);
    // The fault below starts before the un-revoke's notice reaches the importer
    // and is answered after it: the registry maps it once the move is done,
    // but the importer cannot tell that answer from a stale one, drops it,
    // and faults again (giving the registry's mapping back first: EBUSY).
    const moving = owner.move(bufferId, false);
    const read = importer.read(0, 11);
    expect((await read).toString()).to.equal('fresh bytes');
    expect(await moving).to.deep.equal({ notified: 2, fenced: 0 });
    // Two maps since: the dropped answer and the installed one.
    expect((await importer.map()).generation - before).to.equal(2n);
    await Promise.all([slow.detach(), importer.detach()]);
  });

  it('reports a throwing hook as the session\'s error event and acks all the same', async () => {
    const { bufferId, fd } = await exportRegion('bar-e');
    const importer = await nic.importDmaBuf({
      fd,
      holderPid: holder.pid,
      importerBdf: '0000:02:00.0',
      onMoveNotify: () => {
        throw new Error('driver bug');
      },
    });
    await importer.map();
    const errors: unknown[] = [];
    const off = nic.on('error', (error) => errors.push(error));
    try {
      expect(await owner.move(bufferId, true)).to.deep.equal({ notified: 1, fenced: 0 });
      expect(errors.map((e) => (e as Error).message)).to.deep.equal(['driver bug']);
    } finally {
      off();
      await importer.detach();
    }
  });

  it('fence: an importer that never acks is fenced after the deadline and the exporter moves the memory', async () => {
    const { memory, bufferId, fd } = await exportRegion('bar-b');
    memory.write(0, Buffer.from('precious'));
    const notices: MoveNotice[] = [];
    const frozen = await nic.importDmaBuf({ fd, holderPid: holder.pid, importerBdf: '0000:02:00.0', autoAck: false, onMoveNotify: (n) => void notices.push(n) });
    const healthy = await holder.importDmaBuf({ fd, importerBdf: '0000:03:00.0' });
    expect((await frozen.read(0, 8)).toString()).to.equal('precious');
    expect((await healthy.read(0, 8)).toString()).to.equal('precious');
    // What a frozen process's device would still DMA into: the old segment.
    const stale = memory.views(0, 8)[0]!;

    const started = Date.now();
    expect(await owner.move(bufferId, true)).to.deep.equal({ notified: 2, fenced: 1 });
    expect(Date.now() - started).to.be.at.least(ACK_TIMEOUT_MS - 50);
    expect(notices.map((n) => n.timeoutMs)).to.deep.equal([ACK_TIMEOUT_MS]);
    await eventually('the fence notice', () => frozen.state === 'fenced');
    const error = await rejection(frozen.read(0, 1));
    expect(error).to.be.instanceOf(ErrnoError).with.property('errno', 'ENODEV');
    expect((error as Error).message).to.include('fenced');
    expect(await rejection(frozen.ackMoveNotify(notices[0]!))).to.be.instanceOf(ErrnoError).with.property('errno', 'ENODEV');

    // The memory moved: fresh segments hold the bytes, the old file is gone,
    // and the stale mapping writes into an orphan nobody reads.
    const moved = exporter.memoryOf('bar-b');
    expect(moved.prefix).to.equal('bar-b-fence1');
    expect(fs.existsSync(path.join(registry!.shmDir, 'bar-b.0'))).to.equal(false);
    stale.write('SCRIBBLE');
    expect(moved.read(0, 8).toString()).to.equal('precious');
    const buffer = (await nic.bufInfo()).find((b) => b.bufferId === bufferId)!;
    expect(buffer.attachments.map((a) => a.attachmentId)).to.deep.equal([healthy.attachmentId]);

    // The importer that acked maps the new segments once the buffer is back.
    await owner.move(bufferId, false);
    expect((await healthy.read(0, 8)).toString()).to.equal('precious');
    expect((await healthy.map()).extents.map((e) => e.segment)).to.deep.equal(['bar-b-fence1.0']);

    await frozen.detach();
    expect(frozen.state).to.equal('detached');
    await healthy.detach();
  });

  it('release: once the last fd and attachment are gone the exporter destroys the region', async () => {
    const { bufferId, fd } = await exportRegion('bar-c');
    const importer = await nic.importDmaBuf({ fd, holderPid: holder.pid, importerBdf: '0000:02:00.0' });
    await importer.write(0, Buffer.from('x'));
    await holder.closeFd(fd);
    expect(fs.existsSync(path.join(registry!.shmDir, 'bar-c.0'))).to.equal(true);
    await importer.detach();
    await eventually('the region to be destroyed', () => !fs.existsSync(path.join(registry!.shmDir, 'bar-c.0')));
    expect((await nic.bufInfo()).some((b) => b.bufferId === bufferId)).to.equal(false);
    expect(() => exporter.memoryOf('bar-c')).to.throw(ErrnoError);
  });

  it('fails an op the exporter refuses with its errno, and an attach to a revoked buffer with ENODEV', async () => {
    const released: string[] = [];
    const refusing = await OwnerSession.open(registry!.address, {
      credential: platformSecretsOf(registry!.shmDir).platformToken,
      name: 'refusing-exporter',
      shmDir: registry!.shmDir,
      ops: {
        attach: (call) => {
          if (call.importerBdf === '0000:66:00.0') throw new ErrnoError('EPERM', `${call.importerBdf} may not attach`);
        },
        map: () => {
          throw new Error('a bug in the exporter');
        },
        release: (call) => void released.push(`${call.fileId} ${call.handle}`),
        fence: () => undefined,
      },
    });
    try {
      const file = await refusing.createFile(holder.pid, 'ctx-1');
      const resolved = await holder.resolveFd(file.fd);
      expect([resolved.kind, resolved.owner, resolved.handle, resolved.fileId]).to.deep.equal([dmabuf.FileKind.FILE_KIND_OWNED, 'refusing-exporter', 'ctx-1', file.fileId]);
      await holder.closeFd(file.fd);
      await eventually('the file release', () => released.length > 0);
      expect(released).to.deep.equal([`${file.fileId} ctx-1`]);

      const { fd } = await refusing.exportDmaBuf({ pid: holder.pid, size: SIZE, handle: 'nothing' });
      expect(errnoOf(await rejection(holder.importDmaBuf({ fd, importerBdf: '0000:66:00.0' })))).to.equal('EPERM');
      const importer = await holder.importDmaBuf({ fd, importerBdf: '0000:02:00.0' });
      expect(await rejection(importer.read(0, 1))).to.be.instanceOf(ErrnoError).with.property('errno', 'EIO');
      await importer.detach();

      // vfio_pci_dma_buf_attach() refuses a revoked buffer.
      const revoked = await owner.exportDmaBuf({ pid: holder.pid, size: SIZE, handle: 'dark', revoked: true });
      expect(errnoOf(await rejection(holder.importDmaBuf({ fd: revoked.fd, importerBdf: '0000:02:00.0' })))).to.equal('ENODEV');
    } finally {
      await refusing.close();
    }
  });

  it('tells an owner with fdClosed of a close its file outlives, and CloseFd returns only after its answer', async () => {
    const closed: string[] = [];
    const caching = await OwnerSession.open(registry!.address, {
      credential: platformSecretsOf(registry!.shmDir).platformToken,
      name: 'caching-owner',
      shmDir: registry!.shmDir,
      ops: {
        map: () => [],
        release: () => undefined,
        fence: () => undefined,
        fdClosed: async (call) => {
          await new Promise((resolve) => setTimeout(resolve, 50));
          closed.push(`${call.pid}:${call.fd} ${call.fileId} ${call.handle}`);
        },
      },
    });
    try {
      const file = await caching.createFile(holder.pid, 'dev-1');
      const dup = await holder.dupFd(file.fd);
      await holder.closeFd(dup);
      expect(closed).to.deep.equal([`${holder.pid}:${dup} ${file.fileId} dev-1`]);
      await holder.closeFd(file.fd);
    } finally {
      await caching.close();
    }
  });

  it('closes an fd of an owner without fdClosed as before', async () => {
    const file = await owner.createFile(holder.pid, 'plain-1');
    const dup = await holder.dupFd(file.fd);
    await holder.closeFd(dup);
    await holder.closeFd(file.fd);
    expect(errnoOf(await rejection(holder.resolveFd(file.fd)))).to.equal('EBADF');
  });

  it('never sends the optional ops an owner declares absent, and refuses declaring a mandatory one absent (EINVAL)', async () => {
    const client = new dmabuf.DmaBufRegistryServiceClient(registry!.address, credentials.createInsecure(), {
      interceptors: [bearerInterceptor(platformSecretsOf(registry!.shmDir).platformToken)],
    });
    const shm = { id: shmIdentity(registry!.shmDir) };
    const { OWNER_OP_ATTACH, OWNER_OP_DETACH, OWNER_OP_PIN, OWNER_OP_UNPIN, OWNER_OP_UNMAP, OWNER_OP_MAP } = dmabuf.OwnerOp;
    try {
      const refused = client.openOwnerSession();
      const failure = new Promise<unknown>((resolve) => refused.on('error', resolve).on('data', () => undefined));
      refused.write({ request: { $case: 'register', value: { name: 'no-map', shm, notifyFdClosed: false, absentOps: [OWNER_OP_MAP] } } });
      expect(errnoOf(await failure)).to.equal('EINVAL');

      // A lean owner: only map (and release) reach it; an import maps, unmaps and detaches.
      const memory = SharedMemory.create(store, 'lean-1', SIZE);
      exporter.addBuffer('lean-1', memory, DMA_BASE);
      const lean = client.openOwnerSession();
      const calls: dmabuf.OwnerOp[] = [];
      let exported: (value: dmabuf.DmaBufExported) => void = () => undefined;
      const answered = new Promise<dmabuf.DmaBufExported>((resolve) => (exported = resolve));
      lean.on('error', () => undefined).on('data', (message: dmabuf.OpenOwnerSessionResponse) => {
        const response = message.response;
        if (response?.$case === 'exported') exported(response.value);
        if (response?.$case !== 'call') return;
        const call = response.value;
        calls.push(call.op);
        void (async () => {
          const extents = call.op === OWNER_OP_MAP ? [...(await exporter.map({ handle: 'lean-1' } as OwnerCallInfo))] : [];
          lean.write({ request: { $case: 'reply', value: { callId: call.callId, errno: '', detail: '', extents } } });
        })();
      });
      lean.write({ request: { $case: 'register', value: { name: 'lean', shm, notifyFdClosed: false, absentOps: [OWNER_OP_ATTACH, OWNER_OP_DETACH, OWNER_OP_PIN, OWNER_OP_UNPIN, OWNER_OP_UNMAP] } } });
      const exportRequest = { pid: holder.pid, size: BigInt(SIZE), openFlags: 2, revoked: false, cpuAccess: false, providerBdf: '', allowPin: false, requirePeer2peer: false, handle: 'lean-1' };
      lean.write({ request: { $case: 'export', value: { requestId: 1n, ...exportRequest } } });
      const { fd } = await answered;
      const importer = await nic.importDmaBuf({ fd, holderPid: holder.pid, importerBdf: '0000:02:00.0' });
      await importer.map();
      await importer.unmap();
      await importer.detach();
      expect(calls).to.deep.equal([OWNER_OP_MAP]);
      await holder.closeFd(fd);
      lean.end();
    } finally {
      client.close();
    }
  });
});
