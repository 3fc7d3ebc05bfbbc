import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { FaultRuleSet } from './fault-rules';

const MMIO = '/p2p.pci.v1.PciEmuService/MmioRead';

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
});
