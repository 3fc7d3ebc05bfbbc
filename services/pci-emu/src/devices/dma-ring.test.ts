import { expect } from 'chai';
import { DMA_ERRORS, DMA_STATUS_DONE, DMA_STATUS_ERROR, type DmaOutcome, type DmaPort, type DmaRequest } from './dma-engine';
import {
  decodeDmaCompletion,
  DMA_DESC_COMPLETION,
  DMA_DESC_CONTROL,
  DMA_DESCRIPTOR_SIZE,
  DMA_RING_BASE,
  DMA_RING_BYTES_PER_TURN,
  DMA_RING_CTRL,
  DMA_RING_CTRL_ENABLE,
  DMA_RING_ERROR,
  DMA_RING_FAULT_IOVA,
  DMA_RING_HEAD,
  DMA_RING_SIZE,
  DMA_RING_STATUS,
  DMA_RING_STATUS_ACTIVE,
  DMA_RING_STATUS_DISABLED,
  DMA_RING_STATUS_HALTED,
  DMA_RING_TAIL,
  DmaRing,
  encodeDmaDescriptor,
} from './dma-ring';

const ALL = 0xffffffff;
/** The fake bus: IOVA = offset into one flat memory, with a hole that faults. */
const MEMORY = 1 << 20;
const RING_IOVA = 0x1000n;
const HOLE = { from: 0x8_0000n, to: 0x9_0000n };
const OK: DmaOutcome = { error: 'NONE', bytes: 0, faultIova: 0n };
/** Transfers from and to here succeed in the fake without moving anything. */
const FAR = 0x1_0000_0000n;

interface Bench {
  ring: DmaRing;
  memory: Buffer;
  transfers: DmaRequest[];
  /** Runs the deferred turns, as pci-emu's event loop would; returns how many ran. */
  runTurns(): number;
}

function bench(): Bench {
  const memory = Buffer.alloc(MEMORY);
  const transfers: DmaRequest[] = [];
  let pending: Array<() => void> = [];
  const hole = (iova: bigint, length: number): bigint | undefined => {
    const end = iova + BigInt(length);
    if (end > BigInt(MEMORY)) return iova;
    return iova < HOLE.to && end > HOLE.from ? (iova > HOLE.from ? iova : HOLE.from) : undefined;
  };
  const port: DmaPort = {
    transfer: (request) => {
      transfers.push(request);
      if (request.src >= FAR) return { ...OK, bytes: request.length };
      const fault = hole(request.src, request.length) ?? hole(request.dst, request.length);
      if (fault !== undefined) return { error: hole(request.src, request.length) !== undefined ? 'IOMMU_FAULT_READ' : 'IOMMU_FAULT_WRITE', bytes: 0, faultIova: fault };
      memory.copy(memory, Number(request.dst), Number(request.src), Number(request.src) + request.length);
      return { ...OK, bytes: request.length };
    },
    read: (iova, target) => {
      const fault = hole(iova, target.length);
      if (fault !== undefined) return { error: 'IOMMU_FAULT_READ', bytes: 0, faultIova: fault };
      memory.copy(target, 0, Number(iova), Number(iova) + target.length);
      return { ...OK, bytes: target.length };
    },
    write: (iova, source) => {
      const fault = hole(iova, source.length);
      if (fault !== undefined) return { error: 'IOMMU_FAULT_WRITE', bytes: 0, faultIova: fault };
      memory.set(source, Number(iova));
      return { ...OK, bytes: source.length };
    },
    map: () => expect.fail('the ring maps nothing'),
    completed: () => undefined,
    defer: (work) => pending.push(work),
  };
  return {
    ring: new DmaRing(port),
    memory,
    transfers,
    runTurns: () => {
      let turns = 0;
      while (pending.length > 0) {
        const now = pending;
        pending = [];
        for (const work of now) work();
        turns += now.length;
      }
      return turns;
    },
  };
}

function enable(ring: DmaRing, entries: number, base = RING_IOVA): void {
  ring.write(DMA_RING_BASE, Number(base & 0xffffffffn), ALL);
  ring.write(DMA_RING_BASE + 4, Number(base >> 32n), ALL);
  ring.write(DMA_RING_SIZE, entries, ALL);
  ring.write(DMA_RING_CTRL, DMA_RING_CTRL_ENABLE, ALL);
}

const slot = (index: number): number => Number(RING_IOVA) + index * DMA_DESCRIPTOR_SIZE;
const put = (b: Bench, index: number, request: DmaRequest): void => void encodeDmaDescriptor(request, b.memory, slot(index));
const completion = (b: Bench, index: number) => decodeDmaCompletion(b.memory, slot(index) + DMA_DESC_COMPLETION);
const registers = (ring: DmaRing) => ({
  status: ring.read(DMA_RING_STATUS),
  head: ring.read(DMA_RING_HEAD),
  tail: ring.read(DMA_RING_TAIL),
  error: ring.read(DMA_RING_ERROR),
  faultIova: (BigInt(ring.read(DMA_RING_FAULT_IOVA + 4)) << 32n) | BigInt(ring.read(DMA_RING_FAULT_IOVA)),
});

