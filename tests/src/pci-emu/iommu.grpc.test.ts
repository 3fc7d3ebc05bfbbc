import * as fs from 'node:fs';
import * as http from 'node:http';
import { expect } from 'chai';
import {
  DMA_DOORBELL_START,
  DMA_DST_IOVA,
  DMA_ERROR,
  DMA_ERRORS,
  DMA_FAULT_IOVA,
  DMA_LEN,
  DMA_SRC_IOVA,
  DMA_STATUS,
  DMA_STATUS_DONE,
  DMA_STATUS_ERROR,
  IOMMU_READ,
  IOMMU_WRITE,
  pciRegs,
  startPciEmu,
} from '@p2p/pci-emu';
import { pci } from '@p2p/proto';
import type { RunningServer } from '@p2p/server';
import { SegmentStore } from '@p2p/shm';
import { asPlatform, asToken, tempShmDir } from '@p2p/testing';
import { expectErrno, rpc } from '../harness/rpc';
import { watchPciEvents } from '../harness/pci-events';

const ACCEL0 = '0000:07:00.0';
const NVME1 = '0000:08:00.0';
const MEMORY_BAR = 2;
const PAGE = 4096;
const RW = IOMMU_READ | IOMMU_WRITE;
const HOST_IOVA = 0x1000_0000n;
const CMB_IOVA = 0x2000_0000n;
const HEAP = 'dmabuf-heap.test.1';

