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
      { title: 'across hosts, bulk stream off (inline on gRPC)', peer: await open(third, 0, 'host-x-inline') },
      { title: 'across hosts (bulk stream beside gRPC)', peer: await open(second, 0, 'host-x-elsewhere') },
      { title: 'within a host (shared tmpfs: one copy)', peer: await open(first, 1, 'host-x-here') },
    ];
    const tcp = await tcpStreamRate(MiB, TCP_BYTES);
    const table = new Table({ head: ['RDMA_WRITE host Y -> host X', '4 KiB msg/s', '64 KiB [GB/s]', '1 MiB [GB/s]', '1 MiB vs raw TCP'], style: { head: [], border: [] } });
    for (const { title, peer } of cases) {
      const peerBuf = await peer.hostBuffer(WORKING_SET, HOST_IOVA, PERF_ACCESS);
      const connection = await QpConnection.connect(y, peer, region(yBuf), region(peerBuf));
      const write = rdma.WrOpcode.WR_OPCODE_RDMA_WRITE;
      const rate = await runBw([connection], { opcode: write, size: 4 * KiB, length: { iterations: 20_000 }, warmUp: 2000 });
      const mid = await runBw([connection], { opcode: write, size: 64 * KiB, length: { iterations: 4096 }, warmUp: 256 });
      const big = await runBw([connection], { opcode: write, size: MiB, length: { iterations: 1024 }, warmUp: 64 });
      await connection.close();
      table.push([title, Math.round(rate.msgRate * 1e6).toLocaleString('en-US'), (mid.average / GB).toFixed(2), (big.average / GB).toFixed(2), `${(big.average / tcp).toFixed(2)}x`]);
    }
    out.push(`wire between hosts (same run; raw TCP stream between two processes, 1 MiB writes: ${(tcp / GB).toFixed(2)} GB/s)\n${table.toString()}`);
  } finally {
    for (const host of hosts) await host.close().catch(() => undefined);
    for (const stack of stacks.reverse()) await stack.stop();
  }
}

function region(buffer: { mr: HostMr; iova: number; size: number }): MemoryRegion {
  return { lkey: buffer.mr.lkey, rkey: buffer.mr.rkey, iova: buffer.iova, length: buffer.size };
}

/**
 * Bytes per second of a plain TCP stream on loopback from this process to a
 * child that counts what it reads: `chunk`-sized writes, `total` bytes, timed
 * from the first write to the child's word that all arrived.
 */
async function tcpStreamRate(chunk: number, total: number): Promise<number> {
  const child = fork(__filename, ['tcp-sink', String(total)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once('message', (message) => resolve(Number(message)));
      child.once('exit', (code) => reject(new Error(`the TCP sink exited (${code})`)));
    });
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const done = new Promise<void>((resolve) => socket.once('data', () => resolve()));
    const data = Buffer.alloc(chunk, 0x5a);
    const start = process.hrtime.bigint();
    for (let sent = 0; sent < total; sent += chunk) {
      if (!socket.write(data)) await new Promise((resolve) => socket.once('drain', resolve));
    }
    await done;
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    socket.destroy();
    return total / seconds;
  } finally {
    child.kill();
  }
}

if (require.main === module && process.argv[2] === 'tcp-sink') {
  const total = Number(process.argv[3]);
  const server = net.createServer((socket) => {
    let received = 0;
    socket.on('data', (bytes: Buffer) => {
      received += bytes.length;
      if (received >= total) socket.write('k');
    });
  });
  server.listen(0, '127.0.0.1', () => process.send?.((server.address() as net.AddressInfo).port));
}
