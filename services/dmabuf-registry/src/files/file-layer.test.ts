import { expect } from 'chai';
import { errno } from '@p2p/errno';
import { NIC, expectErrno, expectRejects, harness } from '../testing/harness';
import { O_CLOEXEC, O_RDONLY, O_RDWR } from './open-flags';

describe('Registry: processes, fds and file references', () => {
  it('numbers pids from 1 and fds from 3, lowest free first', () => {
    const { registry, owner } = harness();
    const a = registry.openProcess('a');
    const b = registry.openProcess('b');
    expect([a, b]).to.deep.equal([1, 2]);
    const f1 = registry.createFile('vfio-pci', a, '0000:03:00.0', O_RDWR);
    const f2 = owner.export(registry, a);
    expect([f1.fd, f2.fd]).to.deep.equal([3, 4]);
    expect(registry.dup(a, 3)).to.equal(5);
    expect(registry.createFile('vfio-pci', b, 'x', O_RDWR).fd).to.equal(3);
  });

  it('dup shares the file; close frees the lowest fd for reuse; closing twice is EBADF', async () => {
    const { registry, owner } = harness();
    const pid = registry.openProcess('a');
    const { bufferId, fd } = owner.export(registry, pid);
    const copy = registry.dup(pid, fd);
    expect(registry.resolveFd(pid, copy)).to.deep.equal({
      kind: 'dma-buf',
      fileId: bufferId,
      owner: 'vfio-pci',
      handle: 'bar-0',
      openFlags: O_RDWR | O_CLOEXEC,
    });
    expect(registry.bufInfo()[0]!.refcount).to.equal(2);
    await registry.close(pid, fd);
    await expectRejects(registry.close(pid, fd), 'EBADF');
    expect(registry.bufInfo()[0]!.refcount).to.equal(1);
    expect(registry.dup(pid, copy)).to.equal(3);
    expectErrno(() => registry.dup(pid, 42), 'EBADF');
    expectErrno(() => registry.resolveFd(pid, 0), 'EBADF');
    expectErrno(() => registry.dup(99, 3), 'ESRCH');
    expect(owner.calls).to.deep.equal([]);
  });

  it('an fd of another process is EBADF', async () => {
    const { registry, owner } = harness();
    const a = registry.openProcess('a');
    const b = registry.openProcess('b');
    const { fd } = owner.export(registry, a);
    await expectRejects(registry.close(b, fd), 'EBADF');
    expect(registry.resolveFd(a, fd).kind).to.equal('dma-buf');
  });

  it('releases a file exactly once, after the last fd and the last attachment', async () => {
    const h = harness();
    const { registry, owner } = h;
    const { pid } = h.process('spdk');
    const { bufferId, fd } = owner.export(registry, pid);
    const dup = registry.dup(pid, fd);
    const { attachmentId } = await registry.attach({ pid, fd, importerBdf: NIC, dynamic: true, peer2peer: true });
    await registry.close(pid, fd);
    await registry.close(pid, dup);
    expect(owner.calls.filter((c) => c.startsWith('release'))).to.deep.equal([]);
    expect(registry.bufInfo().map((b) => b.refcount)).to.deep.equal([1]);
    await registry.detach(pid, attachmentId);
    expect(owner.calls).to.deep.equal([`attach ${attachmentId}`, `detach ${attachmentId}`, `release ${bufferId}`]);
    expect(registry.bufInfo()).to.deep.equal([]);
    expect(h.kinds()).to.deep.equal(['EXPORT', 'ATTACH', 'DETACH', 'RELEASE']);
  });

  it('sends an fd as a one-time token that keeps the file alive in flight', async () => {
    const { registry, owner } = harness();
    const sender = registry.openProcess('sender');
    const receiver = registry.openProcess('receiver');
    const other = registry.openProcess('other');
    const { bufferId, fd } = owner.export(registry, sender);
    const token = registry.sendFd(sender, fd, receiver);
    await registry.close(sender, fd);
    expect(registry.bufInfo()).to.have.length(1);
    expect(registry.bufInfo()[0]!.refcount).to.equal(1);
    expect(owner.calls).to.deep.equal([]);

    expectErrno(() => registry.receiveFd(other, token), 'EPERM');
    expectErrno(() => registry.receiveFd(receiver, 'no-such-token'), 'ENOENT');
    const got = registry.receiveFd(receiver, token);
    expect(got).to.equal(3);
    expect(registry.resolveFd(receiver, got).fileId).to.equal(bufferId);
    expect(registry.bufInfo()[0]!.refcount).to.equal(1);
    expectErrno(() => registry.receiveFd(receiver, token), 'ENOENT');

    await registry.close(receiver, got);
    expect(owner.calls).to.deep.equal([`release ${bufferId}`]);
  });

  it('refuses to send to an unknown pid and an fd not held, changing nothing', () => {
    const { registry, owner } = harness();
    const pid = registry.openProcess('a');
    const { fd } = owner.export(registry, pid);
    const before = registry.bufInfo();
    expectErrno(() => registry.sendFd(pid, fd, 77), 'ESRCH');
    expectErrno(() => registry.sendFd(pid, 99, pid), 'EBADF');
    expect(registry.bufInfo()).to.deep.equal(before);
  });

  it('on exit closes every fd lowest first, detaches its attachments and drops its tokens', async () => {
    const h = harness();
    const { registry, owner } = h;
    const { pid } = h.process('rdma');
    const peer = registry.openProcess('peer');
    const a = owner.export(registry, pid, { handle: 'a' });
    const b = owner.export(registry, pid, { handle: 'b' });
    const c = owner.export(registry, pid, { handle: 'c' });
    const file = registry.createFile('vfio-pci', pid, 'device', O_RDWR);
    await registry.close(pid, a.fd);
    const aAgain = registry.dup(pid, b.fd); // fd 3 again, now b
    const { attachmentId } = await registry.attach({ pid, fd: c.fd, importerBdf: NIC, dynamic: true, peer2peer: true });
    const peerFile = registry.createFile('vfio-pci', peer, 'peer-file', O_RDONLY);
    const token = registry.sendFd(peer, peerFile.fd, pid);
    await registry.close(peer, peerFile.fd); // the token holds the last reference
    owner.calls.length = 0;

    await registry.exitProcess(pid);
    // fd 3 (b, dup), 4 (b), 5 (c: still attached), 6 (the device file); then the attachment; then the token.
    expect(aAgain).to.equal(3);
    expect(owner.calls).to.deep.equal([
      `release ${b.bufferId}`,
      `release ${file.fileId}`,
      `detach ${attachmentId}`,
      `release ${c.bufferId}`,
      `release ${peerFile.fileId}`,
    ]);
    expect(h.kinds().at(-1)).to.equal('PROCESS_EXIT');
    expect(registry.processes().processes.map((p) => p.pid)).to.deep.equal([peer]);
    expectErrno(() => registry.receiveFd(pid, token), 'ESRCH');
    await expectRejects(registry.exitProcess(pid), 'ESRCH');
    expect(registry.bufInfo()).to.deep.equal([]);
  });

  it('lists processes with their fds and the live owners', () => {
    const { registry, owner } = harness();
    const pid = registry.openProcess('spdk');
    const file = registry.createFile('vfio-pci', pid, 'dev', O_RDWR);
    const buf = owner.export(registry, pid);
    expect(registry.processes()).to.deep.equal({
      processes: [
        {
          pid,
          name: 'spdk',
          fds: [
            { fd: 3, kind: 'owned', fileId: file.fileId, owner: 'vfio-pci' },
            { fd: 4, kind: 'dma-buf', fileId: buf.bufferId, owner: 'vfio-pci' },
          ],
          vmaCount: 0,
          pinCount: 0,
        },
      ],
      owners: ['vfio-pci'],
    });
  });

  it('refuses bad files and owners without changing anything', () => {
    const { registry, owner } = harness();
    const pid = registry.openProcess('a');
    const before = registry.processes();
    expectErrno(() => registry.createFile('nobody', pid, 'x', O_RDWR), 'ENOENT');
    expectErrno(() => registry.createFile('vfio-pci', 9, 'x', O_RDWR), 'ESRCH');
    expectErrno(() => registry.createFile('vfio-pci', pid, 'x', 0o100), 'EINVAL');
    expectErrno(() => registry.exportDmaBuf('vfio-pci', { ...defaults(pid), size: 0 }), 'EINVAL');
    expectErrno(() => registry.exportDmaBuf('vfio-pci', { ...defaults(pid), openFlags: 0o1000 }), 'EINVAL');
    expectErrno(() => registry.registerOwner(owner), 'EBUSY');
    expect(registry.processes()).to.deep.equal(before);
    expect(registry.bufInfo()).to.deep.equal([]);
  });

  it('reports a release the owner fails, and the file is gone all the same', async () => {
    const h = harness();
    const { registry, owner } = h;
    const pid = registry.openProcess('a');
    const { fd } = owner.export(registry, pid);
    owner.failNext.set('release', errno('EIO', 'owner hiccup'));
    await registry.close(pid, fd);
    expect(h.failures.map((f) => `${f.owner} ${f.op}`)).to.deep.equal(['vfio-pci release']);
    expect(registry.bufInfo()).to.deep.equal([]);
  });

  it('shutdown exits every process and refuses new ones', async () => {
    const { registry, owner } = harness();
    const a = registry.openProcess('a');
    owner.export(registry, a);
    await registry.shutdown();
    expect(registry.processes().processes).to.deep.equal([]);
    expect(registry.bufInfo()).to.deep.equal([]);
    expectErrno(() => registry.openProcess('late'), 'ESHUTDOWN');
  });
});

function defaults(pid: number) {
  return {
    pid,
    size: 4096,
    openFlags: O_RDWR,
    revoked: false,
    cpuAccess: false,
    allowPin: false,
    requirePeer2peer: true,
    handle: 'h',
  };
}
