import { expect } from 'chai';
import { gidAddress, gidHost } from './gid';

describe('GID addresses', () => {
  it('names the address to bind or dial', () => {
    expect(gidHost('::ffff:127.0.0.3')).to.equal('127.0.0.3');
    expect(gidHost('::1')).to.equal('[::1]');
    expect(gidAddress('::ffff:127.0.0.3')).to.equal('127.0.0.3');
    expect(gidAddress('::1')).to.equal('::1');
  });
});
