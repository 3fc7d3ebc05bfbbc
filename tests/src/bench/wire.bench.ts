import { fork } from 'node:child_process';
import * as net from 'node:net';
import Table from 'cli-table3';
import { HOST_IOVA, type MemoryRegion, PERF_ACCESS, QpConnection, runBw } from '@p2p/perftest';
import { rdma } from '@p2p/proto';
import type { HostMr } from '@p2p/verbs';
import { type RdmaHost, RdmaStack } from '../harness/rdma-hosts';
import { GB } from './stats';

const KiB = 1024;
const MiB = 1024 * KiB;
const WORKING_SET = 64 * MiB;
const TCP_BYTES = 1024 * MiB;

/**
 * The wire between hosts that share no tmpfs (issue: many hosts). Three
 * stacks, each a host with its own registry and segment directory, their
 * NICs on one wire port at different addresses: host Y on the first stack's
 * nic0 (127.0.0.2) WRITEs into host X on the second's nic0 (127.0.0.4),
 * whose payloads travel on the link's bulk stream (a TCP connection beside
 * the gRPC stream), and into host X' on the third's nic0 (127.0.0.6), whose
 * NICs have the bulk stream off (RDMA_NIC_BULK_PORT=off): every payload
 * inline on the gRPC stream, the path before the bulk stream. Beside them,
 * in the same run: the same WRITE between two NICs of one host (one copy
 * through a grant), and a raw TCP byte stream between two processes on
 * loopback, the bound any transport between two hosts' containers has here.
 */
export async function benchWire(out: string[]): Promise<void> {
  const stacks: RdmaStack[] = [];
  const hosts: RdmaHost[] = [];
  try {
    const first = await RdmaStack.start();
    stacks.push(first);
    const second = await RdmaStack.start({ nicIps: ['127.0.0.4', '127.0.0.5'], wirePort: first.wirePort });
    stacks.push(second);
    const third = await RdmaStack.start({ nicIps: ['127.0.0.6', '127.0.0.7'], wirePort: first.wirePort, nicEnv: { RDMA_NIC_BULK_PORT: 'off' } });
    stacks.push(third);
    const open = async (stack: RdmaStack, index: 0 | 1, name: string): Promise<RdmaHost> => {
      const host = await stack.host(index, name);
      hosts.push(host);
      return host;
    };
    const y = await open(first, 0, 'host-y');
    const yBuf = await y.hostBuffer(WORKING_SET, HOST_IOVA, PERF_ACCESS);
    const cases: { title: string; peer: RdmaHost }[] = [
      { title: 'across hosts (bulk stream beside gRPC)', peer: await open(second, 0, 'host-x-elsewhere') },
      { title: 'across hosts, bulk stream off (inline on gRPC)', peer: await open(third, 0, 'host-x-inline') },
      { title: 'within a host (shared tmpfs: one copy)', peer: await open(first, 1, 'host-x-here') },
    ];
    // Raw TCP varies by a factor of two from run to run here: the best of three before the RDMA runs and a
    // fourth after them is the bound the ratios are against.
    const tcpRuns = [await tcpStreamRate(MiB, TCP_BYTES), await tcpStreamRate(MiB, TCP_BYTES), await tcpStreamRate(MiB, TCP_BYTES)];
    const table = new Table({ head: ['RDMA_WRITE host Y -> host X', '4 KiB msg/s', '64 KiB [GB/s]', '1 MiB [GB/s]', '1 MiB vs raw TCP'], style: { head: [], border: [] } });
    const rows: { title: string; msgRate: number; mid: number; big: number }[] = [];
    for (const { title, peer } of cases) {
      const peerBuf = await peer.hostBuffer(WORKING_SET, HOST_IOVA, PERF_ACCESS);
      const connection = await QpConnection.connect(y, peer, region(yBuf), region(peerBuf));
      const write = rdma.WrOpcode.WR_OPCODE_RDMA_WRITE;
      const rate = await runBw([connection], { opcode: write, size: 4 * KiB, length: { iterations: 20_000 }, warmUp: 2000 });
      const mid = await runBw([connection], { opcode: write, size: 64 * KiB, length: { iterations: 4096 }, warmUp: 256 });
      const big = await runBw([connection], { opcode: write, size: MiB, length: { iterations: 3072 }, warmUp: 256 });
      await connection.close();
      rows.push({ title, msgRate: rate.msgRate, mid: mid.average, big: big.average });
    }
    tcpRuns.push(await tcpStreamRate(MiB, TCP_BYTES));
    const tcp = Math.max(...tcpRuns);
    for (const row of rows) {
      table.push([row.title, Math.round(row.msgRate * 1e6).toLocaleString('en-US'), (row.mid / GB).toFixed(2), (row.big / GB).toFixed(2), `${(row.big / tcp).toFixed(2)}x`]);
    }
    const runs = tcpRuns.map((rate) => (rate / GB).toFixed(2)).join(', ');
    out.push(`wire between hosts (same run; raw TCP stream between two processes, 1 MiB writes: best ${(tcp / GB).toFixed(2)} GB/s of ${runs})\n${table.toString()}`);
  } finally {
    for (const host of hosts) await host.close().catch(() => undefined);
    for (const stack of stacks.reverse()) await stack.stop();
  }
}

