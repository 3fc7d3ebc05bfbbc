import { expect } from 'chai';
import { settle } from '../testing/harness';
import { ReservationLock } from './reservation-lock';

describe('ReservationLock', () => {
  it('runs critical sections one at a time, in arrival order', async () => {
    const lock = new ReservationLock();
    const log: string[] = [];
    let openFirst!: () => void;
    const first = lock.run(async () => {
      log.push('first in');
      await new Promise<void>((resolve) => (openFirst = resolve));
      log.push('first out');
    });
    const second = lock.run(async () => {
      log.push('second');
    });
    const third = lock.run(async () => {
      log.push('third');
    });
    await settle();
    expect(log).to.deep.equal(['first in']);
    openFirst();
    await Promise.all([first, second, third]);
    expect(log).to.deep.equal(['first in', 'first out', 'second', 'third']);
  });

  it('is released when a critical section throws', async () => {
    const lock = new ReservationLock();
    let error: unknown;
    await lock.run(async () => {
      throw new Error('boom');
    }).catch((e: unknown) => (error = e));
    expect(error).to.be.instanceOf(Error);
    expect(await lock.run(async () => 42)).to.equal(42);
  });
});
