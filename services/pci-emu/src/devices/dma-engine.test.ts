import { expect } from 'chai';
import {
  DMA_DOORBELL,
  DMA_DOORBELL_START,
  DMA_DST_IOVA,
  DMA_ERROR,
  DMA_ERRORS,
  DMA_FAULT_IOVA,
  DMA_LEN,
  DMA_MAX_LENGTH,
  DMA_SRC_IOVA,
  DMA_STATUS,
  DMA_STATUS_DONE,
  DMA_STATUS_ERROR,
  DMA_STATUS_IDLE,
  DmaEngine,
  type DmaOutcome,
  type DmaPort,
  type DmaRequest,
} from './dma-engine';

const ALL = 0xffffffff;

/** An engine on a port that answers `outcome` and notes every call. */
function engine(outcome: DmaOutcome = { error: 'NONE', bytes: 0, faultIova: 0n }): { regs: DmaEngine; port: DmaPort; transfers: DmaRequest[]; completed: Array<[DmaRequest, DmaOutcome]> } {
  const transfers: DmaRequest[] = [];
  const completed: Array<[DmaRequest, DmaOutcome]> = [];
  const port: DmaPort = {
    transfer: (request) => {
      transfers.push(request);
      return { ...outcome, bytes: outcome.error === 'NONE' ? request.length : outcome.bytes };
    },
    read: () => ({ error: 'NONE', bytes: 0, faultIova: 0n }),
    write: () => ({ error: 'NONE', bytes: 0, faultIova: 0n }),
    map: () => [],
    completed: (request, result) => completed.push([request, result]),
    defer: () => expect.fail('the register-rung engine defers nothing'),
  };
  return { regs: new DmaEngine(port), port, transfers, completed };
}

function program(regs: DmaEngine, src: bigint, dst: bigint, length: number): void {
  regs.write(DMA_SRC_IOVA, Number(src & 0xffffffffn), ALL);
  regs.write(DMA_SRC_IOVA + 4, Number(src >> 32n), ALL);
  regs.write(DMA_DST_IOVA, Number(dst & 0xffffffffn), ALL);
  regs.write(DMA_DST_IOVA + 4, Number(dst >> 32n), ALL);
  regs.write(DMA_LEN, length, ALL);
}

