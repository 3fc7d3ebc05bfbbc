import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { mapShared } from './guarded-map';
import { GiB, MAP_OFFSET_LIMIT, PAGE_SIZE } from './limits';
import { useTempShmDir } from '@p2p/testing';

describe('mapShared (the guard in front of mmap-io)', () => {
  const dir = useTempShmDir();
  let fd: number;
  let file: string;

  // A sparse 5 GiB file with distinct markers at 0, just below 2 GiB and at
  // 4 GiB, so a wrapped offset would show up as the wrong marker.
  beforeEach(() => {
    file = path.join(dir(), 'big');
    fd = fs.openSync(file, 'w+', 0o600);
    fs.ftruncateSync(fd, 5 * GiB);
    fs.writeSync(fd, Buffer.from('AT-0'), 0, 4, 0);
    fs.writeSync(fd, Buffer.from('AT-2G'), 0, 5, MAP_OFFSET_LIMIT - PAGE_SIZE);
    fs.writeSync(fd, Buffer.from('AT-4G'), 0, 5, 4 * GiB);
  });
  afterEach(() => fs.closeSync(fd));

  it('refuses a 2 GiB mapping with EOVERFLOW', () => {
    expect(() => mapShared(fd, 2 * GiB, 0)).to.throw(ErrnoError).with.property('errno', 'EOVERFLOW');
    expect(() => mapShared(fd, GiB + PAGE_SIZE, 0)).to.throw(ErrnoError).with.property('errno', 'EOVERFLOW');
  });

  it('refuses offsets of 2 GiB and 4 GiB with EOVERFLOW instead of mapping offset 0', () => {
    expect(() => mapShared(fd, PAGE_SIZE, 4 * GiB)).to.throw(ErrnoError).with.property('errno', 'EOVERFLOW');
    expect(() => mapShared(fd, PAGE_SIZE, MAP_OFFSET_LIMIT)).to.throw(ErrnoError).with.property('errno', 'EOVERFLOW');
  });

  it('maps the highest allowed offset correctly', () => {
    const view = mapShared(fd, PAGE_SIZE, MAP_OFFSET_LIMIT - PAGE_SIZE);
    expect(view.length).to.equal(PAGE_SIZE);
    expect(view.subarray(0, 5).toString()).to.equal('AT-2G');
  });

  it('maps 1 GiB and reads the start of the file', () => {
    const view = mapShared(fd, GiB, 0);
    expect(view.length).to.equal(GiB);
    expect(view.subarray(0, 4).toString()).to.equal('AT-0');
  });

  it('refuses malformed sizes, offsets and descriptors', () => {
    for (const size of [0, -PAGE_SIZE, 1.5, Number.NaN, Infinity]) {
      expect(() => mapShared(fd, size, 0), `size ${size}`).to.throw(ErrnoError).with.property('errno', 'EINVAL');
    }
    for (const offset of [-PAGE_SIZE, 100, PAGE_SIZE + 0.5, Number.NaN]) {
      expect(() => mapShared(fd, PAGE_SIZE, offset), `offset ${offset}`)
        .to.throw(ErrnoError)
        .with.property('errno', 'EINVAL');
    }
    expect(() => mapShared(-1, PAGE_SIZE, 0)).to.throw(ErrnoError).with.property('errno', 'EBADF');
  });

  it('translates mmap failures to their errno (shared writable map of a read-only fd is EACCES)', () => {
    const readOnly = fs.openSync(file, 'r');
    try {
      expect(() => mapShared(readOnly, PAGE_SIZE, 0)).to.throw(ErrnoError).with.property('errno', 'EACCES');
    } finally {
      fs.closeSync(readOnly);
    }
  });
});
