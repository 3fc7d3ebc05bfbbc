import { expect } from 'chai';
import { HeapBarMemory } from './heap-bar-memory';

describe('heap BAR memory', () => {
  it('reads zeros where nothing was written and spans chunk boundaries', () => {
    const memory = new HeapBarMemory(1 << 20);
    memory.write(65536 - 2, Buffer.from([1, 2, 3, 4]));
    expect([...memory.read(65536 - 4, 8)]).to.deep.equal([0, 0, 1, 2, 3, 4, 0, 0]);
    expect(memory.residentBytes).to.equal(2 * 65536);
  });

  it('rejects out-of-range access and access after close', () => {
    const memory = new HeapBarMemory(4096);
    expect(() => memory.read(4090, 8)).to.throw('EINVAL');
    expect(() => memory.write(-1, Buffer.alloc(1))).to.throw('EINVAL');
    memory.close();
    expect(() => memory.read(0, 1)).to.throw('EBADF');
  });
});
