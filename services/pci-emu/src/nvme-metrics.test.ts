import { expect } from 'chai';
import { Registry } from 'prom-client';
import { useTempShmDir } from '@p2p/testing';
import type { BarMemory, BarMemoryFactory } from './devices/bar-memory';
import { heapBarMemoryFactory } from './devices/heap-bar-memory';
import { NVME_CMD_READ, NVME_CMD_WRITE } from './devices/nvme/nvme-command';
import { NVME_CC_NVM_ENABLE, NVME_CSTS_RDY, NVME_REG_CC, NVME_REG_CSTS } from './devices/nvme/nvme-regs';
import { NVME_SC_LBA_RANGE, NVME_SC_SUCCESS } from './devices/nvme/nvme-status';
import { registerNvmeMetrics } from './nvme-metrics';
import { NVME_IO_QID, NvmeBusHost } from './testing/nvme-bus-host';
import { NVME0, platform, type Platform } from './testing/platform';

/** The default topology's namespace: 256 MiB of 512-byte blocks. */
const NAMESPACE_BLOCKS = (256 * 1024 * 1024) / 512;

describe('NVMe metrics on /metrics', () => {
  const dir = useTempShmDir();
  let p: Platform;
  let memories: Map<string, BarMemory>;
  let registry: Registry;
  let stop: () => void;
  let host: NvmeBusHost;

  /** The value a scraper reads for the sample of `name` with exactly these labels; 0 when there is none. */
  async function sample(name: string, labels: Record<string, string>): Promise<number> {
    const { values } = await registry.getSingleMetric(name)!.get();
    const wanted = { bdf: NVME0, ...labels };
    const match = values.find((v) => Object.keys(v.labels).length === Object.keys(wanted).length && Object.entries(wanted).every(([k, x]) => v.labels[k] === x));
    return match?.value ?? 0;
  }

  beforeEach(async () => {
    memories = new Map();
    const keep: BarMemoryFactory = (name, size) => {
      const memory = heapBarMemoryFactory(name, size);
      memories.set(name, memory);
      return memory;
    };
    p = platform(dir(), undefined, keep);
    registry = new Registry();
    stop = registerNvmeMetrics(registry, p.bus);
    host = new NvmeBusHost(p.bus, NVME0);
    host.enable();
    await host.createIoQueues();
  });

  afterEach(() => {
    stop();
    p.bus.close();
  });

  const io = (opcode: number, slba: number, blocks: number): Parameters<NvmeBusHost['run']>[1] => ({
    opcode,
    nsid: 1,
    prp1: host.dataAddress(),
    cdw10: slba,
    cdw12: blocks - 1,
  });

  describe('p2p_nvme_commands_total', () => {
    it('counts a Write and a Read on the io queue as SUCCESS, by opcode name', async () => {
      expect((await host.run(NVME_IO_QID, io(NVME_CMD_WRITE, 0, 8))).status).to.equal(NVME_SC_SUCCESS);
      expect((await host.run(NVME_IO_QID, io(NVME_CMD_READ, 0, 8))).status).to.equal(NVME_SC_SUCCESS);
      expect(await sample('p2p_nvme_commands_total', { queue: 'io', opcode: 'Write', status: 'SUCCESS' })).to.equal(1);
      expect(await sample('p2p_nvme_commands_total', { queue: 'io', opcode: 'Read', status: 'SUCCESS' })).to.equal(1);
    });

    it('counts a Read past the end of the namespace as LBA_OUT_OF_RANGE', async () => {
      expect((await host.run(NVME_IO_QID, io(NVME_CMD_READ, NAMESPACE_BLOCKS, 1))).status & 0xff).to.equal(NVME_SC_LBA_RANGE);
      expect(await sample('p2p_nvme_commands_total', { queue: 'io', opcode: 'Read', status: 'LBA_OUT_OF_RANGE' })).to.equal(1);
      expect(await sample('p2p_nvme_commands_total', { queue: 'io', opcode: 'Read', status: 'SUCCESS' })).to.equal(0);
    });

    it('counts the admin commands that created the I/O queues on the admin queue', async () => {
      expect(await sample('p2p_nvme_commands_total', { queue: 'admin', opcode: 'Create I/O CQ', status: 'SUCCESS' })).to.equal(1);
      expect(await sample('p2p_nvme_commands_total', { queue: 'admin', opcode: 'Create I/O SQ', status: 'SUCCESS' })).to.equal(1);
    });

    it('labels an opcode without a name by its hex value, and its status INVALID_OPCODE', async () => {
      await host.run(NVME_IO_QID, { opcode: 0x7f, nsid: 1 });
      expect(await sample('p2p_nvme_commands_total', { queue: 'io', opcode: '0x7f', status: 'INVALID_OPCODE' })).to.equal(1);
    });
  });

  it('p2p_nvme_data_bytes_total: the bytes a Write and a Read moved, by direction', async () => {
    await host.run(NVME_IO_QID, io(NVME_CMD_WRITE, 0, 8));
    await host.run(NVME_IO_QID, io(NVME_CMD_READ, 0, 2));
    expect(await sample('p2p_nvme_data_bytes_total', { direction: 'write' })).to.equal(8 * 512);
    expect(await sample('p2p_nvme_data_bytes_total', { direction: 'read' })).to.equal(2 * 512);
  });

  describe('p2p_nvme_doorbell_writes_total', () => {
    it('counts MMIO doorbell writes on path mmio: the tail and the head of each command', async () => {
      const before = await sample('p2p_nvme_doorbell_writes_total', { path: 'mmio', accepted: 'true' });
      await host.run(NVME_IO_QID, io(NVME_CMD_WRITE, 0, 1));
      expect(await sample('p2p_nvme_doorbell_writes_total', { path: 'mmio', accepted: 'true' })).to.equal(before + 2);
      expect(await sample('p2p_nvme_doorbell_writes_total', { path: 'p2p', accepted: 'true' })).to.equal(0);
    });

    it('counts a doorbell the controller ignored (a queue that does not exist) as accepted false', async () => {
      p.bus.mmioWrite(NVME0, 0, host.doorbellOffset(2 * 5), 4, 1);
      expect(await sample('p2p_nvme_doorbell_writes_total', { path: 'mmio', accepted: 'false' })).to.equal(1);
    });

    it("counts a bus master's write into the BAR0 doorbell window on path p2p, and runs the command it announced", async () => {
      host.write(NVME_IO_QID, io(NVME_CMD_WRITE, 0, 1));
      const span = p.bus.barMemorySpan(NVME0, 0, host.doorbellOffset(2 * NVME_IO_QID), 4);
      memories.get(span.memoryName)!.write(span.offset, Buffer.from([1, 0, 0, 0]));
      expect(p.bus.postedWrite(span.memoryName, span.offset, 4)).to.equal(true);
      await host.settle();
      expect(host.reap(NVME_IO_QID).map((c) => c.status)).to.deep.equal([NVME_SC_SUCCESS]);
      expect(await sample('p2p_nvme_doorbell_writes_total', { path: 'p2p', accepted: 'true' })).to.equal(1);
      expect(await sample('p2p_nvme_commands_total', { queue: 'io', opcode: 'Write', status: 'SUCCESS' })).to.equal(1);
    });
  });

  describe('p2p_nvme_queue_depth', () => {
    it('shows commands rung and not yet fetched in the SQ', async () => {
      for (let i = 0; i < 3; i++) host.write(NVME_IO_QID, io(NVME_CMD_READ, i, 1));
      host.ringTail(NVME_IO_QID);
      expect(await sample('p2p_nvme_queue_depth', { queue: 'sq', qid: '1' })).to.equal(3);
      expect(await sample('p2p_nvme_queue_depth', { queue: 'cq', qid: '1' })).to.equal(0);
    });

    it("shows completions posted in the CQ until the host's head doorbell releases them", async () => {
      for (let i = 0; i < 3; i++) host.write(NVME_IO_QID, io(NVME_CMD_READ, i, 1));
      host.ringTail(NVME_IO_QID);
      await host.settle();
      expect(await sample('p2p_nvme_queue_depth', { queue: 'sq', qid: '1' })).to.equal(0);
      expect(await sample('p2p_nvme_queue_depth', { queue: 'cq', qid: '1' })).to.equal(3);
      expect(host.reap(NVME_IO_QID)).to.have.length(3);
      expect(await sample('p2p_nvme_queue_depth', { queue: 'cq', qid: '1' })).to.equal(0);
    });

    it('drops the queues of a controller reset: no sample is left for them', async () => {
      p.bus.mmioWrite(NVME0, 0, NVME_REG_CC, 4, 0);
      const { values } = await registry.getSingleMetric('p2p_nvme_queue_depth')!.get();
      expect(values.filter((v) => v.labels['bdf'] === NVME0)).to.deep.equal([]);
    });
  });

  it('p2p_nvme_state_changes_total: ready at CC.EN set, reset at CC.EN cleared', async () => {
    expect(p.bus.mmioRead(NVME0, 0, NVME_REG_CSTS, 4).value & NVME_CSTS_RDY).to.equal(NVME_CSTS_RDY);
    p.bus.mmioWrite(NVME0, 0, NVME_REG_CC, 4, 0);
    p.bus.mmioWrite(NVME0, 0, NVME_REG_CC, 4, NVME_CC_NVM_ENABLE);
    expect(await sample('p2p_nvme_state_changes_total', { state: 'ready' })).to.equal(2);
    expect(await sample('p2p_nvme_state_changes_total', { state: 'reset' })).to.equal(1);
  });

  it('reads as a scraper sees it: each metric by name, with its labels', async () => {
    await host.run(NVME_IO_QID, io(NVME_CMD_READ, NAMESPACE_BLOCKS, 1));
    const text = await registry.metrics();
    expect(text).to.include(`p2p_nvme_commands_total{bdf="${NVME0}",queue="io",opcode="Read",status="LBA_OUT_OF_RANGE"} 1`);
    expect(text).to.include(`p2p_nvme_doorbell_writes_total{bdf="${NVME0}",path="mmio",accepted="true"}`);
    expect(text).to.include(`p2p_nvme_queue_depth{bdf="${NVME0}",queue="sq",qid="1"} 0`);
  });

  it('stops counting once unsubscribed', async () => {
    stop();
    await host.run(NVME_IO_QID, io(NVME_CMD_READ, 0, 1));
    expect(await sample('p2p_nvme_commands_total', { queue: 'io', opcode: 'Read', status: 'SUCCESS' })).to.equal(0);
  });
});
