import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { parseArgs } from 'node:util';
import Table from 'cli-table3';
import { HOST_IOVA, type MemoryRegion, PERF_ACCESS, QpConnection, runBw } from '@p2p/perftest';
import { rdma } from '@p2p/proto';
import { freePort } from '@p2p/testing';
import type { HostMr } from '@p2p/verbs';
import { type RdmaHost, RdmaStack } from '../harness/rdma-hosts';
import { GB } from './stats';

const MiB = 1024 * 1024;
/** Each connection's buffers on either side: 16 slots of the 1 MiB messages. */
const WORKING_SET = 16 * MiB;
/** Hosts started at once: more only queue on this machine's two cores. */
const START_BATCH = 2;
const DEFAULT_STEPS = [2, 4, 8, 16];
/**
 * Many flows share two cores here: a WRITE's ack can take longer than
 * ibv_modify_qp's default timeout (14: 67 ms), which ends the QP in
 * RETRY_EXC_ERR (a first run failed so at 8 hosts); 18 is 1.07 s.
 */
const TRANSPORT = { timeout: 18 };

interface ScaleOptions {
  readonly steps: number[];
  readonly seconds: number;
  readonly size: number;
}

function scaleOptions(argv: readonly string[]): ScaleOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: { hosts: { type: 'string' }, seconds: { type: 'string' }, size: { type: 'string' } },
    strict: true,
  });
  const steps = values.hosts === undefined ? DEFAULT_STEPS : values.hosts.split(',').map(Number);
  if (steps.some((n) => !Number.isInteger(n) || n < 2 || n % 2 !== 0 || n > 64) || steps.some((n, i) => i > 0 && n <= steps[i - 1]!)) {
    throw new Error(`--hosts ${values.hosts}: rising even host counts from 2 to 64, e.g. 2,4,8,16`);
  }
  return { steps, seconds: Number(values.seconds ?? 3), size: Number(values.size ?? MiB) };
}

/** CPU time (utime + stime) and resident memory of a process, from /proc. */
interface ProcSample {
  readonly ticks: number;
  readonly rssKiB: number;
}

function sample(pid: number): ProcSample {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which may hold spaces, in parentheses: field 14 is utime, 15 stime.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  return { ticks: Number(fields[11]) + Number(fields[12]), rssKiB: rss === null ? 0 : Number(rss[1]) };
}

/** One host's processes by role. */
function processesOf(stack: RdmaStack): { registry: number; nics: number[]; all: number[] } {
  const pid = (p: { child: { pid?: number } }): number => p.child.pid!;
  const nics = stack.nics.map((nic) => pid(nic.process));
  return { registry: pid(stack.registry), nics, all: [pid(stack.pciEmu), pid(stack.vfioPci), pid(stack.registry), ...nics] };
}

/** Host i's NICs: 127.0.i.2 and 127.0.i.3 (npm start --hosts's layout), on the first host's wire port. */
function nicIps(i: number): [string, string] {
  return [`127.0.${i}.2`, `127.0.${i}.3`];
}

function region(buffer: { mr: HostMr; iova: number; size: number }): MemoryRegion {
  return { lkey: buffer.mr.lkey, rkey: buffer.mr.rkey, iova: buffer.iova, length: buffer.size };
}

/** A WRITE stream from `from` (a process on one host's NIC) into `to` (one on another's). */
async function connect(from: RdmaHost, to: RdmaHost): Promise<QpConnection> {
  const source = await from.hostBuffer(WORKING_SET, HOST_IOVA, PERF_ACCESS);
  const target = await to.hostBuffer(WORKING_SET, HOST_IOVA, PERF_ACCESS);
  return QpConnection.connect(from, to, region(source), region(target), TRANSPORT);
}

interface Step {
  readonly hosts: number;
  readonly gbps: number;
  /** Means over the step's hosts. */
  readonly rssMiB: number;
  readonly registryCpu: number;
  readonly nicCpu: number;
  readonly benchCpu: number;
}

/**
 * Many hosts on one machine (issue: many hosts): 2, 4, 8, then 16 hosts,
 * each a whole stack of its own processes (pci-emu, registry, vfio-pci, two
 * NICs) on its own segment directory, NICs on 127.0.<i>.2/.3 on one wire
 * port. Hosts pair up, 2k with 2k+1, and each pair WRITEs both ways (host
 * 2k's nic0 into host 2k+1's nic0, host 2k+1's nic1 into host 2k's nic1),
 * all pairs at once for a few seconds per step; every payload goes inline
 * on the wire, as between machines. Per step: the aggregate rate, each
 * host's memory (VmRSS over its five processes) and its registry's and
 * NICs' CPU over the measured window, and how each grows from the first
 * step. The hosts of one step stay for the next, which adds hosts and pairs.
 * The driving processes (the perftest side of every pair) are this one.
 */
