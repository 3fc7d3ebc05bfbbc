import { expect } from 'chai';
import { O_RDWR } from '../files/open-flags';
import { FakeOwner } from '../testing/fake-owner';
import { NIC, expectErrno, expectRejects, harness } from '../testing/harness';

describe('Registry: an owner goes away', () => {
  it('orphans its dma-bufs: importers told as for a revoke, attach and map ENODEV, no release sent, fds closable', async () => {
    const h = harness();
    const { registry, owner } = h;
    const holder = registry.openProcess('spdk');
    const { pid: nic, session } = h.process('nic');
    const revoked = owner.export(registry, holder, { handle: 'revoked', revoked: true });
    const live = owner.export(registry, holder, { handle: 'live' });
    const device = registry.createFile('vfio-pci', holder, '0000:03:00.0', O_RDWR);
    const { attachmentId } = await registry.attach({ pid: holder, fd: live.fd, importerPid: nic, importerBdf: NIC, dynamic: true, peer2peer: true });
    await registry.map(nic, attachmentId);
    owner.calls.length = 0;

    await registry.ownerGone('vfio-pci');

    expect(session.notices.map((n) => n.bufferId)).to.deep.equal([live.bufferId]);
    expect(registry.bufInfo().map((b) => [b.bufferId, b.revoked, b.orphaned])).to.deep.equal([
      [revoked.bufferId, true, true],
      [live.bufferId, true, true],
    ]);
    expect(registry.bufInfo()[1]!.attachments[0]!.mapped).to.equal(false);
    await expectRejects(registry.map(nic, attachmentId), 'ENODEV');
    await expectRejects(registry.attach({ pid: holder, fd: live.fd, importerPid: nic, importerBdf: NIC, dynamic: true, peer2peer: true }), 'ENODEV');
    expect(registry.processes().owners).to.deep.equal([]);
    expectErrno(() => registry.exportDmaBuf('vfio-pci', { pid: holder, size: 1, openFlags: 0, revoked: false, cpuAccess: false, allowPin: false, requirePeer2peer: false, handle: 'x' }), 'ENOENT');

    await registry.detach(nic, attachmentId);
    await registry.close(holder, live.fd);
    await registry.close(holder, revoked.fd);
    await registry.close(holder, device.fd);
    expect(owner.calls).to.deep.equal([]);
    expect(registry.bufInfo()).to.deep.equal([]);
    expect(registry.processes().processes[0]!.fds).to.deep.equal([]);
    expect(h.kinds().filter((k) => k === 'RELEASE')).to.have.length(3);
  });

  it('frees the name: a new owner of that name gets none of the old files’ releases', async () => {
    const h = harness();
    const { registry, owner, segments } = h;
    const pid = registry.openProcess('a');
    const { fd } = owner.export(registry, pid);
    await registry.ownerGone('vfio-pci');
    await expectRejects(registry.ownerGone('vfio-pci'), 'ENOENT');
    const reborn = new FakeOwner('vfio-pci', segments);
    registry.registerOwner(reborn);
    await registry.close(pid, fd);
    expect(reborn.calls).to.deep.equal([]);
    expect(owner.calls).to.deep.equal([]);
    expect(registry.processes().owners).to.deep.equal(['vfio-pci']);
  });

  it('fences an importer that does not ack the revoke, without calling the dead owner', async () => {
    const h = harness({ ackTimeoutMs: 20 });
    const { registry, owner } = h;
    const { pid, session } = h.process('nic', false);
    const { bufferId, fd } = owner.export(registry, pid);
    const { attachmentId } = await registry.attach({ pid, fd, importerBdf: NIC, dynamic: true, peer2peer: true });
    owner.calls.length = 0;
    await registry.ownerGone('vfio-pci');
    expect(session.fences).to.deep.equal([{ attachmentId, bufferId }]);
    expect(owner.calls).to.deep.equal([]);
    expect(registry.bufInfo()[0]!.attachments).to.deep.equal([]);
  });
});
