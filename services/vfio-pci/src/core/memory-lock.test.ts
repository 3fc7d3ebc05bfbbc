import { expect } from 'chai';
import { MemoryLock } from './memory-lock';

/** Lets every pending grant run. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('memory_lock (a read-write semaphore)', () => {
  it('lets readers hold it together (BAR accesses side by side)', async () => {
    const lock = new MemoryLock();
    const first = await lock.acquireRead();
    let second = false;
    void lock.acquireRead().then(() => (second = true));
    await settle();
    expect(second).to.equal(true);
    first();
  });

  it('gives a writer the lock alone: after the readers release, and before later readers', async () => {
    const lock = new MemoryLock();
    const order: string[] = [];
    const reader = await lock.acquireRead();
    const writer = lock.acquire().then((release) => {
      order.push('writer');
      return release;
    });
    // Arrives behind the waiting writer: waits, so reads cannot starve a reset.
    const lateReader = lock.acquireRead().then((release) => {
      order.push('late reader');
      return release;
    });
    await settle();
    expect(order).to.deep.equal([]);
    reader();
    await settle();
    expect(order).to.deep.equal(['writer']);
    (await writer)();
    await settle();
    expect(order).to.deep.equal(['writer', 'late reader']);
    (await lateReader)();
  });

  it('serves writers one at a time, in arrival order', async () => {
    const lock = new MemoryLock();
    const order: number[] = [];
    await Promise.all([1, 2, 3].map((n) => lock.run(async () => {
      order.push(n);
      await settle();
      order.push(-n);
    })));
    expect(order).to.deep.equal([1, -1, 2, -2, 3, -3]);
  });

  it('down_write_trylock fails while a reader holds it or anyone waits, and succeeds when free', async () => {
    const lock = new MemoryLock();
    const reader = await lock.acquireRead();
    expect(lock.tryAcquire()).to.equal(undefined);
    reader();
    const release = lock.tryAcquire();
    expect(release).to.be.a('function');
    let read = false;
    void lock.read(async () => {
      read = true;
    });
    await settle();
    expect(read).to.equal(false);
    release!();
    await settle();
    expect(read).to.equal(true);
  });

  it('releases once however often the release function is called', async () => {
    const lock = new MemoryLock();
    const first = await lock.acquireRead();
    const second = await lock.acquireRead();
    let written = false;
    const writer = lock.run(async () => {
      written = true;
    });
    first();
    first();
    await settle();
    // The second reader still holds it: a double release must not have let the writer in.
    expect(written).to.equal(false);
    second();
    await writer;
    expect(written).to.equal(true);
  });
});
