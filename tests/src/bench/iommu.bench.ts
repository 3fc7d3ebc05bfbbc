import * as fs from 'node:fs';
import { credentials } from '@grpc/grpc-js';
import Table from 'cli-table3';
import { RegistrySession } from '@p2p/dmabuf-client';
import {
  decodeDmaCompletion,
  DMA_DESC_COMPLETION,
  DMA_DESCRIPTOR_SIZE,
  DMA_ERRORS,
  DMA_RING_BASE,
  DMA_RING_CTRL,
  DMA_RING_CTRL_ENABLE,
  DMA_RING_SIZE,
  DMA_RING_TAIL,
  DMA_SRC_IOVA,
  DMA_STATUS,
  DMA_STATUS_DONE,
  encodeDmaDescriptor,
} from '@p2p/pci-emu';
import { iommufd, vfio } from '@p2p/proto';
import { SegmentStore } from '@p2p/shm';
import { asAdmin, type ServiceProcess, startServiceProcess, tempShmDir } from '@p2p/testing';
import { iommufdUapi, pciRegs, vfioUapi } from '@p2p/vfio-pci';
import { rpc } from '../harness/rpc';
import { bareUnary, startSink } from './grpc-sink';
import { cyclingCopyRate, GB, percentile, secondsSince, timeInTurn } from './stats';
import { cpuView, u32, u64 } from '@p2p/user-driver';
import { exportBarRange } from '../harness/vfio-dma';

const ACCEL0 = '0000:07:00.0';
const NVME1 = '0000:08:00.0';
/** nvme1's controller memory buffer (CMBLOC.BIR): 16 MiB in the default topology. */
const CMB_BAR = 2;
const KiB = 1024;
const MiB = 1024 * KiB;
const SIZES = [4 * KiB, 64 * KiB, MiB, 8 * MiB];
/** Every buffer (the CMB's size): transfers cycle through it, and so do the memcpy baselines. */
const WORKING_SET = 16 * MiB;
const SRC_IOVA = 0x4000_0000n;
const DST_IOVA = 0x8000_0000n;
const CMB_IOVA = 0x2000_0000n;
/** Where the map/unmap latency runs put their range, away from the transfers' buffers. */
const MAP_IOVA = 0xc000_0000n;
/** The descriptor ring's IOVA and entries. */
const RING_IOVA = 0xe000_0000n;
const RING_ENTRIES = 256;
const MAP_SIZES = [4 * KiB, MiB];
/** A 24-byte write to BAR0 scratch registers: the doorbell write's RPC, with no transfer behind it. */
const SCRATCH = 0x200;
const BAR0 = vfioUapi.VFIO_PCI_BAR0_REGION_INDEX;
const CONFIG_REGION = vfioUapi.VFIO_PCI_CONFIG_REGION_INDEX;
const { PCI_COMMAND, PCI_COMMAND_MEMORY, PCI_COMMAND_MASTER } = pciRegs;
const { IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE } = iommufdUapi;
const MAP_RW = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

/**
 * The platform IOMMU as a process uses it through vfio-pci's iommufd, with
 * pci-emu, the registry and vfio-pci each its own process: accel0's DMA
 * engine moving bytes between two heap buffers of the process (IOAS_MAP)
 * and from nvme1's CMB (a dma-buf, IOAS_MAP_FILE, peer to peer) into one,
 * driven as a driver would through vfio-pci's BAR0 region: streamed through
 * the engine's descriptor ring (descriptors and completion records in the
 * process's memory, one TAIL write per batch), and one transfer per register
 * doorbell (a RegionWrite each), beside a memcpy of the same sizes through the same working
 * set measured in the same run; and IOAS_MAP / IOAS_UNMAP of a heap range
 * with accel0 attached (so each map pins pages and fills the platform's
 * domain), call for call in turn with a bare grpc-js unary call.
 */
