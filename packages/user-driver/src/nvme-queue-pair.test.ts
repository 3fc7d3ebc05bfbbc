import { expect } from 'chai';
import { decodeNvmeCommand, encodeNvmeCompletion, NVME_CMD_WRITE, NVME_CQE_SIZE, NVME_SC_SUCCESS, NVME_SQE_SIZE } from '@p2p/pci-emu';
import { type DmaBuffer, NvmeQueuePair } from './nvme-driver';

const ENTRIES = 8;

/**
 * A submission queue the CPU reaches through a copy: `memory` is what the
 * controller reads, `view` the CPU's copy; syncForDevice copies a range
 * after a delay the test picks per entry (the first synced slowest).
 */
function copiedQueue(delayOf: (slot: number) => number): DmaBuffer & { readonly memory: Buffer } {
  const view = Buffer.alloc(ENTRIES * NVME_SQE_SIZE);
  const memory = Buffer.alloc(ENTRIES * NVME_SQE_SIZE);
  return {
    address: 0x1000n,
    view,
    memory,
    syncForDevice: async (offset, length) => {
      await new Promise((resolve) => setTimeout(resolve, delayOf(offset / NVME_SQE_SIZE)));
      view.copy(memory, offset, offset, offset + length);
    },
  };
}

/**
 * A controller that, at each SQ tail doorbell, fetches the entries up to the
 * tail from the SQ's memory (as the device sees it) and completes them.
 */
function controller(sq: { readonly memory: Buffer }, cq: DmaBuffer) {
  const fetched: number[] = [];
  let head = 0;
  let cqTail = 0;
  let phase = true;
  const ring = async (doorbell: number, value: number): Promise<void> => {
    if (doorbell !== 2) return; // the CQ head doorbell
    while (head !== value) {
      const command = decodeNvmeCommand(sq.memory.subarray(head * NVME_SQE_SIZE, (head + 1) * NVME_SQE_SIZE));
      fetched.push(command.opcode);
      head = (head + 1) % ENTRIES;
      encodeNvmeCompletion({ result: 0, sqHead: head, sqId: 1, commandId: command.commandId, status: NVME_SC_SUCCESS, phase }, cq.view, cqTail * NVME_CQE_SIZE);
      cqTail = (cqTail + 1) % ENTRIES;
      if (cqTail === 0) phase = !phase;
    }
  };
  return { ring, fetched };
}

describe('NvmeQueuePair on a submission queue reached through a copy', () => {
  it('rings no tail before every entry below it is synced, however the syncs finish', async () => {
    // The first entry's sync is the slowest: rung as each sync ends, the second tail would fetch a stale first entry.
    const sq = copiedQueue((slot) => (slot === 0 ? 30 : 0));
    const cq: DmaBuffer = { address: 0x2000n, view: Buffer.alloc(ENTRIES * NVME_CQE_SIZE) };
    const device = controller(sq, cq);
    const queue = new NvmeQueuePair(1, ENTRIES, sq, cq, device.ring);
    const completions = await Promise.all([0, 1, 2].map(() => queue.submit({ opcode: NVME_CMD_WRITE, nsid: 1 })));
    expect(completions.map((c) => c.status)).to.deep.equal([NVME_SC_SUCCESS, NVME_SC_SUCCESS, NVME_SC_SUCCESS]);
    // A stale entry reads as opcode 0 (Flush is 0x00 too): tell them apart by the command ids fetched.
    expect(device.fetched).to.deep.equal([NVME_CMD_WRITE, NVME_CMD_WRITE, NVME_CMD_WRITE]);
  });
});
