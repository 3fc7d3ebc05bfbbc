import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { EXP_CAP_OFFSET, PM_CAP_OFFSET } from '../config-space/endpoint-config';
import {
  PCI_BASE_ADDRESS_0,
  PCI_COMMAND,
  PCI_COMMAND_IO,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_EXP_DEVCTL,
  PCI_EXP_DEVCTL_BCR_FLR,
  PCI_EXP_DEVSTA,
  PCI_EXP_DEVSTA_URD,
  PCI_INTERRUPT_LINE,
  PCI_PM_CTRL,
  PCI_ROM_ADDRESS,
  PCI_ROM_ADDRESS_ENABLE,
  PCI_VENDOR_ID,
} from '../config-space/pci-regs';
import { HeapBarMemory } from '../devices/heap-bar-memory';
import { NVME_REG_AQA, NVME_REG_CC, NVME_REG_CSTS, NVME_REG_VS, NVME_VS_1_4 } from '../devices/nvme/nvme-regs';
import { DEFAULT_TOPOLOGY } from '../topology/default-topology';
import { topologyFromObject } from '../topology/load-topology';
import type { TopologyInput } from '../topology/topology-schema';
import { PciBus } from './pci-bus';
import type { PciEvent } from './pci-events';

const NVME0 = '0000:03:00.0';
const NIC0 = '0000:04:00.0';
const ACCEL0 = '0000:07:00.0';
const GiB = 2 ** 30;
const PMCSR = PM_CAP_OFFSET + PCI_PM_CTRL;
const DEVCTL = EXP_CAP_OFFSET + PCI_EXP_DEVCTL;
const DEVSTA = EXP_CAP_OFFSET + PCI_EXP_DEVSTA;
const MEM_MASTER = PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;

interface Harness {
  bus: PciBus;
  memories: Map<string, HeapBarMemory>;
  /** Events as "type:detail" strings, drained on each call. */
  events(): string[];
}

/** A bus in its power-on state (PCI_COMMAND 0), unless `firmwareEnablesMemory`. */
function harness(input: TopologyInput = DEFAULT_TOPOLOGY, firmwareEnablesMemory = false): Harness {
  const memories = new Map<string, HeapBarMemory>();
  const bus = new PciBus(
    topologyFromObject(input),
    (name, size) => {
      const memory = new HeapBarMemory(size);
      memories.set(name, memory);
      return memory;
    },
    { firmwareEnablesMemory },
  );
  const seen: PciEvent[] = [];
  bus.onEvent((event) => seen.push(event));
  const describe = (event: PciEvent): string => {
    switch (event.type) {
      case 'decode-changed':
        return `decode:${event.memoryEnabled ? 'M' : '-'}${event.busMaster ? 'B' : '-'}:${event.reason}`;
      case 'reset':
        return `reset:${event.kind}`;
      case 'power-changed':
        return `power:${event.from}->${event.to}`;
      default:
        return event.type;
    }
  };
  return { bus, memories, events: () => seen.splice(0).map(describe) };
}

/** Everything observable of a present function: info and all 4 KiB of config space. */
function stateOf(bus: PciBus, bdf: string): unknown {
  const config = Array.from({ length: 1024 }, (_, i) => bus.configRead(bdf, 4 * i, 4));
  return { info: bus.getFunction(bdf), config };
}

function errnoOf(operation: () => unknown): string {
  try {
    operation();
  } catch (error) {
    expect(error).to.be.instanceOf(ErrnoError);
    return (error as ErrnoError).errno;
  }
  return 'no error';
}

