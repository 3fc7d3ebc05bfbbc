import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { allocatedBytes, listSegmentFiles } from './accounting';
import { GiB, PAGE_SIZE } from './limits';
import { SegmentStore } from './segment-store';
import { SharedMemory } from './shared-memory';
import { useTempShmDir } from '@p2p/testing';

/** The shape the services expect of a BAR's backing memory. */
interface BarMemory {
  readonly size: number;
  read(offset: number, length: number): Buffer;
  write(offset: number, data: Uint8Array): void;
  close(): void;
}

describe('SharedMemory', () => {
  const dir = useTempShmDir();
  const chunk = 16 * PAGE_SIZE;
  // Three whole chunks and a short last one, so ranges cross every kind of boundary.
  const size = 3 * chunk + PAGE_SIZE + 100;
  let store: SegmentStore;
  beforeEach(() => {
    store = new SegmentStore({ dir: dir(), chunkSize: chunk });
  });

  function pattern(length: number, seed: number): Buffer {
    return Buffer.from(Array.from({ length }, (_, i) => (i * 7 + seed) & 0xff));
  }

  it('satisfies BarMemory', () => {
    const memory: BarMemory = SharedMemory.create(store, 'bar', size);
    expect(memory.size).to.equal(size);
    memory.close();
  });

  it('creates one sparse file per chunk named <prefix>.<index>', () => {
    const memory = SharedMemory.create(store, 'bar', size);
    expect(store.list()).to.deep.equal([
      { name: 'bar.0', size: chunk, allocatedBytes: 0 },
      { name: 'bar.1', size: chunk, allocatedBytes: 0 },
      { name: 'bar.2', size: chunk, allocatedBytes: 0 },
      { name: 'bar.3', size: PAGE_SIZE + 100, allocatedBytes: 0 },
    ]);
    for (const name of ['bar.0', 'bar.3']) {
      expect(fs.statSync(path.join(dir(), name)).mode & 0o777).to.equal(0o600);
    }
    memory.destroy();
  });

  it('splits ranges into extents at chunk boundaries', () => {
    const memory = SharedMemory.create(store, 'bar', size);
    expect(memory.extents(chunk - 10, 30)).to.deep.equal([
      { segment: 'bar.0', offset: chunk - 10, length: 10 },
      { segment: 'bar.1', offset: 0, length: 20 },
    ]);
    expect(memory.extents(0, size)).to.deep.equal([
      { segment: 'bar.0', offset: 0, length: chunk },
      { segment: 'bar.1', offset: 0, length: chunk },
      { segment: 'bar.2', offset: 0, length: chunk },
      { segment: 'bar.3', offset: 0, length: PAGE_SIZE + 100 },
    ]);
    expect(memory.extents(2 * chunk, chunk)).to.deep.equal([{ segment: 'bar.2', offset: 0, length: chunk }]);
    expect(memory.extents(size, 0)).to.deep.equal([]);
    memory.destroy();
  });

  it('writes and reads across chunk boundaries, visible through the chunk files', () => {
    const memory = SharedMemory.create(store, 'bar', size);
    const data = pattern(2 * chunk + 50, 3);
    memory.write(chunk - 25, data);
    expect(memory.read(chunk - 25, data.length)).to.deep.equal(data);
    const views = memory.views(chunk - 25, data.length);
    expect(views.map((view) => view.length)).to.deep.equal([25, chunk, chunk, 25]);
    expect(Buffer.concat(views)).to.deep.equal(data);
    const bar2 = store.open('bar.2');
    expect(bar2.read(0, 25)).to.deep.equal(data.subarray(chunk + 25, chunk + 50));
    bar2.close();
    memory.destroy();
  });

  it('open() attaches to the same files and sees the same bytes', () => {
    const writer = SharedMemory.create(store, 'bar', size);
    const reader = SharedMemory.open(store, 'bar', size);
    writer.write(size - 5, Buffer.from('last!'));
    expect(reader.read(size - 5, 5).toString()).to.equal('last!');
    reader.write(chunk, Buffer.from('back'));
    expect(writer.views(chunk, 4)[0]?.toString()).to.equal('back');
    reader.close();
    writer.destroy();
  });

  it('open() is ENOENT for a missing chunk and EINVAL for a size mismatch', () => {
    expect(() => SharedMemory.open(store, 'none', size)).to.throw(ErrnoError).with.property('errno', 'ENOENT');
    SharedMemory.create(store, 'bar', size).close();
    expect(() => SharedMemory.open(store, 'bar', size + 1)).to.throw(ErrnoError).with.property('errno', 'EINVAL');
    expect(() => SharedMemory.open(store, 'bar', 5 * chunk)).to.throw(ErrnoError).with.property('errno', 'EINVAL');
    store.unlink('bar.1');
    expect(() => SharedMemory.open(store, 'bar', size)).to.throw(ErrnoError).with.property('errno', 'ENOENT');
  });

  it('create() is EEXIST if a chunk exists, and leaves only what was there', () => {
    store.create('bar.2', PAGE_SIZE).close();
    expect(() => SharedMemory.create(store, 'bar', size)).to.throw(ErrnoError).with.property('errno', 'EEXIST');
    expect(store.list().map((info) => info.name)).to.deep.equal(['bar.2']);
  });

  it('validates prefix and size with EINVAL', () => {
    for (const prefix of ['../x', '.bar', 'a/b', 'x'.repeat(254)]) {
      expect(() => SharedMemory.create(store, prefix, size)).to.throw(ErrnoError).with.property('errno', 'EINVAL');
    }
    for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 53]) {
      expect(() => SharedMemory.create(store, 'bar', bad)).to.throw(ErrnoError).with.property('errno', 'EINVAL');
    }
    expect(store.list()).to.deep.equal([]);
  });

  it('checks bounds: EINVAL for malformed numbers, ERANGE past the end', () => {
    const memory = SharedMemory.create(store, 'bar', size);
    for (const [offset, length] of [
      [-1, 1],
      [1.5, 1],
      [0, -1],
      [Number.NaN, 1],
    ]) {
      expect(() => memory.read(offset, length)).to.throw(ErrnoError).with.property('errno', 'EINVAL');
      expect(() => memory.extents(offset, length)).to.throw(ErrnoError).with.property('errno', 'EINVAL');
    }
    for (const [offset, length] of [
      [size - 1, 2],
      [size, 1],
      [0, size + 1],
      [64 * GiB, 1],
    ]) {
      expect(() => memory.read(offset, length)).to.throw(ErrnoError).with.property('errno', 'ERANGE');
      expect(() => memory.views(offset, length)).to.throw(ErrnoError).with.property('errno', 'ERANGE');
    }
    expect(() => memory.write(size - 1, Buffer.from('ab'))).to.throw(ErrnoError).with.property('errno', 'ERANGE');
    expect(memory.read(size, 0).length).to.equal(0);
    memory.destroy();
  });

  it('copyTo() copies between regions and into buffers', () => {
    const source = SharedMemory.create(store, 'src', size);
    const target = SharedMemory.create(store, 'dst', size);
    const data = pattern(chunk + 300, 9);
    source.write(chunk - 100, data);

    // Source and target pieces are deliberately misaligned.
    source.copyTo(chunk - 100, data.length, target, 2 * chunk - 7);
    expect(target.read(2 * chunk - 7, data.length)).to.deep.equal(data);

    const buffer = Buffer.alloc(data.length + 20);
    source.copyTo(chunk - 100, data.length, buffer, 10);
    expect(buffer.subarray(10, 10 + data.length)).to.deep.equal(data);

    // Copying holes writes zeros and allocates nothing in the source.
    const before = store.stat('src.3').allocatedBytes;
    source.copyTo(3 * chunk, PAGE_SIZE, target, 2 * chunk - 7);
    expect(target.read(2 * chunk - 7, PAGE_SIZE).every((byte) => byte === 0)).to.equal(true);
    expect(store.stat('src.3').allocatedBytes).to.equal(before);

    source.destroy();
    target.destroy();
  });

  it('copyTo() checks both ranges before copying and refuses overlap within a region', () => {
    const memory = SharedMemory.create(store, 'bar', size);
    const other = SharedMemory.create(store, 'other', chunk);
    memory.write(0, Buffer.from('abcdef'));
    expect(() => memory.copyTo(0, 6, other, chunk - 5)).to.throw(ErrnoError).with.property('errno', 'ERANGE');
    expect(other.read(chunk - 5, 5).every((byte) => byte === 0)).to.equal(true);
    expect(() => memory.copyTo(0, 6, Buffer.alloc(5), 0)).to.throw(ErrnoError).with.property('errno', 'ERANGE');
    expect(() => memory.copyTo(0, 6, memory, 3)).to.throw(ErrnoError).with.property('errno', 'EINVAL');
    const sameFiles = SharedMemory.open(store, 'bar', size);
    expect(() => memory.copyTo(3, 6, sameFiles, 0)).to.throw(ErrnoError).with.property('errno', 'EINVAL');
    memory.copyTo(0, 6, sameFiles, 6);
    expect(memory.read(0, 12).toString()).to.equal('abcdefabcdef');
    sameFiles.close();
    other.destroy();
    memory.destroy();
  });

  it('throws EBADF on every access after close, which may be repeated', () => {
    const memory = SharedMemory.create(store, 'bar', size);
    memory.write(0, Buffer.from('x'));
    memory.close();
    expect(memory.closed).to.equal(true);
    expect(() => memory.read(0, 1)).to.throw(ErrnoError).with.property('errno', 'EBADF');
    expect(() => memory.write(0, Buffer.from('x'))).to.throw(ErrnoError).with.property('errno', 'EBADF');
    expect(() => memory.views(0, 1)).to.throw(ErrnoError).with.property('errno', 'EBADF');
    expect(() => memory.extents(0, 1)).to.throw(ErrnoError).with.property('errno', 'EBADF');
    expect(() => memory.copyTo(0, 1, Buffer.alloc(1), 0)).to.throw(ErrnoError).with.property('errno', 'EBADF');
    const open = SharedMemory.open(store, 'bar', size);
    expect(() => open.copyTo(0, 1, memory, 0)).to.throw(ErrnoError).with.property('errno', 'EBADF');
    memory.close();
    open.destroy();
  });

  it('destroy() leaves no files, even after close()', () => {
    const memory = SharedMemory.create(store, 'bar', size);
    memory.write(0, pattern(size, 1));
    memory.close();
    memory.destroy();
    expect(listSegmentFiles(dir())).to.deep.equal([]);
    expect(fs.readdirSync(dir())).to.deep.equal([]);
  });

  it('a 64 GiB region costs only the pages written, at 1 GiB chunks', () => {
    const big = new SegmentStore({ dir: dir() });
    const memory = SharedMemory.create(big, 'bar0', 64 * GiB);
    const files = listSegmentFiles(dir());
    expect(files).to.have.length(64);
    expect(files.every((file) => file.size === GiB)).to.equal(true);
    expect(allocatedBytes(dir())).to.equal(0);

    const near60 = 60 * GiB + 12345;
    const straddle = 61 * GiB - 3;
    memory.write(near60, Buffer.from('hello'));
    memory.write(straddle, Buffer.from('across'));
    expect(memory.extents(straddle, 6)).to.deep.equal([
      { segment: 'bar0.60', offset: GiB - 3, length: 3 },
      { segment: 'bar0.61', offset: 0, length: 3 },
    ]);

    expect(memory.read(near60, 5).toString()).to.equal('hello');
    expect(memory.read(straddle, 6).toString()).to.equal('across');
    expect(memory.read(64 * GiB - PAGE_SIZE, PAGE_SIZE).every((byte) => byte === 0)).to.equal(true);
    expect(allocatedBytes(dir())).to.equal(3 * PAGE_SIZE);

    memory.destroy();
    expect(listSegmentFiles(dir())).to.deep.equal([]);
  });
});
