import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'chai';
import { type DmaBufImporter, type MoveNotice, OwnerSession, RegistrySession } from '@p2p/dmabuf-client';
import { ErrnoError } from '@p2p/errno';
import { dmabuf } from '@p2p/proto';
import { SegmentStore, SharedMemory } from '@p2p/shm';
import { expectErrno, rpc } from '../harness/rpc';
import type { ServiceProcess } from '@p2p/testing';
import { tempShmDir, platformSecretsOf } from '@p2p/testing';
import {
  CountingExporter,
  errnoName,
  EventLog,
  eventually,
  HelperProcess,
  processState,
  rawClient,
  RawSession,
  registryState,
  rejection,
  segmentNames,
  startRegistry,
} from './fixtures';

const SIZE = 64 * 1024;
const PAGE = 4096;
const ACK_TIMEOUT_MS = 300;
const DMA_BASE = 0xf000_0000n;
const { EventKind } = dmabuf;

const fill = (byte: number, length = PAGE): Buffer => Buffer.alloc(length, byte);

/**
 * Fault injection against dmabuf-registry as its own process: importers and
 * exporters that die or freeze for real (child processes under SIGKILL and
 * SIGSTOP), the registry itself crashing, and bad input over gRPC. Every test
 * checks what a user would see: no byte lost, none written after a revoke,
 * each move completed once, and nothing left behind in bufinfo, the process
 * listing or the segment directory.
 */
