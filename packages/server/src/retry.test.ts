import { expect } from 'chai';
import { retryUntil } from './retry';

describe('retryUntil', () => {
  it('retries until the call succeeds', async () => {
    let calls = 0;
    const value = await retryUntil(1000, async () => (++calls < 3 ? Promise.reject(new Error('not yet')) : 'up'), undefined, 1);
    expect(value).to.equal('up');
    expect(calls).to.equal(3);
  });

  it('throws at once what is not retryable, and the last error once the time is up', async () => {
    let calls = 0;
    const refused = await retryUntil(1000, () => Promise.reject(new Error(`refused ${++calls}`)), () => false, 1).catch((e: Error) => e.message);
    expect(refused).to.equal('refused 1');
    const late = await retryUntil(20, () => Promise.reject(new Error('down')), undefined, 5).catch((e: Error) => e.message);
    expect(late).to.equal('down');
  });
});