describe('accelerator DMA engine registers', () => {
  it('reads back what was programmed, IDLE before the first doorbell', () => {
    const { regs } = engine();
    program(regs, 0x1234_5678_9000n, 0xabcd_0000_1000n, 4096);
    expect([DMA_SRC_IOVA, DMA_SRC_IOVA + 4, DMA_DST_IOVA, DMA_DST_IOVA + 4, DMA_LEN, DMA_STATUS].map((r) => regs.read(r))).to.deep.equal([
      0x5678_9000, 0x1234, 0x0000_1000, 0xabcd, 4096, DMA_STATUS_IDLE,
    ]);
  });

  it('starts a transfer of the 64-bit IOVAs on a doorbell write and completes within it: DONE, ERROR 0', () => {
    const { regs, transfers, completed } = engine();
    program(regs, 0x1_0000_2000n, 0x3_0000_4000n, 8192);
    regs.write(DMA_DOORBELL, DMA_DOORBELL_START, ALL);
    expect(transfers).to.deep.equal([{ src: 0x1_0000_2000n, dst: 0x3_0000_4000n, length: 8192 }]);
    expect([regs.read(DMA_STATUS), regs.read(DMA_ERROR)]).to.deep.equal([DMA_STATUS_DONE, 0]);
    expect(completed).to.deep.equal([[transfers[0], { error: 'NONE', bytes: 8192, faultIova: 0n }]]);
  });

  it('merges byte-lane writes into the IOVA and length registers', () => {
    const { regs } = engine();
    regs.write(DMA_LEN, 0x11223344, ALL);
    regs.write(DMA_LEN, 0x0000aa00, 0x0000ff00);
    expect(regs.read(DMA_LEN)).to.equal(0x1122aa44);
  });

  it('ignores a doorbell write without the start bit, and the doorbell reads 0', () => {
    const { regs, transfers } = engine();
    program(regs, 0n, 0x1000n, 16);
    regs.write(DMA_DOORBELL, 0x2, ALL);
    regs.write(DMA_DOORBELL, DMA_DOORBELL_START, 0xff00);
    expect(transfers).to.deep.equal([]);
    expect(regs.read(DMA_DOORBELL)).to.equal(0);
    expect(regs.read(DMA_STATUS)).to.equal(DMA_STATUS_IDLE);
  });

  it('refuses a length of 0 with BAD_LENGTH, without a transfer, and reports it', () => {
    const { regs, transfers, completed } = engine();
    program(regs, 0n, 0x1000n, 0);
    regs.write(DMA_DOORBELL, DMA_DOORBELL_START, ALL);
    expect([regs.read(DMA_STATUS), regs.read(DMA_ERROR)]).to.deep.equal([DMA_STATUS_ERROR, DMA_ERRORS.BAD_LENGTH]);
    expect(transfers).to.deep.equal([]);
    expect(completed.map(([, outcome]) => outcome.error)).to.deep.equal(['BAD_LENGTH']);
  });

  it(`refuses a length above ${DMA_MAX_LENGTH} with BAD_LENGTH, and takes exactly that`, () => {
    const { regs, transfers } = engine();
    program(regs, 0n, 0x1000n, DMA_MAX_LENGTH + 1);
    regs.write(DMA_DOORBELL, DMA_DOORBELL_START, ALL);
    expect(regs.read(DMA_ERROR)).to.equal(DMA_ERRORS.BAD_LENGTH);
    regs.write(DMA_LEN, DMA_MAX_LENGTH, ALL);
    regs.write(DMA_DOORBELL, DMA_DOORBELL_START, ALL);
    expect([regs.read(DMA_STATUS), transfers.length]).to.deep.equal([DMA_STATUS_DONE, 1]);
  });

  it('reports a failed transfer as ERROR with its code and the faulting IOVA in FAULT_IOVA', () => {
    const { regs } = engine({ error: 'IOMMU_FAULT_WRITE', bytes: 0, faultIova: 0xfe_dcba_9000n });
    program(regs, 0n, 0xfe_dcba_8000n, 8192);
    regs.write(DMA_DOORBELL, DMA_DOORBELL_START, ALL);
    expect([regs.read(DMA_STATUS), regs.read(DMA_ERROR), regs.read(DMA_FAULT_IOVA), regs.read(DMA_FAULT_IOVA + 4)]).to.deep.equal([
      DMA_STATUS_ERROR,
      DMA_ERRORS.IOMMU_FAULT_WRITE,
      0xdcba_9000,
      0xfe,
    ]);
  });

  it('clears ERROR and FAULT_IOVA when the next transfer succeeds', () => {
    let outcome: DmaOutcome = { error: 'MASTER_ABORT', bytes: 0, faultIova: 0x5000n };
    const regs = new DmaEngine({ ...engine().port, transfer: () => outcome });
    program(regs, 0x1000n, 0x5000n, 16);
    regs.write(DMA_DOORBELL, DMA_DOORBELL_START, ALL);
    outcome = { error: 'NONE', bytes: 16, faultIova: 0n };
    regs.write(DMA_DOORBELL, DMA_DOORBELL_START, ALL);
    expect([regs.read(DMA_STATUS), regs.read(DMA_ERROR), regs.read(DMA_FAULT_IOVA)]).to.deep.equal([DMA_STATUS_DONE, 0, 0]);
  });

  it('keeps STATUS, ERROR and FAULT_IOVA read-only', () => {
    const { regs } = engine({ error: 'NO_BUS_MASTER', bytes: 0, faultIova: 0n });
    program(regs, 0n, 0x1000n, 16);
    regs.write(DMA_DOORBELL, DMA_DOORBELL_START, ALL);
    regs.write(DMA_STATUS, DMA_STATUS_DONE, ALL);
    regs.write(DMA_ERROR, 0, ALL);
    regs.write(DMA_FAULT_IOVA, 0x1234, ALL);
    expect([regs.read(DMA_STATUS), regs.read(DMA_ERROR), regs.read(DMA_FAULT_IOVA)]).to.deep.equal([DMA_STATUS_ERROR, DMA_ERRORS.NO_BUS_MASTER, 0]);
  });

  it('goes back to IDLE with every register 0 on reset', () => {
    const { regs } = engine({ error: 'IOMMU_FAULT_READ', bytes: 0, faultIova: 0x7000n });
    program(regs, 0x7000n, 0x9000n, 64);
    regs.write(DMA_DOORBELL, DMA_DOORBELL_START, ALL);
    regs.reset();
    expect([DMA_SRC_IOVA, DMA_DST_IOVA, DMA_LEN, DMA_STATUS, DMA_ERROR, DMA_FAULT_IOVA].map((r) => regs.read(r))).to.deep.equal([0, 0, 0, 0, 0, 0]);
  });
});
