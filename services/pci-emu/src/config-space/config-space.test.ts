import { expect } from 'chai';
import { ConfigLayout, ConfigSpace } from './config-space';
import { checkConfigAccess } from './config-access';
import { layoutEndpointConfig, EXP_CAP_OFFSET, PM_CAP_OFFSET } from './endpoint-config';
import { findCapability } from './find-capability';
import {
  PCI_BASE_ADDRESS_0,
  PCI_CAP_ID_EXP,
  PCI_CAP_ID_PM,
  PCI_COMMAND,
  PCI_EXP_DEVCAP,
  PCI_EXP_DEVCAP_FLR,
  PCI_ROM_ADDRESS,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
  PCI_STATUS_REC_MASTER_ABORT,
  PCI_STATUS_SIG_TARGET_ABORT,
  PCI_VENDOR_ID,
} from './pci-regs';

const ids = { vendorId: 0x1b36, deviceId: 0x0005, classCode: 0x00ff00, revision: 1, subsystemVendorId: 0, subsystemId: 0 };

/** BAR0 32-bit 4 KiB, BAR2 64-bit prefetchable 8 GiB, 64 KiB ROM. */
function endpoint(): ConfigSpace {
  return new ConfigSpace(
    layoutEndpointConfig({
      ids,
      multiFunction: false,
      bars: [
        { shape: { index: 0, size: 4096, is64Bit: false, prefetchable: false, space: 'memory' }, busAddress: 0x8000_0000 },
        { shape: { index: 2, size: 8 * 2 ** 30, is64Bit: true, prefetchable: true, space: 'memory' }, busAddress: 2 ** 40 },
      ],
      rom: { size: 0x10000, busAddress: 0x8001_0000 },
      noSoftReset: false,
      linkWidth: 4,
    }),
  );
}