describe('PciBus', () => {
  it('lists functions with BARs at naturally aligned bus addresses from the host bridge windows', () => {
    const { bus } = harness();
    const accel = bus.getFunction('07:00.0');
    expect(accel).to.include({ bdf: ACCEL0, kind: 'accel', vendorId: 0x1da3, classCode: 0x120000, powerState: 'D0', present: true });
    const [regs, memory] = accel.bars;
    expect(regs).to.include({ index: 0, kind: 'registers', is64Bit: false });
    expect(memory).to.include({ index: 2, kind: 'memory', size: 16 * GiB, is64Bit: true, prefetchable: true });
    expect(memory!.memoryName).to.equal('0000-07-00.0-bar2');
    expect(memory!.busAddress).to.be.at.least(2 ** 32);
    for (const fn of bus.listFunctions()) {
      for (const bar of fn.bars) {
        expect(bar.busAddress % bar.size, `${fn.bdf} BAR ${bar.index}`).to.equal(0);
        expect(bar.busAddress >= 2 ** 32).to.equal(bar.is64Bit && bar.prefetchable);
      }
    }
    expect(bus.getFunction(NIC0).bars.map((bar) => bar.kind)).to.deep.equal(['registers', 'rom']);
    expect(bus.configRead(NVME0, PCI_BASE_ADDRESS_0, 4)).to.equal((bus.getFunction(NVME0).bars[0]!.busAddress | 0x4) >>> 0);
  });

  describe('decode', () => {
    it('starts with memory decode on, as firmware leaves a device with assigned BARs, and reports no boot events', () => {
      const { bus, events } = harness(DEFAULT_TOPOLOGY, true);
      expect(bus.getFunction(NVME0)).to.include({ memoryEnabled: true, busMaster: false });
      expect(bus.mmioRead(NVME0, 0, NVME_REG_VS, 4)).to.deep.equal({ value: NVME_VS_1_4, decoded: true });
      expect(events()).to.deep.equal([]);
    });

    it('reads all ones and drops writes while PCI_COMMAND_MEMORY is clear, logging UR', () => {
      const { bus, memories, events } = harness();
      expect(bus.mmioRead(NVME0, 0, NVME_REG_VS, 4)).to.deep.equal({ value: 0xffffffff, decoded: false });
      expect(bus.mmioRead(NVME0, 2, 0, 8)).to.deep.equal({ value: 0xffff_ffff_ffff_ffffn, decoded: false });
      expect(bus.mmioWrite(NVME0, 2, 8, 4, 0x1234)).to.deep.equal({ decoded: false });
      expect(bus.bulkRead(NVME0, 2, 0, 3)).to.deep.equal({ data: Buffer.from([0xff, 0xff, 0xff]), decoded: false });
      expect(memories.get('0000-03-00.0-bar2')!.residentBytes).to.equal(0, 'the dropped write stored nothing');
      expect(bus.configRead(NVME0, DEVSTA, 2) & PCI_EXP_DEVSTA_URD).to.equal(PCI_EXP_DEVSTA_URD);

      bus.configWrite(NVME0, PCI_COMMAND, 2, MEM_MASTER);
      expect(events()).to.deep.equal(['decode:MB:COMMAND_WRITE']);
      expect(bus.getFunction(NVME0)).to.include({ memoryEnabled: true, busMaster: true, command: MEM_MASTER });
      expect(bus.mmioRead(NVME0, 0, NVME_REG_VS, 4)).to.deep.equal({ value: NVME_VS_1_4, decoded: true });
      expect(bus.mmioWrite(NVME0, 2, 8, 8, 0x0102030405060708n)).to.deep.equal({ decoded: true });
      expect(bus.mmioRead(NVME0, 2, 8, 8).value).to.equal(0x0102030405060708n);
      expect(bus.mmioRead(NVME0, 2, 9, 1).value).to.equal(0x07);

      bus.configWrite(NVME0, PCI_COMMAND, 2, MEM_MASTER);
      bus.configWrite(NVME0, DEVSTA, 2, PCI_EXP_DEVSTA_URD);
      expect(events()).to.deep.equal([], 'rewriting the same command changes nothing');
      expect(bus.configRead(NVME0, DEVSTA, 2)).to.equal(0, 'URD is RW1C');
    });

    it('gates I/O BARs on PCI_COMMAND_IO and the ROM on PCI_ROM_ADDRESS_ENABLE', () => {
      const { bus } = harness({
        hostBridges: [
          {
            name: 'hb0',
            rootPorts: [
              { bdf: '00:01.0', functions: [{ kind: 'generic', name: 'g', bdf: '01:00.0', romSize: '4KiB', bars: [{ index: 1, size: 16, space: 'io' }] }] },
            ],
          },
        ],
      });
      const g = '01:00.0';
      bus.configWrite(g, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
      expect(bus.mmioWrite(g, 1, 4, 2, 0xbeef).decoded).to.equal(false);
      bus.configWrite(g, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_IO);
      expect(bus.mmioWrite(g, 1, 4, 2, 0xbeef).decoded).to.equal(true);
      expect(bus.mmioRead(g, 1, 4, 4).value).to.equal(0xbeef);
      expect(errnoOf(() => bus.mmioRead(g, 1, 0, 8))).to.equal('EINVAL', 'port I/O has no 8-byte access');

      expect(bus.mmioRead(g, 6, 0, 2).decoded).to.equal(false);
      bus.configWrite(g, PCI_ROM_ADDRESS, 4, (bus.configRead(g, PCI_ROM_ADDRESS, 4) | PCI_ROM_ADDRESS_ENABLE) >>> 0);
      expect(bus.mmioRead(g, 6, 0, 2)).to.deep.equal({ value: 0xaa55, decoded: true });
      expect(bus.bulkRead(g, 6, 0x1c, 4).data.toString('latin1')).to.equal('PCIR');
    });
  });

  describe('power', () => {
    it('D0 -> D3hot gates decode; D3hot -> D0 resets the function (No_Soft_Reset clear)', () => {
      const { bus, events } = harness();
      bus.configWrite(NVME0, PCI_COMMAND, 2, MEM_MASTER);
      bus.mmioWrite(NVME0, 0, NVME_REG_CC, 4, 1);
      bus.mmioWrite(NVME0, 2, 0, 4, 0xcafe);
      events();

      expect(bus.setPowerState(NVME0, 'D3hot')).to.equal('D0');
      expect(events()).to.deep.equal(['power:D0->D3hot', 'decode:--:POWER']);
      expect(bus.getFunction(NVME0)).to.include({ powerState: 'D3hot', command: MEM_MASTER, memoryEnabled: false });
      expect(bus.mmioRead(NVME0, 2, 0, 4)).to.deep.equal({ value: 0xffffffff, decoded: false });
      expect(bus.configRead(NVME0, PCI_VENDOR_ID, 2)).to.equal(0x144d, 'config space answers in D3hot');

      expect(bus.setPowerState(NVME0, 'D3hot')).to.equal('D3hot');
      expect(events()).to.deep.equal([]);

      bus.configWrite(NVME0, PMCSR, 2, 0);
      expect(events()).to.deep.equal(['power:D3hot->D0', 'reset:POWER_ON_RESET']);
      expect(bus.getFunction(NVME0)).to.include({ powerState: 'D0', command: 0 });
      bus.configWrite(NVME0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
      expect(bus.mmioRead(NVME0, 0, NVME_REG_CSTS, 4).value).to.equal(0, 'controller was reset');
      expect(bus.mmioRead(NVME0, 2, 0, 4).value).to.equal(0xcafe, 'BAR memory survives');
    });

    it('ignores writes of the unsupported D1 and D2 states', () => {
      const { bus, events } = harness();
      for (const state of [1, 2]) {
        bus.configWrite(NVME0, PMCSR, 2, state);
        expect(bus.configRead(NVME0, PMCSR, 2) & 3).to.equal(0);
      }
      bus.setPowerState(NVME0, 'D3hot');
      events();
      bus.configWrite(NVME0, PMCSR, 1, 2);
      expect(bus.getFunction(NVME0).powerState).to.equal('D3hot');
      expect(events()).to.deep.equal([]);
    });

    it('keeps state across D3hot -> D0 when No_Soft_Reset is set', () => {
      const input = structuredClone(DEFAULT_TOPOLOGY);
      input.hostBridges[0]!.rootPorts[0]!.switch!.downstreamPorts[0]!.functions![0]!.noSoftReset = true;
      const { bus, events } = harness(input);
      bus.configWrite(NVME0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
      bus.setPowerState(NVME0, 'D3hot');
      events();
      bus.setPowerState(NVME0, 'D0');
      expect(events()).to.deep.equal(['power:D3hot->D0', 'decode:M-:POWER']);
    });
  });

  describe('resets', () => {
    function dirty(bus: PciBus): void {
      bus.configWrite(NVME0, PCI_COMMAND, 2, MEM_MASTER);
      bus.configWrite(NVME0, PCI_INTERRUPT_LINE, 1, 11);
      bus.configWrite(NVME0, PCI_BASE_ADDRESS_0, 4, 0xffffffff);
      bus.mmioWrite(NVME0, 0, NVME_REG_AQA, 4, 0x001f001f);
      bus.mmioWrite(NVME0, 0, NVME_REG_CC, 4, 1);
      bus.bulkWrite(NVME0, 2, 100, Buffer.from('kept'));
    }

    for (const [how, reset] of [
      ['PCI_EXP_DEVCTL_BCR_FLR', (bus: PciBus) => bus.configWrite(NVME0, DEVCTL, 2, bus.configRead(NVME0, DEVCTL, 2) | PCI_EXP_DEVCTL_BCR_FLR)],
      ['the FLR op', (bus: PciBus) => bus.functionLevelReset(NVME0)],
      ['the reset op', (bus: PciBus) => bus.resetFunction(NVME0)],
    ] as const) {
      it(`restores config space and registers but keeps BAR memory, via ${how}`, () => {
        const { bus, events } = harness();
        const pristine = stateOf(bus, NVME0);
        dirty(bus);
        expect(bus.configRead(NVME0, PCI_BASE_ADDRESS_0, 4)).to.equal(0xffffc004, 'BAR0 sized: 16 KiB, 64-bit');
        events();
        reset(bus);
        const kind = how === 'the reset op' ? 'RESET' : 'FLR';
        expect(events()).to.deep.equal([`reset:${kind}`, 'decode:--:RESET']);
        expect(stateOf(bus, NVME0)).to.deep.equal(pristine);
        expect(bus.configRead(NVME0, DEVCTL, 2) & PCI_EXP_DEVCTL_BCR_FLR).to.equal(0);
        bus.configWrite(NVME0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
        expect(bus.mmioRead(NVME0, 0, NVME_REG_AQA, 4).value).to.equal(0);
        expect(bus.mmioRead(NVME0, 0, NVME_REG_CSTS, 4).value).to.equal(0);
        expect(bus.bulkRead(NVME0, 2, 100, 4).data.toString()).to.equal('kept');
      });
    }

    it('brings a function in D3hot back to D0', () => {
      const { bus, events } = harness();
      bus.setPowerState(NVME0, 'D3hot');
      events();
      bus.functionLevelReset(NVME0);
      expect(events()).to.deep.equal(['power:D3hot->D0', 'reset:FLR']);
    });
  });

  it('backs a 64 GiB accelerator BAR sparsely', () => {
    const input = structuredClone(DEFAULT_TOPOLOGY);
    input.hostBridges[0]!.rootPorts[1]!.switch!.downstreamPorts[0]!.functions![0] = {
      kind: 'accel',
      name: 'accel0',
      bdf: '07:00.0',
      memorySize: '64GiB',
    };
    const { bus, memories } = harness(input);
    bus.configWrite(ACCEL0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    const offset = 60 * GiB + 12345;
    bus.bulkWrite(ACCEL0, 2, offset, Buffer.from('far away'));
    bus.mmioWrite(ACCEL0, 2, 64 * GiB - 8, 8, 0xffff_0000_ffff_0000n);
    expect(bus.bulkRead(ACCEL0, 2, offset, 8).data.toString()).to.equal('far away');
    expect(bus.mmioRead(ACCEL0, 2, 64 * GiB - 8, 8).value).to.equal(0xffff_0000_ffff_0000n);
    expect(memories.get('0000-07-00.0-bar2')!.residentBytes).to.be.at.most(2 * 65536);
    expect(errnoOf(() => bus.mmioRead(ACCEL0, 2, 64 * GiB, 1))).to.equal('EINVAL');
  });

  it('restricts bulk access of register BARs to whole dwords', () => {
    const { bus } = harness();
    bus.configWrite(NIC0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    expect(bus.bulkWrite(NIC0, 0, 8, Buffer.from([1, 2, 3, 4, 5, 6, 7, 8])).decoded).to.equal(true);
    expect(bus.mmioRead(NIC0, 0, 8, 8).value).to.equal(0x0807060504030201n);
    expect(bus.mmioRead(NIC0, 0, 10, 2).value).to.equal(0x0403);
    expect(errnoOf(() => bus.bulkRead(NIC0, 0, 2, 4))).to.equal('EINVAL');
    expect(errnoOf(() => bus.bulkWrite(NIC0, 0, 0, Buffer.alloc(6)))).to.equal('EINVAL');
  });

  it('fails every access of an unplugged function with ENODEV until re-plug', () => {
    const { bus, events } = harness();
    bus.configWrite(NIC0, PCI_COMMAND, 2, MEM_MASTER);
    bus.setPowerState(NIC0, 'D3hot');
    events();
    bus.unplug(NIC0);
    bus.unplug(NIC0);
    expect(events()).to.deep.equal(['unplugged']);
    expect(bus.getFunction(NIC0)).to.include({ present: false, memoryEnabled: false });
    for (const access of [
      () => bus.configRead(NIC0, 0, 4),
      () => bus.configWrite(NIC0, PCI_COMMAND, 2, 0),
      () => bus.mmioRead(NIC0, 0, 0, 4),
      () => bus.mmioWrite(NIC0, 0, 0, 4, 0),
      () => bus.bulkRead(NIC0, 0, 0, 4),
      () => bus.bulkWrite(NIC0, 0, 0, Buffer.alloc(4)),
      () => bus.functionLevelReset(NIC0),
      () => bus.resetFunction(NIC0),
      () => bus.setPowerState(NIC0, 'D0'),
      () => bus.p2pDistance(NVME0, NIC0),
    ]) {
      expect(errnoOf(access)).to.equal('ENODEV');
    }
    bus.replug(NIC0);
    bus.replug(NIC0);
    expect(events()).to.deep.equal(['replugged', 'power:D3hot->D0', 'reset:POWER_ON_RESET']);
    expect(bus.getFunction(NIC0)).to.include({ present: true, powerState: 'D0', command: 0 });
    expect(bus.p2pDistance(NVME0, NIC0).mapType).to.equal('BUS_ADDR');
  });

  it('reports decode loss on unplug after the unplugged event', () => {
    const { bus, events } = harness();
    bus.configWrite(NIC0, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
    events();
    bus.unplug(NIC0);
    expect(events()).to.deep.equal(['unplugged', 'decode:--:HOTPLUG']);
  });

  it('numbers events in one order, also for events caused from inside a listener', () => {
    const { bus } = harness();
    const order: string[] = [];
    bus.onEvent((event) => {
      order.push(`${event.sequence}:${event.type}`);
      if (event.type === 'power-changed' && event.to === 'D3hot') {
        bus.setPowerState(NVME0, 'D0');
      }
    });
    bus.configWrite(NVME0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    bus.setPowerState(NVME0, 'D3hot');
    expect(order).to.deep.equal(['1:decode-changed', '2:power-changed', '3:decode-changed', '4:power-changed', '5:reset']);
  });

  describe('bad input', () => {
    it('rejects a strict write to a read-only field with EPERM; hardware mode masks it', () => {
      const { bus } = harness();
      expect(errnoOf(() => bus.configWrite(NVME0, PCI_VENDOR_ID, 2, 0x1234))).to.equal('EPERM');
      bus.configWrite(NVME0, PCI_VENDOR_ID, 2, 0x1234, 'hardware');
      expect(bus.configRead(NVME0, PCI_VENDOR_ID, 2)).to.equal(0x144d);
      bus.configWrite(NVME0, PCI_COMMAND, 4, 0xffff_0002);
      expect(bus.configRead(NVME0, PCI_COMMAND, 2)).to.equal(PCI_COMMAND_MEMORY, 'mixed write applies the writable bits');
    });

    it('leaves every function unchanged and emits nothing', () => {
      const { bus, events } = harness();
      bus.configWrite(NVME0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
      bus.bulkWrite(NVME0, 2, 0, Buffer.from('data'));
      events();
      const before = bus.listFunctions().map((fn) => stateOf(bus, fn.bdf));
      const cases: [string, () => unknown][] = [
        ['ENODEV', () => bus.configRead('0000:0a:00.0', 0, 4)],
        ['ENODEV', () => bus.resetFunction('0000:02:00.0')],
        ['ENODEV', () => bus.p2pDistance(NVME0, '0001:03:00.0')],
        ['EINVAL', () => bus.unplug('not-a-bdf')],
        ['EINVAL', () => bus.configRead(NVME0, 0, 3)],
        ['EINVAL', () => bus.configRead(NVME0, 0x1000, 1)],
        ['EINVAL', () => bus.configWrite(NVME0, PCI_COMMAND + 1, 2, 0)],
        ['EINVAL', () => bus.configWrite(NVME0, PCI_COMMAND, 2, 0x10000)],
        ['EINVAL', () => bus.configWrite(NVME0, PCI_COMMAND, 2, -1)],
        ['EPERM', () => bus.configWrite(NVME0, PM_CAP_OFFSET, 4, 0xffffffff)],
        ['EINVAL', () => bus.mmioRead(NVME0, 1, 0, 4)],
        ['EINVAL', () => bus.mmioRead(NVME0, 4, 0, 4)],
        ['EINVAL', () => bus.mmioRead(NVME0, 6, 0, 4)],
        ['EINVAL', () => bus.mmioRead(NVME0, 7, 0, 4)],
        ['EINVAL', () => bus.mmioRead(NVME0, 0, 2, 4)],
        ['EINVAL', () => bus.mmioRead(NVME0, 0, 0, 3)],
        ['EINVAL', () => bus.mmioRead(NVME0, 0, 0x4000, 4)],
        ['EINVAL', () => bus.mmioWrite(NVME0, 2, 0, 2, 0x10000)],
        ['EINVAL', () => bus.mmioWrite(NVME0, 2, 0, 8, -1n)],
        ['EINVAL', () => bus.mmioWrite(NVME0, 2, 0.5, 1, 0)],
        ['EINVAL', () => bus.bulkWrite(NVME0, 2, 16 * 2 ** 20 - 2, Buffer.alloc(4))],
        ['E2BIG', () => bus.bulkRead(ACCEL0, 2, 0, 2 * GiB)],
        ['EINVAL', () => bus.setPowerState(NVME0, 'D1' as 'D0')],
      ];
      for (const [expected, operation] of cases) {
        expect(errnoOf(operation), operation.toString()).to.equal(expected);
      }
      expect(bus.listFunctions().map((fn) => stateOf(bus, fn.bdf))).to.deep.equal(before);
      expect(bus.bulkRead(NVME0, 2, 0, 4).data.toString()).to.equal('data');
      expect(events()).to.deep.equal([]);
    });

    it('releases the BAR memory it created when construction fails', () => {
      const created: HeapBarMemory[] = [];
      const tooSmall = structuredClone(DEFAULT_TOPOLOGY);
      tooSmall.hostBridges[0]!.mmio64 = { base: 2 ** 40, size: GiB };
      expect(() =>
        new PciBus(topologyFromObject(tooSmall), (_name, size) => {
          const memory = new HeapBarMemory(size);
          created.push(memory);
          return memory;
        }),
      ).to.throw(ErrnoError, /mmio64 window .* has no room for 0000:07:00.0 BAR 2/);
      // Every function's BAR memory is created before any address is assigned: nvme0's doorbell window and CMB,
      // accel0's memory, nvme1's window and CMB.
      expect(created).to.have.length(5);
      expect(created.every((memory) => errnoOf(() => memory.read(0, 1)) === 'EBADF')).to.equal(true);
    });
  });
});
