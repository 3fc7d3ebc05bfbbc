import * as fs from 'node:fs';
import { credentials } from '@grpc/grpc-js';
import type Table from 'cli-table3';
import { type DmaBufImporter, RegistrySession } from '@p2p/dmabuf-client';
import { dmabuf, vfio } from '@p2p/proto';
import { asAdmin, platformSecretsOf, type ServiceProcess, startServiceProcess, tempShmDir } from '@p2p/testing';
import { rpc } from '../harness/rpc';
import { bareUnary, startSink } from './grpc-sink';
import { percentile, timeInTurn } from './stats';

const ACCEL0 = '0000:07:00.0';
const NIC1 = '0000:09:00.0';
const BAR2 = 2;
const CONFIG_REGION = 7;
const PCI_COMMAND = 0x04;
const PCI_COMMAND_MEMORY = 0x2;
const FEATURE_DMA_BUF = 11;
const GET = 1 << 16;
const O_RDWR = 2;
const RANGE = 64 * 1024;

/**
 * vfio-pci figures, with pci-emu, the registry and vfio-pci each its own
 * process and every session in this one: the DMA_BUF export of one 64 KiB
 * BAR range and the close that releases it, and the time a PCI_COMMAND write
 * clearing MEM takes to return with N dynamic importers mapped (it returns
 * only once each acked its move_notify), all beside one vfio-pci unary RPC
 * measured in the same run; that RPC beside a bare grpc-js unary call to
 * another process.
 */
