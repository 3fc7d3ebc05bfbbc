import { expect } from 'chai';
import { expectErrno } from '../testing/harness';
import {
  DMA_HEAP_VALID_FD_FLAGS,
  O_CLOEXEC,
  O_NONBLOCK,
  O_RDONLY,
  O_RDWR,
  O_WRONLY,
  checkOpenFlags,
  openedForReading,
  openedForWriting,
} from './open-flags';

describe('open flags', () => {
  it('have the Linux values', () => {
    expect([O_RDONLY, O_WRONLY, O_RDWR, O_NONBLOCK, O_CLOEXEC]).to.deep.equal([0, 1, 2, 0o4000, 0o2000000]);
  });

  it('accept the access mode with O_CLOEXEC and O_NONBLOCK', () => {
    expect(checkOpenFlags(O_RDWR | O_CLOEXEC | O_NONBLOCK, 't')).to.equal(O_RDWR | O_CLOEXEC | O_NONBLOCK);
    expect(checkOpenFlags(O_RDONLY, 't')).to.equal(0);
  });

  it('refuse other bits, access mode 3 and non-integers with EINVAL', () => {
    expectErrno(() => checkOpenFlags(0o100 /* O_CREAT */, 't'), 'EINVAL');
    expectErrno(() => checkOpenFlags(3, 't'), 'EINVAL');
    expectErrno(() => checkOpenFlags(-1, 't'), 'EINVAL');
    expectErrno(() => checkOpenFlags(1.5, 't'), 'EINVAL');
  });

  it('leave O_NONBLOCK out of DMA_HEAP_VALID_FD_FLAGS', () => {
    expectErrno(() => checkOpenFlags(O_RDWR | O_NONBLOCK, 't', DMA_HEAP_VALID_FD_FLAGS), 'EINVAL');
    expect(checkOpenFlags(O_RDWR | O_CLOEXEC, 't', DMA_HEAP_VALID_FD_FLAGS)).to.equal(O_RDWR | O_CLOEXEC);
  });

  it('tell read and write access apart', () => {
    expect([openedForReading(O_RDONLY), openedForReading(O_WRONLY), openedForReading(O_RDWR)]).to.deep.equal([true, false, true]);
    expect([openedForWriting(O_RDONLY), openedForWriting(O_WRONLY), openedForWriting(O_RDWR)]).to.deep.equal([false, true, true]);
  });
});
