import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { performance } from 'node:perf_hooks';
import { FaultRuleSet, type FaultRuleSpec, MAX_FAULT_RULES, MAX_METHOD_PATTERN_LENGTH } from './fault-rules';

const MMIO = '/p2p.pci.v1.PciEmuService/MmioRead';

function abortAll(methodPattern: string): FaultRuleSpec {
  return { methodPattern, abort: { errno: 'EIO', percentage: 100 }, maxActivations: 0 };
}

/** The ErrnoError that `fn` throws. */
function thrown(fn: () => unknown): ErrnoError {
  try {
    fn();
  } catch (error) {
    if (error instanceof ErrnoError) return error;
    throw error;
  }
  return expect.fail('expected an ErrnoError');
}

describe('FaultRuleSet', () => {
  it('matches methods by wildcard pattern', () => {
    const rules = new FaultRuleSet();
    rules.add({ methodPattern: '/p2p.pci.v1.PciEmuService/Mmio*', abort: { errno: 'EIO', percentage: 100 }, maxActivations: 0 });
    expect(rules.decide(MMIO).abort?.errno).to.equal('EIO');
    expect(rules.decide('/p2p.pci.v1.PciEmuService/ConfigRead').abort).to.equal(undefined);
  });

  it('delays first and aborts after, summing delays of matching rules', () => {
    const rules = new FaultRuleSet();
    rules.add({ methodPattern: '*', delay: { delayMs: 20, percentage: 100 }, maxActivations: 0 });
    rules.add({ methodPattern: '*', delay: { delayMs: 5, percentage: 100 }, abort: { errno: 'EBUSY', percentage: 100 }, maxActivations: 0 });
    const decision = rules.decide(MMIO);
    expect(decision.delayMs).to.equal(25);
    expect(decision.abort?.errno).to.equal('EBUSY');
  });

  it('rolls each percentage against the random source', () => {
    let next = 0.6;
    const rules = new FaultRuleSet(() => next);
    rules.add({ methodPattern: '*', abort: { errno: 'EIO', percentage: 50 }, maxActivations: 0 });
    expect(rules.decide(MMIO).abort).to.equal(undefined);
    next = 0.4;
    expect(rules.decide(MMIO).abort?.errno).to.equal('EIO');
  });

  it('stops after max_activations and counts activations', () => {
    const rules = new FaultRuleSet();
    const rule = rules.add({ methodPattern: '*', abort: { errno: 'EIO', percentage: 100 }, maxActivations: 2 });
    expect([1, 2, 3].map(() => rules.decide(MMIO).abort !== undefined)).to.deep.equal([true, true, false]);
    expect(rules.list().find((r) => r.id === rule.id)?.activations).to.equal(2);
  });

  it('lists, removes and clears rules; removing an unknown id is ENOENT', () => {
    const rules = new FaultRuleSet();
    const a = rules.add({ methodPattern: '*', delay: { delayMs: 1, percentage: 100 }, maxActivations: 0 });
    rules.add({ methodPattern: '*', delay: { delayMs: 1, percentage: 100 }, maxActivations: 0 });
    rules.remove(a.id);
    expect(rules.list()).to.have.length(1);
    expect(() => rules.remove(a.id)).to.throw(ErrnoError).with.property('errno', 'ENOENT');
    expect(rules.clear()).to.equal(1);
    expect(rules.decide(MMIO)).to.deep.equal({ delayMs: 0 });
  });

  it('rejects bad rules with EINVAL and keeps the set unchanged', () => {
    const rules = new FaultRuleSet();
    const bad = [
      { methodPattern: '', abort: { errno: 'EIO' as const, percentage: 100 }, maxActivations: 0 },
      { methodPattern: '*', maxActivations: 0 },
      { methodPattern: '*', delay: { delayMs: -1, percentage: 100 }, maxActivations: 0 },
      { methodPattern: '*', abort: { errno: 'EWHAT' as 'EIO', percentage: 100 }, maxActivations: 0 },
      { methodPattern: '*', abort: { errno: 'EIO' as const, percentage: 101 }, maxActivations: 0 },
    ];
    for (const spec of bad) expect(() => rules.add(spec)).to.throw(ErrnoError).with.property('errno', 'EINVAL');
    expect(rules.list()).to.deep.equal([]);
  });

  it('rejects a method pattern longer than the limit with EINVAL, quoting only its start', () => {
    const rules = new FaultRuleSet();
    const error = thrown(() => rules.add(abortAll(`/${'x'.repeat(70_000)}`)));
    expect(error.errno).to.equal('EINVAL');
    expect(error.detail).to.include(`at most ${MAX_METHOD_PATTERN_LENGTH}`);
    expect(error.detail.length).to.be.below(200);
    expect(rules.list()).to.deep.equal([]);
  });

  it('accepts a method pattern of exactly the limit', () => {
    const rules = new FaultRuleSet();
    rules.add(abortAll(`/${'x'.repeat(MAX_METHOD_PATTERN_LENGTH - 1)}`));
    expect(rules.list()).to.have.length(1);
  });

  it('rejects a method pattern outside printable ASCII with EINVAL, escaping what it quotes', () => {
    const rules = new FaultRuleSet();
    for (const pattern of ['/p2p.pci.v1.PciEmuService/Mmio\u00e9*', '/p2p.pci.v1.PciEmuService/Mmio\n*', '/p2p.pci.v1.PciEmuService/Mmio Read']) {
      const error = thrown(() => rules.add(abortAll(pattern)));
      expect(error.errno).to.equal('EINVAL');
      expect(error.detail).to.include('printable ASCII');
      expect(error.detail).to.match(/^[\x20-\x7e]*$/);
    }
  });

  it('rejects a method pattern that starts with neither / nor * with EINVAL', () => {
    const error = thrown(() => new FaultRuleSet().add(abortAll('p2p.pci.v1.PciEmuService/Mmio*')));
    expect(error.errno).to.equal('EINVAL');
    expect(error.detail).to.include("must start with '/' or '*'");
  });

  it(`refuses rule ${MAX_FAULT_RULES + 1} with ENOSPC, and takes one again after a removal`, () => {
    const rules = new FaultRuleSet();
    const added = Array.from({ length: MAX_FAULT_RULES }, () => rules.add(abortAll('*')));
    expect(thrown(() => rules.add(abortAll('*'))).errno).to.equal('ENOSPC');
    rules.remove(added[0].id);
    rules.add(abortAll('*'));
    expect(rules.list()).to.have.length(MAX_FAULT_RULES);
  });

  it('never faults the fault service, health or reflection, whatever the pattern', () => {
    const rules = new FaultRuleSet();
    for (const pattern of ['*', '/p2p.fault.v1.*', '/grpc.*']) rules.add(abortAll(pattern));
    for (const method of [
      '/p2p.fault.v1.FaultInjectionService/ClearFaultRules',
      '/grpc.health.v1.Health/Check',
      '/grpc.health.v1.Health/Watch',
      '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo',
      '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo',
    ]) {
      expect(rules.decide(method), method).to.deep.equal({ delayMs: 0 });
    }
    expect(rules.decide(MMIO).abort?.errno).to.equal('EIO');
    expect(rules.list().map((rule) => rule.activations)).to.deep.equal([1, 0, 0]);
  });

  it('decides a call under the pattern *********Z at once, where a backtracking matcher took minutes', () => {
    const rules = new FaultRuleSet();
    rules.add(abortAll('*********Z'));
    const started = performance.now();
    const decision = rules.decide(`/p2p.pci.v1.PciEmuService/${'MmioRead'.repeat(1000)}`);
    expect(performance.now() - started).to.be.below(250);
    expect(decision).to.deep.equal({ delayMs: 0 });
  });

  it('quotes only the start of an unknown id', () => {
    const error = thrown(() => new FaultRuleSet().remove('x'.repeat(10_000)));
    expect(error.errno).to.equal('ENOENT');
    expect(error.detail.length).to.be.below(200);
  });
});