describe('pci-emu IOMMU and DMA engine over gRPC (a server on a temporary segment directory)', function () {
  this.timeout(30000);
  let shmDir: string;
  let server: RunningServer;
  let client: pci.PciEmuServiceClient;
  let store: SegmentStore;

  before(async () => {
    shmDir = tempShmDir();
    server = await startPciEmu({ P2P_SHM_DIR: shmDir, PCI_EMU_HOST: '127.0.0.1', PCI_EMU_PORT: '0', PCI_EMU_METRICS_PORT: '0', LOG_LEVEL: 'silent' });
    // The IOMMU is the platform's: vfio-pci, the registry, the NICs.
    const platform = asPlatform(shmDir);
    client = new pci.PciEmuServiceClient(`127.0.0.1:${server.port}`, platform.credentials, platform.options);
    store = new SegmentStore({ dir: shmDir });
  });

  after(async () => {
    client?.close();
    await server?.shutdown('test done');
    fs.rmSync(shmDir, { recursive: true, force: true });
  });

  /** Every test starts with no domain and a fresh heap segment holding a known pattern. */
  beforeEach(() => {
    const segment = store.create(HEAP, 4 * PAGE);
    segment.write(0, pattern(4 * PAGE));
    segment.close();
  });

  afterEach(async () => {
    const { domains } = await rpc<pci.ListIommuDomainsResponse>((cb) => client.listIommuDomains({ domainId: 0 }, cb));
    for (const domain of domains) {
      for (const bdf of domain.bdfs) await rpc((cb) => client.detachIommuDomain({ domainId: domain.domainId, bdf }, cb));
      await rpc((cb) => client.destroyIommuDomain({ domainId: domain.domainId }, cb));
    }
    store.unlink(HEAP);
  });

  const pattern = (length: number): Buffer => Buffer.from(Array.from({ length }, (_, i) => (i * 13 + 5) & 0xff));
  const createDomain = async (): Promise<number> => (await rpc<pci.CreateIommuDomainResponse>((cb) => client.createIommuDomain({}, cb))).domainId;
  const attach = (domainId: number, bdf: string): Promise<unknown> => rpc((cb) => client.attachIommuDomain({ domainId, bdf }, cb));
  const map = (request: Partial<pci.IommuMapRequest> & { domainId: number }): Promise<unknown> =>
    rpc((cb) => client.iommuMap({ iova: HOST_IOVA, length: BigInt(PAGE), prot: RW, ...request }, cb));
  const hostTarget = (offset: number, length: number): pci.IommuMapRequest['target'] => ({
    $case: 'host',
    value: { extents: [{ segment: HEAP, offset: BigInt(offset), length: BigInt(length) }] },
  });
  const cmbTarget: pci.IommuMapRequest['target'] = { $case: 'bar', value: { bdf: NVME1, bar: MEMORY_BAR, offset: 0n } };
  const mmioWrite = (offset: number, width: number, value: bigint): Promise<unknown> =>
    rpc((cb) => client.mmioWrite({ bdf: ACCEL0, bar: 0, offset: BigInt(offset), width, value }, cb));
  const mmioRead = async (offset: number, width: number): Promise<bigint> =>
    (await rpc<pci.MmioReadResponse>((cb) => client.mmioRead({ bdf: ACCEL0, bar: 0, offset: BigInt(offset), width }, cb))).value;

  /** The accelerator in a domain with bus mastering on, as its driver would leave it. */
  async function accelInDomain(): Promise<number> {
    const domainId = await createDomain();
    await attach(domainId, ACCEL0);
    const command = pciRegs.PCI_COMMAND_MEMORY | pciRegs.PCI_COMMAND_MASTER;
    await rpc((cb) => client.configWrite({ bdf: ACCEL0, offset: pciRegs.PCI_COMMAND, width: 2, value: command, hardware: false }, cb));
    return domainId;
  }

  /** Rings the engine through MMIO writes and answers STATUS, ERROR and FAULT_IOVA. */
  async function dma(src: bigint, dst: bigint, length: number): Promise<[bigint, bigint, bigint]> {
    await mmioWrite(DMA_SRC_IOVA, 8, src);
    await mmioWrite(DMA_DST_IOVA, 8, dst);
    await mmioWrite(DMA_LEN, 8, BigInt(length) | (BigInt(DMA_DOORBELL_START) << 32n));
    return [await mmioRead(DMA_STATUS, 4), await mmioRead(DMA_ERROR, 4), await mmioRead(DMA_FAULT_IOVA, 8)];
  }

  it('moves bytes host -> peer CMB -> host with the DMA engine, and reports maps and transfers as events', async () => {
    const domainId = await accelInDomain();
    const events = await watchPciEvents(client, [ACCEL0]);
    await map({ domainId, iova: HOST_IOVA, length: BigInt(4 * PAGE), target: hostTarget(0, 4 * PAGE) });
    await map({ domainId, iova: CMB_IOVA, length: BigInt(4 * PAGE), target: cmbTarget });

    expect(await dma(HOST_IOVA, CMB_IOVA + 16n, 2 * PAGE)).to.deep.equal([BigInt(DMA_STATUS_DONE), 0n, 0n]);
    const cmb = await rpc<pci.BulkReadResponse>((cb) => client.bulkRead({ bdf: NVME1, bar: MEMORY_BAR, offset: 16n, length: BigInt(2 * PAGE) }, cb));
    expect(cmb.data.equals(pattern(2 * PAGE))).to.equal(true);

    expect(await dma(CMB_IOVA + 16n, HOST_IOVA + BigInt(2 * PAGE), PAGE)).to.deep.equal([BigInt(DMA_STATUS_DONE), 0n, 0n]);
    expect(store.open(HEAP).read(2 * PAGE, PAGE).equals(pattern(PAGE))).to.equal(true);

    const seen = await events.take(4);
    expect(seen.map((e) => e.event?.$case)).to.deep.equal(['iommuMapped', 'iommuMapped', 'dmaCompleted', 'dmaCompleted']);
    expect(seen[0]!.event).to.deep.equal({
      $case: 'iommuMapped',
      value: { domainId, iova: HOST_IOVA, length: BigInt(4 * PAGE), prot: RW, bdfs: [ACCEL0] },
    });
    expect(seen[2]!.bdf).to.equal(ACCEL0);
    expect(seen[2]!.event).to.deep.equal({
      $case: 'dmaCompleted',
      value: { status: pci.DmaStatus.DMA_STATUS_DONE, error: pci.DmaError.DMA_ERROR_UNSPECIFIED, bytes: BigInt(2 * PAGE), srcIova: HOST_IOVA, dstIova: CMB_IOVA + 16n, faultIova: 0n },
    });
  });

  it('lists domains with their functions, mappings and mapped bytes, and unmaps by range', async () => {
    const domainId = await accelInDomain();
    await map({ domainId, iova: HOST_IOVA, length: BigInt(2 * PAGE), prot: IOMMU_READ, target: hostTarget(PAGE, 2 * PAGE) });
    await map({ domainId, iova: CMB_IOVA, length: BigInt(PAGE), target: cmbTarget });
    const listed = await rpc<pci.ListIommuDomainsResponse>((cb) => client.listIommuDomains({ domainId }, cb));
    expect(listed.domains).to.deep.equal([
      {
        domainId,
        bdfs: [ACCEL0],
        mappings: [
          { iova: HOST_IOVA, length: BigInt(2 * PAGE), prot: IOMMU_READ, target: hostTarget(PAGE, 2 * PAGE) },
          { iova: CMB_IOVA, length: BigInt(PAGE), prot: RW, target: cmbTarget },
        ],
        mappedBytes: BigInt(3 * PAGE),
      },
    ]);
    const unmapped = await rpc<pci.IommuUnmapResponse>((cb) => client.iommuUnmap({ domainId, iova: HOST_IOVA + BigInt(PAGE), length: BigInt(PAGE) }, cb));
    expect(unmapped.unmapped).to.equal(BigInt(PAGE));
    const after = await rpc<pci.ListIommuDomainsResponse>((cb) => client.listIommuDomains({ domainId }, cb));
    expect(after.domains[0]!.mappedBytes).to.equal(BigInt(2 * PAGE));
  });

  it('faults a DMA to an unmapped IOVA: STATUS ERROR with FAULT_IOVA, an IommuFault event and a counted fault', async () => {
    const domainId = await accelInDomain();
    await map({ domainId, iova: HOST_IOVA, length: BigInt(4 * PAGE), target: hostTarget(0, 4 * PAGE) });
    const events = await watchPciEvents(client, [ACCEL0]);
    expect(await dma(HOST_IOVA, CMB_IOVA, PAGE)).to.deep.equal([BigInt(DMA_STATUS_ERROR), BigInt(DMA_ERRORS.IOMMU_FAULT_WRITE), CMB_IOVA]);
    const seen = await events.take(2);
    expect(seen.map((e) => e.event)).to.deep.equal([
      { $case: 'iommuFault', value: { domainId, iova: CMB_IOVA, write: true, reason: pci.IommuFaultReason.IOMMU_FAULT_REASON_NOT_MAPPED } },
      {
        $case: 'dmaCompleted',
        value: { status: pci.DmaStatus.DMA_STATUS_ERROR, error: pci.DmaError.DMA_ERROR_IOMMU_FAULT_WRITE, bytes: 0n, srcIova: HOST_IOVA, dstIova: CMB_IOVA, faultIova: CMB_IOVA },
      },
    ]);
    const metrics = await scrape(server.metricsPort);
    expect(metrics).to.match(new RegExp(`p2p_iommu_faults_total\\{bdf="${ACCEL0}",reason="NOT_MAPPED"[^}]*\\} [1-9]`));
    expect(metrics).to.match(/p2p_dma_transfers_total\{status="ERROR",error="IOMMU_FAULT_WRITE"[^}]*\} [1-9]/);
    expect(metrics).to.match(new RegExp(`p2p_iommu_mapped_bytes\\{domain="${domainId}"[^}]*\\} ${4 * PAGE}\\b`));
  });

  it('answers bad requests with their errno and changes nothing', async () => {
    const domainId = await accelInDomain();
    await map({ domainId, target: hostTarget(0, PAGE) });
    const before = await rpc<pci.ListIommuDomainsResponse>((cb) => client.listIommuDomains({ domainId: 0 }, cb));
    await expectErrno(attach(domainId, ACCEL0), 'EBUSY');
    await expectErrno(attach(domainId + 100, NVME1), 'ENOENT');
    await expectErrno(rpc((cb) => client.destroyIommuDomain({ domainId }, cb)), 'EBUSY');
    await expectErrno(rpc((cb) => client.detachIommuDomain({ domainId, bdf: NVME1 }, cb)), 'EINVAL');
    await expectErrno(map({ domainId, target: hostTarget(0, PAGE) }), 'EEXIST');
    await expectErrno(map({ domainId, iova: CMB_IOVA }), 'EINVAL');
    await expectErrno(map({ domainId, iova: CMB_IOVA, prot: 0, target: cmbTarget }), 'EINVAL');
    await expectErrno(map({ domainId, iova: CMB_IOVA, prot: 8, target: cmbTarget }), 'EOPNOTSUPP');
    await expectErrno(map({ domainId, iova: CMB_IOVA, length: 100n, target: cmbTarget }), 'EINVAL');
    await expectErrno(map({ domainId, iova: (1n << 64n) - BigInt(PAGE), length: BigInt(2 * PAGE), target: cmbTarget }), 'EOVERFLOW');
    await expectErrno(map({ domainId, iova: 0xfee00000n, target: cmbTarget }), 'EINVAL');
    await expectErrno(map({ domainId, iova: CMB_IOVA, target: { $case: 'host', value: { extents: [{ segment: 'dmabuf-heap.gone', offset: 0n, length: BigInt(PAGE) }] } } }), 'ENOENT');
    await expectErrno(map({ domainId, iova: CMB_IOVA, target: { $case: 'host', value: { extents: [{ segment: '../etc', offset: 0n, length: BigInt(PAGE) }] } } }), 'EINVAL');
    await expectErrno(map({ domainId, iova: CMB_IOVA, target: { $case: 'host', value: { extents: [{ segment: HEAP, offset: 1n << 60n, length: BigInt(PAGE) }] } } }), 'EOVERFLOW');
    await expectErrno(map({ domainId, iova: CMB_IOVA, target: { $case: 'bar', value: { bdf: NVME1, bar: 0, offset: 0n } } }), 'EINVAL');
    await expectErrno(rpc((cb) => client.iommuUnmap({ domainId, iova: HOST_IOVA, length: 0n }, cb)), 'EINVAL');
    expect(await rpc<pci.ListIommuDomainsResponse>((cb) => client.listIommuDomains({ domainId: 0 }, cb))).to.deep.equal(before);
  });

  it('keeps the IOMMU from anonymous callers (EACCES)', async () => {
    const anonymous = asToken(undefined);
    const stranger = new pci.PciEmuServiceClient(`127.0.0.1:${server.port}`, anonymous.credentials, anonymous.options);
    try {
      await expectErrno(rpc((cb) => stranger.createIommuDomain({}, cb)), 'EACCES');
      await expectErrno(rpc((cb) => stranger.listIommuDomains({ domainId: 0 }, cb)), 'EACCES');
    } finally {
      stranger.close();
    }
  });
});

/** GET /metrics of a server. */
function scrape(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(`http://127.0.0.1:${port}/metrics`, (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}
