import { spawn } from 'node:child_process';
import { expect } from 'chai';
import { MAX_SIZE } from '@p2p/perftest';
import { dmabuf, vfio } from '@p2p/proto';
import { asAdmin } from '@p2p/testing';
import { type CliRun, cliEnv, P2P_BIN, runP2p, runP2pJson } from '../harness/p2p-cli';
import { RdmaStack } from '../harness/rdma-hosts';
import { rpc } from '../harness/rpc';

interface BwRow {
  readonly bytes: number;
  readonly iterations: number;
  readonly BW_peak: number;
  readonly BW_average: number;
  readonly MsgRate: number;
}

interface LatRow {
  readonly bytes: number;
  readonly iterations: number;
  readonly t_min: number;
  readonly t_max: number;
  readonly t_typical: number;
  readonly t_avg: number;
  readonly percentile_99: number;
  readonly percentile_99_9: number;
}

interface PerfJson<Row> {
  readonly test: string;
  readonly units: string;
  readonly local: { readonly device: string; readonly memory: string };
  readonly remote: { readonly device: string; readonly memory: string };
  readonly results: readonly Row[];
}

/** perftest's column heads (perftest_parameters.h RESULT_FMT and RESULT_FMT_LAT). */
const BW_HEAD = /^ #bytes +#iterations +BW peak\[MB\/sec\] +BW average\[MB\/sec\] +MsgRate\[Mpps\]$/m;
const LAT_HEAD = /^ #bytes #iterations +t_min\[usec\] +t_max\[usec\] +t_typical\[usec\] +t_avg\[usec\] +t_stdev\[usec\] +99% percentile\[usec\] +99\.9% percentile\[usec\] $/m;

/** The result lines: a size, then numbers. */
function rows(stdout: string): number[][] {
  return stdout
    .split('\n')
    .filter((line) => /^ \d+ +\d+ +[\d.]+/.test(line))
    .map((line) => line.trim().split(/\s+/).map(Number));
}

/**
 * `p2p perf`: perftest between the two NICs, the real binary against every
 * service as its own process, the command acting as both perftest processes.
 * After every run the platform is as before: no buffer, process or open
 * device of the run's is left.
 */
