import * as fs from 'node:fs';
import * as path from 'node:path';
import Table from 'cli-table3';
import { NVME_CMD_READ, NVME_CMD_WRITE, NVME_CQE_SIZE, NVME_SQE_SIZE } from '@p2p/pci-emu';
import { iommufd, rdma, vfio } from '@p2p/proto';
import { connectPeer, type Peer } from '@p2p/rpc';
import { readAdminToken } from '@p2p/auth';
import { errnoOf } from '@p2p/status';
import { decodeCqes, encodeWqe, IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_REMOTE_WRITE, IBV_SEND_SIGNALED, WQE_BYTES } from '@p2p/verbs';
import { O_RDWR, vfioUapi } from '@p2p/vfio-pci';
import { spdkCmbCopy } from '../examples/spdk-cmb-copy';
import { type RdmaHost, RdmaStack } from '../harness/rdma-hosts';
import { cpuView, type DmaBuffer, NvmeDriver, NvmeQueuePair, VfioDmaSpace } from '@p2p/user-driver';
import { Prng } from '@p2p/chaos';
import { bareUnary, startSink } from './grpc-sink';
import { percentile, secondsSince, timeInTurn } from './stats';

const NVME1 = '0000:08:00.0';
const NSID = 1;
const KiB = 1024;
const MiB = 1024 * KiB;
/** Every I/O: 4 KiB at a 4 KiB-aligned LBA, as fio's --bs=4k --rw=randread/randwrite. */
const IO_BYTES = 4 * KiB;
const DEPTHS = [1, 32];
/** Entries per I/O queue: room for the deepest case with the slot a queue keeps free to spare. */
const QUEUE_ENTRIES = 64;
/** Every case runs WARM_UP_S untimed, then MEASURE_S timed. */
const WARM_UP_S = 0.5;
const MEASURE_S = 2;
/** One seed for every case: the NVMe runs and the file runs visit the same LBAs in the same order. */
const SEED = 0x4e564d65;
/** BAR0's first doorbell page: what vfio-pci exports for the NIC to write into. */
const DOORBELL_PAGE = 0x1000;
/** Host Y's staging buffer: one 4-byte doorbell value per RDMA WRITE in flight, reused round robin. */
const STAGING_SLOTS = 1024;
const STAGING_IOVA = 0x1_0000_0000;
/** cmb_copy: enough bytes for a few hundred commands per chunk size; chunks up to MDTS (512 KiB). */
const CMB_COPY_BYTES = 32 * MiB;
const CMB_CHUNKS = [64 * KiB, 512 * KiB];
/** A queue id nvme1 never creates: a doorbell write to it reaches the controller and changes nothing. */
const IDLE_QID = 9;
const { VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_DMA_BUF } = vfioUapi;

type Opcode = typeof NVME_CMD_READ | typeof NVME_CMD_WRITE;

/** One case's figures: completions per second in the timed window, and each one's latency in microseconds, sorted. */
interface Rate {
  readonly iops: number;
  readonly latencies: number[];
}

/**
 * nvme1 driven as SPDK drives it (@p2p/user-driver's NvmeDriver, through
 * vfio-pci), every service its own process: 4 KiB random Read and Write at
 * queue depths 1 and 32, the SQ tail and CQ head doorbells rung two ways,
 * by MmioWrite (vfio-pci's BAR0 region, as the driver does by default) and
 * by P2P (an RDMA WRITE from host Y's NIC into a dma-buf of nvme1's BAR0
 * doorbell page on host X's NIC, which reaches the controller as a posted
 * write through the write-notice socket, as rdma-nvme-doorbell does); and
 * SPDK's cmb_copy (nvme0 -> nvme1's CMB -> nvme1). Beside them, measured in
 * the same run: pread/pwrite of 4 KiB at the same LBAs of a plain file in
 * the namespaces' data directory (the namespace files are such files, so
 * this is the limit), and a file -> file copy by pread/pwrite of the same
 * chunks.
 */
