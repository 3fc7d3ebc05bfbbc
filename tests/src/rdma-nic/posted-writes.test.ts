import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { expect } from 'chai';
import { pci, rdma, vfio } from '@p2p/proto';
import { asAdmin, eventually } from '@p2p/testing';
import { IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_REMOTE_READ, IBV_ACCESS_REMOTE_WRITE, IBV_SEND_SIGNALED } from '@p2p/verbs';
import { type RdmaHost, RdmaStack } from '../harness/rdma-hosts';
import { expectErrno, rpc } from '../harness/rpc';
import { TESTDEV, TESTDEV_WINDOW, writeTestDeviceTopology } from '../harness/test-device';

const WINDOW = TESTDEV_WINDOW;
const DOORBELL = WINDOW.offset + 0x10;
const ACCESS = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
const HOST_IOVA = 0x1_0000_0000;
const BAR_IOVA = 0x2_0000_0000;
const FEATURE_DMA_BUF = 11;
const VFIO_DEVICE_FEATURE_GET = 1 << 16;
const VFIO_REGION_INFO_FLAG_CAPS = 1 << 3;
const O_RDWR = 2;

/** pci-emu's BarWritten events of the test device, as they come. */
function watchBarWrites(client: pci.PciEmuServiceClient): Promise<{ seen: pci.BarWritten[]; stop(): void }> {
  const stream = client.watchEvents({ bdfs: [TESTDEV] });
  const seen: pci.BarWritten[] = [];
  stream.on('data', (event: pci.WatchEventsResponse) => {
    if (event.event?.$case === 'barWritten') seen.push(event.event.value);
  });
  stream.on('error', () => undefined);
  return new Promise((resolve) => stream.once('metadata', () => resolve({ seen, stop: () => stream.cancel() })));
}

/**
 * A doorbell rung by RDMA WRITE: every service its own process; nic0's host
 * writes into a dma-buf MR of the test device's BAR0 window at nic1's host,
 * and the device hears of it with no gRPC call, through the write notice
 * nic1 sends pci-emu once the bytes are in place.
 */
