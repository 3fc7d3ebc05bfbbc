import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { GiB, PAGE_SIZE } from './limits';
import { SegmentStore } from './segment-store';
import { useTempShmDir } from '@p2p/testing';

describe('SegmentStore', () => {
  const dir = useTempShmDir();
  const chunkSize = 16 * PAGE_SIZE;
  let store: SegmentStore;
  beforeEach(() => {
    store = new SegmentStore({ dir: dir(), chunkSize });
  });

  it('validates its options', () => {
    expect(new SegmentStore({ dir: dir() }).chunkSize).to.equal(GiB);
    for (const bad of [0, -PAGE_SIZE, PAGE_SIZE + 1, 1.5 * PAGE_SIZE]) {
      expect(() => new SegmentStore({ dir: dir(), chunkSize: bad }), `chunk ${bad}`)
        .to.throw(ErrnoError)
        .with.property('errno', 'EINVAL');
    }
    expect(() => new SegmentStore({ dir: dir(), chunkSize: 2 * GiB }))
      .to.throw(ErrnoError)
      .with.property('errno', 'EOVERFLOW');
    expect(() => new SegmentStore({ dir: path.join(dir(), 'missing') }))
      .to.throw(ErrnoError)
      .with.property('errno', 'ENOENT');
  });

  it('creates a sparse file with mode 0600, and EEXIST the second time', () => {
    const segment = store.create('bar0', chunkSize);
    expect(segment.size).to.equal(chunkSize);
    expect(segment.path).to.equal(path.join(dir(), 'bar0'));
    const stat = fs.statSync(segment.path);
    expect(stat.mode & 0o777).to.equal(0o600);
    expect(stat.size).to.equal(chunkSize);
    expect(stat.blocks).to.equal(0);
    segment.close();
    expect(() => store.create('bar0', PAGE_SIZE)).to.throw(ErrnoError).with.property('errno', 'EEXIST');
    expect(fs.statSync(segment.path).size).to.equal(chunkSize);
  });

  it('refuses segments larger than the chunk size with EOVERFLOW and bad sizes with EINVAL', () => {
    expect(() => store.create('big', chunkSize + 1)).to.throw(ErrnoError).with.property('errno', 'EOVERFLOW');
    expect(() => store.create('neg', -1)).to.throw(ErrnoError).with.property('errno', 'EINVAL');
    expect(() => store.create('frac', 1.5)).to.throw(ErrnoError).with.property('errno', 'EINVAL');
    expect(store.list()).to.deep.equal([]);
  });

  it('opens existing segments and ENOENT for missing ones', () => {
    store.create('seg', 3 * PAGE_SIZE).close();
    const opened = store.open('seg');
    expect(opened.size).to.equal(3 * PAGE_SIZE);
    opened.close();
    expect(() => store.open('nope')).to.throw(ErrnoError).with.property('errno', 'ENOENT');
  });

  it('refuses to open a file larger than its chunk size with EOVERFLOW', () => {
    fs.writeFileSync(path.join(dir(), 'huge'), '');
    fs.truncateSync(path.join(dir(), 'huge'), chunkSize + PAGE_SIZE);
    expect(() => store.open('huge')).to.throw(ErrnoError).with.property('errno', 'EOVERFLOW');
  });

  it('does not follow a symlink planted in the directory', () => {
    fs.symlinkSync('/etc/hostname', path.join(dir(), 'planted'));
    expect(() => store.open('planted')).to.throw(ErrnoError);
  });

  it('unlinks, and ENOENT for a missing segment', () => {
    store.create('gone', PAGE_SIZE).close();
    store.unlink('gone');
    expect(fs.existsSync(path.join(dir(), 'gone'))).to.equal(false);
    expect(() => store.unlink('gone')).to.throw(ErrnoError).with.property('errno', 'ENOENT');
  });

  it('validates names on every entry point with EINVAL', () => {
    for (const name of ['../escape', 'a/b', '.hidden', '']) {
      expect(() => store.create(name, PAGE_SIZE)).to.throw(ErrnoError).with.property('errno', 'EINVAL');
      expect(() => store.open(name)).to.throw(ErrnoError).with.property('errno', 'EINVAL');
      expect(() => store.unlink(name)).to.throw(ErrnoError).with.property('errno', 'EINVAL');
      expect(() => store.stat(name)).to.throw(ErrnoError).with.property('errno', 'EINVAL');
    }
  });

  it('lists segment files sorted by name with their sizes and allocation', () => {
    store.create('b', 2 * PAGE_SIZE).close();
    const a = store.create('a', 4 * PAGE_SIZE);
    a.write(PAGE_SIZE, Buffer.from('x'));
    a.close();
    fs.writeFileSync(path.join(dir(), '.not-a-segment'), 'ignored');
    fs.mkdirSync(path.join(dir(), 'subdir'));
    expect(store.list()).to.deep.equal([
      { name: 'a', size: 4 * PAGE_SIZE, allocatedBytes: PAGE_SIZE },
      { name: 'b', size: 2 * PAGE_SIZE, allocatedBytes: 0 },
    ]);
    expect(store.stat('a')).to.deep.equal({ name: 'a', size: 4 * PAGE_SIZE, allocatedBytes: PAGE_SIZE });
  });
});
