import { expect } from 'chai';
import { rdma } from '@p2p/proto';
import { allSizes, DEF_ITERS, DEF_ITERS_WB, DEF_SIZE_BW, DEF_SIZE_LAT, perfParams } from './params';

describe('perftest params', () => {
  it('takes perftest\'s defaults: 65536-byte messages for bw, 2 for lat; 5000 iterations for write_bw, 1000 for the rest', () => {
    expect(perfParams('write_bw', {})).to.deep.include({ sizes: [DEF_SIZE_BW], iterations: DEF_ITERS_WB, qps: 1, reportGbits: false });
    expect(perfParams('read_bw', {})).to.deep.include({ sizes: [DEF_SIZE_BW], iterations: DEF_ITERS });
    expect(perfParams('read_lat', {})).to.deep.include({ sizes: [DEF_SIZE_LAT], iterations: DEF_ITERS });
  });

  it('names each test\'s verb, measure, opcode and title as perftest does', () => {
    expect(perfParams('write_bw', {}).test).to.deep.equal({ name: 'write_bw', verb: 'write', measure: 'bw', opcode: rdma.WrOpcode.WR_OPCODE_RDMA_WRITE, title: 'RDMA_Write BW Test' });
    expect(perfParams('read_lat', {}).test).to.deep.include({ opcode: rdma.WrOpcode.WR_OPCODE_RDMA_READ, title: 'RDMA_Read Latency Test' });
  });

  it('runs -a from 2 to 2^23, doubling', () => {
    const sizes = allSizes();
    expect(sizes).to.have.lengthOf(23);
    expect([sizes[0], sizes[1], sizes.at(-1)]).to.deep.equal([2, 4, 2 ** 23]);
    expect(perfParams('write_bw', { all: true }).sizes).to.deep.equal(sizes);
  });

  it('takes -D instead of -n, and -q for bandwidth tests', () => {
    expect(perfParams('write_bw', { duration: '3', qp: '4', reportGbits: true })).to.deep.include({ durationSeconds: 3, qps: 4, reportGbits: true });
  });

  it('refuses out-of-range values with EINVAL naming the flag', () => {
    expect(() => perfParams('write_bw', { size: '0' })).to.throw(/^EINVAL: -s\/--size "0"/);
    expect(() => perfParams('write_bw', { size: String(2 ** 23 + 1) })).to.throw(/^EINVAL: -s\/--size/);
    expect(() => perfParams('write_bw', { size: '64k' })).to.throw(/^EINVAL: -s\/--size "64k"/);
    expect(() => perfParams('write_bw', { iters: '4' })).to.throw(/^EINVAL: -n\/--iters "4": a whole number from 5/);
    expect(() => perfParams('write_bw', { qp: '0' })).to.throw(/^EINVAL: -q\/--qp "0"/);
    expect(() => perfParams('write_bw', { duration: '0' })).to.throw(/^EINVAL: -D\/--duration "0"/);
  });

  it('refuses flags that do not go together, and unknown tests', () => {
    expect(() => perfParams('write_lat', { qp: '2' })).to.throw(/^EINVAL: -q\/--qp 2: a latency test runs one QP/);
    expect(() => perfParams('write_bw', { all: true, size: '8' })).to.throw(/^EINVAL: -a\/--all and -s\/--size/);
    expect(() => perfParams('write_bw', { duration: '1', iters: '10' })).to.throw(/^EINVAL: -D\/--duration and -n\/--iters/);
    expect(() => perfParams('write_bw', { duration: '1', all: true })).to.throw(/^EINVAL: -D\/--duration runs one size/);
    expect(() => perfParams('send_bw', {})).to.throw(/^EINVAL: no test "send_bw"/);
  });
});