export async function benchVfioPci(rows: Table.Table): Promise<void> {
  const shmDir = tempShmDir();
  const env = { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn' };
  const services: ServiceProcess[] = [];
  const sessions: RegistrySession[] = [];
  let client: vfio.VfioPciServiceClient | undefined;
  const sink = await startSink();
  const bare = bareUnary(sink.address);
  try {
    const pciEmu = await startServiceProcess('pci-emu', 'PCI_EMU', { env });
    services.unshift(pciEmu);
    const registry = await startServiceProcess('dmabuf-registry', 'DMABUF_REGISTRY', { env: { ...env, PCI_EMU_ADDRESS: pciEmu.address } });
    services.unshift(registry);
    const vfioPci = await startServiceProcess('vfio-pci', 'VFIO_PCI', { env: { ...env, PCI_EMU_ADDRESS: pciEmu.address, DMABUF_REGISTRY_ADDRESS: registry.address } });
    services.unshift(vfioPci);
    const spdk = await RegistrySession.open(registry.address, { name: 'spdk', shmDir });
    sessions.push(spdk);
    // The process proves itself on every call, as users' calls do.
    const vfioClient = new vfio.VfioPciServiceClient(vfioPci.address, credentials.createInsecure(), { interceptors: [spdk.interceptor] });
    client = vfioClient;
    const admin = asAdmin(shmDir);
    const root = new vfio.VfioPciServiceClient(vfioPci.address, admin.credentials, admin.options);
    await rpc((cb) => root.bind({ bdf: ACCEL0, variants: undefined }, cb));
    root.close();
    const deviceFd = (await rpc<vfio.OpenDeviceResponse>((cb) => vfioClient.openDevice({ pid: spdk.pid, bdf: ACCEL0 }, cb))).fd;

    // The baselines, timed in turn so both see the same load: a bare grpc-js unary call with an
    // empty handler in another process, and one unary round trip to vfio-pci (an ioctl on the device fd).
    const deviceInfo = (): Promise<vfio.GetDeviceInfoResponse> => rpc((cb) => vfioClient.getDeviceInfo({ pid: spdk.pid, deviceFd }, cb));
    const [bares = [], rpcs = []] = await timeInTurn(1000, 200, bare.call, deviceInfo);
    const rpcP50 = percentile(rpcs, 50);
    const rpcP99 = percentile(rpcs, 99);
    rows.push(['bare grpc-js unary round trip (empty handler, another process)', `p50 ${ms(percentile(bares, 50))}`, `p99 ${ms(percentile(bares, 99))}`]);
    rows.push([
      'vfio-pci unary RPC round trip (GetDeviceInfo, baseline)',
      `p50 ${ms(rpcP50)}`,
      `p99 ${ms(rpcP99)} (${(rpcP50 / percentile(bares, 50)).toFixed(2)}x, ${(rpcP99 / percentile(bares, 99)).toFixed(2)}x bare grpc-js)`,
    ]);
    const versus = (sorted: number[]): string =>
      `p99 ${ms(percentile(sorted, 99))} (${(percentile(sorted, 50) / rpcP50).toFixed(1)}x, ${(percentile(sorted, 99) / rpcP99).toFixed(1)}x one RPC)`;

    const exportRange = async (): Promise<number> =>
      (
        await rpc<vfio.DeviceFeatureResponse>((cb) =>
          vfioClient.deviceFeature(
            {
              pid: spdk.pid,
              deviceFd,
              argsz: 0,
              flags: GET | FEATURE_DMA_BUF,
              payload: { $case: 'dmaBuf', value: { regionIndex: BAR2, openFlags: O_RDWR, flags: 0, dmaRanges: [{ offset: 0n, length: BigInt(RANGE) }] } },
            },
            cb,
          ),
        )
      ).fd;

    // Export then close, each timed on its own: the close is the release through vfio-pci's owner session.
    const exports: number[] = [];
    const closes: number[] = [];
    const cycle = async (record: boolean): Promise<void> => {
      const start = process.hrtime.bigint();
      const fd = await exportRange();
      const exported = process.hrtime.bigint();
      await spdk.closeFd(fd);
      const closed = process.hrtime.bigint();
      if (record) {
        exports.push(Number(exported - start) / 1e3);
        closes.push(Number(closed - exported) / 1e3);
      }
    };
    for (let i = 0; i < 30; i++) await cycle(false);
    for (let i = 0; i < 300; i++) await cycle(true);
    exports.sort((a, b) => a - b);
    closes.sort((a, b) => a - b);
    rows.push(['vfio-pci DMA_BUF export, 1 range of 64 KiB (DeviceFeature GET)', `p50 ${ms(percentile(exports, 50))}`, versus(exports)]);
    rows.push(['close of that dma-buf (CloseFd, release at vfio-pci)', `p50 ${ms(percentile(closes, 50))}`, versus(closes)]);
    const debugfs = new dmabuf.DmaBufRegistryServiceClient(registry.address, admin.credentials, admin.options);
    const { buffers } = await rpc<dmabuf.GetBufInfoResponse>((cb) => debugfs.getBufInfo({}, cb));
    debugfs.close();
    if (buffers.length !== 0) throw new Error('the export cycles left buffers behind');

    const command = (await rpc<vfio.RegionReadResponse>((cb) => vfioClient.regionRead({ pid: spdk.pid, deviceFd, index: CONFIG_REGION, offset: BigInt(PCI_COMMAND), count: 2 }, cb))).data.readUInt16LE(0);
    if ((command & PCI_COMMAND_MEMORY) === 0) throw new Error('MEM is off after open');
    const writeCommand = (value: number): Promise<vfio.RegionWriteResponse> => {
      const data = Buffer.alloc(2);
      data.writeUInt16LE(value);
      return rpc((cb) => vfioClient.regionWrite({ pid: spdk.pid, deviceFd, index: CONFIG_REGION, offset: BigInt(PCI_COMMAND), data }, cb));
    };

    for (const count of [0, 1, 8, 64]) {
      const fd = await exportRange();
      const nics: RegistrySession[] = [];
      const importers: DmaBufImporter[] = [];
      let notices = 0;
      for (let i = 0; i < count; i++) {
        const nic = await RegistrySession.open(registry.address, { name: `nic-${i}`, shmDir, privilegedCredential: platformSecretsOf(shmDir).platformToken });
        nics.push(nic);
        sessions.push(nic);
        importers.push(await nic.importDmaBuf({ fd, holderPid: spdk.pid, importerBdf: NIC1, onMoveNotify: () => void notices++ }));
      }
      // 200 rounds give a p99 that is not just the worst sample; a 64-importer
      // round (map all, clear, restore) is the slow one, so it gets fewer.
      const rounds = count === 64 ? 40 : 200;
      const warmup = 3;
      const clears: number[] = [];
      for (let round = 0; round < warmup + rounds; round++) {
        await Promise.all(importers.map((importer) => importer.map()));
        const start = process.hrtime.bigint();
        await writeCommand(command & ~PCI_COMMAND_MEMORY);
        if (round >= warmup) clears.push(Number(process.hrtime.bigint() - start) / 1e3);
        // Not timed: MEM back on (the restore notifies every importer too).
        await writeCommand(command);
      }
      clears.sort((a, b) => a - b);
      // Every round revoked and restored: two notices per importer, none fenced.
      if (notices !== 2 * (warmup + rounds) * count) throw new Error(`${count} importers got ${notices} move_notify, not ${2 * (warmup + rounds) * count}`);
      if (importers.some((importer) => importer.state !== 'attached')) throw new Error(`an importer of ${count} was fenced`);
      rows.push([
        count === 0
          ? 'PCI_COMMAND write clearing MEM, 1 exported buffer, no importer'
          : `PCI_COMMAND write clearing MEM, ${count} mapped dynamic importer${count > 1 ? 's' : ''} (until all acked)`,
        `p50 ${ms(percentile(clears, 50))}`,
        versus(clears),
      ]);
      await Promise.all(importers.map((importer) => importer.detach()));
      await spdk.closeFd(fd);
      for (const nic of nics) {
        await nic.close();
        sessions.splice(sessions.indexOf(nic), 1);
      }
    }
  } finally {
    for (const session of sessions.reverse()) await session.close().catch(() => undefined);
    client?.close();
    bare.close();
    sink.stop();
    for (const service of services) await service.stop();
    fs.rmSync(shmDir, { recursive: true, force: true });
  }
}

function ms(us: number): string {
  return `${(us / 1000).toFixed(2)} ms`;
}