export async function benchIommu(out: string[]): Promise<void> {
  const shmDir = tempShmDir();
  const env = { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn' };
  const services: ServiceProcess[] = [];
  const closers: Array<() => void> = [];
  let app: RegistrySession | undefined;
  const sink = await startSink();
  const bare = bareUnary(sink.address);
  try {
    const pciEmu = await startServiceProcess('pci-emu', 'PCI_EMU', { env });
    services.unshift(pciEmu);
    const registry = await startServiceProcess('dmabuf-registry', 'DMABUF_REGISTRY', { env: { ...env, PCI_EMU_ADDRESS: pciEmu.address } });
    services.unshift(registry);
    const vfioPci = await startServiceProcess('vfio-pci', 'VFIO_PCI', { env: { ...env, PCI_EMU_ADDRESS: pciEmu.address, DMABUF_REGISTRY_ADDRESS: registry.address } });
    services.unshift(vfioPci);
    const admin = asAdmin(shmDir);
    const root = new vfio.VfioPciServiceClient(vfioPci.address, admin.credentials, admin.options);
    closers.push(() => root.close());
    for (const bdf of [ACCEL0, NVME1]) await rpc((cb) => root.bind({ bdf, variants: undefined }, cb));

    // The process proves itself on every call, as users' calls do.
    const session = await RegistrySession.open(registry.address, { name: 'iommu-bench', shmDir });
    app = session;
    const pid = session.pid;
    const asProcess = { interceptors: [session.interceptor] };
    const device = new vfio.VfioPciServiceClient(vfioPci.address, credentials.createInsecure(), asProcess);
    const deviceIommufd = new vfio.VfioDeviceIommufdServiceClient(vfioPci.address, credentials.createInsecure(), asProcess);
    const dev = new iommufd.IommufdServiceClient(vfioPci.address, credentials.createInsecure(), asProcess);
    closers.push(() => device.close(), () => deviceIommufd.close(), () => dev.close());

    const nvmeFd = (await rpc<vfio.OpenDeviceResponse>((cb) => device.openDevice({ pid, bdf: NVME1 }, cb))).fd;
    const accelFd = (await rpc<vfio.OpenDeviceResponse>((cb) => device.openDevice({ pid, bdf: ACCEL0 }, cb))).fd;
    const setCommand = (deviceFd: number, command: number): Promise<unknown> => {
      const data = Buffer.alloc(2);
      data.writeUInt16LE(command);
      return rpc((cb) => device.regionWrite({ pid, deviceFd, index: CONFIG_REGION, offset: BigInt(PCI_COMMAND), data }, cb));
    };
    await setCommand(nvmeFd, PCI_COMMAND_MEMORY);
    await setCommand(accelFd, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);

    // One IOAS: two heap buffers by address (IOAS_MAP), nvme1's CMB as a dma-buf (IOAS_MAP_FILE); accel0 attached.
    const ictx = (await rpc<iommufd.OpenIommufdResponse>((cb) => dev.openIommufd({ pid }, cb))).fd;
    const ioasId = (await rpc<iommufd.IoasAllocResponse>((cb) => dev.ioasAlloc({ pid, fd: ictx, flags: 0 }, cb))).outIoasId;
    const heapBuffer = async (length: number, iova: bigint | undefined): Promise<{ addr: bigint; view: Buffer }> => {
      const { fd } = await session.heapAllocate(length);
      const mapped = await session.mmapFd(fd, 0, length);
      if (iova !== undefined) {
        await rpc((cb) => dev.ioasMap({ pid, fd: ictx, flags: MAP_RW, ioasId, reserved: 0, userVa: mapped.addr, length: BigInt(length), iova }, cb));
      }
      return { addr: mapped.addr, view: cpuView(mapped) };
    };
    const src = await heapBuffer(WORKING_SET, SRC_IOVA);
    const dst = await heapBuffer(WORKING_SET, DST_IOVA);
    for (let i = 0; i < WORKING_SET; i += 4) src.view.writeUInt32LE((i * 2654435761) >>> 0, i);
    const cmbFd = await exportBarRange(device, pid, nvmeFd, CMB_BAR, WORKING_SET);
    await rpc((cb) => dev.ioasMapFile({ pid, fd: ictx, flags: MAP_RW, ioasId, mapFd: cmbFd, start: 0n, length: BigInt(WORKING_SET), iova: CMB_IOVA }, cb));
    await rpc((cb) => deviceIommufd.bindIommufd({ pid, deviceFd: accelFd, flags: 0, iommufd: ictx }, cb));
    await rpc((cb) => deviceIommufd.attachIommufdPt({ pid, deviceFd: accelFd, flags: 0, ptId: ioasId, pasid: 0 }, cb));

    // The engine's registers in one 24-byte write: SRC_IOVA, DST_IOVA, then LEN with DOORBELL_START in the qword's high half.
    const registers = (source: bigint, target: bigint, bytes: number): Buffer => {
      const data = Buffer.alloc(24);
      data.writeBigUInt64LE(source, 0);
      data.writeBigUInt64LE(target, 8);
      data.writeBigUInt64LE(BigInt(bytes) | (1n << 32n), 16);
      return data;
    };
    const writeBar0 = (offset: number, data: Buffer): Promise<unknown> => rpc((cb) => device.regionWrite({ pid, deviceFd: accelFd, index: BAR0, offset: BigInt(offset), data }, cb));
    const expectDone = async (what: string): Promise<void> => {
      const { data } = await rpc<vfio.RegionReadResponse>((cb) => device.regionRead({ pid, deviceFd: accelFd, index: BAR0, offset: BigInt(DMA_STATUS), count: 8 }, cb));
      if (data.readUInt32LE(0) !== DMA_STATUS_DONE) {
        const error = Object.entries(DMA_ERRORS).find(([, code]) => code === data.readUInt32LE(4))?.[0];
        throw new Error(`${what}: STATUS ${data.readUInt32LE(0)}, ERROR ${error ?? data.readUInt32LE(4)}`);
      }
    };

    // The baselines, timed in turn: a bare grpc-js unary call, and the doorbell's RPC without the doorbell.
    const scratch = Buffer.alloc(24, 0x5a);
    const scratchWrite = (): Promise<unknown> => writeBar0(SCRATCH, scratch);
    const [bares = [], scratchWrites = []] = await timeInTurn(500, 100, bare.call, scratchWrite);

    // Two memcpy baselines through the same working set: heap to heap, and between two mapped tmpfs
    // segments, the memory the engine copies between.
    const heap = [Buffer.alloc(WORKING_SET, 0xa5), Buffer.alloc(WORKING_SET)] as const;
    const store = new SegmentStore({ dir: shmDir });
    const segments = [store.create('bench-memcpy-a', WORKING_SET), store.create('bench-memcpy-b', WORKING_SET)];
    const mapped = segments.map((segment) => segment.view(0, WORKING_SET));
    mapped[0]!.fill(0xa5);
    mapped[1]!.fill(0);
    const memcpy = new Map(SIZES.map((size) => [size, cyclingCopyRate(heap[0], heap[1], size, WORKING_SET)]));
    const mappedMemcpy = new Map(SIZES.map((size) => [size, cyclingCopyRate(mapped[0]!, mapped[1]!, size, WORKING_SET)]));
    for (const segment of segments) segment.close();

    // Every page of both host buffers and of the CMB is touched once before anything is timed, and the
    // CMB gets the source's bytes, so a BAR -> host transfer's landing can be checked.
    await writeBar0(DMA_SRC_IOVA, registers(SRC_IOVA, CMB_IOVA, WORKING_SET));
    await expectDone('host -> CMB fill');
    await writeBar0(DMA_SRC_IOVA, registers(CMB_IOVA, DST_IOVA, WORKING_SET));
    await expectDone('CMB -> host fill');
    // The ring: RING_ENTRIES descriptors in a heap buffer of the process, mapped for the engine at RING_IOVA.
    const ringBuffer = await heapBuffer(RING_ENTRIES * DMA_DESCRIPTOR_SIZE, RING_IOVA);
    await writeBar0(DMA_RING_BASE, u64(RING_IOVA));
    await writeBar0(DMA_RING_SIZE, u32(RING_ENTRIES));
    await writeBar0(DMA_RING_CTRL, u32(DMA_RING_CTRL_ENABLE));
    let produced = 0;
    /**
     * `count` transfers of `size` bytes through the ring, as a driver streams
     * them: descriptors written into the ring, one TAIL write per batch, the
     * completion records polled in the process's own memory, at most
     * `depth` in flight. Returns bytes per second.
     */
    const streamRing = async (from: bigint, size: number, count: number, depth: number): Promise<number> => {
      const slots = WORKING_SET / size;
      let submitted = 0;
      let completed = 0;
      const start = process.hrtime.bigint();
      while (completed < count) {
        let fresh = 0;
        while (submitted < count && submitted - completed < depth) {
          const at = BigInt((submitted % slots) * size);
          encodeDmaDescriptor({ src: from + at, dst: DST_IOVA + at, length: size }, ringBuffer.view, ((produced + fresh) % RING_ENTRIES) * DMA_DESCRIPTOR_SIZE);
          submitted++;
          fresh++;
        }
        if (fresh > 0) {
          produced += fresh;
          await writeBar0(DMA_RING_TAIL, u32(produced % RING_ENTRIES));
        }
        let progressed = false;
        while (completed < submitted) {
          const at = ((produced - (submitted - completed)) % RING_ENTRIES) * DMA_DESCRIPTOR_SIZE;
          const record = decodeDmaCompletion(ringBuffer.view, at + DMA_DESC_COMPLETION);
          if (record.status === 0) break;
          if (record.status !== DMA_STATUS_DONE) throw new Error(`ring descriptor ${completed}: ${record.error ?? record.status}`);
          completed++;
          progressed = true;
        }
        if (!progressed && fresh === 0) await new Promise((resolve) => setImmediate(resolve));
      }
      return (count * size) / secondsSince(start);
    };

    const cases = [
      { title: "accel0's DMA engine, host -> host (IOAS_MAP both)", from: SRC_IOVA },
      { title: "accel0's DMA engine, nvme1's CMB -> host (IOAS_MAP_FILE -> IOAS_MAP)", from: CMB_IOVA },
    ];
    const ratios: string[] = [];
    for (const test of cases) {
      const table = new Table({
        head: ['#bytes', 'ring: #transfers', 'ring: GB/s', 'ring: vs memcpy (mapped / heap)', 'one per doorbell: GB/s', 'doorbell write p50 / p99 [us]', 'same write, no transfer p50 [us]'],
        style: { head: [], border: [] },
      });
      for (const size of SIZES) {
        const slots = WORKING_SET / size;
        // The ring, streaming: enough transfers for a few hundred MiB, a working set's worth in flight.
        const count = Math.max(256, Math.min(4096, (512 * MiB) / size));
        const depth = Math.min(RING_ENTRIES - 1, slots);
        await streamRing(test.from, size, Math.min(count, 64), depth);
        const rate = await streamRing(test.from, size, count, depth);
        // One transfer per register doorbell, each timed in turn with the same RegionWrite to scratch registers.
        let next = 0;
        const ring = (slot: number): Promise<unknown> => {
          const at = BigInt((slot % slots) * size);
          return writeBar0(DMA_SRC_IOVA, registers(test.from + at, DST_IOVA + at, size));
        };
        const transfers = size >= 8 * MiB ? 30 : 100;
        const [rings = [], rpcs = []] = await timeInTurn(transfers, 10, () => ring(next++), scratchWrite);
        await expectDone(`${test.title}, ${size} bytes`);
        const doorbellRate = (transfers * size) / (rings.reduce((sum, us) => sum + us, 0) / 1e6);
        // One more, untimed, into a cleared slot: its bytes are the source's.
        dst.view.fill(0, 0, size);
        await ring(0);
        await expectDone(`${test.title}, ${size} bytes`);
        if (!dst.view.subarray(0, size).equals(src.view.subarray(0, size))) throw new Error(`${test.title}, ${size} bytes: the destination differs from the source`);
        const base = mappedMemcpy.get(size)!;
        table.push([
          size,
          count,
          (rate / GB).toPrecision(3),
          `${(rate / base).toPrecision(2)}x / ${(rate / memcpy.get(size)!).toPrecision(2)}x`,
          (doorbellRate / GB).toPrecision(3),
          `${percentile(rings, 50).toFixed(0)} / ${percentile(rings, 99).toFixed(0)}`,
          percentile(rpcs, 50).toFixed(0),
        ]);
        if (size === MiB) ratios.push(`${test.title}, 1 MiB through the descriptor ring: ${(rate / base).toPrecision(2)}x a mapped-segment memcpy (goal: 0.8x)`);
      }
      out.push(`${test.title}: a descriptor ring (one TAIL write per batch, completions polled in host memory), and one transfer per BAR0 register doorbell\n${table.toString()}`);
    }
    const baselines = new Table({ head: ['baseline (same run)', ...SIZES.map(String)], style: { head: [], border: [] } });
    baselines.push(['memcpy mapped segment -> segment [GB/s]', ...SIZES.map((s) => (mappedMemcpy.get(s)! / GB).toFixed(2))]);
    baselines.push(['memcpy heap -> heap, one thread [GB/s]', ...SIZES.map((s) => (memcpy.get(s)! / GB).toFixed(2))]);
    out.push(baselines.toString());

    // IOAS_MAP and IOAS_UNMAP of one heap range, accel0 attached: each map pins the pages at the registry and maps them in pci-emu's domain.
    const latency = new Table({ head: ['call (same run, in turn)', 'p50', 'p99', 'vs bare grpc-js (p50, p99)'], style: { head: [], border: [] } });
    latency.push(['bare grpc-js unary call (empty handler, another process)', ms(percentile(bares, 50)), ms(percentile(bares, 99)), '1.0x, 1.0x']);
    latency.push(['RegionWrite, 24 bytes to BAR0 scratch (the doorbell RPC, no transfer)', ms(percentile(scratchWrites, 50)), ms(percentile(scratchWrites, 99)), versusBare(scratchWrites, bares)]);
    for (const size of MAP_SIZES) {
      const range = await heapBuffer(size, undefined);
      const map = (): Promise<unknown> => rpc((cb) => dev.ioasMap({ pid, fd: ictx, flags: MAP_RW, ioasId, reserved: 0, userVa: range.addr, length: BigInt(size), iova: MAP_IOVA }, cb));
      const unmap = async (): Promise<void> => {
        const { length } = await rpc<iommufd.IoasUnmapResponse>((cb) => dev.ioasUnmap({ pid, fd: ictx, ioasId, iova: MAP_IOVA, length: BigInt(size) }, cb));
        if (length !== BigInt(size)) throw new Error(`IOAS_UNMAP of ${size} bytes unmapped ${length}`);
      };
      const [bareRound = [], maps = [], unmaps = []] = await timeInTurn(300, 30, bare.call, map, unmap);
      const label = size >= MiB ? `${size / MiB} MiB` : `${size / KiB} KiB`;
      latency.push([`IOAS_MAP of ${label} of heap (pinned, mapped in the domain)`, ms(percentile(maps, 50)), ms(percentile(maps, 99)), versusBare(maps, bareRound)]);
      latency.push([`IOAS_UNMAP of those ${label}`, ms(percentile(unmaps, 50)), ms(percentile(unmaps, 99)), versusBare(unmaps, bareRound)]);
    }
    out.push(latency.toString());
    out.push(...ratios);
  } finally {
    for (const close of closers.reverse()) close();
    await app?.close().catch(() => undefined);
    bare.close();
    sink.stop();
    for (const service of services) await service.stop();
    fs.rmSync(shmDir, { recursive: true, force: true });
  }
}

/** p50 and p99 as multiples of the bare grpc-js call's, timed in turn with it. */
function versusBare(sorted: number[], bares: number[]): string {
  return `${(percentile(sorted, 50) / percentile(bares, 50)).toFixed(1)}x, ${(percentile(sorted, 99) / percentile(bares, 99)).toFixed(1)}x`;
}

function ms(us: number): string {
  return `${(us / 1000).toFixed(2)} ms`;
}
