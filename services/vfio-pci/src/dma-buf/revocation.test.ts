import { expect } from 'chai';
import { ErrnoError, errno } from '@p2p/errno';
import { EXP_CAP, PM_CAP } from '../testing/fake-pci';
import { DEFAULT_FUNCTIONS, expectErrno, harness, NVME, PID, settle, type Harness } from '../testing/harness';
import { PCI_COMMAND } from '../uapi/pci-regs';
import { VFIO_PCI_CONFIG_REGION_INDEX as CONFIG } from '../uapi/vfio';

const le16 = (value: number): Uint8Array => new Uint8Array([value & 0xff, value >>> 8]);

async function withBuffer(variants = {}, functions = DEFAULT_FUNCTIONS): Promise<Harness & { fd: number; buf: number; id: bigint }> {
  const h = harness({ functions });
  const fd = await h.open(NVME, PID, variants);
  const buf = await h.exportBuf(fd);
  return { ...h, fd, buf, id: h.registry.bufferAt(PID, buf).bufferId };
}

function writeCommand(h: Harness & { fd: number }, value: number): Promise<number> {
  return h.vfio.regionWrite(PID, h.fd, CONFIG, BigInt(PCI_COMMAND), le16(value));
}

function writePmcsr(h: Harness & { fd: number }, state: number): Promise<number> {
  return h.vfio.regionWrite(PID, h.fd, CONFIG, BigInt(PM_CAP + 4), le16(state));
}

