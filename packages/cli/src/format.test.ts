import { expect } from 'chai';
import { hex, parseUnsigned, size, toJson } from './format';

describe('cli format', () => {
  it('prints hex with 0x and padding', () => {
    expect(hex(0x1f, 4)).to.equal('0x001f');
    expect(hex(2n ** 40n)).to.equal('0x10000000000');
  });

  it('prints sizes as lspci does', () => {
    expect(size(16384n)).to.equal('16K');
    expect(size(256n * 1024n * 1024n)).to.equal('256M');
    expect(size(4096 + 1)).to.equal('4097');
  });

  it('parses decimal, hex and K/M/G sizes', () => {
    expect(parseUnsigned('4096', 'length')).to.equal(4096n);
    expect(parseUnsigned('0x1000', 'offset')).to.equal(4096n);
    expect(parseUnsigned('64K', 'length')).to.equal(65536n);
    expect(parseUnsigned('1g', 'length')).to.equal(2n ** 30n);
  });

  it('refuses what is not a number with EINVAL naming the argument', () => {
    expect(() => parseUnsigned('12abc', 'offset')).to.throw(/^EINVAL: offset "12abc" is not a number/);
    expect(() => parseUnsigned('-1', 'offset')).to.throw(/EINVAL/);
    expect(() => parseUnsigned('0x100', 'width', 8n)).to.throw(/^EINVAL: width 0x100 is above 0x8/);
  });

  it('writes bigints as hex strings in JSON', () => {
    expect(JSON.parse(toJson({ busAddress: 0xfe000000n, size: 4 }))).to.deep.equal({ busAddress: '0xfe000000', size: 4 });
    expect(JSON.parse(toJson({ data: Buffer.from('AB') }))).to.deep.equal({ data: '4142' });
  });
});
