import { expect } from 'chai';
import { useTempShmDir } from '@p2p/testing';
import { PCI_COMMAND, PCI_COMMAND_MEMORY } from '../config-space/pci-regs';
import { NVME_CMD_WRITE } from '../devices/nvme/nvme-command';
import type { NvmeEvent } from '../devices/nvme/nvme-events';
import { NVME_REG_CC } from '../devices/nvme/nvme-regs';
import { NVME_SC_SUCCESS } from '../devices/nvme/nvme-status';
import { NVME_IO_QID, NvmeBusHost } from '../testing/nvme-bus-host';
import { ACCEL0, NVME0, platform, type Platform } from '../testing/platform';
import type { PciEvent } from './pci-events';

describe('the bus carries NVMe controller events', () => {
  const dir = useTempShmDir();
  let p: Platform;
  let host: NvmeBusHost;

  beforeEach(async () => {
    p = platform(dir());
    host = new NvmeBusHost(p.bus, NVME0);
    host.enable();
    await host.createIoQueues();
    p.events();
  });

  afterEach(() => p.bus.close());

  const write = (): Promise<unknown> => host.run(NVME_IO_QID, { opcode: NVME_CMD_WRITE, nsid: 1, prp1: host.dataAddress(), cdw12: 0 });

  /** The NVMe events of `events`, as their function and what the controller reported. */
  const nvme = (events: readonly PciEvent[]): Array<{ bdf: string; nvme: NvmeEvent }> =>
    events.flatMap((event) => (event.type === 'nvme' ? [{ bdf: event.bdf, nvme: event.nvme }] : []));

  /** Decode off and on again on the accelerator: two events that are not NVMe's. */
  const toggleAccelDecode = (): void => {
    p.bus.configWrite(ACCEL0, PCI_COMMAND, 2, 0);
    p.bus.configWrite(ACCEL0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
  };

  it("to a listener that asks: a Write's tail doorbell, its completion, then the host's head doorbell", async () => {
    const seen: PciEvent[] = [];
    p.bus.onEvent((event) => seen.push(event), { nvme: true });
    await write();
    expect(nvme(seen)).to.deep.equal([
      { bdf: NVME0, nvme: { kind: 'doorbell', index: 2, value: 1, path: 'mmio', accepted: true } },
      { bdf: NVME0, nvme: { kind: 'command', qid: NVME_IO_QID, cid: 3, opcode: NVME_CMD_WRITE, status: NVME_SC_SUCCESS, bytes: 512 } },
      { bdf: NVME0, nvme: { kind: 'doorbell', index: 3, value: 1, path: 'mmio', accepted: true } },
    ]);
  });

  it('to a listener that asks: queues deleted and the reset when CC.EN is cleared', () => {
    const seen: PciEvent[] = [];
    p.bus.onEvent((event) => seen.push(event), { nvme: true });
    p.bus.mmioWrite(NVME0, 0, NVME_REG_CC, 4, 0);
    expect(nvme(seen).map((e) => e.nvme)).to.deep.equal([
      { kind: 'queue-deleted', queue: 'sq', qid: 0 },
      { kind: 'queue-deleted', queue: 'sq', qid: 1 },
      { kind: 'queue-deleted', queue: 'cq', qid: 0 },
      { kind: 'queue-deleted', queue: 'cq', qid: 1 },
      { kind: 'state', state: 'reset', reason: 'CC.EN cleared' },
    ]);
  });

  it('not to a listener that does not ask', async () => {
    p.bus.onEvent(() => undefined, { nvme: true });
    await write();
    expect(p.events()).to.deep.equal([]);
  });

  it('not at all while no listener asks: the sequence runs on without a gap', async () => {
    const sequences: number[] = [];
    p.bus.onEvent((event) => sequences.push(event.sequence));
    toggleAccelDecode();
    await write();
    toggleAccelDecode();
    expect(sequences.map((s) => s - sequences[0]!)).to.deep.equal([0, 1, 2, 3]);
  });

  it('not at all once the last listener that asked has unsubscribed', async () => {
    const unsubscribe = p.bus.onEvent(() => undefined, { nvme: true });
    unsubscribe();
    unsubscribe();
    const sequences: number[] = [];
    p.bus.onEvent((event) => sequences.push(event.sequence));
    toggleAccelDecode();
    await write();
    toggleAccelDecode();
    expect(sequences.map((s) => s - sequences[0]!)).to.deep.equal([0, 1, 2, 3]);
  });

  it('to an NVMe observer, as they happen and with their function, without a stream listener', async () => {
    const seen: string[] = [];
    const stop = p.bus.onNvmeEvent((bdf, event) => seen.push(`${bdf} ${event.kind}`));
    await write();
    stop();
    await write();
    expect(seen).to.deep.equal([`${NVME0} doorbell`, `${NVME0} command`, `${NVME0} doorbell`]);
  });
});
