import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { allocatedBytes } from './accounting';
import { PAGE_SIZE } from './limits';
import { SegmentStore } from './segment-store';
import { useTempShmDir } from '@p2p/testing';

describe('Segment', () => {
  const dir = useTempShmDir();
  const chunkSize = 64 * PAGE_SIZE;
  let store: SegmentStore;
  beforeEach(() => {
    store = new SegmentStore({ dir: dir(), chunkSize });
  });

  it('reads back what it wrote, and read() returns a copy', () => {
    const segment = store.create('s', 8 * PAGE_SIZE);
    segment.write(100, Buffer.from('hello'));
    const copy = segment.read(100, 5);
    expect(copy.toString()).to.equal('hello');
    copy.write('HELLO');
    expect(segment.read(100, 5).toString()).to.equal('hello');
    segment.close();
  });

  it('view() is the shared mapping itself', () => {
    const segment = store.create('s', 8 * PAGE_SIZE);
    const view = segment.view(PAGE_SIZE, 4);
    view.write('live');
    expect(segment.read(PAGE_SIZE, 4).toString()).to.equal('live');
    segment.write(PAGE_SIZE, Buffer.from('LIVE'));
    expect(view.toString()).to.equal('LIVE');
    segment.close();
  });

  it('window() is a live mapping of only the pages the range is on', () => {
    const segment = store.create('s', 8 * PAGE_SIZE);
    const window = segment.window(3 * PAGE_SIZE - 2, 4);
    expect(window.length).to.equal(4);
    expect(window.buffer.byteLength).to.equal(2 * PAGE_SIZE);
    window.write('live');
    expect(segment.read(3 * PAGE_SIZE - 2, 4).toString()).to.equal('live');
    segment.write(3 * PAGE_SIZE - 2, Buffer.from('LIVE'));
    expect(window.toString()).to.equal('LIVE');
    segment.close();
  });

  it('window() stops at the end of a file that ends inside a page, and refuses a range past it with ERANGE', () => {
    const segment = store.create('s', PAGE_SIZE + 10);
    const window = segment.window(PAGE_SIZE + 2, 8);
    expect(window.buffer.byteLength).to.equal(10);
    expect(() => segment.window(PAGE_SIZE + 2, 9)).to.throw(ErrnoError).with.property('errno', 'ERANGE');
    expect(segment.window(PAGE_SIZE + 10, 0).length).to.equal(0);
    segment.close();
  });

  it('shares writes between two opens of the same file', () => {
    const a = store.create('s', 8 * PAGE_SIZE);
    const b = store.open('s');
    const viewB = b.view(0, 8 * PAGE_SIZE);
    a.write(5 * PAGE_SIZE + 7, Buffer.from('from a'));
    expect(viewB.subarray(5 * PAGE_SIZE + 7, 5 * PAGE_SIZE + 13).toString()).to.equal('from a');
    b.write(3, Buffer.from('from b'));
    expect(a.view(3, 6).toString()).to.equal('from b');
    a.close();
    b.close();
  });

  it('shares writes with another process', () => {
    const segment = store.create('s', 4 * PAGE_SIZE);
    const view = segment.view(0, 4 * PAGE_SIZE);
    view.write('ping', 10);
    const child = `
      const { SegmentStore } = require(${JSON.stringify(path.join(__dirname, 'index.js'))});
      const segment = new SegmentStore({ dir: ${JSON.stringify(dir())}, chunkSize: ${chunkSize} }).open('s');
      if (segment.read(10, 4).toString() !== 'ping') process.exit(3);
      segment.view(2 * ${PAGE_SIZE}, 4).write('pong');
      segment.close();`;
    const result = spawnSync(process.execPath, ['-e', child], { encoding: 'utf8' });
    expect(result.status, result.stderr).to.equal(0);
    expect(view.subarray(2 * PAGE_SIZE, 2 * PAGE_SIZE + 4).toString()).to.equal('pong');
    segment.close();
  });

  it('checks bounds: EINVAL for malformed numbers, ERANGE past the end', () => {
    const size = 2 * PAGE_SIZE;
    const segment = store.create('s', size);
    for (const [offset, length] of [
      [-1, 1],
      [0.5, 1],
      [0, -1],
      [0, Number.NaN],
      [2 ** 53, 1],
    ]) {
      expect(() => segment.view(offset, length), `${offset}+${length}`)
        .to.throw(ErrnoError)
        .with.property('errno', 'EINVAL');
      expect(() => segment.read(offset, length), `${offset}+${length}`)
        .to.throw(ErrnoError)
        .with.property('errno', 'EINVAL');
    }
    for (const [offset, length] of [
      [size - 1, 2],
      [size, 1],
      [0, size + 1],
      [4 * 2 ** 30, 1],
    ]) {
      expect(() => segment.view(offset, length), `${offset}+${length}`)
        .to.throw(ErrnoError)
        .with.property('errno', 'ERANGE');
      expect(() => segment.read(offset, length), `${offset}+${length}`)
        .to.throw(ErrnoError)
        .with.property('errno', 'ERANGE');
    }
    expect(() => segment.write(size - 2, Buffer.from('abc'))).to.throw(ErrnoError).with.property('errno', 'ERANGE');
    expect(segment.view(size, 0).length).to.equal(0);
    expect(segment.read(size - 1, 1)).to.deep.equal(Buffer.from([0]));
    segment.close();
  });

  it('handles an empty segment without mapping it', () => {
    const segment = store.create('empty', 0);
    expect(segment.view(0, 0).length).to.equal(0);
    expect(segment.read(0, 0).length).to.equal(0);
    segment.write(0, new Uint8Array(0));
    expect(() => segment.read(0, 1)).to.throw(ErrnoError).with.property('errno', 'ERANGE');
    segment.close();
  });

  it('resizes, keeping data and remapping', () => {
    const segment = store.create('s', PAGE_SIZE);
    segment.write(PAGE_SIZE - 3, Buffer.from('end'));
    segment.resize(4 * PAGE_SIZE);
    expect(segment.size).to.equal(4 * PAGE_SIZE);
    expect(fs.statSync(segment.path).size).to.equal(4 * PAGE_SIZE);
    expect(segment.read(PAGE_SIZE - 3, 3).toString()).to.equal('end');
    segment.write(4 * PAGE_SIZE - 4, Buffer.from('tail'));
    expect(segment.view(4 * PAGE_SIZE - 4, 4).toString()).to.equal('tail');
    segment.resize(2 * PAGE_SIZE);
    expect(() => segment.view(2 * PAGE_SIZE, 1)).to.throw(ErrnoError).with.property('errno', 'ERANGE');
    expect(segment.read(PAGE_SIZE - 3, 3).toString()).to.equal('end');
    expect(() => segment.resize(chunkSize + PAGE_SIZE)).to.throw(ErrnoError).with.property('errno', 'EOVERFLOW');
    expect(() => segment.resize(-1)).to.throw(ErrnoError).with.property('errno', 'EINVAL');
    segment.close();
  });

  it('stays sparse: holes cost nothing, and reading them allocates nothing', () => {
    const segment = store.create('s', chunkSize);
    expect(allocatedBytes(dir())).to.equal(0);
    expect(segment.read(0, chunkSize).every((byte) => byte === 0)).to.equal(true);
    expect(allocatedBytes(dir())).to.equal(0);
    segment.write(chunkSize / 2, Buffer.from('one page'));
    expect(allocatedBytes(dir())).to.equal(PAGE_SIZE);
    segment.close();
  });

  it('throws EBADF on every access after close, which may be repeated', () => {
    const segment = store.create('s', PAGE_SIZE);
    segment.view(0, 1);
    segment.close();
    expect(segment.closed).to.equal(true);
    expect(() => segment.view(0, 1)).to.throw(ErrnoError).with.property('errno', 'EBADF');
    expect(() => segment.window(0, 1)).to.throw(ErrnoError).with.property('errno', 'EBADF');
    expect(() => segment.read(0, 1)).to.throw(ErrnoError).with.property('errno', 'EBADF');
    expect(() => segment.readInto(0, new Uint8Array(1))).to.throw(ErrnoError).with.property('errno', 'EBADF');
    expect(() => segment.write(0, Buffer.from('x'))).to.throw(ErrnoError).with.property('errno', 'EBADF');
    expect(() => segment.resize(2 * PAGE_SIZE)).to.throw(ErrnoError).with.property('errno', 'EBADF');
    segment.close();
    expect(segment.size).to.equal(PAGE_SIZE);
  });
});