describe('p2p perf: perftest between nic0 and nic1', function () {
  this.timeout(60_000);
  let stack: RdmaStack;
  let env: NodeJS.ProcessEnv;
  let registry: dmabuf.DmaBufRegistryServiceClient;
  let vfioPci: vfio.VfioPciServiceClient;
  /** The buffers the NICs hold for their link (the rings of the first connection between them): not the runs'. */
  let linkBuffers: string[];

  const p2p = (...args: string[]): Promise<CliRun> => runP2p(env, ['perf', ...args]);
  const json = <T>(...args: string[]): Promise<T> => runP2pJson<T>(env, ['perf', ...args]);
  const bufferIds = async (): Promise<string[]> => (await rpc<dmabuf.GetBufInfoResponse>((cb) => registry.getBufInfo({}, cb))).buffers.map((b) => b.bufferId.toString()).sort();
  const processNames = async (): Promise<string[]> => (await rpc<dmabuf.ListProcessesResponse>((cb) => registry.listProcesses({}, cb))).processes.map((p) => p.name);
  const vfioDevices = async (): Promise<vfio.DeviceListing[]> => (await rpc<vfio.ListDevicesResponse>((cb) => vfioPci.listDevices({}, cb))).devices;

  before(async () => {
    stack = await RdmaStack.start();
    env = cliEnv(stack);
    const admin = asAdmin(stack.shmDir);
    registry = new dmabuf.DmaBufRegistryServiceClient(stack.registry.address, admin.credentials, admin.options);
    vfioPci = new vfio.VfioPciServiceClient(stack.vfioPci.address, admin.credentials, admin.options);
    // The first connection between the NICs brings their link up: its rings stay for the NICs' life.
    expect((await p2p('write_lat', '-n', '5')).code).to.equal(0);
    linkBuffers = await bufferIds();
  });

  afterEach(async () => {
    expect(await bufferIds(), 'buffers left by the run').to.deep.equal(linkBuffers);
    expect((await processNames()).filter((name) => name.startsWith('p2p perf')), 'processes left by the run').to.deep.equal([]);
    expect(await vfioDevices(), 'devices left bound or open').to.deep.equal([]);
  });

  after(async () => {
    registry?.close();
    vfioPci?.close();
    await stack?.stop();
  });

  it('write_bw -s 65536 -n 200 prints perftest\'s banner and table: one row for 65536 with rates above 0', async () => {
    const run = await p2p('write_bw', '-s', '65536', '-n', '200');
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stderr).to.equal('');
    expect(run.stdout).to.match(/^ {20}RDMA_Write BW Test$/m);
    expect(run.stdout).to.match(/Device {9}: nic0 \(0000:04:00\.0\)/);
    expect(run.stdout).to.match(/^ Remote memory {3}: host, on nic1 \(0000:09:00\.0\)$/m);
    expect(run.stdout).to.match(BW_HEAD);
    const table = rows(run.stdout);
    expect(table).to.have.lengthOf(1);
    const [bytes, iterations, peak, average, msgRate] = table[0]!;
    expect([bytes, iterations]).to.deep.equal([65536, 200]);
    expect(peak).to.be.greaterThan(0);
    expect(average).to.be.greaterThan(0);
    expect(peak).to.be.at.least(average!);
    expect(msgRate).to.be.greaterThan(0);
  });

  it('gives the results as JSON under --json, rates in MB/sec consistent with the message rate', async () => {
    const report = await json<PerfJson<BwRow>>('read_bw', '-s', '4096', '-n', '100');
    expect(report).to.deep.include({ test: 'read_bw', units: 'MB/sec' });
    expect(report.local).to.deep.include({ device: 'nic0 (0000:04:00.0)', memory: 'host' });
    expect(report.remote).to.deep.include({ device: 'nic1 (0000:09:00.0)', memory: 'host' });
    expect(report.results).to.have.lengthOf(1);
    const row = report.results[0]!;
    expect(row).to.include({ bytes: 4096, iterations: 100 });
    // MB/sec is 2^20 bytes a second (perftest's format_factor): the average is the message rate times the size.
    expect(row.BW_average).to.be.closeTo((row.MsgRate * 1e6 * 4096) / 2 ** 20, row.BW_average * 0.01);
    expect(row.BW_peak).to.be.at.least(row.BW_average);
  });

  it('read_lat -s 64 -n 100 --mem accel0 reads accel0\'s BAR and orders its percentiles: min <= typical <= 99% <= 99.9% <= max', async () => {
    const run = await p2p('read_lat', '-s', '64', '-n', '100', '--mem', 'accel0');
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout).to.match(/^ Remote memory {3}: accel0, on nic1/m);
    expect(run.stdout).to.match(LAT_HEAD);
    const table = rows(run.stdout);
    expect(table).to.have.lengthOf(1);
    const [bytes, iterations, min, max, typical, , , p99, p999] = table[0]!;
    expect([bytes, iterations]).to.deep.equal([64, 100]);
    expect(min).to.be.greaterThan(0);
    expect(min).to.be.at.most(typical!);
    expect(typical).to.be.at.most(p99!);
    expect(p99).to.be.at.most(p999!);
    expect(p999).to.be.at.most(max!);
  });

  it('puts nvme1\'s CMB on the remote side and accel0\'s BAR on the local side, as JSON', async () => {
    const report = await json<PerfJson<LatRow>>('write_lat', '-n', '20', '--mem', 'nvme1-cmb', '--local-mem', 'accel0');
    expect(report.local.memory).to.equal('accel0');
    expect(report.remote.memory).to.equal('nvme1-cmb');
    const row = report.results[0]!;
    expect(row).to.include({ bytes: 2, iterations: 20 });
    expect(row.t_min).to.be.at.most(row.t_typical);
    expect(row.t_typical).to.be.at.most(row.percentile_99);
    expect(row.percentile_99_9).to.be.at.most(row.t_max);
  });

  it('-a -n 20 prints a row per size, 2 to 2^23', async () => {
    const run = await p2p('write_bw', '-a', '-n', '20');
    expect(run.code, run.stderr).to.equal(0);
    const table = rows(run.stdout);
    const sizes = Array.from({ length: 23 }, (_, i) => 2 ** (i + 1));
    expect(sizes.at(-1)).to.equal(MAX_SIZE);
    expect(table.map((row) => row[0])).to.deep.equal(sizes);
    for (const row of table) expect(row[1], `iterations of ${row[0]}`).to.equal(20);
    // MB/sec has two decimals: a few 2-byte messages may print 0.00; the message rate (six decimals) shows each size ran.
    for (const row of table) expect(row[4], `message rate of ${row[0]}`).to.be.greaterThan(0);
  });

  it('runs two QPs for a duration with -q 2 -D 1, in Gb/sec with --report_gbits', async () => {
    const run = await p2p('write_bw', '-q', '2', '-D', '1', '--report_gbits');
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout).to.match(/^ Number of qps {3}: 2 /m);
    expect(run.stdout).to.match(/BW peak\[Gb\/sec\] +BW average\[Gb\/sec\]/);
    expect(run.stdout.match(/^ local address: /gm)).to.have.lengthOf(2);
    const table = rows(run.stdout);
    expect(table).to.have.lengthOf(1);
    expect(table[0]![1]).to.be.greaterThan(0);
  });

  it('on Ctrl-C (SIGINT) mid-run stops, says so (exit 1, ECANCELED) and undoes everything: MRs, QPs, fds, the bind of accel0', async () => {
    const child = spawn(process.execPath, [P2P_BIN, 'perf', 'write_bw', '-D', '30', '--mem', 'accel0'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    // Interrupted once the table's head is out: the QPs are connected and traffic flows.
    await new Promise<void>((resolve) =>
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        if (BW_HEAD.test(stdout)) resolve();
      }),
    );
    child.kill('SIGINT');
    expect(await exited).to.equal(1);
    expect(stderr).to.equal('p2p: ECANCELED: interrupted\n');
  });

  it('has --help with perftest\'s flags', async () => {
    const run = await p2p('--help');
    expect(run.code).to.equal(0);
    for (const flag of ['-s, --size', '-a, --all', '-n, --iters', '-D, --duration', '-q, --qp', '-d, --ib-dev', '--mem', '--local-mem', '--report_gbits', '--out_json', '--out_json_file', '--progress']) {
      expect(run.stdout).to.include(flag);
    }
  });

  describe('bad flags: exit 2 with an EINVAL that names the flag, and nothing set up', () => {
    for (const { args, message } of [
      { args: ['write_bw', '-s', '0'], message: /^p2p: EINVAL: -s\/--size "0": a whole number from 1 to 8388608\n$/ },
      { args: ['write_bw', '--mem', 'nope'], message: /^p2p: EINVAL: --mem "nope": no such memory; one of host, .*accel0.*nvme1-cmb/ },
      { args: ['write_bw', '--local-mem', 'nic0'], message: /^p2p: EINVAL: --local-mem "nic0": no such memory/ },
      { args: ['write_bw', '-q', '0'], message: /^p2p: EINVAL: -q\/--qp "0": a whole number from 1 to 16\n$/ },
      { args: ['read_lat', '-q', '2'], message: /^p2p: EINVAL: -q\/--qp 2: a latency test runs one QP\n$/ },
      { args: ['write_bw', '-n', '4'], message: /^p2p: EINVAL: -n\/--iters "4": a whole number from 5/ },
      { args: ['write_bw', '-D', '1', '-n', '10'], message: /^p2p: EINVAL: -D\/--duration and -n\/--iters: one or the other\n$/ },
      { args: ['write_bw', '-d', 'nic7'], message: /^p2p: EINVAL: -d\/--ib-dev "nic7": nic0 or nic1/ },
      { args: ['send_bw'], message: /^p2p: EINVAL: no test "send_bw": one of write_bw, read_bw, write_lat, read_lat\n$/ },
    ]) {
      it(`p2p perf ${args.join(' ')}`, async () => {
        const run = await p2p(...args);
        expect(run.code).to.equal(2);
        expect(run.stderr).to.match(message);
        expect(run.stdout).to.equal('');
      });
    }
  });
});
