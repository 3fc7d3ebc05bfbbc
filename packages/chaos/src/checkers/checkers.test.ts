import { expect } from 'chai';
import { HistoryRecorder, NEMESIS, type Op } from '../history';
import { analyze } from '../report';
import { checkExactlyOnce } from './exactly-once';
import { checkLeaks } from './leaks';
import { checkPayloads } from './payload';
import { faultRecords } from './recovery';
import { checkRevokes } from './revoke';

/** A recorder on a clock the test moves: each op 1 ms after the one before. */
function recorder(): HistoryRecorder {
  let now = 0n;
  return new HistoryRecorder(() => (now += 1_000_000n));
}

/** A sound history: two WRs on one queue, a write then a read, a revoke with nothing landing, no leaks, one fault that heals. */
function soundHistory(): HistoryRecorder {
  const h = recorder();
  const a = h.invoke('w0', 'post', { queue: 'qp1', wrId: 1, opcode: 'RDMA_WRITE' });
  const b = h.invoke('w0', 'post', { queue: 'qp1', wrId: 2, opcode: 'RDMA_WRITE' });
  h.complete(a, 'ok', { status: 'SUCCESS' });
  h.complete(b, 'fail', {}, 'REM_ACCESS_ERR');
  const w = h.invoke('w0', 'write', { region: 'host:0', digest: 'd1' });
  h.complete(w, 'ok');
  const r = h.invoke('w0', 'read', { region: 'host:0', initial: 'd0' });
  h.complete(r, 'ok', { digest: 'd1' });
  const kill = h.invoke(NEMESIS, 'kill', { kind: 'kill', service: 'rdma-nic-1' });
  const lost = h.invoke('w0', 'post', { queue: 'qp2', wrId: 3, opcode: 'RDMA_READ' });
  h.complete(lost, 'info', {}, 'ETIMEDOUT');
  h.complete(kill, 'ok');
  const after = h.invoke('w0', 'post', { queue: 'qp3', wrId: 4, opcode: 'RDMA_READ' });
  h.complete(after, 'ok', { status: 'SUCCESS' });
  const revoke = h.invoke('w1', 'revoke', { bar: 'accel0:bar2' });
  h.complete(revoke, 'ok', { digest: 'b1' });
  h.complete(h.invoke('w1', 'unrevoke', { bar: 'accel0:bar2', digest: 'b1' }), 'ok');
  h.complete(h.invoke('checker', 'leak-check'), 'ok', { buffers: [], segments: [] });
  return h;
}

