import { expect } from 'chai';
import { HeapBarMemory } from '../heap-bar-memory';
import type { DmaPort } from '../dma-engine';
import type { RegisterOps } from '../register-ops';
import { HeapNamespaceStore } from './namespace-heap';
import { NVME_ADMIN_IDENTIFY, encodeNvmeCommand } from './nvme-command';
import { decodeNvmeCompletion } from './nvme-completion';
import { NVME_DOORBELL_WINDOW, nvmeDevice } from './nvme-device';
import type { NvmeEvent } from './nvme-events';
import { NVME_CC_NVM_ENABLE, NVME_CSTS_RDY, NVME_REG_ACQ, NVME_REG_AQA, NVME_REG_ASQ, NVME_REG_CC, NVME_REG_CSTS } from './nvme-regs';
import { FakeBus } from './testing/nvme-test-host';

const ALL = 0xffffffff;
const ASQ = 0x1_0000;
const ACQ = 0x2_0000;
const IDENTIFY_DATA = 0x3_0000;

/** The fake bus as a device's DMA port; the controller never asks for a DMA-engine transfer. */
const port = (bus: FakeBus): DmaPort => ({
  transfer: () => expect.fail('an NVMe controller runs no DMA-engine transfer'),
  read: (iova, target) => bus.read(iova, target),
  write: (iova, source) => bus.write(iova, source),
  map: (iova, length, access) => bus.map(iova, length, access),
  completed: () => undefined,
  defer: (work) => bus.defer(work),
});

/** nvme1's model on heap memory and the fake bus, with its admin queues in place and enabled. */
function device(): { bus: FakeBus; regs: RegisterOps; window: HeapBarMemory; events: NvmeEvent[]; written: (offset: number, length: number, path: 'mmio' | 'p2p') => void } {
  const bus = new FakeBus();
  const events: NvmeEvent[] = [];
  const memories = new Map<number, HeapBarMemory>();
  const model = nvmeDevice(
    { kind: 'nvme', name: 'nvme1', bdf: '0000:08:00.0', cmbSize: 1 << 20, namespaces: [{ size: 1 << 20, blockSize: 512 }], noSoftReset: false },
    {
      allocate: (index, size) => {
        const memory = new HeapBarMemory(size);
        memories.set(index, memory);
        return { memory, memoryName: `bar${index}` };
      },
      dma: port(bus),
      namespaces: [new HeapNamespaceStore(2048, 512)],
      observer: (event) => events.push(event),
    },
  );
  const bar0 = model.bars[0]!;
  if (bar0.kind !== 'registers') throw new Error('BAR0 is registers');
  const regs = bar0.registers;
  regs.write(NVME_REG_AQA, 0x000f000f, ALL);
  regs.write(NVME_REG_ASQ, ASQ, ALL);
  regs.write(NVME_REG_ACQ, ACQ, ALL);
  regs.write(NVME_REG_CC, NVME_CC_NVM_ENABLE, ALL);
  return { bus, regs, window: memories.get(0)!, events, written: (offset, length, path) => model.memoryWritten!(0, offset, length, path) };
}

/** An Identify Controller in admin SQ slot `slot`. */
function identify(bus: FakeBus, slot: number): void {
  encodeNvmeCommand({ opcode: NVME_ADMIN_IDENTIFY, commandId: slot, prp1: BigInt(IDENTIFY_DATA), cdw10: 1 }, bus.memory, ASQ + 64 * slot);
}

describe('nvme device: BAR0 doorbells as a window a bus master can ring', () => {
  it('is ready after the enable handshake through its registers', () => {
    const { regs } = device();
    expect(regs.read(NVME_REG_CSTS) & NVME_CSTS_RDY).to.equal(NVME_CSTS_RDY);
  });

  it('runs the admin command a P2P write of the SQ 0 tail doorbell announced, as an MMIO write would', () => {
    const { bus, window, events, written } = device();
    identify(bus, 0);
    window.write(0, Buffer.from([1, 0, 0, 0]));
    written(NVME_DOORBELL_WINDOW.offset, 4, 'p2p');
    bus.runAll();
    expect(decodeNvmeCompletion(bus.memory, ACQ)).to.include({ commandId: 0, status: 0, phase: true });
    expect(events.filter((e) => e.kind === 'doorbell')).to.deep.equal([{ kind: 'doorbell', index: 0, value: 1, path: 'p2p', accepted: true }]);
  });

  it('rings only the doorbells whose value changed: a repeated or wider notice rings nothing again', () => {
    const { bus, window, events, written } = device();
    identify(bus, 0);
    window.write(0, Buffer.from([1, 0, 0, 0]));
    written(NVME_DOORBELL_WINDOW.offset, 4, 'mmio');
    written(NVME_DOORBELL_WINDOW.offset, 4, 'p2p');
    written(NVME_DOORBELL_WINDOW.offset, 16, 'p2p');
    bus.runAll();
    expect(events.filter((e) => e.kind === 'doorbell').map((e) => e.kind === 'doorbell' && e.path)).to.deep.equal(['mmio']);
  });

  it('ignores notices for BAR0 below the doorbells', () => {
    const { events, written } = device();
    written(0, 0x20, 'p2p');
    expect(events.filter((e) => e.kind === 'doorbell')).to.deep.equal([]);
  });
});