export async function benchNvme(out: string[]): Promise<void> {
  const stack = await RdmaStack.start();
  const hosts: RdmaHost[] = [];
  const closers: Array<() => void> = [];
  try {
    const dataDir = path.join(stack.shmDir, 'nvme-namespaces');

    // cmb_copy first: it brings nvme0 and nvme1 up in a process of its own, then shuts them down.
    const copies = new Table({
      head: ['cmb_copy nvme0 -> nvme1 CMB -> nvme1', 'chunk', 'copy [MB/s]', 'file -> file pread+pwrite [MB/s]', 'cmb_copy / file'],
      style: { head: [], border: [] },
    });
    for (const chunk of CMB_CHUNKS) {
      const copy = await cmbCopyRate(stack, chunk);
      const file = fileCopyRate(dataDir, chunk);
      copies.push([`${CMB_COPY_BYTES / MiB} MiB`, `${chunk / KiB} KiB`, (copy / 1e6).toFixed(1), (file / 1e6).toFixed(1), `${(copy / file).toFixed(3)}x`]);
    }

    // Host X owns nvme1 through vfio-pci and registers its doorbell page on nic1; host Y rings it from nic0.
    const hostX = await stack.host(1, 'nvme-bench-target');
    hosts.push(hostX);
    const hostY = await stack.host(0, 'nvme-bench-initiator');
    hosts.push(hostY);
    const admin = connectPeer(vfio.VfioPciServiceDefinition, stack.vfioPci.address, { name: 'vfio-pci', token: readAdminToken(stack.shmDir) });
    closers.push(admin.close);
    await admin.client.bind({ bdf: NVME1, variants: undefined }).catch((error: unknown) => {
      if (errnoOf(error) !== 'EBUSY') throw error;
    });
    const as = { token: hostX.session.credential };
    const device = connectPeer(vfio.VfioPciServiceDefinition, stack.vfioPci.address, { name: 'vfio-pci', ...as });
    const deviceIommufd = connectPeer(vfio.VfioDeviceIommufdServiceDefinition, stack.vfioPci.address, { name: 'vfio-pci', ...as });
    const dev = connectPeer(iommufd.IommufdServiceDefinition, stack.vfioPci.address, { name: 'vfio-pci', ...as });
    closers.push(device.close, deviceIommufd.close, dev.close);
    const space = await VfioDmaSpace.open(hostX.session, { device: device.client, deviceIommufd: deviceIommufd.client, iommufd: dev.client });
    const nvme = await space.openDevice(NVME1);
    const driver = await NvmeDriver.start(nvme.registers, space);
    const ns = await driver.identifyNamespace(NSID);
    const blocks = IO_BYTES / ns.blockSize;
    const slots = Number(ns.blocks) / blocks;
    await driver.setNumberOfQueues(2);

    // Queue 1: doorbells by MmioWrite. Queue 2: the same, in host memory, its doorbells by RDMA WRITE.
    const mmio = await driver.createIoQueuePair(1, QUEUE_ENTRIES);
    const doorbells = await rdmaDoorbells(hostX, hostY, device.client, nvme.fd, (index) => driver.doorbellOffset(index) - DOORBELL_PAGE);
    closers.push(doorbells.close);
    const sq = await space.allocate(QUEUE_ENTRIES * NVME_SQE_SIZE);
    const cq = await space.allocate(QUEUE_ENTRIES * NVME_CQE_SIZE);
    await driver.createIoQueues(2, QUEUE_ENTRIES, sq.address, cq.address);
    const p2p = new NvmeQueuePair(2, QUEUE_ENTRIES, sq, cq, doorbells.ring);

    // One 4 KiB buffer per command in flight.
    const data = await space.allocate(Math.max(...DEPTHS) * IO_BYTES);
    data.view.fill(0x5a);
    const nvmeIo = (queue: NvmeQueuePair, opcode: Opcode) => (slot: number, worker: number) =>
      driver.io(queue, opcode, NSID, BigInt(slot * blocks), blocks, data.address + BigInt(worker * IO_BYTES), ns.blockSize);

    // The limit: the same I/O on a plain file the size of the namespace, in the same directory, on the same file system.
    const file = path.join(dataDir, 'bench-limit.img');
    const fd = fs.openSync(file, 'w+');
    fs.ftruncateSync(fd, Number(ns.blocks) * ns.blockSize);
    const handle = await fs.promises.open(file, 'r+');
    closers.push(() => {
      fs.closeSync(fd);
      void handle.close();
      fs.rmSync(file, { force: true });
    });
    const buffers = Array.from({ length: Math.max(...DEPTHS) }, () => Buffer.alloc(IO_BYTES, 0x5a));

    const table = new Table({
      head: ['4 KiB random', 'QD', 'doorbells by', 'IOPS', 'p50 [us]', 'p99 [us]', 'in flight (IOPS x mean)', 'vs file IOPS'],
      style: { head: [], border: [] },
    });
    for (const opcode of [NVME_CMD_WRITE, NVME_CMD_READ] as const) {
      const op = opcode === NVME_CMD_WRITE ? 'Write' : 'Read';
      for (const depth of DEPTHS) {
        const limit =
          depth === 1
            ? syncFileRate((slot) => (opcode === NVME_CMD_WRITE ? fs.writeSync(fd, buffers[0]!, 0, IO_BYTES, slot * IO_BYTES) : fs.readSync(fd, buffers[0]!, 0, IO_BYTES, slot * IO_BYTES)), slots)
            : await rate(depth, slots, (slot, worker) =>
                opcode === NVME_CMD_WRITE ? handle.write(buffers[worker]!, 0, IO_BYTES, slot * IO_BYTES) : handle.read(buffers[worker]!, 0, IO_BYTES, slot * IO_BYTES),
              );
        const row = (by: string, result: Rate): void => {
          table.push([op, depth, by, result.iops.toFixed(0), p(result, 50), p(result, 99), inFlight(result), `${(result.iops / limit.iops).toFixed(3)}x`]);
        };
        row(depth === 1 ? `(file: ${opcode === NVME_CMD_WRITE ? 'pwrite' : 'pread'}, sync)` : '(file: fs.promises, libuv pool)', limit);
        row('MmioWrite (vfio-pci)', await rate(depth, slots, nvmeIo(mmio, opcode)));
        row('P2P (RDMA WRITE)', await rate(depth, slots, nvmeIo(p2p, opcode)));
      }
    }

    // What one doorbell write costs with no command behind it (SQ IDLE_QID's tail: no such queue, the controller
    // ignores it), in turn with a bare grpc-js unary call to another process.
    const sink = await startSink();
    const bare = bareUnary(sink.address);
    closers.push(sink.stop, bare.close);
    const [bares = [], mmioRings = [], p2pRings = []] = await timeInTurn(
      500,
      50,
      bare.call,
      () => nvme.registers.write32(driver.doorbellOffset(2 * IDLE_QID), 0),
      () => doorbells.ring(2 * IDLE_QID, 0),
    );
    const rings = new Table({ head: ['one doorbell write, no command (same run, in turn)', 'p50 [us]', 'p99 [us]', 'p50 vs bare gRPC'], style: { head: [], border: [] } });
    const ringRow = (title: string, sorted: number[]): void => {
      rings.push([title, percentile(sorted, 50).toFixed(0), percentile(sorted, 99).toFixed(0), `${(percentile(sorted, 50) / percentile(bares, 50)).toFixed(1)}x`]);
    };
    ringRow('bare grpc-js unary call, empty handler in another process', bares);
    ringRow('MmioWrite: RegionWrite -> vfio-pci -> MmioWrite -> pci-emu', mmioRings);
    ringRow('P2P: RDMA WRITE nic0 -> nic1 -> BAR0 page + write notice, CQE back', p2pRings);

    // The bytes are where the commands put them: a block written through one queue reads back through the other.
    await checkReadBack(driver, p2p, mmio, data, blocks, ns.blockSize);

    out.push(`nvme1, namespace ${NSID} (${ns.blocks} blocks of ${ns.blockSize} bytes), ${WARM_UP_S} s warm-up + ${MEASURE_S} s per case\n${table.toString()}`);
    out.push(rings.toString());
    out.push(copies.toString());
  } finally {
    for (const close of closers.reverse()) close();
    for (const host of hosts) await host.close().catch(() => undefined);
    await stack.stop();
  }
}

