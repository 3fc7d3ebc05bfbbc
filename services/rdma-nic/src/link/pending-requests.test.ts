import { expect } from 'chai';
import type { WireResponse } from '../transport/fabric';
import { PendingRequests } from './pending-requests';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('PendingRequests: the transport timers', () => {
  let pending: PendingRequests;
  const errors: unknown[] = [];
  beforeEach(() => {
    errors.length = 0;
    pending = new PendingRequests((error) => errors.push(error));
  });
  afterEach(() => pending.close());

  it('answers each request once: with its answer, or undefined when its own timeout passes first', async () => {
    const got: [string, WireResponse | undefined][] = [];
    const long = pending.add(1, 0, 200, (response) => got.push(['long', response]));
    pending.add(1, 1, 30, (response) => got.push(['short', response]));
    const answered = pending.add(1, 2, 30, (response) => got.push(['answered', response]));
    expect(pending.settle(answered, { status: 0 })).to.equal(true);
    expect(pending.settle(answered, { status: 0 })).to.equal(false);
    await sleep(60);
    expect(got).to.deep.equal([
      ['answered', { status: 0 }],
      ['short', undefined],
    ]);
    expect(pending.settle(long, { status: 5 })).to.equal(true);
    await sleep(200);
    expect(got.slice(2)).to.deep.equal([['long', { status: 5 }]]);
    expect(pending.timeouts).to.equal(1);
  });

  it('never times out timeoutMs 0, and answers everything undefined on close', () => {
    const got: (WireResponse | undefined)[] = [];
    pending.add(1, 0, 0, (response) => got.push(response));
    pending.add(1, 1, 10_000, (response) => got.push(response));
    pending.close();
    expect(got).to.deep.equal([undefined, undefined]);
  });

  it('survives a reply that throws, and one that posts again from within', async () => {
    let retried = false;
    pending.add(1, 0, 10, () => {
      pending.add(1, 0, 10, () => (retried = true));
      throw new Error('domain bug');
    });
    await sleep(60);
    expect(retried).to.equal(true);
    expect(errors).to.have.length(1);
  });
});
