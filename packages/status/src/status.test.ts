import { status as Code } from '@grpc/grpc-js';
import { expect } from 'chai';
import { errno } from '@p2p/errno';
import { rpcErrorDetails, rpcStatus } from '@p2p/proto';
import { errnoOf, grpcCodeFor, MAX_STATUS_MESSAGE, toServiceError, toStatus } from './status';

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

  it("sorts iommufd's EADDRINUSE and EBADFD with EBUSY and EBADF, and carries Linux's numbers (98, 77)", () => {
    expect(grpcCodeFor('EADDRINUSE')).to.equal(grpcCodeFor('EBUSY'));
    expect(grpcCodeFor('EBADFD')).to.equal(grpcCodeFor('EBADF'));
    const numbers = (['EADDRINUSE', 'EBADFD'] as const).map((name) => {
      const details = toStatus(errno(name, 'iommufd')).metadata.get('grpc-status-details-bin')[0] as Buffer;
      const [any] = rpcStatus.Status.decode(details).details;
      return rpcErrorDetails.ErrorInfo.decode(any!.value).metadata.errno;
    });
    expect(numbers).to.deep.equal(['98', '77']);
  });

  it('turns an unexpected exception (a server bug) into INTERNAL carrying EIO', () => {
    const error = toServiceError(new TypeError('boom'));
    expect(error.code).to.equal(Code.INTERNAL);
    expect(errnoOf(error)).to.equal('EIO');
    expect(error.details).to.equal('EIO: internal error: boom');
  });

  it("gives a device's EIO a code of its own, not INTERNAL", () => {
    expect(toStatus(errno('EIO', 'device failed the read')).code).to.equal(Code.DATA_LOSS);
  });

  it("lets a fault rule override the code", () => {
    expect(toStatus(errno('EIO', 'injected'), Code.UNAVAILABLE).code).to.equal(Code.UNAVAILABLE);
  });

  it('bounds the message and the details however long the input it quotes', () => {
    const status = toStatus(errno('EINVAL', `bad name '${'x'.repeat(1_000_000)}'`));
    expect(status.details.length).to.be.at.most(MAX_STATUS_MESSAGE);
    expect(status.details).to.match(/^EINVAL: bad name 'x+\.\.\. \(truncated\)$/);
    const trailers = status.metadata.get('grpc-status-details-bin')[0] as Buffer;
    expect(trailers.length).to.be.below(2 * MAX_STATUS_MESSAGE + 200);
    expect(errnoOf({ metadata: status.metadata })).to.equal('EINVAL');
  });

  it('finds no errno on errors that carry none', () => {
    expect(errnoOf(new Error('plain'))).to.equal(undefined);
    expect(errnoOf(null)).to.equal(undefined);
  });
});