/**
 * `op` on random slots with `depth` calls in flight: WARM_UP_S untimed,
 * then MEASURE_S in which every completion counts and is timed; the
 * workers then stop and the calls still out are waited for.
 */
async function rate(depth: number, slots: number, op: (slot: number, worker: number) => Promise<unknown>): Promise<Rate> {
  const prng = new Prng(SEED);
  const start = process.hrtime.bigint();
  const measureFrom = start + BigInt(WARM_UP_S * 1e9);
  const measureTo = measureFrom + BigInt(MEASURE_S * 1e9);
  const latencies: number[] = [];
  const worker = async (index: number): Promise<void> => {
    for (;;) {
      const t0 = process.hrtime.bigint();
      if (t0 >= measureTo) return;
      await op(prng.below(slots), index);
      const t1 = process.hrtime.bigint();
      if (t0 >= measureFrom && t1 <= measureTo) latencies.push(Number(t1 - t0) / 1e3);
    }
  };
  await Promise.all(Array.from({ length: depth }, (_, index) => worker(index)));
  return { iops: latencies.length / MEASURE_S, latencies: latencies.sort((a, b) => a - b) };
}

/** rate() at queue depth 1 for a synchronous op (pread/pwrite on the bench's own thread). */
function syncFileRate(op: (slot: number) => void, slots: number): Rate {
  const prng = new Prng(SEED);
  const start = process.hrtime.bigint();
  const measureFrom = start + BigInt(WARM_UP_S * 1e9);
  const measureTo = measureFrom + BigInt(MEASURE_S * 1e9);
  const latencies: number[] = [];
  for (;;) {
    const t0 = process.hrtime.bigint();
    if (t0 >= measureTo) break;
    op(prng.below(slots));
    const t1 = process.hrtime.bigint();
    if (t0 >= measureFrom && t1 <= measureTo) latencies.push(Number(t1 - t0) / 1e3);
  }
  return { iops: latencies.length / MEASURE_S, latencies: latencies.sort((a, b) => a - b) };
}

