import * as fs from 'node:fs';
import type { Command } from 'commander';
import { SingleBar } from 'cli-progress';
import { errno } from '@p2p/errno';
import type { PerfNic, PerfTarget, RawParams } from '@p2p/perftest';
import type { pci } from '@p2p/proto';
import { resolveShmDir } from '@p2p/shm';
import { action, type Context } from '../context';

interface PerfOptions extends RawParams {
  readonly ibDev: string;
  readonly mem: string;
  readonly localMem: string;
  readonly report_gbits?: boolean;
  readonly out_json?: boolean;
  readonly out_json_file?: string;
  readonly progress?: boolean;
}

/** perftest's default --out_json_file (DEFAULT_JSON_FILE_NAME), in the working directory. */
const DEFAULT_JSON_FILE = 'perftest_out.json';

/** The deployment's two NICs by their topology names (nic0, nic1) and BDFs, in RDMA_NIC_ADDRESSES order. */
function perfTarget(context: Context, functions: readonly pci.FunctionInfo[]): PerfTarget {
  const { target } = context.clients;
  if (target.nics.length < 2) throw errno('ENODEV', `perf needs two NICs; this deployment has ${target.nics.length}`);
  const nic = (index: number): PerfNic => {
    const name = `nic${index}`;
    return { name, bdf: functions.find((f) => f.name === name)?.bdf ?? 'unknown', address: target.nics[index]! };
  };
  return {
    registry: target.registry,
    nics: [nic(0), nic(1)],
    vfio: { address: target.vfioPci, adminToken: target.token, tls: target.tls },
    shmDir: resolveShmDir(),
    tls: target.tls,
  };
}

/** The run's progress bar on stderr: shown on a terminal, or anywhere with --progress; never on stdout. */
function progressBar(forced: boolean): { update(fraction: number): void; around(print: () => void): void; stop(): void } {
  if (!forced && process.stderr.isTTY !== true) return { update: () => undefined, around: (print) => print(), stop: () => undefined };
  const bar = new SingleBar({ stream: process.stderr, noTTYOutput: forced, clearOnComplete: true, hideCursor: true, format: ' [{bar}] {percentage}% | {duration_formatted}' });
  let value = 0;
  bar.start(1000, 0);
  return {
    update: (fraction) => bar.update((value = Math.round(fraction * 1000))),
    // A row goes between the bar's redraws: clear it, print, draw it again.
    around: (print) => {
      bar.stop();
      print();
      bar.start(1000, value);
    },
    stop: () => bar.stop(),
  };
}

async function perf(context: Context, testName: string, options: PerfOptions): Promise<void> {
  // Loaded here: the engine brings vfio-pci's uAPI module, which every other command would pay for.
  const perftest = await import('@p2p/perftest');
  const params = perftest.perfParams(testName, { ...options, reportGbits: options.report_gbits });
  if (options.out_json_file !== undefined && options.out_json !== true) throw errno('EINVAL', '--out_json_file names the file --out_json writes: give --out_json too');
  const { functions } = await context.clients.pci.listFunctions({});
  const target = perfTarget(context, functions);
  const localNic = target.nics.findIndex((nic) => nic.name === options.ibDev || nic.bdf === options.ibDev.toLowerCase());
  if (localNic < 0) throw errno('EINVAL', `-d/--ib-dev ${JSON.stringify(options.ibDev)}: nic0 or nic1, by name or BDF (the other one is the remote side)`);
  const remoteMemory = perftest.memoryByName(options.mem, functions, '--mem');
  const localMemory = perftest.memoryByName(options.localMem, functions, '--local-mem');

  const interrupt = new AbortController();
  const onSigint = (): void => interrupt.abort();
  process.once('SIGINT', onSigint);
  const bar = progressBar(options.progress === true);
  const text = (lines: () => string[]): void => {
    if (!context.json) bar.around(() => context.print(undefined, lines));
  };
  try {
    const report = await perftest.runPerf(target, {
      params,
      localNic: localNic as 0 | 1,
      localMemory,
      remoteMemory,
      signal: interrupt.signal,
      onStart: (info) => text(() => [...perftest.banner(info), perftest.resultHeader(params)]),
      onResult: (result) => text(() => [perftest.resultRow(result, params)]),
      progress: (fraction) => bar.update(fraction),
    });
    bar.stop();
    const json = perftest.runJson(report.info, report.results);
    if (options.out_json === true) fs.writeFileSync(options.out_json_file ?? DEFAULT_JSON_FILE, `${JSON.stringify(json, null, 2)}\n`);
    if (context.json) context.print(json, () => []);
    else context.print(undefined, () => perftest.RESULT_LINE);
  } finally {
    bar.stop();
    process.removeListener('SIGINT', onSigint);
  }
}

/**
 * `p2p perf`: perftest's ib_write_bw, ib_read_bw, ib_write_lat and
 * ib_read_lat between the model's two NICs, this command acting as both
 * perftest processes, with host memory or a device's BAR on either side.
 */
export function perfCommand(program: Command): void {
  program
    .command('perf')
    .description("perftest's ib_write_bw, ib_read_bw, ib_write_lat, ib_read_lat between nic0 and nic1, with host or device memory (a BAR exported by vfio-pci) on either side")
    .argument('<test>', 'write_bw, read_bw, write_lat or read_lat')
    .option('-s, --size <size>', 'message size in bytes (default 65536 for bw, 2 for lat)')
    .option('-a, --all', 'run sizes from 2 till 2^23')
    .option('-n, --iters <iters>', 'messages per size (at least 5; default 5000 for write_bw, 1000 for the others)')
    .option('-D, --duration <seconds>', 'run for this many seconds instead of -n messages')
    .option('-q, --qp <qps>', "number of QPs (bw tests; default 1)")
    .option('-d, --ib-dev <dev>', 'the local NIC (the requester): nic0 or nic1, by name or BDF; the other one is the remote side', 'nic0')
    .option('--mem <memory>', 'the remote (responder) side\'s memory: host (a system-heap dma-buf), accel0 (its BAR2), nvme1-cmb (its CMB, BAR2)', 'host')
    .option('--local-mem <memory>', "the local side's memory, named as --mem", 'host')
    .option('--report_gbits', 'report bandwidth in Gb/sec instead of MB/sec')
    .option('--out_json', 'save the report in a JSON file')
    .option('--out_json_file <file>', `name of the report JSON file (default ${DEFAULT_JSON_FILE} in the working directory)`)
    .option('--progress', 'draw the progress bar on stderr even when it is not a terminal')
    .action(action<PerfOptions>(async (context, [test], options) => perf(context, test!, options)));
}
