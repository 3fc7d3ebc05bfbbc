import { expect } from 'chai';
import { FRAME_RING_BYTES, FRAME_RING_DATA_BYTES, FRAME_RING_HEADER_BYTES, FrameRingReader, FrameRingWriter, MAX_FRAME_RECORD_BYTES, type RingFrame } from './frame-ring';
import type { RingSpace } from './ring';

/** Ring memory in the test's heap, split into two views at `split` as a buffer of two segments would be. */
function memory(split = FRAME_RING_BYTES): RingSpace & { bytes: Buffer } {
  const bytes = Buffer.alloc(FRAME_RING_BYTES);
  return {
    bytes,
    size: bytes.length,
    views(offset, length, out) {
      if (offset < split && offset + length > split) out.push(bytes.subarray(offset, split), bytes.subarray(split, offset + length));
      else out.push(bytes.subarray(offset, offset + length));
      return true;
    },
    release: () => Promise.resolve(),
  };
}

function pair(split?: number): { writer: FrameRingWriter; reader: FrameRingReader; ring: Buffer } {
  const space = memory(split);
  return { writer: FrameRingWriter.over(space)!, reader: FrameRingReader.over(space)!, ring: space.bytes };
}

function read(reader: FrameRingReader): RingFrame {
  const frame = reader.next();
  if (frame === undefined || typeof frame === 'string') throw new Error(`no frame: ${String(frame)}`);
  return frame;
}

describe('the frame ring', () => {
  it('carries frames in order with their inline payloads, and frees space as the reader releases', () => {
    const { writer, reader } = pair();
    expect(reader.next()).to.equal(undefined);
    expect(writer.write(Buffer.from('packets-1'), [Buffer.from('inline-a'), Buffer.alloc(0)])).to.equal(true);
    expect(writer.write(Buffer.from('packets-2'), [])).to.equal(true);
    expect(reader.pending).to.equal(true);
    const first = read(reader);
    expect(first.packets.toString()).to.equal('packets-1');
    expect(first.inlineData.map((data) => data.toString())).to.deep.equal(['inline-a', '']);
    const second = read(reader);
    expect([second.packets.toString(), second.inlineData.length]).to.deep.equal(['packets-2', 0]);
    expect(reader.next()).to.equal(undefined);
    reader.release(second.end);
  });

  it('refuses what does not fit until the reader releases, wraps at the end, and refuses records over the limit', () => {
    const { writer, reader } = pair(FRAME_RING_HEADER_BYTES + FRAME_RING_DATA_BYTES / 2);
    expect(writer.write(Buffer.alloc(MAX_FRAME_RECORD_BYTES), [])).to.equal(false);
    const payload = Buffer.alloc(100_000, 7);
    let written = 0;
    while (writer.write(Buffer.from([written & 0xff]), [payload])) written++;
    expect(written).to.equal(Math.floor(FRAME_RING_DATA_BYTES / 100_024));
    // Releasing the first two frees room for one more, which wraps to the start of the data area.
    read(reader);
    reader.release(read(reader).end);
    expect(writer.write(Buffer.from([0xaa]), [payload])).to.equal(true);
    for (let i = 2; i < written; i++) {
      const frame = read(reader);
      expect(frame.packets[0]).to.equal(i & 0xff);
      expect(frame.inlineData[0]!.equals(payload)).to.equal(true);
    }
    const wrapped = read(reader);
    expect(wrapped.packets[0]).to.equal(0xaa);
    expect(wrapped.inlineData[0]!.equals(payload)).to.equal(true);
    expect(reader.next()).to.equal(undefined);
  });

  it('hands out packets the writer can no longer change, and names a record it could not have written', () => {
    const { writer, reader, ring } = pair();
    writer.write(Buffer.from('abcd'), []);
    const frame = read(reader);
    ring.fill(0x7a, FRAME_RING_HEADER_BYTES + 8, FRAME_RING_HEADER_BYTES + 12);
    expect(frame.packets.toString()).to.equal('abcd');

    writer.write(Buffer.from('next'), []);
    // The record's length, rewritten past what the writer published.
    ring.writeUInt32LE(FRAME_RING_DATA_BYTES, FRAME_RING_HEADER_BYTES + (frame.end & (FRAME_RING_DATA_BYTES - 1)));
    expect(reader.next()).to.be.a('string').that.matches(/a record of \d+ bytes/);
  });

  it('sleeps only with nothing published, and the writer sees it asleep', () => {
    const { writer, reader } = pair();
    expect(writer.readerAsleep).to.equal(false);
    expect(reader.sleep()).to.equal(true);
    expect(writer.readerAsleep).to.equal(true);
    writer.write(Buffer.from('wake'), []);
    reader.wake();
    expect(writer.readerAsleep).to.equal(false);
    read(reader);
    writer.write(Buffer.from('more'), []);
    // A frame already published keeps the reader awake.
    expect(reader.sleep()).to.equal(false);
    expect(writer.readerAsleep).to.equal(false);
  });
});