/**
 * The doorbell path of rdma-nvme-doorbell: vfio-pci exports BAR0's first
 * doorbell page of the device behind `deviceFd` as a dma-buf, host X
 * registers it on its NIC, and host Y's ring(index, value) is an RDMA
 * WRITE of the 4-byte value at `offsetOf(index)` in that page, resolved when
 * its completion arrives (the NIC has placed it; the controller hears of it
 * by the write notice the responder sends pci-emu, as a posted write).
 * RC delivers the WRITEs in order, so the controller sees the doorbell
 * values in the order they were rung.
 */
async function rdmaDoorbells(
  hostX: RdmaHost,
  hostY: RdmaHost,
  device: Peer<typeof vfio.VfioPciServiceDefinition>['client'],
  deviceFd: number,
  offsetOf: (index: number) => number,
): Promise<{ ring: (index: number, value: number) => Promise<void>; close: () => void }> {
  const { fd } = await device.deviceFeature({
    pid: hostX.session.pid,
    deviceFd,
    argsz: 0,
    flags: VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF,
    payload: { $case: 'dmaBuf', value: { regionIndex: 0, openFlags: O_RDWR, flags: 0, dmaRanges: [{ offset: BigInt(DOORBELL_PAGE), length: 0x1000n }] } },
  });
  const doorbellMr = await hostX.ctx.regDmabufMr(hostX.pd, { fd, offset: 0, length: 0x1000, iova: 0, access: IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE });
  const { fd: stagingFd } = await hostY.session.heapAllocate(STAGING_SLOTS * 4);
  const stagingMr = await hostY.ctx.regMr(hostY.pd, { heapFd: stagingFd, length: STAGING_SLOTS * 4, iova: STAGING_IOVA, access: IBV_ACCESS_LOCAL_WRITE });
  const staging = cpuView(await hostY.session.mmapFd(stagingFd, 0, STAGING_SLOTS * 4));

  const qx = await hostX.rcQp();
  const qy = await hostY.rcQp({ maxSendWr: STAGING_SLOTS });
  await hostX.ctx.connectRc(qx.qpNum, { gid: hostY.gid, qpNum: qy.qpNum }, { access: IBV_ACCESS_REMOTE_WRITE });
  await hostY.ctx.connectRc(qy.qpNum, { gid: hostX.gid, qpNum: qx.qpNum }, { access: 0 });

  const waiting = new Map<bigint, { resolve: () => void; reject: (error: Error) => void }>();
  let ended: Error | undefined;
  const stopWatch = hostY.ctx.watchCompletions(
    qy.cq,
    true,
    (batch) => {
      for (const wc of decodeCqes(batch.packedCqes)) {
        const waiter = waiting.get(wc.wrId);
        waiting.delete(wc.wrId);
        if (wc.status === rdma.WcStatus.WC_STATUS_SUCCESS) waiter?.resolve();
        else waiter?.reject(new Error(`doorbell RDMA WRITE ${wc.wrId} completed with status ${wc.status}`));
      }
    },
    (error) => {
      ended = new Error(`the doorbell QP's completion watch ended${error ? `: ${error.message}` : ''}`);
      for (const waiter of waiting.values()) waiter.reject(ended);
      waiting.clear();
    },
  );
  const stream = hostY.ctx.openPostStream(qy.qpNum);
  let next = 0n;
  const ring = (index: number, value: number): Promise<void> => {
    if (ended !== undefined) return Promise.reject(ended);
    if (waiting.size >= STAGING_SLOTS) return Promise.reject(new Error(`${STAGING_SLOTS} doorbell writes in flight: the staging slots are all taken`));
    const wrId = next++;
    const slot = Number(wrId % BigInt(STAGING_SLOTS));
    staging.writeUInt32LE(value >>> 0, slot * 4);
    const wqe = Buffer.alloc(WQE_BYTES);
    encodeWqe(wqe, 0, {
      wrId,
      opcode: rdma.WrOpcode.WR_OPCODE_RDMA_WRITE,
      sge: { addr: STAGING_IOVA + slot * 4, length: 4, lkey: stagingMr.lkey },
      sendFlags: IBV_SEND_SIGNALED,
      remoteAddr: offsetOf(index),
      rkey: doorbellMr.rkey,
    });
    const done = new Promise<void>((resolve, reject) => waiting.set(wrId, { resolve, reject }));
    stream.postAndForget(wqe);
    return done;
  };
  return {
    ring,
    close: () => {
      stream.close();
      stopWatch();
    },
  };
}

