import { expect } from 'chai';
import { canonicalGid, gidBytes, gidText } from './gid';

describe('GID text', () => {
  it('reads IPv4-mapped and plain IPv6 GIDs into their 16 bytes', () => {
    expect([...gidBytes('::ffff:127.0.0.2')]).to.deep.equal([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 2]);
    expect([...gidBytes('fe80::1:2')]).to.deep.equal([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2]);
    expect([...gidBytes('1:2:3:4:5:6:7:8')]).to.deep.equal([0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]);
    expect([...gidBytes('::')]).to.deep.equal(new Array(16).fill(0));
  });

  it('refuses what is not an IPv6 address with EINVAL', () => {
    for (const bad of ['', '127.0.0.2', '::ffff:256.0.0.1', '1::2::3', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '::12345', 'g::1', '1:2:3:4:5:6:7::8']) {
      expect(() => gidBytes(bad), bad).to.throw().with.property('errno', 'EINVAL');
    }
  });

  it('writes one canonical text for each GID, as both NICs must compare it', () => {
    expect(canonicalGid('0:0:0:0:0:FFFF:7F00:0002')).to.equal('::ffff:127.0.0.2');
    expect(canonicalGid('FE80:0:0:0:0:0:0:1')).to.equal('fe80::1');
    expect(canonicalGid('1:0:0:2:0:0:0:3')).to.equal('1:0:0:2::3');
    expect(canonicalGid('1:0:2:3:4:5:6:7')).to.equal('1:0:2:3:4:5:6:7');
    expect(gidText(gidBytes('::1'))).to.equal('::1');
    expect(() => gidText(new Uint8Array(4))).to.throw().with.property('errno', 'EINVAL');
  });
});
