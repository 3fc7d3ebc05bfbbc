import { expect } from 'chai';
import { latencyStats, peakRate, percentile } from './stats';

describe('perftest stats', () => {
  it('takes percentiles by nearest rank', () => {
    const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(sorted, 50)).to.equal(50);
    expect(percentile(sorted, 99)).to.equal(99);
    expect(percentile(sorted, 99.9)).to.equal(100);
    expect(percentile([], 50)).to.be.NaN;
  });

  it('gives min, max, typical (the median), average, stdev and the 99 and 99.9 percentiles in order', () => {
    const stats = latencyStats([1, 2, 2, 3, 10]);
    expect(stats).to.include({ min: 1, max: 10, typical: 2, average: 3.6, p99: 10, p999: 10 });
    expect(stats.stdev).to.be.closeTo(Math.sqrt((2.6 ** 2 + 1.6 ** 2 * 2 + 0.6 ** 2 + 6.4 ** 2) / 5), 1e-9);
  });

  it('finds the peak over the fastest stretch of at least a tenth of the messages and of the time', () => {
    const s = 1_000_000_000n;
    // 100 messages of 1000 bytes: 10 in the first second, 90 in the next 0.2 s.
    expect(peakRate(0n, [{ at: s, done: 10 }, { at: s + s / 5n, done: 100 }], 1000)).to.be.closeTo(450_000, 1e-6);
  });

  it('does not take completions of batches that ran side by side (several QPs) for an instant stretch', () => {
    const s = 1_000_000_000n;
    // Two QPs' batches of 50 complete a microsecond apart at the end of a one-second run.
    expect(peakRate(0n, [{ at: s, done: 50 }, { at: s + 1000n, done: 100 }], 1000)).to.be.closeTo(50_000, 1e-6);
  });
});
