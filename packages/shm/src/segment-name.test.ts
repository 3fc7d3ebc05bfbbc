import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { MAX_SEGMENT_NAME_LENGTH, isValidSegmentName, validateSegmentName } from './segment-name';

describe('segment names', () => {
  it('accepts names made of [A-Za-z0-9._-]', () => {
    for (const name of ['bar0', 'dev-0000_01_00.0.bar2', 'a.b.c', '-x', 'x'.repeat(MAX_SEGMENT_NAME_LENGTH)]) {
      expect(isValidSegmentName(name), name).to.equal(true);
      expect(validateSegmentName(name)).to.equal(name);
    }
  });

  it('rejects anything that could leave the directory or hide, with EINVAL', () => {
    const bad = ['', '.', '..', '.hidden', 'a/b', '../x', 'a..b', 'x..', 'a b', 'caf\u00e9', 'a\0b', 'x'.repeat(256)];
    for (const name of bad) {
      expect(isValidSegmentName(name), JSON.stringify(name)).to.equal(false);
      expect(() => validateSegmentName(name)).to.throw(ErrnoError).with.property('errno', 'EINVAL');
    }
  });
});
