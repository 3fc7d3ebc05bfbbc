import { status as Code } from '@grpc/grpc-js';
import { expect } from 'chai';
import { errno } from '@p2p/errno';
import { errnoOf, grpcCodeFor, toServiceError, toStatus } from './status';

describe('errno <-> gRPC status', () => {
  it('carries the errno name in the message, the trailer and google.rpc.ErrorInfo', () => {
    const error = toServiceError(errno('EBUSY', 'device is owned by pid 7'));
    expect(error.code).to.equal(Code.FAILED_PRECONDITION);
    expect(error.details).to.equal('EBUSY: device is owned by pid 7');
    expect(error.metadata.get('p2p-errno')).to.deep.equal(['EBUSY']);
    expect(errnoOf(error)).to.equal('EBUSY');
  });

  it('reads the errno from the rich details even without the plain trailer', () => {
    const status = toStatus(errno('EOVERFLOW', 'offset + length overflows'));
    status.metadata.remove('p2p-errno');
    expect(errnoOf({ metadata: status.metadata })).to.equal('EOVERFLOW');
  });

  it('maps each errno to a code a generic client can act on', () => {
    expect(grpcCodeFor('EINVAL')).to.equal(Code.INVALID_ARGUMENT);
    expect(grpcCodeFor('ENODEV')).to.equal(Code.NOT_FOUND);
    expect(grpcCodeFor('EOPNOTSUPP')).to.equal(Code.UNIMPLEMENTED);
    expect(grpcCodeFor('ETIMEDOUT')).to.equal(Code.DEADLINE_EXCEEDED);
  });

  it('turns an unexpected exception into EIO and lets a fault override the code', () => {
    expect(errnoOf(toServiceError(new TypeError('boom')))).to.equal('EIO');
    expect(toStatus(errno('EIO', 'injected'), Code.UNAVAILABLE).code).to.equal(Code.UNAVAILABLE);
  });

  it('finds no errno on errors that carry none', () => {
    expect(errnoOf(new Error('plain'))).to.equal(undefined);
    expect(errnoOf(null)).to.equal(undefined);
  });
});