describe('config space', () => {
  it('keeps read-only fields and applies writable bits only', () => {
    const cs = endpoint();
    cs.write(PCI_VENDOR_ID, 4, 0xdeadbeef);
    expect(cs.read(PCI_VENDOR_ID, 4)).to.equal(0x0005_1b36);
    cs.write(PCI_COMMAND, 2, 0xffff);
    // MEMORY | MASTER | PARITY | SERR | INTX_DISABLE; no I/O BAR, so PCI_COMMAND_IO stays 0.
    expect(cs.read(PCI_COMMAND, 2)).to.equal(0x0546);
  });

  it('clears RW1C status bits written 1 and keeps the rest', () => {
    const cs = endpoint();
    cs.setBits(PCI_STATUS, 2, PCI_STATUS_SIG_TARGET_ABORT | PCI_STATUS_REC_MASTER_ABORT);
    cs.write(PCI_STATUS, 2, PCI_STATUS_REC_MASTER_ABORT);
    expect(cs.read(PCI_STATUS, 2)).to.equal(PCI_STATUS_CAP_LIST | PCI_STATUS_SIG_TARGET_ABORT);
    cs.write(PCI_STATUS, 2, 0);
    expect(cs.read(PCI_STATUS, 2)).to.equal(PCI_STATUS_CAP_LIST | PCI_STATUS_SIG_TARGET_ABORT);
  });

  it('classifies writes that can only touch read-only bits', () => {
    const cs = endpoint();
    expect(cs.isReadOnlyWrite(PCI_VENDOR_ID, 2, 0x1234)).to.equal(true);
    expect(cs.isReadOnlyWrite(PCI_VENDOR_ID, 2, 0x1b36)).to.equal(false, 'same value changes nothing');
    expect(cs.isReadOnlyWrite(PCI_COMMAND, 2, 0x0002)).to.equal(false);
    expect(cs.isReadOnlyWrite(PCI_COMMAND, 2, 0x0001)).to.equal(true, 'PCI_COMMAND_IO is hardwired without an I/O BAR');
    expect(cs.isReadOnlyWrite(PCI_BASE_ADDRESS_0, 4, 0xffffffff)).to.equal(false, 'BAR sizing is a legitimate write');
    cs.setBits(PCI_STATUS, 2, PCI_STATUS_SIG_TARGET_ABORT);
    expect(cs.isReadOnlyWrite(PCI_STATUS, 2, PCI_STATUS_SIG_TARGET_ABORT)).to.equal(false, 'clears an error bit');
  });

  it('sizes a 32-bit BAR, a 64-bit BAR pair and the ROM BAR', () => {
    const cs = endpoint();
    expect(cs.read(PCI_BASE_ADDRESS_0, 4)).to.equal(0x8000_0000);
    cs.write(PCI_BASE_ADDRESS_0, 4, 0xffffffff);
    expect(cs.read(PCI_BASE_ADDRESS_0, 4)).to.equal(0xfffff000);

    const bar2 = PCI_BASE_ADDRESS_0 + 8;
    expect(cs.read(bar2, 4)).to.equal(0x0c, '64-bit prefetchable, address bits 31:0 zero');
    expect(cs.read(bar2 + 4, 4)).to.equal(0x100);
    cs.write(bar2, 4, 0xffffffff);
    cs.write(bar2 + 4, 4, 0xffffffff);
    expect(cs.read(bar2, 4)).to.equal(0x0c, 'an 8 GiB BAR has no writable low address bits');
    expect(cs.read(bar2 + 4, 4)).to.equal(0xfffffffe);
    const size = 2 ** 64 - (cs.read(bar2 + 4, 4) * 2 ** 32 + (cs.read(bar2, 4) & ~0xf));
    expect(size).to.equal(8 * 2 ** 30);

    expect(cs.read(PCI_ROM_ADDRESS, 4)).to.equal(0x8001_0000, 'ROM decode disabled');
    cs.write(PCI_ROM_ADDRESS, 4, 0xfffffffe);
    expect(cs.read(PCI_ROM_ADDRESS, 4)).to.equal(0xffff0000);
    cs.write(PCI_ROM_ADDRESS, 4, 0x8001_0001);
    expect(cs.read(PCI_ROM_ADDRESS, 4)).to.equal(0x8001_0001);

    cs.reset();
    expect(cs.read(PCI_BASE_ADDRESS_0, 4)).to.equal(0x8000_0000);
  });

  it('reads unimplemented BARs and the ROM of a ROM-less function as hardwired 0', () => {
    const cs = new ConfigSpace(
      layoutEndpointConfig({ ids, multiFunction: false, bars: [], rom: { size: 0, busAddress: 0 }, noSoftReset: false, linkWidth: 1 }),
    );
    cs.write(PCI_BASE_ADDRESS_0, 4, 0xffffffff);
    cs.write(PCI_ROM_ADDRESS, 4, 0xfffffffe);
    expect(cs.read(PCI_BASE_ADDRESS_0, 4)).to.equal(0);
    expect(cs.read(PCI_ROM_ADDRESS, 4)).to.equal(0);
  });

  it('walks the capability list to PM and PCI Express', () => {
    const cs = endpoint();
    expect(findCapability(cs, PCI_CAP_ID_PM)).to.equal(PM_CAP_OFFSET);
    expect(findCapability(cs, PCI_CAP_ID_EXP)).to.equal(EXP_CAP_OFFSET);
    expect(findCapability(cs, 0x05 /* MSI */)).to.equal(undefined);
    expect(cs.read(EXP_CAP_OFFSET + PCI_EXP_DEVCAP, 4) & PCI_EXP_DEVCAP_FLR).to.equal(PCI_EXP_DEVCAP_FLR);
    expect(findCapability(new ConfigSpace(new ConfigLayout()), PCI_CAP_ID_PM)).to.equal(undefined, 'no PCI_STATUS_CAP_LIST');
  });

  it('rejects bad widths, misaligned and out-of-range offsets', () => {
    expect(() => checkConfigAccess(0, 3)).to.throw('EINVAL');
    expect(() => checkConfigAccess(2, 4)).to.throw('EINVAL');
    expect(() => checkConfigAccess(0xffe, 4)).to.throw('EINVAL');
    expect(() => checkConfigAccess(-1, 1)).to.throw('EINVAL');
    expect(() => checkConfigAccess(0xffc, 4)).not.to.throw();
  });
});
