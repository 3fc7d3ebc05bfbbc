import { expect } from 'chai';
import type { BwResult, LatResult } from './measure';
import { perfParams } from './params';
import { banner, resultHeader, resultJson, resultRow, type RunInfo } from './report';

const bw: BwResult = { bytes: 65536, iterations: 5000, qps: 1, peak: 2 * 2 ** 30, average: 2 ** 30, msgRate: 0.016384, seconds: 0.3 };
const lat: LatResult = { bytes: 2, iterations: 1000, seconds: 1, samples: [], min: 1, max: 9, typical: 2, average: 2.5, stdev: 0.5, p99: 7, p999: 8 };

describe('perftest report', () => {
  it('heads the bandwidth table as perftest (RESULT_FMT), in MB/sec or Gb/sec', () => {
    expect(resultHeader(perfParams('write_bw', {}))).to.equal(' #bytes     #iterations    BW peak[MB/sec]    BW average[MB/sec]   MsgRate[Mpps]');
    expect(resultHeader(perfParams('write_bw', { reportGbits: true }))).to.include('BW peak[Gb/sec]    BW average[Gb/sec]');
  });

  it('prints MB/sec as 2^20 bytes a second and Gb/sec as 10^9 bits', () => {
    expect(resultRow(bw, perfParams('write_bw', {})).trim().split(/\s+/)).to.deep.equal(['65536', '5000', '2048.00', '1024.00', '0.016384']);
    expect(resultJson(bw, perfParams('write_bw', { reportGbits: true }))).to.deep.include({ BW_peak: (2 * 2 ** 30 * 8) / 1e9 });
  });

  it('prints the latency columns in perftest\'s order: min, max, typical, avg, stdev, 99%, 99.9%', () => {
    expect(resultHeader(perfParams('read_lat', {}))).to.match(/^ #bytes #iterations +t_min\[usec\] +t_max\[usec\] +t_typical\[usec\] +t_avg\[usec\] +t_stdev\[usec\] +99% percentile\[usec\] +99\.9% percentile\[usec\] $/);
    expect(resultRow(lat, perfParams('read_lat', {})).trim().split(/\s+/)).to.deep.equal(['2', '1000', '1.00', '9.00', '2.00', '2.50', '0.50', '7.00', '8.00']);
  });

  it('prints t_avg and transactions per second in duration mode', () => {
    const params = perfParams('write_lat', { duration: '1' });
    expect(resultHeader(params)).to.equal(' #bytes        #iterations       t_avg[usec]    tps average');
    expect(resultRow(lat, params).trim().split(/\s+/)).to.deep.equal(['2', '1000', '2.50', '1000.00']);
  });

  it('opens with the test\'s title, its settings and both sides\' addresses', () => {
    const side = { device: 'nic0 (0000:04:00.0)', memory: 'host', qpNums: [0x101], rkey: 0x203, vaddr: 2 ** 32, gid: new Uint8Array(16) };
    const info: RunInfo = { params: perfParams('write_bw', {}), local: side, remote: { ...side, device: 'nic1 (0000:09:00.0)', memory: 'accel0' }, txDepth: 768, cqModeration: 256 };
    const lines = banner(info);
    expect(lines[1]).to.equal(`${' '.repeat(20)}RDMA_Write BW Test`);
    expect(lines).to.include(' TX depth        : 768');
    expect(lines).to.include(' Remote memory   : accel0, on nic1 (0000:09:00.0)');
    expect(lines).to.include(' local address: LID 0000 QPN 0x0101 PSN 0x000000 RKey 0x00000203 VAddr 0x0000000100000000');
  });
});
