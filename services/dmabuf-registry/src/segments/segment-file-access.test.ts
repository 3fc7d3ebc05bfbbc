import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'chai';
import type { OwnerExtent } from '../owners/file-owner';
import { expectErrno } from '../testing/harness';
import { useTempShmDir } from '@p2p/testing';
import { SegmentFileAccess } from './segment-file-access';

describe('SegmentFileAccess', () => {
  const dir = useTempShmDir();
  const access = new SegmentFileAccess();

  function segments(): OwnerExtent[] {
    fs.writeFileSync(path.join(dir(), 'a.0'), Buffer.alloc(16));
    fs.writeFileSync(path.join(dir(), 'a.1'), Buffer.alloc(16));
    return [
      { segment: 'a.1', segmentOffset: 8, length: 8, dmaAddress: 0n },
      { segment: 'a.0', segmentOffset: 0, length: 16, dmaAddress: 0n },
    ];
  }

  it('writes and reads a buffer range across segments in extent order', () => {
    const extents = segments();
    access.write(dir(), extents, 4, Buffer.from('0123456789'));
    expect(fs.readFileSync(path.join(dir(), 'a.1')).subarray(12).toString()).to.equal('0123');
    expect(fs.readFileSync(path.join(dir(), 'a.0')).subarray(0, 6).toString()).to.equal('456789');
    expect(access.read(dir(), extents, 4, 10).toString()).to.equal('0123456789');
  });

  it('never grows a segment and refuses names outside the directory', () => {
    const extents = segments();
    const tooLong: OwnerExtent[] = [{ segment: 'a.0', segmentOffset: 10, length: 10, dmaAddress: 0n }];
    expectErrno(() => access.write(dir(), tooLong, 0, Buffer.alloc(10)), 'EIO');
    expect(fs.statSync(path.join(dir(), 'a.0')).size).to.equal(16);
    expectErrno(() => access.read(dir(), [{ ...extents[0]!, segment: '../x' }], 0, 1), 'EINVAL');
    expectErrno(() => access.read(dir(), [{ ...extents[0]!, segment: 'gone' }], 0, 1), 'ENOENT');
  });
});