// Both post paths: queues in the process's memory (the TS client's default), and posting through calls.
for (const queues of ['user', 'calls'] as const) {
  describe(`posted writes into a register BAR window, over the whole stack, ${queues === 'user' ? 'user queues' : 'posting through calls'}`, function () {
    this.timeout(60_000);
    let topologyDir: string;
    let stack: RdmaStack;
    let emu: pci.PciEmuServiceClient;
    let writer: RdmaHost;
    let owner: RdmaHost;

    before(async () => {
      topologyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-topology-'));
      stack = await RdmaStack.start({ env: { PCI_EMU_TOPOLOGY: writeTestDeviceTopology(topologyDir) } });
      const admin = asAdmin(stack.shmDir);
      emu = new pci.PciEmuServiceClient(stack.pciEmu.address, admin.credentials, admin.options);
      writer = await stack.host(0, 'writer', queues);
      owner = await stack.host(1, 'doorbell-owner', queues);
    });

    after(async () => {
      emu?.close();
      await writer?.close();
      await owner?.close();
      await stack?.stop();
      fs.rmSync(topologyDir, { recursive: true, force: true });
    });

    it('pci-emu describes the window; vfio-pci offers it as the one sparse-mmap area of BAR0', async () => {
      const { function: fn } = await rpc<pci.GetFunctionResponse>((cb) => emu.getFunction({ bdf: TESTDEV }, cb));
      expect(fn!.bars[0]).to.deep.include({ kind: pci.BarKind.BAR_KIND_REGISTERS, window: { offset: BigInt(WINDOW.offset), length: BigInt(WINDOW.length) } });
      const client = new vfio.VfioPciServiceClient(stack.vfioPci.address, credentials.createInsecure(), { interceptors: [owner.session.interceptor] });
      const admin = asAdmin(stack.shmDir);
      const root = new vfio.VfioPciServiceClient(stack.vfioPci.address, admin.credentials, admin.options);
      try {
        await rpc((cb) => root.bind({ bdf: TESTDEV, variants: undefined }, cb));
        const { fd } = await rpc<vfio.OpenDeviceResponse>((cb) => client.openDevice({ pid: owner.session.pid, bdf: TESTDEV }, cb));
        const info = await rpc<vfio.GetRegionInfoResponse>((cb) => client.getRegionInfo({ pid: owner.session.pid, deviceFd: fd, index: 0 }, cb));
        expect(info.flags & VFIO_REGION_INFO_FLAG_CAPS).to.equal(VFIO_REGION_INFO_FLAG_CAPS);
        expect(info.sparseMmapAreas).to.deep.equal([{ offset: BigInt(WINDOW.offset), size: BigInt(WINDOW.length) }]);
        const exportOutside = rpc((cb) =>
          client.deviceFeature(
            {
              pid: owner.session.pid,
              deviceFd: fd,
              argsz: 0,
              flags: VFIO_DEVICE_FEATURE_GET | FEATURE_DMA_BUF,
              payload: { $case: 'dmaBuf', value: { regionIndex: 0, openFlags: O_RDWR, flags: 0, dmaRanges: [{ offset: 0n, length: BigInt(WINDOW.offset) }] } },
            },
            cb,
          ),
        );
        await expectErrno(exportOutside, 'EINVAL');
      } finally {
        client.close();
        root.close();
      }
    });

    it('an MmioWrite into the window: the device hears of it, path MMIO', async () => {
      const events = await watchBarWrites(emu);
      try {
        await rpc((cb) => emu.mmioWrite({ bdf: TESTDEV, bar: 0, offset: BigInt(DOORBELL), width: 4, value: 1n }, cb));
        await eventually('the BarWritten event', () => events.seen.length > 0);
        expect(events.seen).to.deep.equal([{ bar: 0, offset: BigInt(DOORBELL), length: 4n, path: pci.BarWritePath.BAR_WRITE_PATH_MMIO }]);
      } finally {
        events.stop();
      }
    });

    it('an RDMA WRITE from the remote NIC into a dma-buf MR of the window: path P2P at the doorbell, the bytes there for MmioRead', async () => {
      const doorbells = await owner.barBuffer(stack.vfioPci.address, WINDOW.offset, WINDOW.length, BAR_IOVA, ACCESS, { bdf: TESTDEV, bar: 0 });
      const source = await writer.hostBuffer(4096, HOST_IOVA, ACCESS);
      await source.cpu.write(0, Buffer.from([0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]));
      const a = await writer.rcQp();
      const b = await owner.rcQp();
      await writer.ctx.connectRc(a.qpNum, { gid: owner.gid, qpNum: b.qpNum }, { access: ACCESS });
      await owner.ctx.connectRc(b.qpNum, { gid: writer.gid, qpNum: a.qpNum }, { access: ACCESS });
      const events = await watchBarWrites(emu);
      try {
        await writer.ctx.postSend(a.qpNum, [
          rdma.SendWr.fromPartial({
            wrId: 1n,
            opcode: rdma.WrOpcode.WR_OPCODE_RDMA_WRITE,
            sgList: [{ addr: BigInt(HOST_IOVA), length: 8, lkey: source.mr.lkey }],
            sendFlags: IBV_SEND_SIGNALED,
            remoteAddr: BigInt(BAR_IOVA + (DOORBELL - WINDOW.offset)),
            rkey: doorbells.mr.rkey,
          }),
        ]);
        const completions: rdma.WorkCompletion[] = [];
        await eventually('the WRITE to complete', async () => {
          completions.push(...(await writer.ctx.pollCq(a.cq, 4)));
          return completions.length > 0;
        });
        expect(completions.map((wc) => wc.status)).to.deep.equal([rdma.WcStatus.WC_STATUS_SUCCESS]);
        await eventually('the BarWritten event', () => events.seen.length > 0);
        expect(events.seen).to.deep.equal([{ bar: 0, offset: BigInt(DOORBELL), length: 8n, path: pci.BarWritePath.BAR_WRITE_PATH_P2P }]);
        const { value } = await rpc<pci.MmioReadResponse>((cb) => emu.mmioRead({ bdf: TESTDEV, bar: 0, offset: BigInt(DOORBELL), width: 8 }, cb));
        expect(value).to.equal(0x8877665544332211n);
      } finally {
        events.stop();
      }
    });
  });
}

