import { expect } from 'chai';
import { expectErrno, FN0, FN1, harness, LONE, PID, settle, type Harness } from '../testing/harness';
import { VFIO_PCI_CONFIG_REGION_INDEX as CONFIG } from '../uapi/vfio';

interface SetUp extends Harness {
  fd0: number;
  id0: bigint;
}

/** FN0 and FN1 bound (one bus), FN0 open by PID with a buffer. */
async function setup(variants = {}): Promise<SetUp> {
  const h = harness({ variants });
  const fd0 = await h.open(FN0);
  await h.vfio.bind(FN1);
  const id0 = h.registry.bufferAt(PID, await h.exportBuf(fd0, 0)).bufferId;
  return { ...h, fd0, id0 };
}

async function openWithBuffer(h: Harness, bdf: string, pid: number): Promise<{ fd: number; id: bigint }> {
  const fd = await h.vfio.openDevice(pid, bdf);
  const buf = await h.exportBuf(fd, 0, undefined, pid);
  return { fd, id: h.registry.bufferAt(pid, buf).bufferId };
}

describe('VFIO_DEVICE_PCI_HOT_RESET', () => {
  it('revokes every device of the set, resets the bus (state saved and restored), then un-revokes', async () => {
    const h = await setup();
    const { fd: fd1, id: id1 } = await openWithBuffer(h, FN1, PID);
    const mark = h.log.length;
    await h.vfio.hotReset(PID, h.fd0, [fd1]);
    expect(h.since(mark)).to.deep.equal([
      `move ${h.id0} revoke`,
      `moved ${h.id0}`,
      `move ${id1} revoke`,
      `moved ${id1}`,
      `config-write ${FN0} 0x4/2 0x400`,
      `config-write ${FN1} 0x4/2 0x400`,
      `reset ${FN0}`,
      `reset ${FN1}`,
      `config-write ${FN0} 0x4/2 0x2`,
      `config-write ${FN1} 0x4/2 0x2`,
      `move ${h.id0} unrevoke`,
      `moved ${h.id0}`,
      `move ${id1} unrevoke`,
      `moved ${id1}`,
    ]);
  });

  it('un-revokes only the devices whose memory decodes', async () => {
    const h = await setup();
    const { fd: fd1, id: id1 } = await openWithBuffer(h, FN1, PID);
    await h.vfio.regionWrite(PID, fd1, CONFIG, 4n, new Uint8Array([0, 0]));
    const mark = h.log.length;
    await h.vfio.hotReset(PID, h.fd0, [fd1]);
    expect(h.since(mark).filter((line) => line.startsWith('move '))).to.deep.equal([`move ${h.id0} revoke`, `move ${h.id0} unrevoke`]);
    expect(h.vfio.buffers().find((b) => b.bufferId === id1)!.revoked).to.equal(true);
  });

  it('a bound but closed device of the set needs no proof', async () => {
    const h = await setup();
    await h.vfio.hotReset(PID, h.fd0, []);
    expect(h.log).to.include(`reset ${FN1}`);
  });

  it('EINVAL, changing nothing, when an open device of the set is not named', async () => {
    const h = await setup();
    await openWithBuffer(h, FN1, PID + 1);
    const mark = h.log.length;
    await expectErrno(h.vfio.hotReset(PID, h.fd0, []), 'EINVAL', `${FN1} is open`);
    expect(h.since(mark)).to.deep.equal([]);
  });

  it('a device file sent by its owner is proof enough', async () => {
    const h = await setup();
    const { fd } = await openWithBuffer(h, FN1, PID + 1);
    const sent = h.registry.sendFd(PID + 1, fd, PID);
    await h.vfio.hotReset(PID, h.fd0, [sent]);
  });

  it('EINVAL when the bus reset would reach a function not bound to vfio-pci', async () => {
    const h = harness();
    const fd = await h.open(LONE);
    await expectErrno(h.vfio.hotReset(PID, fd, []), 'EINVAL', 'not bound to vfio-pci');
    const only = harness();
    const fd0 = await only.open(FN0);
    await expectErrno(only.vfio.hotReset(PID, fd0, []), 'EINVAL', FN1);
  });

  it('EINVAL for a named fd that is not a vfio device; EBADF for one not held', async () => {
    const h = await setup();
    await expectErrno(h.vfio.hotReset(PID, h.fd0, [h.registry.foreignFile(PID)]), 'EINVAL', 'not a vfio device');
    await expectErrno(h.vfio.hotReset(PID, h.fd0, [55]), 'EBADF');
  });

  it('EBUSY when a device of the set is busy (memory_lock held), changing nothing', async () => {
    const h = await setup();
    const { fd: fd1 } = await openWithBuffer(h, FN1, PID);
    const release = h.registry.holdMoves();
    const write = h.vfio.regionWrite(PID, fd1, CONFIG, 4n, new Uint8Array([0, 0]));
    await settle();
    const mark = h.log.length;
    await expectErrno(h.vfio.hotReset(PID, h.fd0, [fd1]), 'EBUSY');
    expect(h.since(mark)).to.deep.equal([]);
    release();
    await write;
    await h.vfio.hotReset(PID, h.fd0, [fd1]);
  });

  it('the pin variant: EINVAL while a buffer of the set is pinned', async () => {
    const h = await setup({ allowPin: true });
    const { fd: fd1 } = await openWithBuffer(h, FN1, PID);
    const pinned = h.vfio.buffers().find((b) => b.providerBdf === FN1)!.handle;
    h.vfio.pin(pinned);
    await expectErrno(h.vfio.hotReset(PID, h.fd0, [fd1]), 'EINVAL', 'pinned');
    h.vfio.unpin(pinned);
    await h.vfio.hotReset(PID, h.fd0, [fd1]);
  });
});
