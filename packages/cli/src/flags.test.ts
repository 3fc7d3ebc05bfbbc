import { expect } from 'chai';
import { ACCESS_FLAGS, flagNames, OPEN_FLAGS, parseFlags } from './flags';

describe('cli flag names', () => {
  it('reads open flags by name, with or without O_, joined by , or |', () => {
    expect(parseFlags('rdwr,cloexec', OPEN_FLAGS, '--flags')).to.equal(0o2000002);
    expect(parseFlags('O_RDWR|O_CLOEXEC', OPEN_FLAGS, '--flags')).to.equal(0o2000002);
  });

  it('reads ibv_access_flags by name', () => {
    expect(parseFlags('local_write,remote_read', ACCESS_FLAGS, '--access')).to.equal(1 | 4);
  });

  it('refuses a name it does not know with EINVAL listing the ones it does', () => {
    expect(() => parseFlags('rdwr,sync', OPEN_FLAGS, '--flags')).to.throw(/^EINVAL: --flags: no flag sync; one of O_RDONLY, O_WRONLY, O_RDWR, O_CLOEXEC, O_NONBLOCK$/);
  });

  it('names the flags of a value', () => {
    expect(flagNames(0o2000002, OPEN_FLAGS)).to.equal('O_RDWR|O_CLOEXEC');
    expect(flagNames(0, OPEN_FLAGS)).to.equal('O_RDONLY');
    expect(flagNames(5, ACCESS_FLAGS)).to.equal('IBV_ACCESS_LOCAL_WRITE|IBV_ACCESS_REMOTE_READ');
  });
});
