import { expect } from 'chai';
import { FakeOwner } from '../testing/fake-owner';
import { NIC, expectErrno, expectRejects, harness, settle, type Harness } from '../testing/harness';

/** A buffer with one dynamic importer per session given, each attached (and mapped if asked). */
async function attachedBuffer(h: Harness, importers: { autoAck: boolean; map?: boolean }[]) {
  const holder = h.registry.openProcess('spdk');
  const { bufferId, fd } = h.owner.export(h.registry, holder, { size: 4096 });
  const attachments = [];
  for (const [i, importer] of importers.entries()) {
    const { pid, session } = h.process(`nic-${i}`, importer.autoAck);
    const { attachmentId } = await h.registry.attach({ pid: holder, fd, importerPid: pid, importerBdf: NIC, dynamic: true, peer2peer: true });
    if (importer.map) await h.registry.map(pid, attachmentId);
    attachments.push({ pid, session, attachmentId });
  }
  return { holder, bufferId, fd, attachments };
}

describe('Registry: move, move_notify, ack and fence', () => {
  it('notifies every dynamic importer and resolves only once all have acked', async () => {
    const h = harness();
    const { bufferId, attachments } = await attachedBuffer(h, [{ autoAck: false }, { autoAck: false }]);
    const [a, b] = attachments;
    let result: unknown;
    const move = h.registry.move('vfio-pci', bufferId, { revoked: true }).then((r) => (result = r));
    await settle();
    expect(a!.session.notices.map((n) => [n.attachmentId, n.bufferId, n.timeoutMs])).to.deep.equal([[a!.attachmentId, bufferId, 1000]]);
    expect(b!.session.notices).to.have.length(1);
    expect(a!.session.notices[0]!.notificationId).to.not.equal(b!.session.notices[0]!.notificationId);
    expect(h.registry.bufInfo()[0]!.revoked).to.equal(true);

    h.registry.ack(a!.pid, a!.session.notices[0]!.notificationId);
    await settle();
    expect(result).to.equal(undefined);
    h.registry.ack(b!.pid, b!.session.notices[0]!.notificationId);
    await move;
    expect(result).to.deep.equal({ notified: 2, fenced: 0 });
    expect(h.kinds().slice(-6)).to.deep.equal(['REVOKE', 'MOVE_NOTIFY', 'MOVE_NOTIFY', 'ACK', 'ACK', 'MOVE_DONE']);
  });

  it('links each move_notify, its ack and the return to the revoke: its sequence as moveId, the notification id', async () => {
    const h = harness();
    const { bufferId, attachments } = await attachedBuffer(h, [{ autoAck: true }, { autoAck: true }]);
    await h.registry.move('vfio-pci', bufferId, { revoked: true });
    const revoke = h.events.find((e) => e.kind === 'REVOKE')!;
    const linked = h.events.filter((e) => e.moveId === revoke.sequence).map((e) => [e.kind, e.attachmentId, e.notificationId]);
    const [a, b] = attachments.map((x) => [x.attachmentId, x.session.notices[0]!.notificationId] as const);
    expect(linked).to.deep.equal([
      ['MOVE_NOTIFY', a![0], a![1]],
      ['ACK', a![0], a![1]],
      ['MOVE_NOTIFY', b![0], b![1]],
      ['ACK', b![0], b![1]],
      ['MOVE_DONE', undefined, undefined],
    ]);
    expect(revoke.time.unixNanos <= h.events.at(-1)!.time.unixNanos).to.equal(true);
  });

  it('notifies nobody when the revoked bit does not change', async () => {
    const h = harness();
    const { bufferId, attachments } = await attachedBuffer(h, [{ autoAck: true }]);
    const before = h.events.length;
    expect(await h.registry.move('vfio-pci', bufferId, { revoked: false })).to.deep.equal({ notified: 0, fenced: 0 });
    expect(attachments[0]!.session.notices).to.deep.equal([]);
    expect(h.events.length).to.equal(before);
  });

  it('notifies on unrevoke too, and never notifies static importers', async () => {
    const h = harness();
    const holder = h.registry.openProcess('cpu');
    const { bufferId, fd } = h.owner.export(h.registry, holder, { requirePeer2peer: false });
    await h.registry.attach({ pid: holder, fd, dynamic: false, peer2peer: false });
    const { pid, session } = h.process('nic');
    await h.registry.attach({ pid: holder, fd, importerPid: pid, importerBdf: NIC, dynamic: true, peer2peer: true });
    expect(await h.registry.move('vfio-pci', bufferId, { revoked: true })).to.deep.equal({ notified: 1, fenced: 0 });
    expect(await h.registry.move('vfio-pci', bufferId, { revoked: false })).to.deep.equal({ notified: 1, fenced: 0 });
    expect(session.notices).to.have.length(2);
    expect(h.kinds().filter((k) => k === 'REVOKE' || k === 'UNREVOKE')).to.deep.equal(['REVOKE', 'UNREVOKE']);
  });

  it("unmaps on the importer's behalf when it acks", async () => {
    const h = harness();
    const { bufferId, attachments } = await attachedBuffer(h, [{ autoAck: true, map: true }]);
    const id = attachments[0]!.attachmentId;
    await h.registry.move('vfio-pci', bufferId, { revoked: true });
    expect(h.owner.calls.slice(-1)).to.deep.equal([`unmap ${id}`]);
    expect(h.registry.bufInfo()[0]!.attachments[0]).to.include({ attachmentId: id, mapped: false });
    expect(h.kinds().slice(-5)).to.deep.equal(['REVOKE', 'MOVE_NOTIFY', 'ACK', 'UNMAP', 'MOVE_DONE']);
  });

  it('fences an importer that does not ack in time: detached, owner fenced once, told, and locked out', async () => {
    const h = harness({ ackTimeoutMs: 30 });
    const { bufferId, attachments } = await attachedBuffer(h, [
      { autoAck: true, map: true },
      { autoAck: false, map: true },
      { autoAck: false, map: true },
    ]);
    const [good, silent, quiet] = attachments;
    const staleSegment = h.owner.segmentOf(bufferId);
    const refsBefore = h.registry.bufInfo()[0]!.refcount;

    const result = await h.registry.move('vfio-pci', bufferId, { revoked: true });
    expect(result).to.deep.equal({ notified: 3, fenced: 2 });
    expect(h.owner.calls.filter((c) => c.startsWith('fence'))).to.deep.equal([`fence ${bufferId}`]);
    expect(h.owner.segmentOf(bufferId)).to.not.equal(staleSegment);
    expect(silent!.session.fences).to.deep.equal([{ attachmentId: silent!.attachmentId, bufferId }]);
    expect(quiet!.session.fences).to.deep.equal([{ attachmentId: quiet!.attachmentId, bufferId }]);
    expect(good!.session.fences).to.deep.equal([]);
    const info = h.registry.bufInfo()[0]!;
    expect(info.attachments.map((a) => a.attachmentId)).to.deep.equal([good!.attachmentId]);
    expect(info.refcount).to.equal(refsBefore - 2);
    expect(h.events.filter((e) => e.kind === 'FENCE').map((e) => e.attachmentId)).to.deep.equal([silent!.attachmentId, quiet!.attachmentId]);
    // The owner undid the fenced attachments after relocating the memory.
    const fenceAt = h.owner.calls.indexOf(`fence ${bufferId}`);
    expect(h.owner.calls.slice(fenceAt + 1)).to.deep.equal([
      `unmap ${silent!.attachmentId}`,
      `detach ${silent!.attachmentId}`,
      `unmap ${quiet!.attachmentId}`,
      `detach ${quiet!.attachmentId}`,
    ]);

    // The late ack is for nothing, and the attachment can do nothing any more.
    expectErrno(() => h.registry.ack(silent!.pid, silent!.session.notices[0]!.notificationId), 'ENOENT');
    await h.registry.move('vfio-pci', bufferId, { revoked: false });
    await expectRejects(h.registry.map(silent!.pid, silent!.attachmentId), 'EINVAL');
    expectErrno(() => h.registry.writeAttachment(silent!.pid, silent!.attachmentId, 0, Buffer.from('x')), 'EINVAL');
    expectErrno(() => h.registry.readAttachment(silent!.pid, silent!.attachmentId, 0, 1), 'EINVAL');
    await expectRejects(h.registry.detach(silent!.pid, silent!.attachmentId), 'EINVAL');
  });

  it('refuses bad acks with ENOENT and changes nothing', async () => {
    const h = harness();
    const { bufferId, attachments } = await attachedBuffer(h, [{ autoAck: false }, { autoAck: false }]);
    const [a, b] = attachments;
    const move = h.registry.move('vfio-pci', bufferId, { revoked: true });
    await settle();
    const id = a!.session.notices[0]!.notificationId;
    expectErrno(() => h.registry.ack(b!.pid, id), 'ENOENT');
    expectErrno(() => h.registry.ack(a!.pid, 999), 'ENOENT');
    expectErrno(() => h.registry.ack(77, id), 'ESRCH');
    h.registry.ack(a!.pid, id);
    expectErrno(() => h.registry.ack(a!.pid, id), 'ENOENT');
    h.registry.ack(b!.pid, b!.session.notices[0]!.notificationId);
    expect(await move).to.deep.equal({ notified: 2, fenced: 0 });
  });

  it('makes a map wait for a move in progress, then fail on the revoked buffer', async () => {
    const h = harness();
    const { bufferId, attachments } = await attachedBuffer(h, [{ autoAck: false }, { autoAck: true }]);
    const [slow, other] = attachments;
    const order: string[] = [];
    const move = h.registry.move('vfio-pci', bufferId, { revoked: true }).then(() => order.push('move'));
    await settle();
    const map = expectRejects(h.registry.map(other!.pid, other!.attachmentId), 'ENODEV').then(() => order.push('map'));
    await settle();
    expect(order).to.deep.equal([]);
    h.registry.ack(slow!.pid, slow!.session.notices[0]!.notificationId);
    await Promise.all([move, map]);
    expect(order).to.deep.equal(['move', 'map']);
  });

  it('makes a move wait for a map in progress, then unmap it on the ack', async () => {
    const h = harness();
    const { bufferId, attachments } = await attachedBuffer(h, [{ autoAck: true }]);
    const [nic] = attachments;
    const openMap = h.owner.hold('map');
    const map = h.registry.map(nic!.pid, nic!.attachmentId);
    await settle();
    const move = h.registry.move('vfio-pci', bufferId, { revoked: true });
    await settle();
    expect(nic!.session.notices).to.deep.equal([]);
    openMap();
    expect((await map).generation).to.equal(1);
    expect(await move).to.deep.equal({ notified: 1, fenced: 0 });
    expect(h.owner.calls.slice(-2)).to.deep.equal([`map ${nic!.attachmentId}`, `unmap ${nic!.attachmentId}`]);
  });

  it('counts the pending notification of an exiting importer as acked', async () => {
    const h = harness({ ackTimeoutMs: 5000 });
    const { bufferId, attachments } = await attachedBuffer(h, [{ autoAck: false, map: true }]);
    const [nic] = attachments;
    const move = h.registry.move('vfio-pci', bufferId, { revoked: true });
    await settle();
    const exit = h.registry.exitProcess(nic!.pid);
    expect(await move).to.deep.equal({ notified: 1, fenced: 0 });
    await exit;
    expect(h.owner.calls.slice(-2)).to.deep.equal([`unmap ${nic!.attachmentId}`, `detach ${nic!.attachmentId}`]);
    expect(h.registry.bufInfo()[0]!.attachments).to.deep.equal([]);
  });

  it('counts a detach during a pending notification as its ack', async () => {
    const h = harness({ ackTimeoutMs: 5000 });
    const { bufferId, attachments } = await attachedBuffer(h, [{ autoAck: false }]);
    const [nic] = attachments;
    const move = h.registry.move('vfio-pci', bufferId, { revoked: true });
    await settle();
    await Promise.all([h.registry.detach(nic!.pid, nic!.attachmentId), move]);
    expect(await move).to.deep.equal({ notified: 1, fenced: 0 });
    expect(h.registry.bufInfo()[0]!.attachments).to.deep.equal([]);
  });

  it('holds a reference while moving: a close during the move releases after it', async () => {
    const h = harness();
    const { holder, bufferId, fd, attachments } = await attachedBuffer(h, [{ autoAck: false }]);
    const [nic] = attachments;
    const move = h.registry.move('vfio-pci', bufferId, { revoked: true });
    await settle();
    expect(h.registry.bufInfo()[0]!.refcount).to.equal(3);
    await h.registry.close(holder, fd);
    const detach = h.registry.detach(nic!.pid, nic!.attachmentId);
    await move;
    await detach;
    expect(h.owner.calls.slice(-2)).to.deep.equal([`detach ${nic!.attachmentId}`, `release ${bufferId}`]);
    expect(h.registry.bufInfo()).to.deep.equal([]);
  });

  it('orphans the buffer on a permanent move: attach and map ENODEV for good, release still sent', async () => {
    const h = harness();
    const { holder, bufferId, fd, attachments } = await attachedBuffer(h, [{ autoAck: true }]);
    const [nic] = attachments;
    await expectRejects(h.registry.move('vfio-pci', bufferId, { revoked: false, permanent: true }), 'EINVAL');
    expect(await h.registry.move('vfio-pci', bufferId, { revoked: true, permanent: true })).to.deep.equal({ notified: 1, fenced: 0 });
    expect(h.registry.bufInfo()[0]).to.include({ revoked: true, orphaned: true });
    await expectRejects(h.registry.move('vfio-pci', bufferId, { revoked: false }), 'ENOENT');
    await expectRejects(h.registry.map(nic!.pid, nic!.attachmentId), 'ENODEV');
    await expectRejects(h.registry.attach({ pid: holder, fd, importerPid: nic!.pid, importerBdf: NIC, dynamic: true, peer2peer: true }), 'ENODEV');
    await h.registry.detach(nic!.pid, nic!.attachmentId);
    await h.registry.close(holder, fd);
    expect(h.owner.calls.at(-1)).to.equal(`release ${bufferId}`);
  });

  it('refuses moves of unknown owners and of buffers not the owner’s with ENOENT', async () => {
    const h = harness();
    const { bufferId } = await attachedBuffer(h, []);
    const other = new FakeOwner('rdma-nic', h.segments);
    h.registry.registerOwner(other);
    await expectRejects(h.registry.move('rdma-nic', bufferId, { revoked: true }), 'ENOENT');
    await expectRejects(h.registry.move('nobody', bufferId, { revoked: true }), 'ENOENT');
    await expectRejects(h.registry.move('vfio-pci', bufferId + 100, { revoked: true }), 'ENOENT');
    expect(h.registry.bufInfo()[0]!.revoked).to.equal(false);
  });
});
