import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { PAGE_SIZE, SegmentStore } from '@p2p/shm';
import { SharedMapping } from './shared-mapping';
import { useTempShmDir } from '@p2p/testing';

describe('SharedMapping', () => {
  const dir = useTempShmDir();

  /** Two segments, and a buffer made of the second page of `a` followed by the first page of `b`. */
  function twoPieces(): { store: SegmentStore; extents: { segment: string; segmentOffset: bigint; length: bigint; dmaAddress: bigint }[] } {
    const store = new SegmentStore({ dir: dir(), chunkSize: 4 * PAGE_SIZE });
    store.create('a', 2 * PAGE_SIZE).close();
    store.create('b', PAGE_SIZE).close();
    const extents = [
      { segment: 'a', segmentOffset: BigInt(PAGE_SIZE), length: BigInt(PAGE_SIZE), dmaAddress: 0n },
      { segment: 'b', segmentOffset: 0n, length: BigInt(PAGE_SIZE), dmaAddress: 0n },
    ];
    return { store, extents };
  }

  it('copies in and out across extents, straight into the segment files', () => {
    const { store, extents } = twoPieces();
    const mapping = SharedMapping.open(store, extents, 2 * PAGE_SIZE);
    const data = Buffer.from('across the boundary');
    mapping.copyIn(PAGE_SIZE - 6, data);
    const out = Buffer.alloc(data.length);
    mapping.copyOut(PAGE_SIZE - 6, out);
    expect(out.toString()).to.equal('across the boundary');
    const a = store.open('a');
    const b = store.open('b');
    expect(a.read(2 * PAGE_SIZE - 6, 6).toString()).to.equal('across');
    expect(b.read(0, data.length - 6).toString()).to.equal(' the boundary');
    a.close();
    b.close();
    mapping.close();
  });

  it('hands out the views behind a range, one per extent, over the segment memory', () => {
    const { store, extents } = twoPieces();
    const mapping = SharedMapping.open(store, extents, 2 * PAGE_SIZE);
    const views: Uint8Array[] = [];
    mapping.views(PAGE_SIZE - 2, 4, views);
    expect(views.map((v) => v.length)).to.deep.equal([2, 2]);
    views[0]!.set([1, 2]);
    views[1]!.set([3, 4]);
    const out = Buffer.alloc(4);
    mapping.copyOut(PAGE_SIZE - 2, out);
    expect([...out]).to.deep.equal([1, 2, 3, 4]);
    mapping.close();
  });

  it('names the segment files behind a range, with their offsets, one per extent, in buffer order', () => {
    const { store, extents } = twoPieces();
    const mapping = SharedMapping.open(store, extents, 2 * PAGE_SIZE);
    const seen: [string, number, number][] = [];
    mapping.segments(PAGE_SIZE - 2, 6, (segment, offset, length) => seen.push([segment, offset, length]));
    expect(seen).to.deep.equal([
      ['a', 2 * PAGE_SIZE - 2, 2],
      ['b', 0, 4],
    ]);
    mapping.close();
  });

  it('maps only the pages its extents name, not the whole segment file', () => {
    const store = new SegmentStore({ dir: dir(), chunkSize: 64 * PAGE_SIZE });
    store.create('big', 64 * PAGE_SIZE).close();
    const extent = { segment: 'big', segmentOffset: BigInt(10 * PAGE_SIZE), length: BigInt(PAGE_SIZE), dmaAddress: 0n };
    const mapping = SharedMapping.open(store, [extent], PAGE_SIZE);
    const views: Uint8Array[] = [];
    mapping.views(0, PAGE_SIZE, views);
    expect(views.map((v) => v.buffer.byteLength)).to.deep.equal([PAGE_SIZE]);
    mapping.close();
  });

  it('refuses extents that do not cover the buffer with EIO, and a missing segment with ENOENT', () => {
    const { store, extents } = twoPieces();
    expect(() => SharedMapping.open(store, extents, 3 * PAGE_SIZE)).to.throw(ErrnoError).with.property('errno', 'EIO');
    const missing = [{ segment: 'c', segmentOffset: 0n, length: 1n, dmaAddress: 0n }];
    expect(() => SharedMapping.open(store, missing, 1)).to.throw(ErrnoError).with.property('errno', 'ENOENT');
  });

  it('holds no view after close', () => {
    const { store, extents } = twoPieces();
    const mapping = SharedMapping.open(store, extents, 2 * PAGE_SIZE);
    mapping.close();
    const out = Buffer.alloc(4, 7);
    mapping.copyOut(0, out);
    expect([...out]).to.deep.equal([7, 7, 7, 7]);
  });
});
