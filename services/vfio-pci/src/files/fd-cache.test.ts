import { expect } from 'chai';
import { expectErrno, harness, HIGH, NVME, PID, settle } from '../testing/harness';

const OTHER_PID = PID + 1;

describe('VfioPci: device fds remembered between ioctls', () => {
  it('asks the registry once per device fd, not once per ioctl', async () => {
    const h = harness();
    const fd = await h.open();
    const before = h.registry.resolves;
    await h.vfio.deviceInfo(PID, fd);
    await h.vfio.regionInfo(PID, fd, 2);
    await h.vfio.reset(PID, fd);
    expect(h.registry.resolves - before).to.equal(1);
  });

  it('asks again every time for an fd of another owner', async () => {
    const h = harness();
    const foreign = h.registry.foreignFile(PID);
    await expectErrno(h.vfio.deviceInfo(PID, foreign), 'ENOTTY');
    await expectErrno(h.vfio.deviceInfo(PID, foreign), 'ENOTTY');
    expect(h.registry.resolves).to.equal(2);
  });

  it('EBADF on a closed fd whose device lives on in another process', async () => {
    const h = harness();
    const fd = await h.open();
    h.registry.sendFd(PID, fd, OTHER_PID);
    await h.vfio.deviceInfo(PID, fd);
    await h.registry.closeFd(PID, fd);
    await expectErrno(h.vfio.deviceInfo(PID, fd), 'EBADF');
  });

  it('ENOTTY, not the old device, once the closed number names another owner’s file', async () => {
    const h = harness();
    const fd = await h.open();
    const theirs = h.registry.sendFd(PID, fd, OTHER_PID);
    await h.vfio.deviceInfo(PID, fd);
    await h.registry.closeFd(PID, fd);
    expect(h.registry.foreignFile(PID)).to.equal(fd);
    await expectErrno(h.vfio.deviceInfo(PID, fd), 'ENOTTY');
    expect(await h.vfio.deviceInfo(OTHER_PID, theirs)).to.deep.equal({ flags: 3, numRegions: 9, numIrqs: 5 });
  });

  it('reaches the new device once the closed number names another device', async () => {
    const h = harness();
    const fd = await h.open(NVME);
    h.registry.sendFd(PID, fd, OTHER_PID);
    expect((await h.vfio.regionInfo(PID, fd, 0)).size).to.equal(0x4000n);
    await h.registry.closeFd(PID, fd);
    expect(await h.open(HIGH)).to.equal(fd);
    expect((await h.vfio.regionInfo(PID, fd, 0)).size).to.equal(0x10_0000n);
  });

  it('a closed dup is EBADF and the fd it was dup’d from still works', async () => {
    const h = harness();
    const fd = await h.open();
    const dup = h.registry.dupFd(PID, fd);
    await h.vfio.deviceInfo(PID, fd);
    await h.vfio.deviceInfo(PID, dup);
    await h.registry.closeFd(PID, dup);
    await expectErrno(h.vfio.deviceInfo(PID, dup), 'EBADF');
    expect(await h.vfio.deviceInfo(PID, fd)).to.deep.equal({ flags: 3, numRegions: 9, numIrqs: 5 });
  });

  it('the receiver of a sent fd keeps the device after the sender closed its own', async () => {
    const h = harness();
    const fd = await h.open();
    const theirs = h.registry.sendFd(PID, fd, OTHER_PID);
    await h.vfio.deviceInfo(PID, fd);
    await h.vfio.deviceInfo(OTHER_PID, theirs);
    await h.registry.closeFd(PID, fd);
    await expectErrno(h.vfio.deviceInfo(PID, fd), 'EBADF');
    expect(await h.vfio.deviceInfo(OTHER_PID, theirs)).to.deep.equal({ flags: 3, numRegions: 9, numIrqs: 5 });
  });

  it('ESRCH for every fd of an exited process; the device stays with the process it was sent to', async () => {
    const h = harness();
    const fd = await h.open();
    const dup = h.registry.dupFd(PID, fd);
    const theirs = h.registry.sendFd(PID, fd, OTHER_PID);
    await h.vfio.deviceInfo(PID, fd);
    await h.vfio.deviceInfo(PID, dup);
    await h.registry.exitProcess(PID);
    await expectErrno(h.vfio.deviceInfo(PID, fd), 'ESRCH');
    await expectErrno(h.vfio.deviceInfo(PID, dup), 'ESRCH');
    expect(await h.vfio.deviceInfo(OTHER_PID, theirs)).to.deep.equal({ flags: 3, numRegions: 9, numIrqs: 5 });
  });

  it('does not remember an answer that the fd’s close overtook', async () => {
    const h = harness();
    const fd = await h.open();
    h.registry.sendFd(PID, fd, OTHER_PID);
    const answer = h.registry.holdResolves();
    const racing = h.vfio.deviceInfo(PID, fd);
    await settle();
    await h.registry.closeFd(PID, fd);
    answer();
    // The ioctl raced the close and may complete, as one holding the file in the kernel does.
    await racing;
    await expectErrno(h.vfio.deviceInfo(PID, fd), 'EBADF');
  });

  it('does not remember an answer that the file’s release overtook', async () => {
    const h = harness();
    const fd = await h.open();
    const answer = h.registry.holdResolves();
    const racing = h.vfio.deviceInfo(PID, fd);
    await settle();
    await h.registry.closeFd(PID, fd);
    answer();
    await expectErrno(racing, 'ENOTTY');
    await expectErrno(h.vfio.deviceInfo(PID, fd), 'EBADF');
  });
});