describe('chaos checkers', () => {
  it('find nothing wrong in a sound history, and say the run is valid', () => {
    const result = analyze(soundHistory().ops);
    expect(result.violations).to.deep.equal([]);
    expect(result.valid).to.equal(true);
  });

  describe('exactly once, in order', () => {
    it('catches a work request that never completed', () => {
      const h = soundHistory();
      h.invoke('w0', 'post', { queue: 'qp1', wrId: 9 });
      expect(checkExactlyOnce(h.ops).map((v) => v.message)).to.deep.equal([`w0's post wr 9 (op ${h.ops.length - 1}) never completed`]);
    });

    it('catches a work request completed twice', () => {
      const h = recorder();
      const a = h.invoke('w0', 'post', { queue: 'qp1', wrId: 1, opcode: 'RDMA_WRITE' });
      h.complete(a, 'ok');
      h.complete(a, 'ok');
      expect(checkExactlyOnce(h.ops).map((v) => v.message)).to.deep.equal(["w0's RDMA_WRITE wr 1 (op 0) completed 2 times"]);
    });

    it('catches completions out of post order on one queue, not across queues', () => {
      const h = recorder();
      const a = h.invoke('w0', 'post', { queue: 'qp1', wrId: 1 });
      const b = h.invoke('w0', 'post', { queue: 'qp1', wrId: 2 });
      const c = h.invoke('w0', 'post', { queue: 'qp2', wrId: 3 });
      h.complete(c, 'ok');
      h.complete(b, 'ok');
      h.complete(a, 'ok');
      expect(checkExactlyOnce(h.ops).map((v) => v.message)).to.deep.equal([`w0's post wr 1 (op 0) completed after w0's post wr 2 (op 1), which was posted later on queue qp1`]);
    });

    it('catches a completion of a request never posted', () => {
      const ops: Op[] = [{ index: 0, time: 1, process: 'w0', type: 'ok', f: 'post', invoke: 7 }];
      expect(checkExactlyOnce(ops).map((v) => v.message)).to.deep.equal(['a completion of a request never posted (invoke 7)']);
    });
  });

  describe('payloads', () => {
    it('catches a read that finds bytes nobody wrote', () => {
      const h = soundHistory();
      h.complete(h.invoke('w0', 'read', { region: 'host:0', initial: 'd0' }), 'ok', { digest: 'garbage' });
      expect(checkPayloads(h.ops).map((v) => v.message)).to.deep.equal([`read of host:0 (op ${h.ops.length - 1}) found garbage; it could only have found d1`]);
    });

    it('catches a read that finds a write which failed', () => {
      const h = recorder();
      h.complete(h.invoke('w0', 'write', { region: 'r', digest: 'failed' }), 'fail', {}, 'REM_ACCESS_ERR');
      h.complete(h.invoke('w0', 'read', { region: 'r', initial: 'zero' }), 'ok', { digest: 'failed' });
      expect(checkPayloads(h.ops)).to.have.lengthOf(1);
    });

    it('accepts a write whose outcome is unknown as landed or not, and one concurrent with the read', () => {
      const h = recorder();
      h.complete(h.invoke('w0', 'write', { region: 'r', digest: 'a' }), 'ok');
      h.complete(h.invoke('w0', 'write', { region: 'r', digest: 'b' }), 'info', {}, 'ETIMEDOUT');
      const read = h.invoke('w1', 'read', { region: 'r' });
      const concurrent = h.invoke('w0', 'write', { region: 'r', digest: 'c' });
      h.complete(read, 'ok', { digest: 'c' });
      h.complete(concurrent, 'ok');
      h.complete(h.invoke('w1', 'read', { region: 'r' }), 'ok', { digest: 'b' });
      expect(checkPayloads(h.ops)).to.deep.equal([]);
    });

    it('accepts the initial content from a read that began before any write was done, a write in flight or not', () => {
      const h = recorder();
      const read = h.invoke('w0', 'read', { region: 'r', initial: 'zero' });
      const write = h.invoke('w0', 'write', { region: 'r', digest: 'a' });
      h.complete(write, 'ok');
      h.complete(read, 'ok', { digest: 'zero' });
      expect(checkPayloads(h.ops)).to.deep.equal([]);
    });
    it('catches a read that finds a write already overwritten before the read began', () => {
      const h = recorder();
      h.complete(h.invoke('w0', 'write', { region: 'r', digest: 'old' }), 'ok');
      h.complete(h.invoke('w0', 'write', { region: 'r', digest: 'new' }), 'ok');
      h.complete(h.invoke('w0', 'read', { region: 'r' }), 'ok', { digest: 'old' });
      expect(checkPayloads(h.ops)).to.have.lengthOf(1);
    });
  });

  it('catches bytes that reached a BAR while it was revoked', () => {
    const h = recorder();
    h.complete(h.invoke('w1', 'revoke', { bar: 'accel0:bar2' }), 'ok', { digest: 'before' });
    h.invoke('w1', 'unrevoke', { bar: 'accel0:bar2', digest: 'after' });
    expect(checkRevokes(h.ops).map((v) => v.message)).to.deep.equal(['accel0:bar2 changed while revoked: before when the revoke returned (op 1), after before decode came back (op 2)']);
  });

  it('catches what is left over after the run, one violation each', () => {
    const h = recorder();
    h.complete(h.invoke('checker', 'leak-check'), 'ok', { buffers: ['buffer 0x3 (system-heap, 1 MiB)'], segments: ['heap.0003', 'heap.0004'], processes: [] });
    expect(checkLeaks(h.ops).map((v) => v.message)).to.deep.equal([
      'buffers left after the run: buffer 0x3 (system-heap, 1 MiB)',
      'segments left after the run: heap.0003',
      'segments left after the run: heap.0004',
    ]);
  });

  it('measures recovery from each heal to the first operation after it that succeeded', () => {
    const faults = faultRecords(soundHistory().ops);
    expect(faults).to.have.lengthOf(1);
    expect(faults[0]).to.include({ kind: 'kill', service: 'rdma-nic-1' });
    // The heal is op 11 (at 12 ms); the next post is invoked at 13 ms and completes at 14 ms.
    expect(faults[0]!.recovery).to.equal(2_000_000);
  });

  it('counts each fault row: operations, ok, failed, indeterminate, violations, recovery', () => {
    const h = soundHistory();
    const result = analyze(h.ops);
    const kill = result.rows.find((r) => r.kind === 'kill')!;
    expect(kill).to.include({ service: 'rdma-nic-1', faults: 1, indeterminate: 1, violations: 0, unrecovered: 0 });
    expect(kill.recoveryP50Ms).to.equal(2);
    const between = result.rows.find((r) => r.kind === 'none')!;
    expect(between.failed).to.equal(1);
  });

  it('makes the run invalid, and attributes the violation to the fault it happened in', () => {
    const h = recorder();
    const kill = h.invoke(NEMESIS, 'stop', { kind: 'stop', service: 'dmabuf-registry' });
    h.invoke('w0', 'post', { queue: 'qp1', wrId: 1 });
    h.complete(kill, 'ok');
    const result = analyze(h.ops);
    expect(result.valid).to.equal(false);
    expect(result.rows.find((r) => r.kind === 'stop')).to.include({ violations: 1, unrecovered: 1 });
  });
});
