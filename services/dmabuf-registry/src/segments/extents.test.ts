import { expect } from 'chai';
import type { OwnerExtent } from '../owners/file-owner';
import { expectErrno } from '../testing/harness';
import { checkBufferRange, checkExtents, sliceExtents } from './extents';

describe('extents', () => {
  const extents: OwnerExtent[] = [
    { segment: 'a.0', segmentOffset: 100, length: 10, dmaAddress: 0x1000n },
    { segment: 'a.1', segmentOffset: 0, length: 20, dmaAddress: 0x9000n },
  ];

  it('slice a buffer range across extents, advancing offsets and DMA addresses', () => {
    expect(sliceExtents(extents, 5, 10)).to.deep.equal([
      { segment: 'a.0', segmentOffset: 105, length: 5, dmaAddress: 0x1005n },
      { segment: 'a.1', segmentOffset: 0, length: 5, dmaAddress: 0x9000n },
    ]);
    expect(sliceExtents(extents, 12, 3)).to.deep.equal([{ segment: 'a.1', segmentOffset: 2, length: 3, dmaAddress: 0x9002n }]);
    expect(sliceExtents(extents, 0, 30)).to.deep.equal(extents);
    expect(sliceExtents(extents, 30, 0)).to.deep.equal([]);
  });

  it('accept an owner answer covering the buffer, refuse anything else with EIO', () => {
    expect(checkExtents(extents, 30, 'map')).to.deep.equal(extents);
    expectErrno(() => checkExtents(extents, 31, 'map'), 'EIO');
    expectErrno(() => checkExtents([{ ...extents[0]!, segment: '../etc/passwd', length: 30 }], 30, 'map'), 'EIO');
    expectErrno(() => checkExtents([{ ...extents[0]!, length: -30 }], -30, 'map'), 'EIO');
  });

  it('bounds-check buffer ranges with EINVAL', () => {
    checkBufferRange(0, 30, 30, 'read');
    checkBufferRange(30, 0, 30, 'read');
    expectErrno(() => checkBufferRange(29, 2, 30, 'read'), 'EINVAL');
    expectErrno(() => checkBufferRange(-1, 1, 30, 'read'), 'EINVAL');
    expectErrno(() => checkBufferRange(0.5, 1, 30, 'read'), 'EINVAL');
  });
});