/**
 * One spdkCmbCopy of CMB_COPY_BYTES in `chunk`s; bytes per second of its
 * copy phase alone (from its log line saying nvme0 holds the source blocks
 * to the one saying the chunks went through the CMB), the bring-up, the
 * filling of nvme0 and the read-back left out.
 */
async function cmbCopyRate(stack: RdmaStack, chunk: number): Promise<number> {
  const marks: { line: string; at: bigint }[] = [];
  const { expected, copied } = await spdkCmbCopy({
    registry: stack.registry.address,
    vfioPci: stack.vfioPci.address,
    shmDir: stack.shmDir,
    adminToken: readAdminToken(stack.shmDir),
    length: CMB_COPY_BYTES,
    chunk,
    log: (line) => marks.push({ line, at: process.hrtime.bigint() }),
  }).catch((error: unknown) => {
    throw new Error(`cmb_copy of ${chunk}-byte chunks: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  });
  if (!copied.equals(expected)) throw new Error(`cmb_copy of ${chunk}-byte chunks: nvme1 read back other bytes than nvme0 was given`);
  const from = marks.find((mark) => mark.line.includes('written to nvme0'));
  const to = marks.find((mark) => mark.line.includes("nvme0 Read into nvme1's CMB"));
  if (from === undefined || to === undefined) throw new Error(`cmb_copy's log no longer marks its copy phase:\n${marks.map((mark) => mark.line).join('\n')}`);
  return CMB_COPY_BYTES / (Number(to.at - from.at) / 1e9);
}

/** The same copy between two plain files of the data directory: pread a chunk, pwrite it, one chunk at a time (best of 3). */
function fileCopyRate(dataDir: string, chunk: number): number {
  const [source, target] = ['bench-copy-src.img', 'bench-copy-dst.img'].map((name) => path.join(dataDir, name)) as [string, string];
  const pattern = Buffer.alloc(CMB_COPY_BYTES);
  for (let i = 0; i < CMB_COPY_BYTES; i += 4) pattern.writeUInt32LE((Math.imul(i, 0x9e3779b1) ^ 0x5eed) >>> 0, i);
  fs.writeFileSync(source, pattern);
  const from = fs.openSync(source, 'r');
  const to = fs.openSync(target, 'w+');
  try {
    const buffer = Buffer.alloc(chunk);
    let best = 0;
    for (let round = 0; round < 3; round++) {
      const start = process.hrtime.bigint();
      for (let at = 0; at < CMB_COPY_BYTES; at += chunk) {
        fs.readSync(from, buffer, 0, chunk, at);
        fs.writeSync(to, buffer, 0, chunk, at);
      }
      best = Math.max(best, CMB_COPY_BYTES / secondsSince(start));
    }
    return best;
  } finally {
    fs.closeSync(from);
    fs.closeSync(to);
    fs.rmSync(source, { force: true });
    fs.rmSync(target, { force: true });
  }
}

/** A pattern written through `writer` and read back through `reader` into a cleared buffer: the same bytes, or a throw. */
async function checkReadBack(driver: NvmeDriver, writer: NvmeQueuePair, reader: NvmeQueuePair, data: DmaBuffer, blocks: number, blockSize: number): Promise<void> {
  const pattern = Buffer.alloc(IO_BYTES);
  for (let i = 0; i < IO_BYTES; i += 4) pattern.writeUInt32LE((Math.imul(i + 1, 0x2545f491) ^ 0xb0b) >>> 0, i);
  pattern.copy(data.view, 0);
  await driver.io(writer, NVME_CMD_WRITE, NSID, 0n, blocks, data.address, blockSize);
  data.view.fill(0, 0, IO_BYTES);
  await driver.io(reader, NVME_CMD_READ, NSID, 0n, blocks, data.address, blockSize);
  if (!data.view.subarray(0, IO_BYTES).equals(pattern)) throw new Error('a block written through the P2P-doorbell queue read back different through the MMIO-doorbell queue');
}

function p(result: Rate, at: number): string {
  return percentile(result.latencies, at).toFixed(0);
}

/** Little's law: completions per second times mean latency is the mean number of commands in flight. */
function inFlight(result: Rate): string {
  if (result.latencies.length === 0) return '-';
  const mean = result.latencies.reduce((sum, us) => sum + us, 0) / result.latencies.length / 1e6;
  return (result.iops * mean).toFixed(1);
}