describe('accelerator DMA engine descriptor ring', () => {
  it('is DISABLED at power-on and reads back BASE and SIZE', () => {
    const { ring } = bench();
    expect(registers(ring).status).to.equal(DMA_RING_STATUS_DISABLED);
    ring.write(DMA_RING_BASE, 0x2000, ALL);
    ring.write(DMA_RING_BASE + 4, 0x12, ALL);
    ring.write(DMA_RING_SIZE, 64, ALL);
    expect([ring.read(DMA_RING_BASE), ring.read(DMA_RING_BASE + 4), ring.read(DMA_RING_SIZE)]).to.deep.equal([0x2000, 0x12, 64]);
  });

  for (const [what, entries, base] of [
    ['a size that is not a power of two', 48, RING_IOVA],
    ['a size of 1', 1, RING_IOVA],
    ['a size above 4096', 8192, RING_IOVA],
    ['a base that is not 32-byte aligned', 16, RING_IOVA + 8n],
  ] as const) {
    it(`halts with BAD_RING when enabled with ${what}`, () => {
      const { ring } = bench();
      enable(ring, entries, base);
      expect(registers(ring)).to.include({ status: DMA_RING_STATUS_HALTED, error: DMA_ERRORS.BAD_RING });
    });
  }

  it('runs descriptors only after the doorbell write returns, in order, and writes each completion record', () => {
    const b = bench();
    enable(b.ring, 8);
    b.memory.fill(0xa1, 0x1_0000, 0x1_1000);
    b.memory.fill(0xb2, 0x2_0000, 0x2_2000);
    put(b, 0, { src: 0x1_0000n, dst: 0x4_0000n, length: 0x1000 });
    put(b, 1, { src: 0x2_0000n, dst: 0x5_0000n, length: 0x2000 });
    b.ring.write(DMA_RING_TAIL, 2, ALL);
    expect(b.transfers, 'nothing runs inside the doorbell write').to.be.empty;
    expect(registers(b.ring)).to.include({ status: DMA_RING_STATUS_ACTIVE, head: 0, tail: 2 });
    expect(b.runTurns()).to.equal(1);
    expect(b.transfers.map((t) => t.src)).to.deep.equal([0x1_0000n, 0x2_0000n]);
    expect([completion(b, 0), completion(b, 1)]).to.deep.equal([
      { status: DMA_STATUS_DONE, error: 'NONE', bytes: 0x1000 },
      { status: DMA_STATUS_DONE, error: 'NONE', bytes: 0x2000 },
    ]);
    expect(b.memory.subarray(0x4_0000, 0x4_1000).every((x) => x === 0xa1)).to.equal(true);
    expect(b.memory.subarray(0x5_0000, 0x5_2000).every((x) => x === 0xb2)).to.equal(true);
    expect(registers(b.ring)).to.include({ status: DMA_RING_STATUS_ACTIVE, head: 2, tail: 2, error: 0 });
  });

  it('wraps from the last entry to the first', () => {
    const b = bench();
    enable(b.ring, 4);
    for (let round = 0; round < 3; round++) {
      const tail = (round * 3 + 3) % 4;
      for (let i = 0; i < 3; i++) put(b, (round * 3 + i) % 4, { src: 0x1_0000n, dst: 0x4_0000n + BigInt(i * 0x100), length: 0x100 });
      b.ring.write(DMA_RING_TAIL, tail, ALL);
      b.runTurns();
      expect(registers(b.ring)).to.include({ status: DMA_RING_STATUS_ACTIVE, head: tail });
    }
    expect(b.transfers).to.have.length(9);
  });

  it('yields after a turn has moved DMA_RING_BYTES_PER_TURN, counting each descriptor as at least a page', () => {
    const b = bench();
    enable(b.ring, 8);
    // Transfers at FAR move nothing in the fake, whatever their length: only the budget is under test.
    const half = DMA_RING_BYTES_PER_TURN / 2;
    for (let i = 0; i < 5; i++) put(b, i, { src: FAR, dst: FAR, length: half });
    b.ring.write(DMA_RING_TAIL, 5, ALL);
    expect(b.runTurns()).to.equal(3);
    expect(registers(b.ring).head).to.equal(5);
    const small = bench();
    enable(small.ring, 64);
    for (let i = 0; i < 63; i++) put(small, i, { src: 0x1_0000n, dst: 0x4_0000n, length: 16 });
    small.ring.write(DMA_RING_TAIL, 63, ALL);
    expect(small.runTurns(), '63 pages fit in one turn').to.equal(1);
  });

  it('halts on a failed transfer: ERROR in its completion record, HEAD on it, the fault registered, later doorbells ignored', () => {
    const b = bench();
    enable(b.ring, 8);
    put(b, 0, { src: 0x1_0000n, dst: 0x4_0000n, length: 0x100 });
    put(b, 1, { src: 0x1_0000n, dst: HOLE.from + 0x200n, length: 0x100 });
    put(b, 2, { src: 0x1_0000n, dst: 0x4_0000n, length: 0x100 });
    b.ring.write(DMA_RING_TAIL, 3, ALL);
    b.runTurns();
    expect(completion(b, 0).status).to.equal(DMA_STATUS_DONE);
    expect(completion(b, 1)).to.deep.equal({ status: DMA_STATUS_ERROR, error: 'IOMMU_FAULT_WRITE', bytes: 0 });
    expect(completion(b, 2).status, 'the descriptor after the failed one never ran').to.equal(0);
    expect(registers(b.ring)).to.deep.equal({ status: DMA_RING_STATUS_HALTED, head: 1, tail: 3, error: DMA_ERRORS.IOMMU_FAULT_WRITE, faultIova: HOLE.from + 0x200n });
    b.ring.write(DMA_RING_TAIL, 4, ALL);
    expect(b.runTurns()).to.equal(0);
    expect(registers(b.ring).tail).to.equal(3);
  });

  it('starts over at index 0 with no error when re-enabled after a halt', () => {
    const b = bench();
    enable(b.ring, 8);
    put(b, 0, { src: HOLE.from, dst: 0x4_0000n, length: 0x100 });
    b.ring.write(DMA_RING_TAIL, 1, ALL);
    b.runTurns();
    expect(registers(b.ring)).to.include({ status: DMA_RING_STATUS_HALTED, error: DMA_ERRORS.IOMMU_FAULT_READ });
    b.ring.write(DMA_RING_CTRL, 0, ALL);
    b.ring.write(DMA_RING_CTRL, DMA_RING_CTRL_ENABLE, ALL);
    expect(registers(b.ring)).to.deep.equal({ status: DMA_RING_STATUS_ACTIVE, head: 0, tail: 0, error: 0, faultIova: 0n });
    put(b, 0, { src: 0x1_0000n, dst: 0x4_0000n, length: 0x100 });
    b.ring.write(DMA_RING_TAIL, 1, ALL);
    b.runTurns();
    expect(completion(b, 0).status).to.equal(DMA_STATUS_DONE);
  });

  it('refuses a descriptor with reserved control bits (BAD_DESCRIPTOR) or a length of 0 (BAD_LENGTH) without transferring', () => {
    for (const [error, patch] of [
      ['BAD_DESCRIPTOR', (m: Buffer) => m.writeUInt32LE(1, slot(0) + DMA_DESC_CONTROL)],
      ['BAD_LENGTH', (m: Buffer) => m.writeUInt32LE(0, slot(0) + 0x10)],
    ] as const) {
      const b = bench();
      enable(b.ring, 2);
      put(b, 0, { src: 0x1_0000n, dst: 0x4_0000n, length: 0x100 });
      patch(b.memory);
      b.ring.write(DMA_RING_TAIL, 1, ALL);
      b.runTurns();
      expect(b.transfers, error).to.be.empty;
      expect(completion(b, 0)).to.deep.equal({ status: DMA_STATUS_ERROR, error, bytes: 0 });
      expect(registers(b.ring)).to.include({ status: DMA_RING_STATUS_HALTED, head: 0, error: DMA_ERRORS[error] });
    }
  });

  it('halts with BAD_DOORBELL on a TAIL at or past SIZE, running nothing', () => {
    const b = bench();
    enable(b.ring, 4);
    put(b, 0, { src: 0x1_0000n, dst: 0x4_0000n, length: 0x100 });
    b.ring.write(DMA_RING_TAIL, 4, ALL);
    expect(b.runTurns()).to.equal(0);
    expect(registers(b.ring)).to.include({ status: DMA_RING_STATUS_HALTED, head: 0, tail: 0, error: DMA_ERRORS.BAD_DOORBELL });
  });

  it('halts with IOMMU_FAULT_READ at the descriptor when the ring itself is not reachable', () => {
    const b = bench();
    enable(b.ring, 4, HOLE.from);
    b.ring.write(DMA_RING_TAIL, 1, ALL);
    b.runTurns();
    expect(b.transfers).to.be.empty;
    expect(registers(b.ring)).to.include({ status: DMA_RING_STATUS_HALTED, head: 0, error: DMA_ERRORS.IOMMU_FAULT_READ, faultIova: HOLE.from });
  });

  it('drops work already rung when reset or disabled before its turn', () => {
    for (const stop of [(ring: DmaRing) => ring.reset(), (ring: DmaRing) => ring.write(DMA_RING_CTRL, 0, ALL)]) {
      const b = bench();
      enable(b.ring, 4);
      put(b, 0, { src: 0x1_0000n, dst: 0x4_0000n, length: 0x100 });
      b.ring.write(DMA_RING_TAIL, 1, ALL);
      stop(b.ring);
      b.runTurns();
      expect(b.transfers).to.be.empty;
      expect(registers(b.ring)).to.include({ status: DMA_RING_STATUS_DISABLED, head: 0, tail: 0 });
    }
  });

  it('ignores a doorbell while disabled', () => {
    const b = bench();
    b.ring.write(DMA_RING_TAIL, 1, ALL);
    expect(b.runTurns()).to.equal(0);
    expect(registers(b.ring).tail).to.equal(0);
  });
});
