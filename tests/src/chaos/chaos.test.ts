import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expect } from 'chai';
import { blockIoPlan, copyPlan, DEFAULT_SHAPE, FAULT_KINDS, historyFromJsonl, nemesisSchedule, requestPlan, revokePlan } from '@p2p/chaos';
import { runP2p } from '../harness/p2p-cli';

/** A short campaign: 16 s, a fault every 2 s held 500 ms, so each of the four kinds comes at least once. */
const SHORT = ['--duration', '16s', '--interval', '2s', '--fault-duration', '500ms'];
const SEED = 7;

function scratch(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-chaos-test-'));
}

describe('p2p chaos', function () {
  this.timeout(120_000);
  const env = { PATH: process.env.PATH };

  it('runs a seeded campaign with every fault kind and finds no violation', async () => {
    const dir = scratch();
    try {
      const history = path.join(dir, 'history.jsonl');
      const trace = path.join(dir, 'trace.json');
      const run = await runP2p(env, ['chaos', '--seed', String(SEED), ...SHORT, '--history', history, '--trace', trace]);
      expect(run.code, run.stdout + run.stderr).to.equal(0);
      const ops = historyFromJsonl(fs.readFileSync(history, 'utf8'));
      expect(ops.filter((op) => op.f === 'post' && op.type === 'ok').length).to.be.greaterThan(100);
      // The DMA engine's copies (writes of host and CMB slots) and reads, and nvme0's Writes, Reads and Flushes, beside the RDMA streams.
      const done = (process: string, f: string): number => ops.filter((op) => op.process === process && op.f === f && op.type === 'ok').length;
      expect(done('dma', 'write'), 'DMA-engine copies').to.be.greaterThan(10);
      expect(done('dma', 'read'), 'reads of the copies').to.be.greaterThan(5);
      expect(done('nvme', 'write'), 'NVMe Writes').to.be.greaterThan(10);
      expect(done('nvme', 'read'), 'NVMe Reads').to.be.greaterThan(10);
      expect(done('nvme', 'flush'), 'NVMe Flushes').to.be.greaterThan(0);
      expect(ops.some((op) => op.process === 'dma' && /^nvme1:cmb\[/.test(String(op.value?.region)) && op.type === 'ok'), 'a copy into nvme1\'s CMB').to.equal(true);
      for (const kind of FAULT_KINDS) expect(run.stdout, kind).to.match(new RegExp(`│ ${kind} `));
      expect(run.stdout).to.include('no violation');
      const faults = ops.filter((op) => op.process === 'nemesis' && op.type === 'invoke');
      const healed = ops.filter((op) => op.process === 'nemesis' && op.type === 'ok');
      expect(healed.length, 'every fault healed').to.equal(faults.length);
      // Recovery measured for each kind's row.
      for (const kind of FAULT_KINDS) expect(run.stdout).to.match(new RegExp(`│ ${kind} [^\\n]*│ \\d+\\.\\d ms`));
      const chrome = JSON.parse(fs.readFileSync(trace, 'utf8')) as { traceEvents: { name: string; ph: string; args?: { name?: string } }[] };
      expect(chrome.traceEvents.some((e) => e.ph === 'M' && e.args?.name === 'nemesis')).to.equal(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('catches a completion planted as lost: exit 1, the violation printed', async () => {
    const dir = scratch();
    try {
      const run = await runP2p(env, ['chaos', '--seed', String(SEED), '--duration', '4s', '--interval', '2s', '--fault-duration', '500ms', '--faults', 'stop', '--plant', 'lost-completion', '--history', path.join(dir, 'h.jsonl')]);
      expect(run.code, run.stdout + run.stderr).to.equal(1);
      expect(run.stdout).to.match(/violation \(exactly-once\): host-[xy]'s RDMA_(WRITE|READ) wr \d+ \(op \d+\) never completed/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  // Which planned requests a run gets through depends on timing (a fault
  // ends an incarnation wherever it is), so the decisions are compared: the
  // schedule and the plans every run draws from in order.
  it('makes the same decisions for the same seed: the nemesis schedule, the workload plan, the revokes', async () => {
    const options = { seed: SEED, durationMs: 16_000, intervalMs: 2000, faultDurationMs: 500, kinds: FAULT_KINDS, device: 'accel0' };
    expect(nemesisSchedule(options)).to.deep.equal(nemesisSchedule(options));
    expect(nemesisSchedule({ ...options, seed: SEED + 1 })).to.not.deep.equal(nemesisSchedule(options));
    const take = (seed: number): unknown[] => {
      const plan = requestPlan(seed, 'bar', DEFAULT_SHAPE);
      return Array.from({ length: 200 }, () => plan.next().value);
    };
    expect(take(SEED)).to.deep.equal(take(SEED));
    expect(take(SEED + 1)).to.not.deep.equal(take(SEED));
    expect(revokePlan(SEED, 16_000)).to.deep.equal(revokePlan(SEED, 16_000));
    const first = <T>(plan: Iterator<T>): T[] => Array.from({ length: 50 }, () => plan.next().value as T);
    expect(first(copyPlan(SEED, DEFAULT_SHAPE))).to.deep.equal(first(copyPlan(SEED, DEFAULT_SHAPE)));
    expect(first(blockIoPlan(SEED, DEFAULT_SHAPE))).to.deep.equal(first(blockIoPlan(SEED, DEFAULT_SHAPE)));
    expect(first(blockIoPlan(SEED + 1, DEFAULT_SHAPE))).to.not.deep.equal(first(blockIoPlan(SEED, DEFAULT_SHAPE)));
  });
});
