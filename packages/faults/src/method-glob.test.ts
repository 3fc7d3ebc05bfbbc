import { performance } from 'node:perf_hooks';
import { expect } from 'chai';
import { compileMethodGlob } from './method-glob';

const MMIO_READ = '/p2p.pci.v1.PciEmuService/MmioRead';

function matches(pattern: string, method: string): boolean {
  return compileMethodGlob(pattern)(method);
}

/** Every string of up to `maxLength` characters drawn from `alphabet`. */
function allStrings(alphabet: string, maxLength: number): string[] {
  const out = [''];
  for (let start = 0; out[out.length - 1].length < maxLength; ) {
    const end = out.length;
    for (let i = start; i < end; i++) for (const c of alphabet) out.push(out[i] + c);
    start = end;
  }
  return out;
}

describe('compileMethodGlob', () => {
  it('matches a pattern without stars only against the same name', () => {
    expect(matches(MMIO_READ, MMIO_READ)).to.equal(true);
    expect(matches(MMIO_READ, `${MMIO_READ}x`)).to.equal(false);
    expect(matches(MMIO_READ, MMIO_READ.slice(1))).to.equal(false);
  });

  it('treats regular-expression characters as literals', () => {
    expect(matches('/p2p.pci.v1.PciEmuService/Mmio*', '/p2pXpciXv1XPciEmuService/MmioRead')).to.equal(false);
    expect(matches('/a+b/(c)?[d]', '/a+b/(c)?[d]')).to.equal(true);
    expect(matches('/a+b/*', '/aab/x')).to.equal(false);
  });

  it('matches a trailing star as a prefix, the empty rest included', () => {
    expect(matches('/p2p.pci.v1.PciEmuService/Mmio*', MMIO_READ)).to.equal(true);
    expect(matches('/p2p.pci.v1.PciEmuService/Mmio*', '/p2p.pci.v1.PciEmuService/Mmio')).to.equal(true);
    expect(matches('/p2p.pci.v1.PciEmuService/Mmio*', '/p2p.pci.v1.PciEmuService/ConfigRead')).to.equal(false);
  });

  it('matches a leading star as a suffix', () => {
    expect(matches('*/MmioRead', MMIO_READ)).to.equal(true);
    expect(matches('*/MmioRead', '/p2p.pci.v1.PciEmuService/MmioWrite')).to.equal(false);
  });

  it('matches middle segments in order, between the prefix and the suffix', () => {
    expect(matches('/p2p.*.v1.*/Mmio*', MMIO_READ)).to.equal(true);
    expect(matches('*Mmio*Pci*', MMIO_READ)).to.equal(false);
    expect(matches('*Emu*Read', MMIO_READ)).to.equal(true);
  });

  it('does not let a middle segment overlap the prefix or the suffix', () => {
    expect(matches('ab*b*bc', 'abbc')).to.equal(false);
    expect(matches('ab*b*bc', 'abbbc')).to.equal(true);
    expect(matches('a*a', 'a')).to.equal(false);
    expect(matches('a*a', 'aa')).to.equal(true);
  });

  it('matches a lone star, and a run of stars, against anything, the empty name included', () => {
    for (const pattern of ['*', '***']) {
      expect(matches(pattern, '')).to.equal(true);
      expect(matches(pattern, MMIO_READ)).to.equal(true);
    }
  });

  it('treats a run of stars like one star', () => {
    expect(matches('/p2p.pci.v1.**/**Read', MMIO_READ)).to.equal(true);
    expect(matches('/p2p.pci.v1.**/**Write', MMIO_READ)).to.equal(false);
  });

  it('agrees with a regular expression on every pattern over {a, b, *} up to 5 characters and every name over {a, b} up to 6', () => {
    const names = allStrings('ab', 6);
    for (const pattern of allStrings('ab*', 5)) {
      const reference = new RegExp(`^${pattern.split('*').join('.*')}$`);
      const matcher = compileMethodGlob(pattern);
      for (const name of names) {
        if (matcher(name) !== reference.test(name)) expect.fail(`'${pattern}' against '${name}': expected ${reference.test(name)}`);
      }
    }
  });

  it('answers *********Z against a long method name at once, where a backtracking matcher took minutes', () => {
    const matcher = compileMethodGlob('*********Z');
    const method = `/p2p.pci.v1.PciEmuService/${'MmioRead'.repeat(1000)}`;
    const started = performance.now();
    const matched = matcher(method);
    expect(performance.now() - started).to.be.below(250);
    expect(matched).to.equal(false);
  });

  it('answers a many-segment pattern whose last segment is missing at once, where a backtracking matcher took minutes', () => {
    const matcher = compileMethodGlob(`/${'*a'.repeat(100)}*Z*`);
    const method = `/${'a'.repeat(10_000)}`;
    const started = performance.now();
    const matched = matcher(method);
    expect(performance.now() - started).to.be.below(250);
    expect(matched).to.equal(false);
  });
});
