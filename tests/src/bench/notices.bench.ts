import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import type Table from 'cli-table3';
import { pci } from '@p2p/proto';
import { WRITE_NOTICE_SOCKET, WriteNoticeClient } from '@p2p/shm';
import { asAdmin, startServiceProcess, tempShmDir } from '@p2p/testing';
import { rpc } from '../harness/rpc';
import { TESTDEV, TESTDEV_WINDOW, writeTestDeviceTopology } from '../harness/test-device';
import { percentile } from './stats';

const SAMPLES = 2000;
const WARMUP = 200;
/** Notices go one at a time, this far apart, so each is timed on an idle listener. */
const GAP_MS = 1;

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Write-notice latency, from the writer's notify() to the listener:
 * - to the notice callback of a WriteNoticeServer in another process (the
 *   socket, the listener's event loop and the decoder; pci-emu's own work
 *   after it, a map lookup and the device's hook, is synchronous), timed by
 *   CLOCK_MONOTONIC, which process.hrtime reads the same in both processes;
 * - to the BarWritten event the test device posts from its hook in a
 *   pci-emu process, as a WatchEvents client sees it: the same path plus
 *   gRPC's event delivery, an upper bound; beside it, in turn with it, the
 *   same event for an MmioWrite of the doorbell over gRPC (the baseline: a
 *   writer that tells the device by RPC).
 */
export async function benchWriteNotices(rows: Table.Table): Promise<void> {
  const toListener = await toOtherProcess();
  rows.push(['write notice, notify() -> listener callback (another process)', `p50 ${fmt(percentile(toListener, 50))} us`, `p99 ${fmt(percentile(toListener, 99))} us, ${SAMPLES} notices ${GAP_MS} ms apart`]);
  const [byNotice, byMmio] = await toPciEmuEvent();
  rows.push(['write notice, notify() -> BarWritten seen on WatchEvents (pci-emu)', `p50 ${fmt(percentile(byNotice!, 50))} us`, `p99 ${fmt(percentile(byNotice!, 99))} us, includes gRPC event delivery`]);
  rows.push(['MmioWrite over gRPC -> BarWritten seen on WatchEvents (baseline)', `p50 ${fmt(percentile(byMmio!, 50))} us`, `p99 ${fmt(percentile(byMmio!, 99))} us`]);
}

/** A listener in a child process that prints, per notice, its offset and when its callback ran; the notice at offset SAMPLES + WARMUP ends it. */
async function toOtherProcess(): Promise<number[]> {
  const dir = tempShmDir();
  const socketPath = path.join(dir, WRITE_NOTICE_SOCKET);
  const script = `
    const { WriteNoticeServer } = require(${JSON.stringify(require.resolve('@p2p/shm'))});
    const seen = [];
    WriteNoticeServer.listen(${JSON.stringify(socketPath)}, (notice) => {
      seen.push([notice.offset, String(process.hrtime.bigint())]);
      if (notice.offset === ${SAMPLES + WARMUP}) { console.log(JSON.stringify(seen)); process.exit(0); }
    }).then(() => { console.log('listening'); setInterval(() => {}, 60_000); });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const client = new WriteNoticeClient(socketPath);
  try {
    await lines.next();
    const sent: bigint[] = [];
    for (let i = 0; i <= SAMPLES + WARMUP; i++) {
      sent.push(process.hrtime.bigint());
      client.notify('pci-emu.bench.bar0.g0.0', i, 4);
      await pause(GAP_MS);
    }
    const received = JSON.parse(String((await lines.next()).value)) as [number, string][];
    return received
      .filter(([offset]) => offset >= WARMUP && offset < SAMPLES + WARMUP)
      .map(([offset, at]) => Number(BigInt(at) - sent[offset]!) / 1e3)
      .sort((a, b) => a - b);
  } finally {
    client.close();
    child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * pci-emu with the test device: a notice about its window segment, and an
 * MmioWrite into the window, in turn, each timed until its BarWritten event
 * arrives. Returns both samples, sorted.
 */
async function toPciEmuEvent(): Promise<number[][]> {
  const dir = tempShmDir();
  const topologyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-topology-'));
  const service = await startServiceProcess('pci-emu', 'PCI_EMU', { env: { P2P_SHM_DIR: dir, LOG_LEVEL: 'warn', PCI_EMU_TOPOLOGY: writeTestDeviceTopology(topologyDir) } });
  const admin = asAdmin(dir);
  const emu = new pci.PciEmuServiceClient(service.address, admin.credentials, admin.options);
  const client = new WriteNoticeClient(path.join(dir, WRITE_NOTICE_SOCKET));
  const stream = emu.watchEvents({ bdfs: [TESTDEV] });
  // Its cancel at the end is the one error it has.
  stream.on('error', () => undefined);
  try {
    await new Promise((resolve) => stream.once('metadata', resolve));
    let arrived: (() => void) | undefined;
    stream.on('data', () => arrived?.());
    const { extents } = await rpc<pci.GetBarSegmentsResponse>((cb) =>
      emu.getBarSegments({ bdf: TESTDEV, bar: 0, offset: BigInt(TESTDEV_WINDOW.offset), length: 4096n }, cb),
    );
    const { segment, offset } = extents[0]!;
    const doorbell = (i: number): number => (i % 1024) * 4;
    const ways: Array<(i: number) => unknown> = [
      (i) => client.notify(segment, Number(offset) + doorbell(i), 4),
      (i) => rpc((cb) => emu.mmioWrite({ bdf: TESTDEV, bar: 0, offset: BigInt(TESTDEV_WINDOW.offset + doorbell(i)), width: 4, value: 1n }, cb)),
    ];
    const samples = ways.map((): number[] => []);
    for (let i = 0; i < SAMPLES + WARMUP; i++) {
      for (const [way, write] of ways.entries()) {
        const event = new Promise<void>((resolve) => (arrived = resolve));
        const start = process.hrtime.bigint();
        void write(i);
        await event;
        if (i >= WARMUP) samples[way]!.push(Number(process.hrtime.bigint() - start) / 1e3);
        await pause(GAP_MS);
      }
    }
    return samples.map((sample) => sample.sort((a, b) => a - b));
  } finally {
    stream.cancel();
    client.close();
    emu.close();
    await service.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(topologyDir, { recursive: true, force: true });
  }
}

function fmt(value: number): string {
  return value.toFixed(1);
}
