import { expect } from 'chai';
import { checkRingBytes, RingConsumer, RingProducer, type RingSpace } from './ring';

const SIZE = 64 * 1024;

/** Ring memory in a plain buffer, in two pieces (as a buffer made of two extents would be). */
function space(size = SIZE): RingSpace & { readonly bytes: Buffer; mapped: boolean } {
  const bytes = Buffer.alloc(size);
  return {
    size,
    bytes,
    mapped: true,
    views(offset, length, out) {
      if (!this.mapped) return false;
      const half = size / 2;
      if (offset < half && offset + length > half) out.push(bytes.subarray(offset, half), bytes.subarray(half, offset + length));
      else out.push(bytes.subarray(offset, offset + length));
      return true;
    },
    release: () => Promise.resolve(),
  };
}

function read(consumer: RingConsumer, end: number, length: number): Buffer {
  const views: Uint8Array[] = [];
  expect(consumer.views(end, length, views)).to.equal(true);
  return Buffer.concat(views);
}

describe('payload ring', () => {
  it('takes ring sizes that are powers of two in [64 KiB, 1 GiB]', () => {
    expect(() => checkRingBytes(64 * 1024)).to.not.throw();
    expect(() => checkRingBytes(2 ** 30)).to.not.throw();
    for (const bad of [0, 32 * 1024, 100_000, 2 ** 31, 1.5]) expect(() => checkRingBytes(bad), String(bad)).to.throw().with.property('errno', 'EINVAL');
  });

  it('refuses everything until the consumer first reports, then copies payloads in and out in order', () => {
    const memory = space();
    const producer = new RingProducer(memory);
    const consumer = new RingConsumer(memory);
    expect(producer.put([Buffer.from('early')], 5)).to.equal(-1);
    producer.credit(consumer.report());
    const end = producer.put([Buffer.from('ab'), Buffer.from('cde')], 5);
    expect(end).to.equal(5);
    expect(read(consumer, end, 5).toString()).to.equal('abcde');
    // Across the boundary of the two pieces.
    const big = Buffer.alloc(SIZE / 2, 7);
    const end2 = producer.put([big], big.length);
    expect(read(consumer, end2, big.length).equals(big)).to.equal(true);
  });

  it('refuses what does not fit until the consumer frees it, and skips the tail rather than wrap a payload', () => {
    const memory = space();
    const producer = new RingProducer(memory);
    const consumer = new RingConsumer(memory);
    producer.credit(consumer.report());
    const a = producer.put([Buffer.alloc(40 * 1024, 1)], 40 * 1024);
    expect(producer.put([Buffer.alloc(30 * 1024, 2)], 30 * 1024)).to.equal(-1);
    expect(producer.put([Buffer.alloc(SIZE + 1)], SIZE + 1)).to.equal(-1);
    consumer.release(a);
    expect(consumer.unreported).to.equal(true);
    producer.credit(consumer.report());
    expect(consumer.unreported).to.equal(false);
    // 24 KiB left at the end: a 30 KiB payload starts over at 0.
    const b = producer.put([Buffer.alloc(30 * 1024, 2)], 30 * 1024);
    expect(b).to.equal(SIZE + 30 * 1024);
    expect(producer.inUse).to.equal(24 * 1024 + 30 * 1024);
    expect(memory.bytes[0]).to.equal(2);
    expect(read(consumer, b, 30 * 1024).every((byte) => byte === 2)).to.equal(true);
  });

  it('counts positions modulo 2^32 across many laps', () => {
    const memory = space();
    const producer = new RingProducer(memory);
    const consumer = new RingConsumer(memory);
    producer.credit(consumer.report());
    // Odd-sized payloads, so that the skipped tails vary; 110 000 of them make more than 2^32 bytes.
    const chunk = 40 * 1024 + 8;
    const payload = Buffer.alloc(chunk);
    for (let i = 0; i < 110_000; i++) {
      payload[chunk - 1] = i & 0xff;
      const end = producer.put([payload], chunk);
      expect(end).to.not.equal(-1);
      if (i % 10_000 === 0) expect(read(consumer, end, chunk)[chunk - 1]).to.equal(i & 0xff);
      consumer.release(end);
      producer.credit(consumer.report());
    }
    expect(producer.inUse).to.equal(0);
  });

  it('ignores credit outside what was produced, and refuses a range no producer wrote', () => {
    const memory = space();
    const producer = new RingProducer(memory);
    const consumer = new RingConsumer(memory);
    producer.credit(0);
    const end = producer.put([Buffer.alloc(1000)], 1000);
    producer.credit(5000);
    expect(producer.inUse).to.equal(1000);
    expect(consumer.views(end + SIZE, 10, [])).to.equal(false);
    // A payload never wraps: one that would is corrupt.
    expect(consumer.views(10, 20, [])).to.equal(false);
  });

  it('gives up on the ring once its memory is unmapped: payloads go inline', () => {
    const memory = space();
    const producer = new RingProducer(memory);
    producer.credit(0);
    memory.mapped = false;
    expect(producer.put([Buffer.alloc(10)], 10)).to.equal(-1);
    memory.mapped = true;
    expect(producer.put([Buffer.alloc(10)], 10)).to.equal(-1);
  });
});
