import * as fs from 'node:fs';
import { pci } from '@p2p/proto';
import { SegmentStore } from '@p2p/shm';
import type Table from 'cli-table3';
import { rpc } from '../harness/rpc';
import { asAdmin, startServiceProcess, tempShmDir } from '@p2p/testing';
import { copyRate, GB, percentile, rateWithDepth, timeEach } from './stats';

const MiB = 1024 * 1024;

/**
 * pci-emu figures: MMIO ops/s over gRPC (one at a time and pipelined), and
 * bulk BAR writes three ways in the same run: a plain memcpy between two heap
 * buffers (the baseline), a memcpy into the mapped BAR segment (the fast
 * path), and BulkWrite over gRPC (the slow path).
 */
export async function benchPciEmu(rows: Table.Table, ratios: string[]): Promise<void> {
  const shmDir = tempShmDir();
  const service = await startServiceProcess('pci-emu', 'PCI_EMU', { env: { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn' } });
  const admin = asAdmin(shmDir);
  const client = new pci.PciEmuServiceClient(service.address, admin.credentials, admin.options);
  try {
    const { functions } = await rpc<pci.ListFunctionsResponse>((cb) => client.listFunctions({}, cb));
    const nvme = functions.find((f) => f.kind === pci.FunctionKind.FUNCTION_KIND_NVME)!;
    const accel = functions.find((f) => f.kind === pci.FunctionKind.FUNCTION_KIND_ACCEL)!;
    const memoryBar = accel.bars.find((b) => b.kind === pci.BarKind.BAR_KIND_MEMORY)!;

    const read = (): Promise<pci.MmioReadResponse> =>
      rpc((cb) => client.mmioRead({ bdf: nvme.bdf, bar: 0, offset: 0n, width: 4 }, cb));
    await timeEach(200, read);
    const latencies = await timeEach(3000, read);
    const serialRate = 1e6 / (latencies.reduce((a, b) => a + b, 0) / latencies.length);
    const pipelined = await rateWithDepth(20000, 64, read);
    rows.push(['pci-emu MmioRead 4 B, 1 in flight', `${fmt(serialRate)} ops/s`, `p50 ${fmt(percentile(latencies, 50))} us, p99 ${fmt(percentile(latencies, 99))} us`]);
    rows.push(['pci-emu MmioRead 4 B, 64 in flight', `${fmt(pipelined)} ops/s`, '']);

    const size = 64 * MiB;
    const source = Buffer.alloc(size, 0xa5);
    const heapTarget = Buffer.alloc(size);
    const memcpy = copyRate(size, 8, () => source.copy(heapTarget));

    const { directory, extents } = await rpc<pci.GetBarSegmentsResponse>((cb) =>
      client.getBarSegments({ bdf: accel.bdf, bar: memoryBar.index, offset: 0n, length: BigInt(size) }, cb),
    );
    const store = new SegmentStore({ dir: directory });
    const views = extents.map((e) => store.open(e.segment).view(Number(e.offset), Number(e.length)));
    const mapped = copyRate(size, 8, () => {
      let at = 0;
      for (const view of views) at += source.copy(view, 0, at, at + view.length);
    });

    const chunk = 4 * MiB;
    const grpcWrite = async (): Promise<void> => {
      for (let at = 0; at < size; at += chunk) {
        await rpc((cb) => client.bulkWrite({ bdf: accel.bdf, bar: memoryBar.index, offset: BigInt(at), data: source.subarray(at, at + chunk) }, cb));
      }
    };
    await grpcWrite();
    const start = process.hrtime.bigint();
    await grpcWrite();
    const grpc = size / (Number(process.hrtime.bigint() - start) / 1e9);

    rows.push(['memcpy heap -> heap, 64 MiB (baseline)', `${(memcpy / GB).toFixed(2)} GB/s`, '']);
    rows.push(['memcpy heap -> mapped BAR segment, 64 MiB', `${(mapped / GB).toFixed(2)} GB/s`, `${(mapped / memcpy).toFixed(2)}x memcpy`]);
    rows.push(['BulkWrite over gRPC, 64 MiB in 4 MiB calls', `${(grpc / GB).toFixed(3)} GB/s`, `${(grpc / memcpy).toFixed(3)}x memcpy`]);
    ratios.push(`mapped BAR segment vs gRPC BulkWrite: ${(mapped / grpc).toFixed(1)}x`);
  } finally {
    client.close();
    await service.stop();
    fs.rmSync(shmDir, { recursive: true, force: true });
  }
}

function fmt(value: number): string {
  return value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toFixed(1);
}
