import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { ENVELOPE_HEADROOM_BYTES, MessageLimit } from './message-limit';

describe('MessageLimit', () => {
  const limit = new MessageLimit(64 * 1024);

  it('leaves the envelope headroom out of the data an answer can carry', () => {
    expect(limit.payloadBytes).to.equal(64 * 1024 - ENVELOPE_HEADROOM_BYTES);
  });

  it('lets an answer of exactly the data limit through', () => {
    expect(() => limit.checkAnswer(BigInt(limit.payloadBytes), 'BulkRead', 'map it')).to.not.throw();
  });

  it('refuses an answer one byte over with EMSGSIZE naming the call, the limit and the other path', () => {
    const refuse = (): void => limit.checkAnswer(limit.payloadBytes + 1, 'BulkRead', 'map the BAR with GetBarSegments');
    expect(refuse)
      .to.throw(ErrnoError)
      .that.satisfies(
        (e: ErrnoError) =>
          e.errno === 'EMSGSIZE' && e.detail.startsWith(`BulkRead of ${limit.payloadBytes + 1} bytes`) && e.detail.includes('65536') && e.detail.endsWith('GetBarSegments'),
      );
  });
});
