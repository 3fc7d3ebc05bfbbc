import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { canonicalGid, gidBytes } from '../link';
import { gidFromIpv4 } from './gid';

describe('gidFromIpv4', () => {
  it('makes the IPv4-mapped GID in the text the wire uses', () => {
    const gid = gidFromIpv4('127.0.0.2');
    expect(gid).to.equal('::ffff:127.0.0.2');
    expect(canonicalGid(gid)).to.equal(gid);
    expect([...gidBytes(gid)]).to.deep.equal([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 2]);
  });

  it('refuses what is not an IPv4 address with EINVAL', () => {
    for (const address of ['localhost', '::1', '127.0.0.256', '127.000.0.1']) {
      expect(() => gidFromIpv4(address), address).to.throw(ErrnoError).with.property('errno', 'EINVAL');
    }
  });
});
