import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { dmabuf } from '@p2p/proto';
import { PAGE_SIZE, SegmentStore, SharedMemory } from '@p2p/shm';
import type { OwnerCallInfo } from './owner-ops';
import { SharedMemoryExporter } from './shared-memory-exporter';
import { useTempShmDir } from '@p2p/testing';

function call(op: dmabuf.OwnerOp, handle: string | undefined): OwnerCallInfo {
  return { callId: 1n, op, fileId: 7n, attachmentId: 3n, importerBdf: '', peer2peer: true, importerPid: 0, dynamic: true, mapType: dmabuf.DmaMapType.DMA_MAP_TYPE_HOST_MEMORY, pid: 0, fd: 0, handle };
}

describe('SharedMemoryExporter', () => {
  const dir = useTempShmDir();
  const CHUNK = 4 * PAGE_SIZE;
  const DMA_BASE = 0xe000_0000n;

  function exporterWith(size: number): { store: SegmentStore; exporter: SharedMemoryExporter; memory: SharedMemory } {
    const store = new SegmentStore({ dir: dir(), chunkSize: CHUNK });
    const memory = SharedMemory.create(store, 'bar0', size);
    const exporter = new SharedMemoryExporter(store);
    exporter.addBuffer('bar0', memory, DMA_BASE);
    return { store, exporter, memory };
  }

  it('maps the whole region, chunk by chunk, at dmaBase + offset', () => {
    const { exporter } = exporterWith(2 * CHUNK + PAGE_SIZE);
    expect(exporter.map(call(dmabuf.OwnerOp.OWNER_OP_MAP, 'bar0'))).to.deep.equal([
      { segment: 'bar0.0', segmentOffset: 0n, length: BigInt(CHUNK), dmaAddress: DMA_BASE },
      { segment: 'bar0.1', segmentOffset: 0n, length: BigInt(CHUNK), dmaAddress: DMA_BASE + BigInt(CHUNK) },
      { segment: 'bar0.2', segmentOffset: 0n, length: BigInt(PAGE_SIZE), dmaAddress: DMA_BASE + BigInt(2 * CHUNK) },
    ]);
  });

  it('relocates on fence: same bytes in fresh sparse segments, the old files unlinked', () => {
    const { store, exporter, memory } = exporterWith(3 * CHUNK);
    memory.write(CHUNK + 10, Buffer.from('device memory'));
    const stale = memory.views(CHUNK + 10, 13)[0]!;
    exporter.fence(call(dmabuf.OwnerOp.OWNER_OP_FENCE, 'bar0'));
    const fresh = exporter.memoryOf('bar0');
    expect(fresh.prefix).to.equal('bar0-fence1');
    expect(fresh.read(CHUNK + 10, 13).toString()).to.equal('device memory');
    expect(fs.existsSync(path.join(dir(), 'bar0.1'))).to.equal(false);
    // Chunks that held no data take no memory in the new home.
    expect(store.list().map((info) => [info.name, info.allocatedBytes > 0])).to.deep.equal([
      ['bar0-fence1.0', false],
      ['bar0-fence1.1', true],
      ['bar0-fence1.2', false],
    ]);
    // A frozen importer's stale mapping now writes into an orphaned file.
    stale.write('overwritten!!');
    expect(fresh.read(CHUNK + 10, 13).toString()).to.equal('device memory');
    expect(exporter.map(call(dmabuf.OwnerOp.OWNER_OP_MAP, 'bar0'))[1]!.segment).to.equal('bar0-fence1.1');
    exporter.fence(call(dmabuf.OwnerOp.OWNER_OP_FENCE, 'bar0'));
    expect(exporter.memoryOf('bar0').prefix).to.equal('bar0-fence2');
  });

  it('destroys the region on release', () => {
    const { store, exporter } = exporterWith(CHUNK);
    exporter.release(call(dmabuf.OwnerOp.OWNER_OP_RELEASE, 'bar0'));
    expect(store.list()).to.deep.equal([]);
    expect(() => exporter.memoryOf('bar0')).to.throw(ErrnoError).with.property('errno', 'ENOENT');
  });

  it('refuses unknown buffers with ENOENT and a second addBuffer of a handle with EEXIST', () => {
    const { exporter, memory } = exporterWith(CHUNK);
    expect(() => exporter.map(call(dmabuf.OwnerOp.OWNER_OP_MAP, undefined))).to.throw(ErrnoError).with.property('errno', 'ENOENT');
    expect(() => exporter.map(call(dmabuf.OwnerOp.OWNER_OP_MAP, 'bar9'))).to.throw(ErrnoError).with.property('errno', 'ENOENT');
    expect(() => exporter.addBuffer('bar0', memory, 0n)).to.throw(ErrnoError).with.property('errno', 'EEXIST');
  });
});
