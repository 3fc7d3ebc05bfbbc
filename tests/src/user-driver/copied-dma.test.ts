import { expect } from 'chai';
import { NVME_CMD_READ, NVME_CMD_WRITE } from '@p2p/pci-emu';
import { syncForCpu, syncForDevice } from '@p2p/user-driver';
import { NvmeStack, type NvmeApp } from '../harness/nvme-stack';

const NSID = 1;
const BLOCKS = 8;

/** Distinct bytes for block i of write `round`. */
function pattern(round: number, bytes: number): Buffer {
  const data = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 4) data.writeUInt32LE(((round + 1) * 0x9e37_79b1 + i) >>> 0, i);
  return data;
}

describe('@p2p/user-driver: DMA memory a process reaches through the registry (outside the services\' tmpfs)', function () {
  this.timeout(60_000);
  let stack: NvmeStack;
  let app: NvmeApp;

  before(async () => {
    stack = await NvmeStack.start();
    app = await stack.openApp('outside', undefined, 'registry');
  });

  after(async () => {
    await app?.close();
    await stack?.stop();
  });

  it('brings the controller up and identifies it through copies: Identify data is synced to the CPU', async () => {
    const identify = await app.driver.identifyController();
    // VID at 0, the model number at 24..63 (ASCII, space padded).
    expect(identify.subarray(24, 64).toString('ascii').trim()).to.not.equal('');
    expect(app.blockSize).to.be.oneOf([512, 4096]);
  });

  it('writes what syncForDevice published and reads it back only once syncForCpu ran: the view is a copy, not the memory', async () => {
    const bytes = BLOCKS * app.blockSize;
    const out = await app.space.allocate(bytes);
    const back = await app.space.allocate(bytes);
    const data = pattern(1, bytes);
    data.copy(out.view);
    await syncForDevice(out);
    await app.driver.io(app.queue, NVME_CMD_WRITE, NSID, 0n, BLOCKS, out.address, app.blockSize);
    await app.driver.io(app.queue, NVME_CMD_READ, NSID, 0n, BLOCKS, back.address, app.blockSize);
    expect(back.view.subarray(0, bytes).equals(Buffer.alloc(bytes)), 'the device wrote the memory, not the copy').to.equal(true);
    await syncForCpu(back);
    expect(back.view.subarray(0, bytes).equals(data)).to.equal(true);
  });

  it('a Write of a view not synced writes what the memory held', async () => {
    const bytes = BLOCKS * app.blockSize;
    const out = await app.space.allocate(bytes);
    const back = await app.space.allocate(bytes);
    pattern(2, bytes).copy(out.view);
    await app.driver.io(app.queue, NVME_CMD_WRITE, NSID, 64n, BLOCKS, out.address, app.blockSize);
    await app.driver.io(app.queue, NVME_CMD_READ, NSID, 64n, BLOCKS, back.address, app.blockSize);
    await syncForCpu(back);
    expect(back.view.subarray(0, bytes).equals(Buffer.alloc(bytes))).to.equal(true);
  });

  it('keeps 32 Writes in flight through copies, and reads every block back', async () => {
    const bytes = app.blockSize;
    const buffers = await Promise.all(Array.from({ length: 32 }, () => app.space.allocate(bytes)));
    for (const [i, buffer] of buffers.entries()) {
      pattern(100 + i, bytes).copy(buffer.view);
      await syncForDevice(buffer);
    }
    const completions = await Promise.all(buffers.map((buffer, i) => app.driver.io(app.queue, NVME_CMD_WRITE, NSID, BigInt(256 + i), 1, buffer.address, app.blockSize)));
    expect(completions).to.have.length(32);
    const back = await app.space.allocate(32 * bytes);
    await app.driver.io(app.queue, NVME_CMD_READ, NSID, 256n, 32, back.address, app.blockSize);
    await syncForCpu(back);
    for (let i = 0; i < 32; i++) expect(back.view.subarray(i * bytes, (i + 1) * bytes).equals(pattern(100 + i, bytes)), `block ${256 + i}`).to.equal(true);
  });

  it('refuses a sync outside the buffer, and changes nothing', async () => {
    const buffer = await app.space.allocate(4096);
    await syncForDevice(buffer, 4096, 0);
    for (const [offset, length] of [[4096, 1], [-1, 2], [0, 4097], [1.5, 2]] as const) {
      let error: unknown;
      await syncForDevice(buffer, offset, length).catch((e: unknown) => (error = e));
      expect(error, `[${offset}, +${length})`).to.be.instanceOf(RangeError);
    }
  });
});
