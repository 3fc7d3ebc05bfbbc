import { expect } from 'chai';
import { errno } from '@p2p/errno';
import { FakeOwner } from '../testing/fake-owner';
import { expectErrno, expectRejects, harness, type Harness, settle } from '../testing/harness';
import { O_RDWR } from './open-flags';

/** An owner that remembers what fds name (as vfio-pci does), beside the harness's "vfio-pci" that does not. */
function withCachingOwner(): Harness & { caching: FakeOwner } {
  const h = harness();
  const caching = new FakeOwner('caching', h.segments, 'tmpfs-a', { remembersFds: true });
  h.registry.registerOwner(caching);
  return { ...h, caching };
}

/** Whether `promise` settled by now. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(
    () => (done = true),
    () => (done = true),
  );
  await settle();
  return done;
}

describe('Registry: owners that remember fds hear of their closes', () => {
  it('tells the owner of a close its file outlives, and the close returns only after its answer', async () => {
    const { registry, caching } = withCachingOwner();
    const pid = registry.openProcess('app');
    const { fd } = registry.createFile('caching', pid, 'dev', O_RDWR);
    const dup = registry.dup(pid, fd);
    const open = caching.hold('fdClosed');
    const closing = registry.close(pid, dup);
    expect(await settled(closing)).to.equal(false);
    open();
    await closing;
    expect(caching.calls).to.deep.equal([`fdClosed ${pid}:${dup}`]);
  });

  it('makes the fd EBADF as soon as its close begins', async () => {
    const { registry, caching } = withCachingOwner();
    const pid = registry.openProcess('app');
    const { fd } = registry.createFile('caching', pid, 'dev', O_RDWR);
    const dup = registry.dup(pid, fd);
    const open = caching.hold('fdClosed');
    const closing = registry.close(pid, dup);
    expectErrno(() => registry.resolveFd(pid, dup), 'EBADF');
    open();
    await closing;
  });

  it('hands the closed number out again only once the owner answered', async () => {
    const { registry, caching } = withCachingOwner();
    const pid = registry.openProcess('app');
    const { fd } = registry.createFile('caching', pid, 'dev', O_RDWR);
    const dup = registry.dup(pid, fd);
    const open = caching.hold('fdClosed');
    const closing = registry.close(pid, dup);
    expect(registry.dup(pid, fd)).to.equal(dup + 1);
    open();
    await closing;
    expect(registry.dup(pid, fd)).to.equal(dup);
  });

  it('sends release, not fdClosed, for the close of the last reference', async () => {
    const { registry, caching } = withCachingOwner();
    const pid = registry.openProcess('app');
    const { fileId, fd } = registry.createFile('caching', pid, 'dev', O_RDWR);
    await registry.close(pid, fd);
    expect(caching.calls).to.deep.equal([`release ${fileId}`]);
  });

  it('tells the owner when the sender closes an fd it sent', async () => {
    const { registry, caching } = withCachingOwner();
    const sender = registry.openProcess('sender');
    const receiver = registry.openProcess('receiver');
    const { fd } = registry.createFile('caching', sender, 'dev', O_RDWR);
    registry.sendFd(sender, fd, receiver);
    await registry.close(sender, fd);
    expect(caching.calls).to.deep.equal([`fdClosed ${sender}:${fd}`]);
  });

  it('tells the owner of each fd an exiting process held, lowest first, before the exit completes', async () => {
    const { registry, caching } = withCachingOwner();
    const pid = registry.openProcess('app');
    const other = registry.openProcess('other');
    const { fd } = registry.createFile('caching', pid, 'dev', O_RDWR);
    const dup = registry.dup(pid, fd);
    registry.receiveFd(other, registry.sendFd(pid, fd, other));
    const open = caching.hold('fdClosed');
    const exiting = registry.exitProcess(pid);
    expect(await settled(exiting)).to.equal(false);
    open();
    await exiting;
    expect(caching.calls).to.deep.equal([`fdClosed ${pid}:${fd}`, `fdClosed ${pid}:${dup}`]);
  });

  it('sends nothing to an owner without fdClosed', async () => {
    const { registry, owner } = harness();
    const pid = registry.openProcess('app');
    const { fd } = registry.createFile('vfio-pci', pid, 'dev', O_RDWR);
    const dup = registry.dup(pid, fd);
    await registry.close(pid, dup);
    expect(owner.calls).to.deep.equal([]);
  });

  it('sends nothing to an owner that went away', async () => {
    const { registry, caching } = withCachingOwner();
    const pid = registry.openProcess('app');
    const { fd } = registry.createFile('caching', pid, 'dev', O_RDWR);
    const dup = registry.dup(pid, fd);
    await registry.ownerGone('caching');
    await registry.close(pid, dup);
    expect(caching.calls).to.deep.equal([]);
  });

  it('reports an fdClosed the owner fails, and the fd is closed all the same', async () => {
    const h = withCachingOwner();
    const { registry, caching } = h;
    const pid = registry.openProcess('app');
    const { fd } = registry.createFile('caching', pid, 'dev', O_RDWR);
    const dup = registry.dup(pid, fd);
    caching.failNext.set('fdClosed', errno('EIO', 'owner hiccup'));
    await registry.close(pid, dup);
    expect(h.failures.map((f) => `${f.owner} ${f.op}`)).to.deep.equal(['caching fdClosed']);
    await expectRejects(registry.close(pid, dup), 'EBADF');
    expect(registry.dup(pid, fd)).to.equal(dup);
  });
});