function region(buffer: { mr: HostMr; iova: number; size: number }): MemoryRegion {
  return { lkey: buffer.mr.lkey, rkey: buffer.mr.rkey, iova: buffer.iova, length: buffer.size };
}

/**
 * Bytes per second of a plain TCP stream on loopback between two fresh
 * child processes, as fast as Node moves one: the writer writes `total`
 * bytes in `chunk`-sized writes of one reused buffer (waiting for 'drain'
 * when the socket says so); the reader dialled it and reads into one reused
 * 4 MiB buffer (`onread`, as the NICs' bulk streams read), then answers a
 * byte. Timed by the writer from its first write to that answer.
 */
async function tcpStreamRate(chunk: number, total: number): Promise<number> {
  const source = fork(__filename, ['tcp-source', String(chunk), String(total)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  let sink: ReturnType<typeof fork> | undefined;
  try {
    const port = await messageOf(source);
    const rate = messageOf(source);
    sink = fork(__filename, ['tcp-sink', port, String(total)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    return Number(await rate);
  } finally {
    source.kill();
    sink?.kill();
  }
}

function messageOf(child: ReturnType<typeof fork>): Promise<string> {
  return new Promise((resolve, reject) => {
    child.once('message', (message) => resolve(String(message)));
    child.once('exit', (code) => reject(new Error(`a TCP bench process exited (${code})`)));
  });
}

if (require.main === module && process.argv[2] === 'tcp-source') {
  const [chunk, total] = process.argv.slice(3).map(Number) as [number, number];
  const server = net.createServer(async (socket) => {
    const done = new Promise<void>((resolve) => socket.once('data', () => resolve()));
    const data = Buffer.alloc(chunk, 0x5a);
    const start = process.hrtime.bigint();
    for (let sent = 0; sent < total; sent += chunk) {
      if (!socket.write(data)) await new Promise((resolve) => socket.once('drain', resolve));
    }
    await done;
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    process.send?.(String(total / seconds), () => process.exit(0));
  });
  server.listen(0, '127.0.0.1', () => process.send?.(String((server.address() as net.AddressInfo).port)));
}

if (require.main === module && process.argv[2] === 'tcp-sink') {
  const [port, total] = process.argv.slice(3).map(Number) as [number, number];
  let received = 0;
  const socket: net.Socket = net.connect({
    port,
    host: '127.0.0.1',
    onread: {
      buffer: Buffer.allocUnsafe(4 * MiB),
      callback: (bytes: number) => {
        received += bytes;
        if (received >= total) socket.write('k');
        return true;
      },
    },
  });
}
