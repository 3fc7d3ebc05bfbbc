import { expect } from 'chai';
import { errno } from '@p2p/errno';
import { DEFAULT_FUNCTIONS, expectErrno, harness, NVME, PID } from './testing/harness';
import { PM_CAP } from './testing/fake-pci';
import { PCI_COMMAND } from './uapi/pci-regs';
import { VFIO_PCI_CONFIG_REGION_INDEX as CONFIG } from './uapi/vfio';

describe('VfioPci: binding, device files, ownership', () => {
  describe('bind and unbind', () => {
    it('binds by any spelling of the address, once (EBUSY after)', async () => {
      const h = harness();
      await h.vfio.bind('3:0.0');
      expect(h.vfio.devices().map((d) => d.bdf)).to.deep.equal([NVME]);
      await expectErrno(h.vfio.bind(NVME), 'EBUSY');
    });

    it('EINVAL for a malformed address or a non-normal header; ENODEV for no function or an unplugged one', async () => {
      const functions = [...DEFAULT_FUNCTIONS, { bdf: '0000:07:00.0', bars: [], headerType: 1 }];
      const h = harness({ functions });
      await expectErrno(h.vfio.bind('nonsense'), 'EINVAL');
      await expectErrno(h.vfio.bind('0000:07:00.0'), 'EINVAL', 'header type 1');
      await expectErrno(h.vfio.bind('0000:99:00.0'), 'ENODEV');
      h.pci.unplug(NVME);
      await expectErrno(h.vfio.bind(NVME), 'ENODEV', 'unplugged');
      expect(h.vfio.devices()).to.deep.equal([]);
    });

    it('unbind: ENODEV when not bound, EBUSY while open, then gone', async () => {
      const h = harness();
      await expectErrno(h.vfio.unbind(NVME), 'ENODEV');
      const fd = await h.open();
      await expectErrno(h.vfio.unbind(NVME), 'EBUSY');
      await h.registry.closeFd(PID, fd);
      await h.vfio.unbind(NVME);
      await expectErrno(h.vfio.openDevice(PID, NVME), 'ENODEV', 'not bound');
      await h.vfio.bind(NVME);
    });

    it('unplug of a bound, closed function unbinds it; of an unbound one does nothing', async () => {
      const h = harness();
      await h.vfio.unplugged(NVME);
      await h.vfio.bind(NVME);
      await h.vfio.unplugged(NVME);
      expect(h.vfio.devices()).to.deep.equal([]);
    });
  });

  describe('open and close', () => {
    it('one owner at a time: EBUSY for another process, more fds for the same one', async () => {
      const h = harness();
      const fd = await h.open();
      await expectErrno(h.vfio.openDevice(PID + 1, NVME), 'EBUSY', `pid ${PID}`);
      const again = await h.vfio.openDevice(PID, NVME);
      expect(again).to.not.equal(fd);
      expect(h.vfio.devices()[0]).to.deep.include({ openCount: 2, ownerPid: PID });
      await h.registry.closeFd(PID, fd);
      await expectErrno(h.vfio.openDevice(PID + 1, NVME), 'EBUSY');
      await h.registry.closeFd(PID, again);
      expect(h.vfio.devices()[0]).to.deep.include({ openCount: 0, ownerPid: undefined });
      expect(await h.vfio.openDevice(PID + 1, NVME)).to.equal(3);
    });

    it('the first open enables the device: D0, bus mastering off, decode on for its BAR kinds', async () => {
      const h = harness();
      await h.vfio.bind(NVME);
      h.pci.poke(NVME, PM_CAP + 4, 2, 3);
      await h.vfio.openDevice(PID, NVME);
      // D3hot -> D0 reset the NoSoftRst- function (COMMAND back to MEM); then I/O joins it.
      expect(h.log).to.deep.equal([`set-power ${NVME} D0`, `config-write ${NVME} 0x4/2 0x3`]);

      const master = harness();
      await master.vfio.bind(NVME);
      master.pci.poke(NVME, PCI_COMMAND, 2, 0x4);
      await master.vfio.openDevice(PID, NVME);
      expect(master.log).to.deep.equal([`config-write ${NVME} 0x4/2 0x3`]);
      expect(master.pci.command(NVME)).to.equal(0x3);
    });

    it('the last close turns bus mastering off', async () => {
      const h = harness();
      const fd = await h.open();
      await h.vfio.regionWrite(PID, fd, CONFIG, BigInt(PCI_COMMAND), new Uint8Array([0x07, 0]));
      await h.registry.closeFd(PID, fd);
      expect(h.pci.command(NVME)).to.equal(0x3);
    });

    it('the last close resets the function (vfio_pci_core_disable()) and restores its decode', async () => {
      const h = harness();
      const fd = await h.open();
      await h.exportBuf(fd);
      await h.vfio.regionWrite(PID, fd, CONFIG, BigInt(PCI_COMMAND), new Uint8Array([0x07, 0]));
      h.pci.log.length = 0;
      await h.registry.closeFd(PID, fd);
      expect(h.pci.log.filter((line) => /^(flr|reset) /.test(line)), 'resets at the last close').to.deep.equal([`flr ${NVME}`]);
      expect(h.pci.command(NVME)).to.equal(0x3);
    });

    it('an open whose file cannot be made is undone', async () => {
      const h = harness();
      await h.vfio.bind(NVME);
      h.registry.failNextCreate = errno('EMFILE', 'fd table full');
      await expectErrno(h.vfio.openDevice(PID, NVME), 'EMFILE');
      expect(h.vfio.devices()[0]).to.deep.include({ openCount: 0, ownerPid: undefined });
      await h.vfio.openDevice(PID + 1, NVME);
    });
  });

  describe('device fds', () => {
    it('EBADF for an fd the process does not hold; ENOTTY for another owner file or a dma-buf', async () => {
      const h = harness();
      const fd = await h.open();
      const buf = await h.exportBuf(fd);
      await expectErrno(h.vfio.deviceInfo(PID, 42), 'EBADF');
      await expectErrno(h.vfio.deviceInfo(PID + 1, fd), 'EBADF');
      await expectErrno(h.vfio.deviceInfo(PID, h.registry.foreignFile(PID)), 'ENOTTY');
      await expectErrno(h.vfio.reset(PID, buf), 'ENOTTY');
    });

    it('a device fd sent to another process works there (the fd is the capability)', async () => {
      const h = harness();
      const fd = await h.open();
      const theirs = h.registry.sendFd(PID, fd, PID + 1);
      expect(await h.vfio.deviceInfo(PID + 1, theirs)).to.deep.equal({ flags: 3, numRegions: 9, numIrqs: 5 });
      await h.registry.closeFd(PID, fd);
      expect(h.vfio.devices()[0]!.openCount).to.equal(1);
      await h.registry.closeFd(PID + 1, theirs);
      expect(h.vfio.devices()[0]!.openCount).to.equal(0);
    });

    it('release of a handle vfio-pci does not know is ENOENT', async () => {
      const h = harness();
      await expectErrno(h.vfio.release('vfio-dmabuf:nothing#1'), 'ENOENT');
    });
  });
});