export async function benchScale(out: string[], argv: readonly string[]): Promise<void> {
  const options = scaleOptions(argv);
  const clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  const loadBefore = os.loadavg();
  const started = Date.now();
  const wirePort = await freePort();
  const stacks: RdmaStack[] = [];
  const apps: RdmaHost[] = [];
  const connections: QpConnection[] = [];
  const steps: Step[] = [];
  try {
    for (const count of options.steps) {
      for (let i = stacks.length; i < count; i += START_BATCH) {
        const batch = Array.from({ length: Math.min(START_BATCH, count - i) }, (_, k) => i + k);
        stacks.push(...(await Promise.all(batch.map((h) => RdmaStack.start({ nicIps: nicIps(h), wirePort })))));
      }
      for (let k = connections.length / 2; k < count / 2; k++) {
        const [even, odd] = [stacks[2 * k]!, stacks[2 * k + 1]!];
        const y = await even.host(0, `scale-${2 * k}-nic0`);
        const x = await odd.host(0, `scale-${2 * k + 1}-nic0`);
        const yBack = await even.host(1, `scale-${2 * k}-nic1`);
        const xBack = await odd.host(1, `scale-${2 * k + 1}-nic1`);
        apps.push(y, x, yBack, xBack);
        connections.push(await connect(y, x), await connect(xBack, yBack));
      }
      const active = stacks.slice(0, count).map(processesOf);
      const before = active.map((host) => host.all.map(sample));
      const benchBefore = process.cpuUsage();
      const startedAt = process.hrtime.bigint();
      const result = await runBw(connections, { opcode: rdma.WrOpcode.WR_OPCODE_RDMA_WRITE, size: options.size, length: { seconds: options.seconds }, warmUp: 16 });
      const window = Number(process.hrtime.bigint() - startedAt) / 1e9;
      const benchUsage = process.cpuUsage(benchBefore);
      const after = active.map((host) => host.all.map(sample));
      // % of one core: CPU ticks in the window over the window's ticks.
      const cpu = (host: number, pid: number): number => {
        const i = active[host]!.all.indexOf(pid);
        return (100 * (after[host]![i]!.ticks - before[host]![i]!.ticks)) / clockTicks / window;
      };
      const mean = (values: number[]): number => values.reduce((sum, v) => sum + v, 0) / values.length;
      steps.push({
        hosts: count,
        gbps: result.average / GB,
        rssMiB: mean(after.map((host) => host.reduce((sum, p) => sum + p.rssKiB, 0) / 1024)),
        registryCpu: mean(active.map((host, h) => cpu(h, host.registry))),
        nicCpu: mean(active.map((host, h) => host.nics.reduce((sum, pid) => sum + cpu(h, pid), 0))),
        benchCpu: (100 * (benchUsage.user + benchUsage.system)) / 1e6 / window,
      });
    }
  } finally {
    for (const connection of connections) await connection.close().catch(() => undefined);
    for (const app of apps) await app.close().catch(() => undefined);
    for (const stack of stacks) await stack.stop().catch(() => undefined);
  }
  const first = steps[0]!;
  const ratio = (value: number, base: number): string => (base === 0 ? '-' : `${(value / base).toFixed(2)}x`);
  const table = new Table({
    head: ['hosts', 'pairs', 'WRITE [GB/s]', 'per host', 'RSS/host [MiB]', 'RSS total [MiB]', 'registry CPU/host', 'NICs CPU/host', 'driver CPU', 'vs 2 hosts: GB/s, RSS/host, registry, NICs'],
    style: { head: [], border: [] },
  });
  for (const step of steps) {
    table.push([
      step.hosts,
      step.hosts / 2,
      step.gbps.toFixed(2),
      (step.gbps / step.hosts).toFixed(3),
      step.rssMiB.toFixed(0),
      (step.rssMiB * step.hosts).toFixed(0),
      `${step.registryCpu.toFixed(1)}%`,
      `${step.nicCpu.toFixed(1)}%`,
      `${step.benchCpu.toFixed(0)}%`,
      [ratio(step.gbps, first.gbps), ratio(step.rssMiB, first.rssMiB), ratio(step.registryCpu, first.registryCpu), ratio(step.nicCpu, first.nicCpu)].join(', '),
    ]);
  }
  const load = (l: number[]): string => l.map((v) => v.toFixed(2)).join(' ');
  out.push(
    [
      `scale: ${options.steps.join(', ')} hosts, each its own 5 processes and segment directory; pairs 2k <-> 2k+1 WRITE ${options.size / MiB} MiB messages both ways (nic0 -> nic0, nic1 -> nic1), ${options.seconds} s a step, all pairs at once`,
      `CPU as % of one core over the measured window (NICs: both of a host's); driver: this process, every pair's requester and responder side; ${os.cpus().length} cores, load ${load(loadBefore)} before, ${load(os.loadavg())} after, ${((Date.now() - started) / 1000).toFixed(0)} s in all`,
      table.toString(),
    ].join('\n'),
  );
}
