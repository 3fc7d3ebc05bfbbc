import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { FileNamespaceStore } from './namespace-file';
import { NVME_CMD_FLUSH, NVME_CMD_READ, NVME_CMD_WRITE } from './nvme-command';
import { NVME_SC_SUCCESS } from './nvme-status';
import { NvmeTestHost, PAGE } from './testing/nvme-test-host';

const MiB = 1024 * 1024;

/** Runs `work` with fs.fsyncSync counted (namespace-file.ts calls it through the fs module); returns the count. */
function countFsyncs(work: () => void): number {
  const fsync = fs.fsyncSync;
  let synced = 0;
  fs.fsyncSync = (fd: number) => {
    synced++;
    fsync(fd);
  };
  try {
    work();
  } finally {
    fs.fsyncSync = fsync;
  }
  return synced;
}

function errnoOf(work: () => unknown): string {
  try {
    work();
  } catch (error) {
    if (error instanceof ErrnoError) return error.errno;
    throw error;
  }
  throw new Error('expected an ErrnoError');
}

describe('nvme namespace file', () => {
  let directory: string;
  const open: FileNamespaceStore[] = [];
  const store = (name: string, blocks: number, blockSize = 512): FileNamespaceStore => {
    const opened = FileNamespaceStore.open(directory, name, blocks, blockSize);
    open.push(opened);
    return opened;
  };

  beforeEach(() => {
    directory = fs.mkdtempSync(path.join(os.tmpdir(), 'nvme-ns-'));
  });

  afterEach(() => {
    for (const opened of open.splice(0)) opened.close();
    fs.rmSync(directory, { recursive: true, force: true });
  });

  it('creates <name>.img sparse, sized blocks x block size', () => {
    const ns = store('nvme0n1', 64 * 1024, 4096);
    const stat = fs.statSync(path.join(directory, 'nvme0n1.img'));
    expect(stat.size).to.equal(256 * MiB);
    expect(stat.blocks * 512, 'no block allocated').to.be.below(MiB);
    expect(ns.path).to.equal(path.join(directory, 'nvme0n1.img'));
  });

  it('writes and reads back through several views at a byte offset', () => {
    const ns = store('ns', 2048);
    const views = [Buffer.alloc(100, 1), Buffer.alloc(0), Buffer.alloc(412, 2), Buffer.alloc(1024, 3)];
    ns.writev(4096, views);
    const back = [Buffer.alloc(512), Buffer.alloc(1024)];
    ns.readv(4096, back);
    expect(Buffer.concat(back)).to.deep.equal(Buffer.concat(views));
  });

  it('keeps its data across a close and reopen', () => {
    const ns = store('persistent', 128);
    ns.writev(512 * 7, [Buffer.from('still here')]);
    ns.close();
    const again = store('persistent', 128);
    const back = Buffer.alloc(10);
    again.readv(512 * 7, [back]);
    expect(back.toString()).to.equal('still here');
  });

  it('refuses a file of another size with EINVAL, leaving it as it was', () => {
    store('sized', 128).close();
    expect(errnoOf(() => store('sized', 256))).to.equal('EINVAL');
    expect(fs.statSync(path.join(directory, 'sized.img')).size).to.equal(128 * 512);
  });

  it('calls fsync on flush', () => {
    const ns = store('durable', 16);
    expect(countFsyncs(() => ns.flush())).to.equal(1);
  });

  it('zeroes a range larger than its write chunk, and nothing around it', () => {
    const ns = store('zeroes', 8192);
    const size = 8192 * 512;
    ns.writev(0, [Buffer.alloc(size, 0xff)]);
    ns.writeZeroes(512, size - 1024);
    const back = Buffer.alloc(size);
    ns.readv(0, [back]);
    expect([back[511], back[512], back[size - 513], back[size - 512]]).to.deep.equal([0xff, 0, 0, 0xff]);
    expect(back.subarray(512, size - 512).every((b) => b === 0)).to.equal(true);
  });

  it('throws EBADF after close', () => {
    const ns = store('closed', 16);
    ns.close();
    expect(errnoOf(() => ns.flush())).to.equal('EBADF');
    expect(errnoOf(() => ns.readv(0, [Buffer.alloc(512)]))).to.equal('EBADF');
  });

  for (const [what, name, blocks, blockSize] of [
    ['a name that is not a plain file name', '../escape', 16, 512],
    ['a block size other than 512 or 4096', 'odd', 16, 1024],
    ['zero blocks', 'empty', 0, 512],
  ] as const) {
    it(`refuses ${what} with EINVAL`, () => {
      expect(errnoOf(() => store(name, blocks, blockSize))).to.equal('EINVAL');
    });
  }

  it('fsyncs the file on an NVMe Flush, and a restarted controller reads the written data back', () => {
    const data = Buffer.alloc(2 * PAGE, 0x6b);
    const first = NvmeTestHost.ready({ namespaces: [store('disk', 1024)] });
    const source = first.alloc(2 * PAGE);
    first.poke(source, data);
    expect(first.run(1, { opcode: NVME_CMD_WRITE, nsid: 1, ...first.prps(source, data.length), cdw10: 16, cdw12: 15 }).status).to.equal(NVME_SC_SUCCESS);
    const synced = countFsyncs(() => expect(first.run(1, { opcode: NVME_CMD_FLUSH, nsid: 1 }).status).to.equal(NVME_SC_SUCCESS));
    expect(synced, 'one fsync for the Flush').to.equal(1);
    open.splice(0).forEach((opened) => opened.close());
    const second = NvmeTestHost.ready({ namespaces: [store('disk', 1024)] });
    const target = second.alloc(2 * PAGE);
    expect(second.run(1, { opcode: NVME_CMD_READ, nsid: 1, ...second.prps(target, data.length), cdw10: 16, cdw12: 15 }).status).to.equal(NVME_SC_SUCCESS);
    expect(second.peek(target, data.length)).to.deep.equal(data);
  });
});
