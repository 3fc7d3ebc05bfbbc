import { expect } from 'chai';
import { PAGE_SIZE } from '@p2p/shm';
import { O_RDWR, O_WRONLY } from '../files/open-flags';
import { MMAP_BASE } from '../mm/layout';
import { PROT_READ, PROT_WRITE } from '../mm/prot';
import { NIC, expectRejects, harness } from '../testing/harness';

describe('Registry: CPU access to an exporter’s buffers', () => {
  it('reads and writes where the exporter says the bytes are now, asking on every access', async () => {
    const h = harness({ ackTimeoutMs: 20 });
    const { registry, owner } = h;
    const { pid } = h.process('app', false);
    const { bufferId, fd } = owner.export(registry, pid, { cpuAccess: true, size: 64 });
    await registry.cpuWrite(pid, fd, 8, Buffer.from('bar data'));
    expect((await registry.cpuRead(pid, fd, 8, 8)).toString()).to.equal('bar data');
    // A fence relocates the memory; CPU access follows it.
    await registry.attach({ pid, fd, importerBdf: NIC, dynamic: true, peer2peer: true });
    await registry.move('vfio-pci', bufferId, { revoked: true });
    await registry.move('vfio-pci', bufferId, { revoked: false });
    expect(owner.calls).to.include(`fence ${bufferId}`);
    expect((await registry.cpuRead(pid, fd, 8, 8)).toString()).to.equal('bar data');
    expect(await registry.mmap(pid, fd, 0, 64)).to.deep.equal({
      addr: MMAP_BASE - PAGE_SIZE,
      prot: PROT_READ | PROT_WRITE,
      directory: '/fake/vfio-pci',
      extents: [{ segment: owner.segmentOf(bufferId), segmentOffset: 0, length: 64, dmaAddress: 0xe000_0000n + BigInt(bufferId) * 0x10_0000n }],
    });
    expect(owner.calls.filter((c) => c.startsWith('cpuExtents'))).to.have.length(4);
  });

  it('is EINVAL without CPU access or for a file that is not a dma-buf, EBADF for an fd not held', async () => {
    const h = harness();
    const { registry, owner } = h;
    const pid = registry.openProcess('app');
    const { fd } = owner.export(registry, pid);
    const device = registry.createFile('vfio-pci', pid, 'dev', O_RDWR);
    await expectRejects(registry.cpuRead(pid, fd, 0, 1), 'EINVAL');
    await expectRejects(registry.mmap(pid, fd, 0, 4096), 'EINVAL');
    await expectRejects(registry.cpuWrite(pid, device.fd, 0, Buffer.from('x')), 'EINVAL');
    await expectRejects(registry.cpuRead(pid, 99, 0, 1), 'EBADF');
    expect(owner.calls).to.deep.equal([]);
  });

  it('is ENODEV while revoked and EACCES beyond the access mode', async () => {
    const h = harness();
    const { registry, owner } = h;
    const pid = registry.openProcess('app');
    const revoked = owner.export(registry, pid, { cpuAccess: true, revoked: true });
    await expectRejects(registry.cpuRead(pid, revoked.fd, 0, 1), 'ENODEV');
    await expectRejects(registry.mmap(pid, revoked.fd, 0, 4096), 'ENODEV');
    const writeOnly = owner.export(registry, pid, { cpuAccess: true, openFlags: O_WRONLY });
    await expectRejects(registry.cpuRead(pid, writeOnly.fd, 0, 1), 'EACCES');
    await expectRejects(registry.mmap(pid, writeOnly.fd, 0, 4096), 'EACCES');
    await registry.cpuWrite(pid, writeOnly.fd, 0, Buffer.from('ok'));
    expect(registry.bufInfo().map((b) => b.refcount)).to.deep.equal([1, 1]);
  });
});