describe('dmabuf-registry under faults (separate processes on loopback)', function () {
  this.timeout(20_000);

  let shmDir: string;
  let registry: ServiceProcess;
  let raw: dmabuf.DmaBufRegistryServiceClient;
  let events: EventLog;
  let helpers: HelperProcess[];
  let sessions: Array<RegistrySession | OwnerSession>;

  before(function () {
  });

  beforeEach(async () => {
    helpers = [];
    sessions = [];
    shmDir = tempShmDir();
    registry = await startRegistry(shmDir, ACK_TIMEOUT_MS);
    raw = rawClient(registry.address, shmDir);
    events = await EventLog.open(registry.address, shmDir);
  });

  afterEach(async () => {
    await Promise.all(helpers.map((helper) => helper.kill()));
    await Promise.all(sessions.map((session) => session.close()));
    events?.close();
    raw?.close();
    await registry?.stop('SIGKILL');
    fs.rmSync(shmDir, { recursive: true, force: true });
  });

  /** A process; a `platform` one (a NIC driver) may import from other processes' fd tables. */
  async function open(name: string, platform = false): Promise<RegistrySession> {
    const privilegedCredential = platform ? platformSecretsOf(shmDir).platformToken : undefined;
    const session = await RegistrySession.open(registry.address, { name, shmDir, privilegedCredential });
    sessions.push(session);
    return session;
  }

  async function openExporter(name: string): Promise<{ store: SegmentStore; exporter: CountingExporter; owner: OwnerSession }> {
    const store = new SegmentStore({ dir: shmDir });
    const exporter = new CountingExporter(store);
    const owner = await OwnerSession.open(registry.address, { credential: platformSecretsOf(shmDir).platformToken, name, shmDir, ops: exporter });
    sessions.push(owner);
    return { store, exporter, owner };
  }

  /** An importer process: its registry pid comes with its ready line. */
  async function spawnImporter(name: string): Promise<{ helper: HelperProcess; pid: number }> {
    const { helper, ready } = await HelperProcess.start('importer', [registry.address, shmDir, name]);
    helpers.push(helper);
    return { helper, pid: ready['pid'] as number };
  }

  /** Swaps the running registry for another one on the same directory, with fresh clients. */
  async function replaceRegistry(start: () => Promise<ServiceProcess>): Promise<void> {
    if (registry.child.exitCode === null && registry.child.signalCode === null) await registry.stop('SIGKILL');
    events.close();
    raw.close();
    registry = await start();
    raw = rawClient(registry.address, shmDir);
    events = await EventLog.open(registry.address, shmDir);
  }

  async function bufInfo(bufferId: bigint): Promise<dmabuf.BufInfo | undefined> {
    return (await registryState(raw)).buffers.find((b) => b.bufferId === bufferId);
  }

  async function processListed(pid: number): Promise<dmabuf.ProcessInfo | undefined> {
    return (await registryState(raw)).processes.processes.find((p) => p.pid === pid);
  }

  /**
   * Closes every process session and then every owner (an owner closed first
   * would be gone before its releases), then: no buffer, no process, no
   * owner but the heap, no segment file.
   */
  async function expectNothingLeft(): Promise<void> {
    await Promise.all(sessions.filter((s) => s instanceof RegistrySession).map((session) => session.close()));
    await eventually('every process to exit', async () => (await registryState(raw)).processes.processes.length === 0);
    await eventually('every buffer to be released', async () => (await registryState(raw)).buffers.length === 0);
    await Promise.all(sessions.filter((s) => s instanceof OwnerSession).map((session) => session.close()));
    await eventually('every owner to leave', async () => (await registryState(raw)).processes.owners.length === 1);
    const state = await registryState(raw);
    expect(state.buffers, 'bufinfo after every session closed').to.deep.equal([]);
    expect(state.processes.owners, 'live owners after every session closed').to.deep.equal(['system-heap']);
    expect(segmentNames(shmDir), 'segment files after every session closed').to.deep.equal([]);
  }

  it('an importer killed (SIGKILL) while mapped: its session ends, its fd and attachment go, the release comes once, when the holder closes', async () => {
    const { store, exporter, owner } = await openExporter('test-exporter');
    const holder = await open('holder');
    exporter.addBuffer('bar-kill', SharedMemory.create(store, 'bar-kill', SIZE), DMA_BASE);
    const { bufferId, fd } = await owner.exportDmaBuf({ pid: holder.pid, size: SIZE, handle: 'bar-kill', cpuAccess: true });
    await holder.cpuWrite(fd, 0, fill(0x11));

    const { helper, pid } = await spawnImporter('doomed-importer');
    const attached = await helper.ok(`attach ${await holder.sendFd(fd, pid)}`);
    expect(attached['bufferId']).to.equal(`${bufferId}`);
    const attachmentId = BigInt(attached['attachmentId'] as string);
    expect((await helper.ok('read 0 4'))['data']).to.equal('11111111');
    await helper.ok(`write ${PAGE} 0x22 ${PAGE}`);
    expect(await holder.cpuRead(fd, PAGE, PAGE)).to.deep.equal(fill(0x22));

    let buffer = (await bufInfo(bufferId))!;
    // The holder's fd, the importer's received fd, and its attachment.
    expect(buffer.refcount).to.equal(3);
    expect(buffer.attachments.map((a) => [a.attachmentId, a.importerPid, a.mapped])).to.deep.equal([[attachmentId, pid, true]]);
    expect((await processListed(pid))?.fds.map((f) => f.fileId)).to.deep.equal([bufferId]);

    await helper.kill();

    await events.waitFor(EventKind.EVENT_KIND_PROCESS_EXIT, { pid });
    expect(await processListed(pid), 'the dead importer in ListProcesses').to.equal(undefined);
    expect(events.of(EventKind.EVENT_KIND_DETACH, { attachmentId, pid })).to.have.length(1);
    expect(events.of(EventKind.EVENT_KIND_UNMAP, { attachmentId, pid })).to.have.length(1);
    buffer = (await bufInfo(bufferId))!;
    expect(buffer.refcount, 'refcount once the importer died').to.equal(1);
    expect(buffer.attachments).to.deep.equal([]);
    expect([buffer.revoked, buffer.orphaned]).to.deep.equal([false, false]);
    // Only the holder's fd is left: no release yet, and nothing it wrote is lost.
    expect(exporter.releases).to.deep.equal([]);
    expect(segmentNames(shmDir)).to.deep.equal(['bar-kill.0']);
    expect(await holder.cpuRead(fd, 0, 2 * PAGE)).to.deep.equal(Buffer.concat([fill(0x11), fill(0x22)]));

    await holder.closeFd(fd);
    await eventually('the release', () => exporter.releases.length > 0);
    expect(exporter.releases).to.deep.equal(['bar-kill']);
    await events.waitFor(EventKind.EVENT_KIND_RELEASE, { bufferId });
    expect(events.of(EventKind.EVENT_KIND_RELEASE, { bufferId })).to.have.length(1);
    expect(await bufInfo(bufferId)).to.equal(undefined);
    expect(segmentNames(shmDir)).to.deep.equal([]);
    expect((await processListed(holder.pid))?.fds).to.deep.equal([]);

    await expectNothingLeft();
    expect(exporter.releases, 'releases in all').to.deep.equal(['bar-kill']);
  });

  it('an importer frozen (SIGSTOP) through a revoke is fenced: the move returns after the ack timeout and its stale writes land nowhere', async () => {
    const { store, exporter, owner } = await openExporter('test-exporter');
    const holder = await open('holder');
    exporter.addBuffer('bar-frozen', SharedMemory.create(store, 'bar-frozen', SIZE), DMA_BASE);
    const { bufferId, fd } = await owner.exportDmaBuf({ pid: holder.pid, size: SIZE, handle: 'bar-frozen', cpuAccess: true });

    const healthy = await holder.importDmaBuf({ fd, importerBdf: '' });
    const { helper, pid } = await spawnImporter('frozen-importer');
    const attached = await helper.ok(`attach ${await holder.sendFd(fd, pid)}`);
    const frozenAttachment = BigInt(attached['attachmentId'] as string);
    expect(attached['segments']).to.deep.equal(['bar-frozen.0']);

    // Before the revoke both importers write: these bytes must survive everything below.
    await healthy.write(0, fill(0xa1));
    await helper.ok(`write ${PAGE} 0xb1 ${PAGE}`);
    const before = (await healthy.map()).generation;

    helper.signal('SIGSTOP');
    await eventually('the importer to be stopped', () => processState(helper.pid) === 'T');

    const started = Date.now();
    const moved = await owner.move(bufferId, true);
    const elapsed = Date.now() - started;
    expect(moved).to.deep.equal({ notified: 2, fenced: 1 });
    expect(elapsed, 'the move waits for the ack deadline').to.be.at.least(ACK_TIMEOUT_MS - 20);
    expect(elapsed, 'and not much longer').to.be.below(ACK_TIMEOUT_MS + 2000);

    // The registry's view: the frozen attachment is gone, the healthy one acked.
    const fence = await events.waitFor(EventKind.EVENT_KIND_FENCE, { attachmentId: frozenAttachment });
    expect([fence.bufferId, fence.pid]).to.deep.equal([bufferId, pid]);
    expect(events.of(EventKind.EVENT_KIND_FENCE)).to.have.length(1);
    expect(events.of(EventKind.EVENT_KIND_ACK, { attachmentId: healthy.attachmentId })).to.have.length(1);
    expect(exporter.fences).to.deep.equal(['bar-frozen']);
    expect(events.of(EventKind.EVENT_KIND_REVOKE, { bufferId })).to.have.length(1);
    const buffer = (await bufInfo(bufferId))!;
    expect(buffer.revoked).to.equal(true);
    expect(buffer.attachments.map((a) => [a.attachmentId, a.mapped])).to.deep.equal([[healthy.attachmentId, false]]);
    // The holder's fd, the frozen process's fd (it lives on), the healthy attachment.
    expect(buffer.refcount).to.equal(3);
    expect(await rejection(healthy.read(0, 1))).to.be.instanceOf(ErrnoError).with.property('errno', 'ENODEV');

    // It wakes up and writes: through the library (which may not have seen the
    // notices yet), and as its device would, through the old mapping.
    helper.signal('SIGCONT');
    const viaLibrary = await helper.command(`write ${3 * PAGE} 0xc1 ${PAGE}`);
    if (!viaLibrary.ok) expect(viaLibrary.errno, JSON.stringify(viaLibrary)).to.equal('ENODEV');
    await helper.ok(`dma ${4 * PAGE} 0xd1 ${PAGE}`);
    await eventually('the frozen importer to learn it was fenced', async () => (await helper.ok('state'))['state'] === 'fenced');
    expect((await helper.ok('state'))['mapped']).to.equal(false);
    const late = await helper.command(`write ${5 * PAGE} 0xe1 ${PAGE}`);
    expect([late.ok, late.errno]).to.deep.equal([false, 'ENODEV']);

    // The buffer's memory moved: none of that reached it, and the exporter still holds the early bytes.
    const memory = exporter.memoryOf('bar-frozen');
    expect(memory.prefix).to.equal('bar-frozen-fence1');
    expect(memory.read(0, 6 * PAGE)).to.deep.equal(Buffer.concat([fill(0xa1), fill(0xb1), Buffer.alloc(4 * PAGE)]));

    expect(await owner.move(bufferId, false)).to.deep.equal({ notified: 1, fenced: 0 });
    await events.waitFor(EventKind.EVENT_KIND_UNREVOKE, { bufferId });
    expect(events.of(EventKind.EVENT_KIND_REVOKE, { bufferId })).to.have.length(1);
    expect(events.of(EventKind.EVENT_KIND_UNREVOKE, { bufferId })).to.have.length(1);
    const remapped = await healthy.map();
    expect(remapped.generation > before).to.equal(true);
    expect(remapped.extents.map((e) => e.segment)).to.deep.equal(['bar-frozen-fence1.0']);
    expect(await healthy.read(0, SIZE)).to.deep.equal(Buffer.concat([fill(0xa1), fill(0xb1), Buffer.alloc(SIZE - 2 * PAGE)]));
    expect(await holder.cpuRead(fd, 0, 2 * PAGE)).to.deep.equal(Buffer.concat([fill(0xa1), fill(0xb1)]));

    // The fenced process still holds its fd; its exit closes it.
    expect((await processListed(pid))?.fds.map((f) => f.fileId)).to.deep.equal([bufferId]);
    await helper.ok('exit');
    await helper.exited;
    await events.waitFor(EventKind.EVENT_KIND_PROCESS_EXIT, { pid });
    await healthy.detach();
    expect(exporter.releases).to.deep.equal([]);
    await holder.closeFd(fd);
    await eventually('the release', () => exporter.releases.length > 0);
    expect(exporter.releases).to.deep.equal(['bar-frozen']);
    expect(segmentNames(shmDir)).to.deep.equal([]);
    await expectNothingLeft();
    expect(exporter.releases, 'releases in all').to.deep.equal(['bar-frozen']);
  });

  it('an exporter killed (SIGKILL) with live importers: they are revoked, the buffer is orphaned, the fds stay closable and the last close releases nothing at the dead owner', async () => {
    const { helper: exporterProcess } = await HelperProcess.start('exporter', [registry.address, shmDir, 'vfio-pci']);
    helpers.push(exporterProcess);
    const holder = await open('holder');
    const nic = await open('rdma-nic');
    const exported = await exporterProcess.ok(`export bar-dead ${SIZE} ${holder.pid} 0x5a`);
    const bufferId = BigInt(exported['bufferId'] as string);
    const fd = exported['fd'] as number;
    const deadSegments = exported['segments'] as string[];
    const nicFd = await nic.receiveFd(await holder.sendFd(fd, nic.pid));

    const notices: Array<[string, MoveNotice]> = [];
    const importers: DmaBufImporter[] = [
      await holder.importDmaBuf({ fd, importerBdf: '', onMoveNotify: (n) => void notices.push(['holder', n]) }),
      await nic.importDmaBuf({ fd: nicFd, importerBdf: '', onMoveNotify: (n) => void notices.push(['nic', n]) }),
    ];
    for (const importer of importers) expect(await importer.read(0, PAGE)).to.deep.equal(fill(0x5a));
    expect((await registryState(raw)).processes.owners).to.include('vfio-pci');

    await exporterProcess.kill();

    await eventually('both importers to get move_notify', () => notices.length === 2);
    expect(notices.map(([who, n]) => [who, n.bufferId]).sort()).to.deep.equal([['holder', bufferId], ['nic', bufferId]]);
    expect(importers.map((i) => i.mapped)).to.deep.equal([false, false]);
    await events.waitFor(EventKind.EVENT_KIND_REVOKE, { bufferId });
    await eventually('both acks', () => events.of(EventKind.EVENT_KIND_ACK, { bufferId }).length === 2);
    expect(events.of(EventKind.EVENT_KIND_FENCE)).to.deep.equal([]);
    expect((await registryState(raw)).processes.owners).to.not.include('vfio-pci');
    // After the acks the registry unmaps on the importers' behalf.
    await eventually('both unmaps', () => events.of(EventKind.EVENT_KIND_UNMAP, { bufferId }).length === 2);
    let buffer = (await bufInfo(bufferId))!;
    expect([buffer.revoked, buffer.orphaned]).to.deep.equal([true, true]);
    expect(buffer.attachments.map((a) => a.mapped)).to.deep.equal([false, false]);

    // Gone for good: no map, no new attach, no CPU access.
    for (const importer of importers) {
      expect(await rejection(importer.read(0, 1))).to.be.instanceOf(ErrnoError).with.property('errno', 'ENODEV');
      expect(await rejection(importer.map())).to.be.instanceOf(ErrnoError).with.property('errno', 'ENODEV');
    }
    expect(errnoName(await rejection(nic.importDmaBuf({ fd: nicFd, importerBdf: '' })))).to.equal('ENODEV');
    expect(errnoName(await rejection(holder.cpuRead(fd, 0, 1)))).to.equal('ENODEV');

    // A new vfio-pci registers under the same name: nothing of the dead one's may reach it.
    const successor = await openExporter('vfio-pci');

    // The fds live on and close normally; the last one releases the buffer.
    for (const importer of importers) await importer.detach();
    await holder.closeFd(fd);
    buffer = (await bufInfo(bufferId))!;
    expect([buffer.refcount, buffer.attachments.length]).to.deep.equal([1, 0]);
    await nic.closeFd(nicFd);
    expect(await bufInfo(bufferId)).to.equal(undefined);
    await events.waitFor(EventKind.EVENT_KIND_RELEASE, { bufferId });
    const releases = events.of(EventKind.EVENT_KIND_RELEASE, { bufferId });
    expect(releases).to.have.length(1);
    expect(releases[0]!.detail).to.include('release not sent');
    expect(successor.exporter.releases).to.deep.equal([]);

    // The registry left nothing of its own; the dead exporter's region files are its own to reclaim.
    expect(segmentNames(shmDir).filter((name) => !deadSegments.includes(name))).to.deep.equal([]);
    for (const name of deadSegments) fs.rmSync(path.join(shmDir, name), { force: true });
    await expectNothingLeft();
    expect(successor.exporter.releases).to.deep.equal([]);
  });

  it('the registry killed (SIGKILL) and restarted on the same port and directory: sessions are lost and fail safe, old pids and heap segments are gone', async () => {
    const { store, exporter, owner } = await openExporter('vfio-pci');
    const holder = await open('holder');
    const importerSession = await open('importer', true);
    const { fd, bufferId } = await holder.heapAllocate(SIZE);
    await holder.cpuWrite(fd, 0, fill(0x77));
    const importer = await importerSession.importDmaBuf({ fd, holderPid: holder.pid, importerBdf: '' });
    expect(await importer.read(0, PAGE)).to.deep.equal(fill(0x77));
    // Device memory of an exporter: its own, not the registry's.
    const bar = SharedMemory.create(store, 'bar-survivor', SIZE);
    bar.write(0, fill(0x99));
    exporter.addBuffer('bar-survivor', bar, DMA_BASE);
    await owner.exportDmaBuf({ pid: holder.pid, size: SIZE, handle: 'bar-survivor', cpuAccess: true });
    const heapSegments = segmentNames(shmDir).filter((name) => name.startsWith('dmabuf-heap.'));
    expect(heapSegments).to.have.length(1);
    expect(heapSegments[0]).to.match(new RegExp(`^dmabuf-heap\\.${holder.incarnation}\\.${bufferId}\\.`));
    expect(segmentNames(shmDir)).to.deep.equal(['bar-survivor.0', ...heapSegments]);

    const lost = (session: RegistrySession): Promise<{ errno: string; mapped: boolean }> =>
      new Promise((resolve) => session.on('lost', (error) => resolve({ errno: error.errno, mapped: importer.mapped })));
    const holderLost = lost(holder);
    const importerLost = lost(importerSession);
    const ownerLost = new Promise<string>((resolve) => owner.on('lost', (error) => resolve(error.errno)));
    const port = registry.port;
    await registry.stop('SIGKILL');

    // Fail safe: the mapping was dropped before 'lost', and everything refuses with ESHUTDOWN.
    expect(await importerLost).to.deep.equal({ errno: 'ESHUTDOWN', mapped: false });
    expect((await holderLost).errno).to.equal('ESHUTDOWN');
    expect(await ownerLost).to.equal('ESHUTDOWN');
    expect(importer.state).to.equal('session-ended');
    expect(await rejection(importer.read(0, 1))).to.be.instanceOf(ErrnoError).with.property('errno', 'ESHUTDOWN');
    expect(await rejection(importer.write(0, fill(0x66)))).to.be.instanceOf(ErrnoError).with.property('errno', 'ESHUTDOWN');
    expect(await rejection(holder.cpuRead(fd, 0, 1))).to.be.instanceOf(ErrnoError).with.property('errno', 'ESHUTDOWN');
    expect(await rejection(owner.move(bufferId, true))).to.be.instanceOf(ErrnoError).with.property('errno', 'ESHUTDOWN');
    // Nobody unlinked the heap segments of the dead incarnation yet.
    expect(segmentNames(shmDir)).to.deep.equal(['bar-survivor.0', ...heapSegments]);

    await replaceRegistry(() => startRegistry(shmDir, ACK_TIMEOUT_MS, port));

    // Nothing of the old incarnation: its pids, fds, buffers and heap segments are gone.
    for (const pid of [holder.pid, importerSession.pid]) {
      await expectErrno(rpc((cb) => raw.dupFd({ pid, fd }, cb)), 'ESRCH');
      await expectErrno(rpc((cb) => raw.cpuRead({ pid, fd, offset: 0n, length: 1n }, cb)), 'ESRCH');
    }
    await expectErrno(rpc((cb) => raw.attach({ pid: holder.pid, fd, importerPid: importerSession.pid, importerBdf: '', dynamic: true, peer2peer: true }, cb)), 'ESRCH');
    const state = await registryState(raw);
    expect(state.buffers).to.deep.equal([]);
    expect(state.processes.processes).to.deep.equal([]);
    expect(state.processes.owners).to.deep.equal(['system-heap']);
    // The heap's segments went with its incarnation; the exporter's device memory is not the registry's to delete.
    expect(segmentNames(shmDir), 'segments after the restart').to.deep.equal(['bar-survivor.0']);

    const fresh = await open('after-restart');
    expect(fresh.incarnation).to.not.equal(holder.incarnation);
    expect(errnoName(await rejection(fresh.cpuRead(fd, 0, 1)))).to.equal('EBADF');
    // A heap buffer must be allocated again; the old bytes do not come back.
    const again = await fresh.heapAllocate(SIZE);
    const newHeap = segmentNames(shmDir).filter((name) => name.startsWith('dmabuf-heap.'));
    expect(newHeap).to.have.length(1);
    expect(newHeap[0]).to.match(new RegExp(`^dmabuf-heap\\.${fresh.incarnation}\\.`));
    expect(await fresh.cpuRead(again.fd, 0, PAGE)).to.deep.equal(Buffer.alloc(PAGE));
    await fresh.closeFd(again.fd);

    // The exporter registers again and exports its memory anew: not a byte of it was lost.
    exporter.memoryOf('bar-survivor').close();
    const reborn = await openExporter('vfio-pci');
    expect(reborn.owner.incarnation).to.equal(fresh.incarnation);
    reborn.exporter.addBuffer('bar-survivor', SharedMemory.open(reborn.store, 'bar-survivor', SIZE), DMA_BASE);
    const reexported = await reborn.owner.exportDmaBuf({ pid: fresh.pid, size: SIZE, handle: 'bar-survivor', cpuAccess: true });
    expect(await fresh.cpuRead(reexported.fd, 0, PAGE)).to.deep.equal(fill(0x99));
    await fresh.closeFd(reexported.fd);
    await eventually('the release', () => reborn.exporter.releases.length > 0);
    expect(reborn.exporter.releases).to.deep.equal(['bar-survivor']);
    expect(exporter.releases, 'releases sent to the owner of the dead incarnation').to.deep.equal([]);
    await expectNothingLeft();
  });

  it('an importer killed in the middle of a revoke: the move completes once, at its death rather than the ack deadline', async () => {
    // A long deadline, so that only the importer's death can end the wait early.
    const deadlineMs = 5000;
    await replaceRegistry(() => startRegistry(shmDir, deadlineMs));

    const { store, exporter, owner } = await openExporter('test-exporter');
    const holder = await open('holder');
    exporter.addBuffer('bar-dying', SharedMemory.create(store, 'bar-dying', SIZE), DMA_BASE);
    const { bufferId, fd } = await owner.exportDmaBuf({ pid: holder.pid, size: SIZE, handle: 'bar-dying', cpuAccess: true });
    const { helper, pid } = await spawnImporter('dying-importer');
    const attachmentId = BigInt((await helper.ok(`attach ${await holder.sendFd(fd, pid)}`))['attachmentId'] as string);
    await helper.ok(`write 0 0x42 ${PAGE}`);

    helper.signal('SIGSTOP');
    await eventually('the importer to be stopped', () => processState(helper.pid) === 'T');
    const started = Date.now();
    const moving = owner.move(bufferId, true);
    await events.waitFor(EventKind.EVENT_KIND_MOVE_NOTIFY, { attachmentId });
    await helper.kill();
    const moved = await moving;
    const elapsed = Date.now() - started;

    expect(moved).to.deep.equal({ notified: 1, fenced: 0 });
    expect(elapsed, 'the move ends with the importer, not at the deadline').to.be.below(deadlineMs / 2);
    await events.waitFor(EventKind.EVENT_KIND_PROCESS_EXIT, { pid });
    const acks = events.of(EventKind.EVENT_KIND_ACK, { attachmentId });
    expect(acks).to.have.length(1);
    expect(acks[0]!.detail).to.include('exit');
    expect(events.of(EventKind.EVENT_KIND_FENCE)).to.deep.equal([]);
    expect(events.of(EventKind.EVENT_KIND_REVOKE, { bufferId })).to.have.length(1);
    expect(exporter.fences).to.deep.equal([]);
    const buffer = (await bufInfo(bufferId))!;
    expect([buffer.revoked, buffer.refcount, buffer.attachments.length]).to.deep.equal([true, 1, 0]);
    expect(await processListed(pid)).to.equal(undefined);

    // Nothing it wrote before the revoke is lost.
    expect(await owner.move(bufferId, false)).to.deep.equal({ notified: 0, fenced: 0 });
    expect(await holder.cpuRead(fd, 0, PAGE)).to.deep.equal(fill(0x42));
    await holder.closeFd(fd);
    await eventually('the release', () => exporter.releases.length > 0);
    expect(exporter.releases).to.deep.equal(['bar-dying']);
    await expectNothingLeft();
    expect(exporter.releases, 'releases in all').to.deep.equal(['bar-dying']);
  });

  it('bad input over gRPC fails with its errno and changes nothing', async () => {
    const { store, exporter, owner } = await openExporter('test-exporter');
    const a = await open('a');
    const b = await open('b');
    const { fd: heapA } = await a.heapAllocate(SIZE);
    const { fd: heapB } = await b.heapAllocate(SIZE);
    exporter.addBuffer('no-cpu', SharedMemory.create(store, 'no-cpu', SIZE), DMA_BASE);
    exporter.addBuffer('p2p-only', SharedMemory.create(store, 'p2p-only', SIZE), DMA_BASE + BigInt(SIZE));
    const noCpu = await owner.exportDmaBuf({ pid: b.pid, size: SIZE, handle: 'no-cpu', cpuAccess: false });
    const p2pOnly = await owner.exportDmaBuf({ pid: b.pid, size: SIZE, handle: 'p2p-only', requirePeer2peer: true, allowPin: true });
    const foreignAttachment = await b.importDmaBuf({ fd: heapB, importerBdf: '' });
    await foreignAttachment.map();
    const byHand = await RawSession.open(raw, 'by-hand');

    const listedA = (await processListed(a.pid))!.fds.map((f) => f.fd);
    expect(listedA).to.deep.equal([heapA]);
    const foreignFd = p2pOnly.fd;
    expect(listedA).to.not.include(foreignFd);
    expect(listedA).to.not.include(noCpu.fd);

    const before = await registryState(raw);
    const eventsBefore = events.events.length;

    // Unknown fd, and another process's fd number.
    await expectErrno(rpc((cb) => raw.closeFd({ pid: a.pid, fd: 99 }, cb)), 'EBADF');
    await expectErrno(rpc((cb) => raw.dupFd({ pid: a.pid, fd: 99 }, cb)), 'EBADF');
    await expectErrno(rpc((cb) => raw.cpuRead({ pid: a.pid, fd: 99, offset: 0n, length: 1n }, cb)), 'EBADF');
    await expectErrno(rpc((cb) => raw.closeFd({ pid: a.pid, fd: foreignFd }, cb)), 'EBADF');
    await expectErrno(rpc((cb) => raw.sendFd({ pid: a.pid, fd: foreignFd, toPid: b.pid }, cb)), 'EBADF');
    await expectErrno(rpc((cb) => raw.attach({ pid: a.pid, fd: foreignFd, importerPid: a.pid, importerBdf: '', dynamic: true, peer2peer: true }, cb)), 'EBADF');
    await expectErrno(rpc((cb) => raw.mmapFd({ pid: a.pid, fd: noCpu.fd, offset: 0n, length: BigInt(PAGE) }, cb)), 'EBADF');
    // An unknown pid.
    await expectErrno(rpc((cb) => raw.closeFd({ pid: 999_999, fd: heapA }, cb)), 'ESRCH');

    // Double close.
    const dup = (await rpc<dmabuf.DupFdResponse>((cb) => raw.dupFd({ pid: a.pid, fd: heapA }, cb))).fd;
    await rpc((cb) => raw.closeFd({ pid: a.pid, fd: dup }, cb));
    await expectErrno(rpc((cb) => raw.closeFd({ pid: a.pid, fd: dup }, cb)), 'EBADF');

    // Map without attach, and another process's attachment.
    await expectErrno(rpc((cb) => raw.mapAttachment({ pid: a.pid, attachmentId: 424_242n }, cb)), 'EINVAL');
    await expectErrno(rpc((cb) => raw.mapAttachment({ pid: a.pid, attachmentId: foreignAttachment.attachmentId }, cb)), 'EINVAL');
    await expectErrno(rpc((cb) => raw.unmapAttachment({ pid: a.pid, attachmentId: foreignAttachment.attachmentId }, cb)), 'EINVAL');
    await expectErrno(rpc((cb) => raw.detach({ pid: a.pid, attachmentId: foreignAttachment.attachmentId }, cb)), 'EINVAL');

    // Unmap twice, detach twice.
    const attached = await rpc<dmabuf.AttachResponse>((cb) =>
      raw.attach({ pid: a.pid, fd: heapA, importerPid: a.pid, importerBdf: '', dynamic: true, peer2peer: true, shm: { id: a.shmId } }, cb),
    );
    const attachmentId = attached.attachmentId;
    await rpc((cb) => raw.mapAttachment({ pid: a.pid, attachmentId }, cb));
    await expectErrno(rpc((cb) => raw.mapAttachment({ pid: a.pid, attachmentId }, cb)), 'EBUSY');
    await rpc((cb) => raw.unmapAttachment({ pid: a.pid, attachmentId }, cb));
    await expectErrno(rpc((cb) => raw.unmapAttachment({ pid: a.pid, attachmentId }, cb)), 'EINVAL');
    await rpc((cb) => raw.detach({ pid: a.pid, attachmentId }, cb));
    await expectErrno(rpc((cb) => raw.detach({ pid: a.pid, attachmentId }, cb)), 'EINVAL');
    await expectErrno(rpc((cb) => raw.mapAttachment({ pid: a.pid, attachmentId }, cb)), 'EINVAL');

    // An ack nobody asked for: as a call, and on the session stream (answered there).
    await expectErrno(rpc((cb) => raw.ackMoveNotify({ pid: a.pid, notificationId: 31_337n }, cb)), 'ENOENT');
    byHand.send({ request: { $case: 'ack', value: { notificationId: 31_338n } } });
    const refused = (await byHand.next()).response;
    expect(refused?.$case).to.equal('ackRejected');
    if (refused?.$case === 'ackRejected') expect([refused.value.notificationId, refused.value.errno]).to.deep.equal([31_338n, 'ENOENT']);

    // Tokens: used twice, redeemed by the wrong process (it stays valid), never issued.
    const token = (await rpc<dmabuf.SendFdResponse>((cb) => raw.sendFd({ pid: a.pid, fd: heapA, toPid: b.pid }, cb))).token;
    const received = (await rpc<dmabuf.ReceiveFdResponse>((cb) => raw.receiveFd({ pid: b.pid, token }, cb))).fd;
    await expectErrno(rpc((cb) => raw.receiveFd({ pid: b.pid, token }, cb)), 'ENOENT');
    await rpc((cb) => raw.closeFd({ pid: b.pid, fd: received }, cb));
    const addressed = (await rpc<dmabuf.SendFdResponse>((cb) => raw.sendFd({ pid: a.pid, fd: heapA, toPid: b.pid }, cb))).token;
    await expectErrno(rpc((cb) => raw.receiveFd({ pid: a.pid, token: addressed }, cb)), 'EPERM');
    const late = (await rpc<dmabuf.ReceiveFdResponse>((cb) => raw.receiveFd({ pid: b.pid, token: addressed }, cb))).fd;
    await rpc((cb) => raw.closeFd({ pid: b.pid, fd: late }, cb));
    await expectErrno(rpc((cb) => raw.receiveFd({ pid: b.pid, token: 'no-such-token' }, cb)), 'ENOENT');

    // Heap: size 0, and fd flags the heap refuses.
    await expectErrno(rpc((cb) => raw.heapAllocate({ pid: a.pid, size: 0n, openFlags: 2 }, cb)), 'EINVAL');
    await expectErrno(rpc((cb) => raw.heapAllocate({ pid: a.pid, size: BigInt(SIZE), openFlags: 0o4002 }, cb)), 'EINVAL');

    // CPU access to a buffer exported without cpu_access.
    await expectErrno(rpc((cb) => raw.cpuRead({ pid: b.pid, fd: noCpu.fd, offset: 0n, length: 1n }, cb)), 'EINVAL');
    await expectErrno(rpc((cb) => raw.cpuWrite({ pid: b.pid, fd: noCpu.fd, offset: 0n, data: Buffer.from('x') }, cb)), 'EINVAL');
    await expectErrno(rpc((cb) => raw.mmapFd({ pid: b.pid, fd: noCpu.fd, offset: 0n, length: BigInt(PAGE) }, cb)), 'EINVAL');

    // A require_peer2peer buffer: static importers (even pinnable ones) and non-P2P dynamic ones are refused.
    await expectErrno(rpc((cb) => raw.attach({ pid: b.pid, fd: p2pOnly.fd, importerPid: b.pid, importerBdf: '0000:02:00.0', dynamic: false, peer2peer: true }, cb)), 'EOPNOTSUPP');
    await expectErrno(rpc((cb) => raw.attach({ pid: b.pid, fd: p2pOnly.fd, importerPid: b.pid, importerBdf: '0000:02:00.0', dynamic: true, peer2peer: false }, cb)), 'EOPNOTSUPP');

    // Every pid the gRPC API hands out comes with a session, i.e. a notifier, so
    // "dynamic attach without move_notify" (EINVAL) cannot be reached over the
    // wire; the nearest reachable case is an importer pid that does not exist.
    await expectErrno(rpc((cb) => raw.attach({ pid: a.pid, fd: heapA, importerPid: 999_999, importerBdf: '', dynamic: true, peer2peer: true }, cb)), 'ESRCH');

    // Events travel on their own stream: wait for the four the balanced successes must have left.
    await eventually('the events of the balanced calls', () => events.events.length - eventsBefore >= 4);
    const after = await registryState(raw);
    expect(after.buffers, 'bufinfo after the bad calls').to.deep.equal(before.buffers);
    expect(after.processes, 'processes after the bad calls').to.deep.equal(before.processes);
    // Only the balanced successes (dup/close, attach/map/unmap/detach, send/receive/close) left events.
    const kinds = events.events.slice(eventsBefore).map((e) => EventKind[e.kind]);
    expect(kinds).to.deep.equal(['EVENT_KIND_ATTACH', 'EVENT_KIND_MAP', 'EVENT_KIND_UNMAP', 'EVENT_KIND_DETACH']);
    expect(exporter.releases).to.deep.equal([]);

    await foreignAttachment.detach();
    byHand.close();
    await expectNothingLeft();
    expect(exporter.releases.sort()).to.deep.equal(['no-cpu', 'p2p-only']);
  });
});
