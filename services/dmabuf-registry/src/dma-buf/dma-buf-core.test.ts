import { expect } from 'chai';
import { errno } from '@p2p/errno';
import { O_CLOEXEC, O_RDWR } from '../files/open-flags';
import { NIC, PROVIDER, expectErrno, expectRejects, harness, settle } from '../testing/harness';

describe('Registry: attach, pin, map and the streamed fallback', () => {
  describe('attach', () => {
    it('attaches a dynamic peer2peer importer, holding a reference, and tells the owner who it is', async () => {
      const h = harness();
      const { registry, owner } = h;
      const holder = registry.openProcess('spdk');
      const { pid: nic } = h.process('rdma-nic');
      const { bufferId, fd } = owner.export(registry, holder, { size: 65536 });
      const attached = await registry.attach({ pid: holder, fd, importerPid: nic, importerBdf: NIC, dynamic: true, peer2peer: true, shmId: 'tmpfs-a' });
      expect(attached).to.deep.equal({ attachmentId: 1, bufferId, size: 65536 });
      expect(owner.lastAttach).to.deep.equal({
        bufferId,
        handle: 'bar-0',
        attachmentId: 1,
        importerBdf: NIC,
        peer2peer: true,
        importerPid: nic,
        dynamic: true,
      });
      expect(registry.bufInfo()).to.deep.equal([
        {
          bufferId,
          size: 65536,
          exporter: 'vfio-pci',
          refcount: 2,
          openFlags: O_RDWR | O_CLOEXEC,
          revoked: false,
          orphaned: false,
          providerBdf: PROVIDER,
          cpuAccess: false,
          attachments: [{ attachmentId: 1, importerPid: nic, importerBdf: NIC, dynamic: true, peer2peer: true, mapped: false, pinned: false }],
          userPins: 0,
        },
      ]);
      expect(h.events.at(-1)).to.include({ kind: 'ATTACH', bufferId, attachmentId: 1, pid: nic });
    });

    it('refuses a dynamic importer without a session (EINVAL), and static or non-p2p importers of a p2p-only buffer (EOPNOTSUPP)', async () => {
      const h = harness();
      const { registry, owner } = h;
      const silent = registry.openProcess('no-session');
      const { pid } = h.process('nic');
      const { fd } = owner.export(registry, silent);
      const before = registry.bufInfo();
      await expectRejects(registry.attach({ pid: silent, fd, dynamic: true, peer2peer: true }), 'EINVAL');
      await expectRejects(registry.attach({ pid: silent, fd, importerPid: pid, dynamic: false, peer2peer: true }), 'EOPNOTSUPP');
      await expectRejects(registry.attach({ pid: silent, fd, importerPid: pid, dynamic: true, peer2peer: false }), 'EOPNOTSUPP');
      await expectRejects(registry.attach({ pid: silent, fd, importerPid: 42, dynamic: true, peer2peer: true }), 'ESRCH');
      await expectRejects(registry.attach({ pid: silent, fd: 9, importerPid: pid, dynamic: true, peer2peer: true }), 'EBADF');
      const device = registry.createFile('vfio-pci', silent, 'dev', O_RDWR);
      await expectRejects(registry.attach({ pid: silent, fd: device.fd, importerPid: pid, dynamic: true, peer2peer: true }), 'EINVAL');
      expect(registry.bufInfo()).to.deep.equal(before);
      expect(owner.calls).to.deep.equal([]);
    });

    it('refuses a revoked buffer with ENODEV; a static importer may attach where p2p is not required', async () => {
      const h = harness();
      const { registry, owner } = h;
      const { pid } = h.process('nic');
      const revoked = owner.export(registry, pid, { revoked: true });
      await expectRejects(registry.attach({ pid, fd: revoked.fd, importerBdf: NIC, dynamic: true, peer2peer: true }), 'ENODEV');
      const open = owner.export(registry, pid, { requirePeer2peer: false });
      const attached = await registry.attach({ pid, fd: open.fd, dynamic: false, peer2peer: false });
      expect(attached.bufferId).to.equal(open.bufferId);
      expect(registry.bufInfo()[0]!.refcount).to.equal(1);
    });

    it("passes the owner's refusal on and drops the reference it took", async () => {
      const h = harness();
      const { registry, owner } = h;
      const { pid } = h.process('nic');
      const { fd } = owner.export(registry, pid);
      owner.failNext.set('attach', errno('EPERM', 'not this importer'));
      await expectRejects(registry.attach({ pid, fd, importerBdf: NIC, dynamic: true, peer2peer: true }), 'EPERM');
      expect(registry.bufInfo()[0]!.refcount).to.equal(1);
      expect(registry.bufInfo()[0]!.attachments).to.deep.equal([]);
    });
  });

  describe('pin', () => {
    it('counts pins: each calls the owner, each unpin undoes one, one unpin too many is EINVAL', async () => {
      const h = harness();
      const { registry, owner } = h;
      const { pid } = h.process('nic');
      const { fd } = owner.export(registry, pid, { allowPin: true });
      const { attachmentId: id } = await registry.attach({ pid, fd, importerBdf: NIC, dynamic: true, peer2peer: true });
      await registry.pin(pid, id);
      await registry.pin(pid, id);
      await registry.unpin(pid, id);
      expect(registry.bufInfo()[0]!.attachments[0]!.pinned).to.equal(true);
      await registry.unpin(pid, id);
      expect(registry.bufInfo()[0]!.attachments[0]!.pinned).to.equal(false);
      await expectRejects(registry.unpin(pid, id), 'EINVAL');
      expect(owner.calls).to.deep.equal([`attach ${id}`, `pin ${id}`, `pin ${id}`, `unpin ${id}`, `unpin ${id}`]);
      expect(h.kinds().filter((k) => k === 'PIN' || k === 'UNPIN')).to.deep.equal(['PIN', 'PIN', 'UNPIN', 'UNPIN']);
    });

    it('is EOPNOTSUPP when the exporter does not pin; detach undoes remaining pins', async () => {
      const h = harness();
      const { registry, owner } = h;
      const { pid } = h.process('nic');
      const noPin = owner.export(registry, pid);
      const a = await registry.attach({ pid, fd: noPin.fd, importerBdf: NIC, dynamic: true, peer2peer: true });
      await expectRejects(registry.pin(pid, a.attachmentId), 'EOPNOTSUPP');
      const pinnable = owner.export(registry, pid, { allowPin: true });
      const b = await registry.attach({ pid, fd: pinnable.fd, importerBdf: NIC, dynamic: true, peer2peer: true });
      await registry.pin(pid, b.attachmentId);
      await registry.pin(pid, b.attachmentId);
      owner.calls.length = 0;
      await registry.detach(pid, b.attachmentId);
      expect(owner.calls).to.deep.equal([`unpin ${b.attachmentId}`, `unpin ${b.attachmentId}`, `detach ${b.attachmentId}`]);
    });
  });

  describe('map', () => {
    it('maps BAR memory with the P2P map type, over shared memory when the tmpfs is shared', async () => {
      const h = harness();
      const { registry, owner } = h;
      const { pid } = h.process('nic');
      const { bufferId, fd } = owner.export(registry, pid, { size: 4096 });
      const { attachmentId: id } = await registry.attach({ pid, fd, importerBdf: NIC, dynamic: true, peer2peer: true, shmId: 'tmpfs-a' });
      const mapping = await registry.map(pid, id);
      expect(mapping).to.deep.equal({
        transport: 'shared-memory',
        directory: '/fake/vfio-pci',
        extents: [{ segment: owner.segmentOf(bufferId), segmentOffset: 0, length: 4096, dmaAddress: 0xe000_0000n + BigInt(bufferId) * 0x10_0000n }],
        mapType: 'BUS_ADDR',
        generation: 1,
      });
      expect(owner.lastMap).to.include({ mapType: 'BUS_ADDR', importerBdf: NIC, attachmentId: id });
      expect(h.oracle.asked).to.deep.equal([`${PROVIDER}>${NIC}`]);
      expect(registry.bufInfo()[0]!.attachments[0]!.mapped).to.equal(true);
    });

    it('is EBUSY when already mapped; unmap then map again bumps the generation; a second unmap is EINVAL', async () => {
      const h = harness();
      const { registry, owner } = h;
      const { pid } = h.process('nic');
      const { fd } = owner.export(registry, pid);
      const { attachmentId: id } = await registry.attach({ pid, fd, importerBdf: NIC, dynamic: true, peer2peer: true });
      expect((await registry.map(pid, id)).generation).to.equal(1);
      await expectRejects(registry.map(pid, id), 'EBUSY');
      await registry.unmap(pid, id);
      await expectRejects(registry.unmap(pid, id), 'EINVAL');
      const again = await registry.map(pid, id);
      expect(again.generation).to.equal(2);
      expect(again.transport).to.equal('stream');
      expect(h.kinds().filter((k) => k === 'MAP' || k === 'UNMAP')).to.deep.equal(['MAP', 'UNMAP', 'MAP']);
    });

    it('is EINVAL for an attachment never made or another process’s', async () => {
      const h = harness();
      const { registry, owner } = h;
      const { pid } = h.process('nic');
      const other = registry.openProcess('other');
      const { fd } = owner.export(registry, pid);
      const { attachmentId: id } = await registry.attach({ pid, fd, importerBdf: NIC, dynamic: true, peer2peer: true });
      await expectRejects(registry.map(pid, id + 1), 'EINVAL');
      await expectRejects(registry.map(other, id), 'EINVAL');
      await expectRejects(registry.unmap(pid, 77), 'EINVAL');
      await expectRejects(registry.map(99, id), 'ESRCH');
      expect(registry.bufInfo()[0]!.attachments[0]!.mapped).to.equal(false);
    });

    it('gives THRU_HOST_BRIDGE through, and EINVAL for NOT_SUPPORTED or a CPU importer of BAR memory', async () => {
      const h = harness();
      const { registry, owner, oracle } = h;
      const { pid } = h.process('nic');
      oracle.answers.set(`${PROVIDER}>0000:05:00.0`, 'THRU_HOST_BRIDGE');
      const { fd } = owner.export(registry, pid, { requirePeer2peer: false });
      const bridge = await registry.attach({ pid, fd, importerBdf: '0000:05:00.0', dynamic: true, peer2peer: true });
      const far = await registry.attach({ pid, fd, importerBdf: '0000:09:00.0', dynamic: true, peer2peer: true });
      const cpu = await registry.attach({ pid, fd, dynamic: false, peer2peer: false });
      expect((await registry.map(pid, bridge.attachmentId)).mapType).to.equal('THRU_HOST_BRIDGE');
      await expectRejects(registry.map(pid, far.attachmentId), 'EINVAL');
      await expectRejects(registry.map(pid, cpu.attachmentId), 'EINVAL');
      expect(registry.bufInfo()[0]!.attachments.map((a) => a.mapped)).to.deep.equal([true, false, false]);
    });

    it('maps a buffer without a provider as HOST_MEMORY without asking the oracle', async () => {
      const h = harness();
      const { registry, owner } = h;
      const { pid } = h.process('nic');
      const { fd } = owner.export(registry, pid, { providerBdf: undefined, requirePeer2peer: false });
      const { attachmentId } = await registry.attach({ pid, fd, dynamic: false, peer2peer: false });
      expect((await registry.map(pid, attachmentId)).mapType).to.equal('HOST_MEMORY');
      expect(h.oracle.asked).to.deep.equal([]);
    });

    it('is ENODEV while revoked', async () => {
      const h = harness();
      const { registry, owner } = h;
      const { pid } = h.process('nic');
      const { bufferId, fd } = owner.export(registry, pid);
      const { attachmentId } = await registry.attach({ pid, fd, importerBdf: NIC, dynamic: true, peer2peer: true });
      await registry.move('vfio-pci', bufferId, { revoked: true });
      await expectRejects(registry.map(pid, attachmentId), 'ENODEV');
      await registry.move('vfio-pci', bufferId, { revoked: false });
      expect((await registry.map(pid, attachmentId)).generation).to.equal(1);
    });

    it("refuses an owner's extents that do not cover the buffer with EIO, and unmaps them at the owner", async () => {
      const h = harness();
      const { registry, owner } = h;
      const { pid } = h.process('nic');
      const { fd } = owner.export(registry, pid);
      const { attachmentId: id } = await registry.attach({ pid, fd, importerBdf: NIC, dynamic: true, peer2peer: true });
      owner.map = async () => [{ segment: 'short', segmentOffset: 0, length: 1, dmaAddress: 0n }];
      await expectRejects(registry.map(pid, id), 'EIO');
      expect(owner.calls.at(-1)).to.equal(`unmap ${id}`);
      expect(registry.bufInfo()[0]!.attachments[0]!.mapped).to.equal(false);
    });

    it('detach unmaps first, and later ops on the attachment are EINVAL', async () => {
      const h = harness();
      const { registry, owner } = h;
      const { pid } = h.process('nic');
      const { fd } = owner.export(registry, pid);
      const { attachmentId: id } = await registry.attach({ pid, fd, importerBdf: NIC, dynamic: true, peer2peer: true });
      await registry.map(pid, id);
      await registry.detach(pid, id);
      expect(owner.calls).to.deep.equal([`attach ${id}`, `map ${id}`, `unmap ${id}`, `detach ${id}`]);
      expect(h.kinds().slice(-2)).to.deep.equal(['UNMAP', 'DETACH']);
      await expectRejects(registry.detach(pid, id), 'EINVAL');
      await expectRejects(registry.map(pid, id), 'EINVAL');
    });
  });

  describe('the streamed fallback', () => {
    it('reads and writes through the current mapping, bounds-checked', async () => {
      const h = harness();
      const { registry, owner, segments } = h;
      const { pid } = h.process('nic');
      const { bufferId, fd } = owner.export(registry, pid, { size: 100 });
      const { attachmentId: id } = await registry.attach({ pid, fd, importerBdf: NIC, dynamic: true, peer2peer: true });
      expectErrno(() => registry.readAttachment(pid, id, 0, 1), 'EINVAL');
      await registry.map(pid, id);
      registry.writeAttachment(pid, id, 10, Buffer.from('hello'));
      expect(registry.readAttachment(pid, id, 8, 9).toString('latin1')).to.equal('\0\0hello\0\0');
      expect(segments.contents('/fake/vfio-pci', owner.segmentOf(bufferId), 15).subarray(10).toString()).to.equal('hello');
      expectErrno(() => registry.readAttachment(pid, id, 99, 2), 'EINVAL');
      expectErrno(() => registry.writeAttachment(pid, id, 96, Buffer.alloc(5)), 'EINVAL');
      expectErrno(() => registry.readAttachment(pid, id + 1, 0, 1), 'EINVAL');
    });

    it('refuses DMA to a revoked buffer with ENODEV', async () => {
      const h = harness();
      const { registry, owner } = h;
      const { pid } = h.process('nic');
      const { bufferId, fd } = owner.export(registry, pid, { requirePeer2peer: false });
      const { attachmentId: id } = await registry.attach({ pid, fd, importerBdf: NIC, dynamic: false, peer2peer: true });
      await registry.map(pid, id);
      await registry.move('vfio-pci', bufferId, { revoked: true });
      // A static importer is not notified and keeps its mapping, but the BAR no longer decodes.
      expect(registry.bufInfo()[0]!.attachments[0]!.mapped).to.equal(true);
      expectErrno(() => registry.writeAttachment(pid, id, 0, Buffer.from('x')), 'ENODEV');
      expectErrno(() => registry.readAttachment(pid, id, 0, 1), 'ENODEV');
    });
  });

  it('keeps ops of one buffer apart: a map waits for an attach in progress at the owner', async () => {
    const h = harness();
    const { registry, owner } = h;
    const { pid } = h.process('nic');
    const { fd } = owner.export(registry, pid);
    const first = await registry.attach({ pid, fd, importerBdf: NIC, dynamic: true, peer2peer: true });
    const openAttach = owner.hold('attach');
    const second = registry.attach({ pid, fd, importerBdf: NIC, dynamic: true, peer2peer: true });
    const map = registry.map(pid, first.attachmentId);
    await settle();
    expect(owner.calls.at(-1)).to.equal('attach 2');
    openAttach();
    await Promise.all([second, map]);
    expect(owner.calls.slice(-2)).to.deep.equal(['attach 2', `map ${first.attachmentId}`]);
  });
});