describe('revocation: vfio_pci_dma_buf_move() and its triggers', () => {
  describe('PCI_COMMAND', () => {
    it('clearing MEM revokes and waits for the importers before the write reaches the hardware', async () => {
      const h = await withBuffer();
      const mark = h.log.length;
      const release = h.registry.holdMoves();
      let done = false;
      const write = writeCommand(h, 0).then(() => (done = true));
      await settle();
      expect(h.since(mark)).to.deep.equal([`move ${h.id} revoke`]);
      expect(done).to.equal(false);
      release();
      await write;
      expect(h.since(mark)).to.deep.equal([`move ${h.id} revoke`, `moved ${h.id}`, `config-write ${NVME} 0x4/2 0x0`]);
      expect(h.vfio.buffers()[0]!.revoked).to.equal(true);
      expect(h.registry.bufferAt(PID, h.buf).revoked).to.equal(true);
    });

    it('setting MEM again un-revokes after the write', async () => {
      const h = await withBuffer();
      await writeCommand(h, 0);
      const mark = h.log.length;
      await writeCommand(h, 0x2);
      expect(h.since(mark)).to.deep.equal([`config-write ${NVME} 0x4/2 0x2`, `move ${h.id} unrevoke`, `moved ${h.id}`]);
      expect(h.vfio.buffers()[0]!.revoked).to.equal(false);
    });

    it('a write that changes nothing notifies no one', async () => {
      const h = await withBuffer();
      const mark = h.log.length;
      await writeCommand(h, 0x2);
      await writeCommand(h, 0x6);
      expect(h.since(mark).filter((line) => line.startsWith('move '))).to.deep.equal([]);
      await writeCommand(h, 0);
      await writeCommand(h, 0x4);
      expect(h.since(mark).filter((line) => line.startsWith('move '))).to.deep.equal([`move ${h.id} revoke`]);
      expect(h.registry.notified.get(h.id)).to.equal(1);
    });

    it('moves each buffer whose bit differs, once, in export order', async () => {
      const h = await withBuffer();
      await writeCommand(h, 0);
      const late = await h.exportBuf(h.fd);
      const lateId = h.registry.bufferAt(PID, late).bufferId;
      expect(h.registry.bufferAt(PID, late).request.revoked).to.equal(true);
      const mark = h.log.length;
      await writeCommand(h, 0x2);
      expect(h.since(mark).filter((line) => line.startsWith('move '))).to.deep.equal([`move ${h.id} unrevoke`, `move ${lateId} unrevoke`]);
    });

    it('a byte write at PCI_COMMAND is intercepted too; a write at 0x5 is not', async () => {
      const h = await withBuffer();
      await h.vfio.regionWrite(PID, h.fd, CONFIG, 5n, new Uint8Array([0x04]));
      expect(h.vfio.buffers()[0]!.revoked).to.equal(false);
      await h.vfio.regionWrite(PID, h.fd, CONFIG, 4n, new Uint8Array([0x00]));
      expect(h.vfio.buffers()[0]!.revoked).to.equal(true);
    });

    it('a move the registry refuses fails the write, which never reaches the hardware', async () => {
      const h = await withBuffer();
      h.registry.failNextMove = errno('EIO', 'registry broken');
      const mark = h.log.length;
      await expectErrno(writeCommand(h, 0), 'EIO');
      expect(h.since(mark).some((line) => line.startsWith('config-write'))).to.equal(false);
      expect(h.vfio.buffers()[0]!.revoked).to.equal(false);
      expect(h.pci.command(NVME) & 0x2).to.equal(0x2);
    });
  });

  describe('PMCSR', () => {
    it('D3hot revokes before the power change; D0 (with MEM set) un-revokes after it, state restored', async () => {
      const h = await withBuffer();
      const mark = h.log.length;
      await writePmcsr(h, 3);
      const d3 = h.since(mark);
      expect(d3.indexOf(`moved ${h.id}`)).to.be.lessThan(d3.indexOf(`set-power ${NVME} D3hot`));
      expect(h.vfio.buffers()[0]!.revoked).to.equal(true);

      const back = h.log.length;
      await writePmcsr(h, 0);
      const d0 = h.since(back);
      // NoSoftRst-: D3hot -> D0 reset the function; vfio restored pm_save (MEM), then un-revoked.
      expect(d0.slice(-4)).to.deep.equal([`set-power ${NVME} D0`, `config-write ${NVME} 0x4/2 0x3`, `move ${h.id} unrevoke`, `moved ${h.id}`]);
      expect(h.pci.command(NVME) & 0x2).to.equal(0x2);
    });

    it('back to D0 with MEM clear stays revoked', async () => {
      const h = await withBuffer();
      await writeCommand(h, 0);
      await writePmcsr(h, 3);
      const mark = h.log.length;
      await writePmcsr(h, 0);
      expect(h.since(mark).filter((line) => line.startsWith('move '))).to.deep.equal([]);
      expect(h.vfio.buffers()[0]!.revoked).to.equal(true);
    });

    it('a buffer exported in D3hot starts revoked', async () => {
      const h = await withBuffer();
      await writePmcsr(h, 3);
      const late = await h.exportBuf(h.fd);
      expect(h.registry.bufferAt(PID, late).request.revoked).to.equal(true);
    });

    it('the PowerState bits never reach the hardware as written; D1 and D2 change nothing', async () => {
      const h = await withBuffer();
      const mark = h.log.length;
      await writePmcsr(h, 1);
      await writePmcsr(h, 2);
      expect(h.since(mark)).to.deep.equal([`config-write ${NVME} 0x44/2 0x0`, `config-write ${NVME} 0x44/2 0x0`]);
      expect(h.vfio.buffers()[0]!.revoked).to.equal(false);
    });
  });

  describe('FLR through PCIe DevCtl', () => {
    it('revokes, resets (saving and restoring state), and un-revokes with memory enabled', async () => {
      const h = await withBuffer();
      const mark = h.log.length;
      await h.vfio.regionWrite(PID, h.fd, CONFIG, BigInt(EXP_CAP + 8), le16(0x8000 | 0x10));
      expect(h.since(mark)).to.deep.equal([
        `config-write ${NVME} 0x68/2 0x10`,
        `move ${h.id} revoke`,
        `moved ${h.id}`,
        `config-write ${NVME} 0x4/2 0x400`,
        `flr ${NVME}`,
        `config-write ${NVME} 0x4/2 0x3`,
        `move ${h.id} unrevoke`,
        `moved ${h.id}`,
      ]);
    });

    it('stays revoked when memory was off', async () => {
      const h = await withBuffer();
      await writeCommand(h, 0);
      const mark = h.log.length;
      await h.vfio.regionWrite(PID, h.fd, CONFIG, BigInt(EXP_CAP + 9), new Uint8Array([0x80]));
      expect(h.since(mark).filter((line) => line.startsWith('move ') || line.startsWith('flr'))).to.deep.equal([`flr ${NVME}`]);
      expect(h.vfio.buffers()[0]!.revoked).to.equal(true);
    });

    it('does nothing but the write when DevCap has no FLR', async () => {
      const functions = DEFAULT_FUNCTIONS.map((spec) => (spec.bdf === NVME ? { ...spec, flr: false } : spec));
      const h = await withBuffer({}, functions);
      const mark = h.log.length;
      await h.vfio.regionWrite(PID, h.fd, CONFIG, BigInt(EXP_CAP + 8), le16(0x8000));
      expect(h.since(mark)).to.deep.equal([`config-write ${NVME} 0x68/2 0x0`]);
    });
  });

  describe('VFIO_DEVICE_RESET', () => {
    it('D0, revoke, reset, un-revoke: two notifications, and MEM as it was', async () => {
      const h = await withBuffer();
      const mark = h.log.length;
      const release = h.registry.holdMoves();
      const reset = h.vfio.reset(PID, h.fd);
      await settle();
      expect(h.since(mark)).to.deep.equal([`move ${h.id} revoke`]);
      release();
      await reset;
      expect(h.since(mark)).to.deep.equal([
        `move ${h.id} revoke`,
        `moved ${h.id}`,
        `config-write ${NVME} 0x4/2 0x400`,
        `flr ${NVME}`,
        `config-write ${NVME} 0x4/2 0x3`,
        `move ${h.id} unrevoke`,
        `moved ${h.id}`,
      ]);
      expect(h.registry.notified.get(h.id)).to.equal(2);
      expect(h.pci.command(NVME) & 0x2).to.equal(0x2);
    });

    it('from D3hot: back to D0 (pm_save restored) before the revoke, which then has nothing to do', async () => {
      const h = await withBuffer();
      await writePmcsr(h, 3);
      const mark = h.log.length;
      await h.vfio.reset(PID, h.fd);
      const lines = h.since(mark);
      expect(lines.slice(0, 2)).to.deep.equal([`set-power ${NVME} D0`, `config-write ${NVME} 0x4/2 0x3`]);
      expect(lines.filter((line) => line.startsWith('move '))).to.deep.equal([`move ${h.id} unrevoke`]);
    });

    it('uses the conventional reset without FLR, and stays revoked with MEM off', async () => {
      const functions = DEFAULT_FUNCTIONS.map((spec) => (spec.bdf === NVME ? { ...spec, flr: false } : spec));
      const h = await withBuffer({}, functions);
      await writeCommand(h, 0);
      const mark = h.log.length;
      await h.vfio.reset(PID, h.fd);
      expect(h.since(mark)).to.include(`reset ${NVME}`);
      expect(h.since(mark).filter((line) => line.startsWith('move '))).to.deep.equal([]);
    });
  });

  describe('close and unplug: permanent', () => {
    it('the last close revokes every buffer for good; the fd lives on, attach and map fail with ENODEV', async () => {
      const h = await withBuffer();
      await writeCommand(h, 0);
      const mark = h.log.length;
      await h.registry.closeFd(PID, h.fd);
      expect(h.since(mark).filter((line) => line.startsWith('move '))).to.deep.equal([`move ${h.id} revoke permanent`]);
      const [listing] = h.vfio.buffers();
      expect(listing).to.deep.include({ revoked: true, forgotten: true });
      expect(await h.registry.resolveFd(PID, h.buf)).to.deep.include({ owner: 'vfio-pci' });
      await expectErrno(async () => h.vfio.attach(listing!.handle, true), 'ENODEV');
      await expectErrno(h.vfio.map(listing!.handle), 'ENODEV');
      expect(h.vfio.devices().find((d) => d.bdf === NVME)).to.deep.include({ openCount: 0, dmaBufs: 0 });
    });

    it('the buffer forgets the device: a new owner toggling decode never reaches it', async () => {
      const h = await withBuffer();
      await h.registry.closeFd(PID, h.fd);
      const fd = await h.vfio.openDevice(PID + 1, NVME);
      const mark = h.log.length;
      await h.vfio.regionWrite(PID + 1, fd, CONFIG, BigInt(PCI_COMMAND), le16(0));
      await h.vfio.regionWrite(PID + 1, fd, CONFIG, BigInt(PCI_COMMAND), le16(2));
      expect(h.since(mark).filter((line) => line.startsWith('move '))).to.deep.equal([]);
      expect(h.vfio.buffers()[0]!.revoked).to.equal(true);
    });

    it('only the last close of the device does it', async () => {
      const h = await withBuffer();
      const second = await h.vfio.openDevice(PID, NVME);
      await h.registry.closeFd(PID, h.fd);
      expect(h.vfio.buffers()[0]!.forgotten).to.equal(false);
      await h.registry.closeFd(PID, second);
      expect(h.vfio.buffers()[0]!.forgotten).to.equal(true);
    });

    it('surprise unplug revokes for good at once; the device leaves at its last close', async () => {
      const h = await withBuffer();
      h.pci.unplug(NVME);
      const mark = h.log.length;
      await h.vfio.unplugged(NVME);
      expect(h.since(mark)).to.deep.equal([`move ${h.id} revoke permanent`, `moved ${h.id}`]);
      expect(h.vfio.buffers()[0]).to.deep.include({ revoked: true, forgotten: true });
      expect(h.vfio.devices().find((d) => d.bdf === NVME)).to.deep.include({ registered: false, openCount: 1 });
      await expectErrno(h.vfio.openDevice(PID, NVME), 'ENODEV', 'going away');
      await h.registry.closeFd(PID, h.fd);
      expect(h.vfio.devices().find((d) => d.bdf === NVME)).to.equal(undefined);
      await expectErrno(h.vfio.openDevice(PID, NVME), 'ENODEV', 'not bound');
    });
  });

  describe('release', () => {
    it('closing the dma-buf fd takes the buffer off the device: later triggers skip it', async () => {
      const h = await withBuffer();
      await h.registry.closeFd(PID, h.buf);
      expect(h.vfio.buffers()).to.deep.equal([]);
      const mark = h.log.length;
      await writeCommand(h, 0);
      await h.registry.closeFd(PID, h.fd);
      expect(h.since(mark).filter((line) => line.startsWith('move '))).to.deep.equal([]);
    });

    it("moves every buffer of the device at once: each is under way before any is answered, and one released meanwhile does not fail the write", async () => {
      const h = await withBuffer();
      const other = await h.exportBuf(h.fd);
      const otherId = h.registry.bufferAt(PID, other).bufferId;
      const release = h.registry.holdMoves();
      const mark = h.log.length;
      const write = writeCommand(h, 0);
      await settle();
      expect(h.since(mark).filter((line) => line.startsWith('move'))).to.deep.equal([`move ${h.id} revoke`, `move ${otherId} revoke`]);
      await h.registry.closeFd(PID, other);
      release();
      await write;
      expect(h.pci.command(NVME) & 0x2).to.equal(0);
      expect(h.vfio.buffers().find((b) => b.bufferId === h.id)!.revoked).to.equal(true);
    });

    it('a buffer whose fd is closed before its export returned never joins the device list', async () => {
      const h = await withBuffer();
      const release = h.registry.holdExports();
      const exporting = h.exportBuf(h.fd);
      await settle();
      await h.registry.closeFd(PID, h.buf + 1);
      release();
      expect(await exporting).to.equal(h.buf + 1);
      expect(h.vfio.devices().find((d) => d.bdf === NVME)!.dmaBufs).to.equal(1);
      expect(h.vfio.buffers()).to.have.length(1);
    });

    it('a buffer whose file the registry no longer knows (ENOENT) is skipped, not an error', async () => {
      const h = await withBuffer();
      h.registry.failNextMove = new ErrnoError('ENOENT', 'gone');
      await writeCommand(h, 0);
      expect(h.pci.command(NVME) & 0x2).to.equal(0);
    });
  });
});
