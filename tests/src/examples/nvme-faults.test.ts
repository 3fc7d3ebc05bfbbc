import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expect } from 'chai';
import { type MoveNotice, RegistrySession } from '@p2p/dmabuf-client';
import { ErrnoError } from '@p2p/errno';
import { decodeNvmeCompletion, encodeNvmeCommand, NVME_CMD_READ, NVME_CMD_WRITE, NVME_CQE_SIZE, NVME_CSTS_RDY, NVME_REG_CSTS, NVME_SC_SUCCESS, NVME_SQE_SIZE } from '@p2p/pci-emu';
import { dmabuf, fault, iommufd, rdma, vfio } from '@p2p/proto';
import { connectPeer } from '@p2p/rpc';
import { asAdmin, eventually, platformSecretsOf, rejection } from '@p2p/testing';
import { IBV_ACCESS_LOCAL_WRITE, IBV_SEND_SIGNALED, VerbsContext } from '@p2p/verbs';
import { EventLog, HelperProcess, rawClient, registryState, segmentNames } from '../dmabuf-registry/fixtures';
import { type BlockContent, classifyBlock, describeBlock, stampBlock, stampedBlock } from '../harness/nvme-blocks';
import {
  CMB_DATA,
  cqHeadDoorbell,
  createCmbQueues,
  type CmbTarget,
  connectRcPair,
  NVME1,
  NVME_BAR0,
  NVME_CMB_BAR,
  openCmbTarget,
  registerCmbTarget,
  sqTailDoorbell,
} from '../harness/nvme-cmb-target';
import { bindToVfio, namespaceFile, NvmeStack, readNamespaceFile } from '../harness/nvme-stack';
import { NIC1, RdmaStack } from '../harness/rdma-hosts';
import { rpc } from '../harness/rpc';
import { cpuView, NvmeDriver } from '@p2p/user-driver';

const NSID = 1;
const { EventKind } = dmabuf;

/** Reads `count` blocks from `lba` through `app`'s controller into its memory, 32 blocks per command. */
async function readThroughDevice(app: { driver: NvmeDriver; queue: Parameters<NvmeDriver['io']>[0]; space: { allocate(bytes: number): Promise<{ address: bigint; view: Buffer }> }; blockSize: number }, lba: number, count: number): Promise<Buffer> {
  const buffer = await app.space.allocate(count * app.blockSize);
  for (let at = 0; at < count; at += 32) {
    const blocks = Math.min(32, count - at);
    await app.driver.io(app.queue, NVME_CMD_READ, NSID, BigInt(lba + at), blocks, buffer.address + BigInt(at * app.blockSize), app.blockSize);
  }
  return Buffer.from(buffer.view.subarray(0, count * app.blockSize));
}

/** Block i of `data` (LBA `first` + i) classified. */
function blocksOf(data: Buffer, first: number, blockSize: number): BlockContent[] {
  const out: BlockContent[] = [];
  for (let i = 0; i * blockSize < data.length; i++) out.push(classifyBlock(data.subarray(i * blockSize, (i + 1) * blockSize), BigInt(first + i)));
  return out;
}

/* ------------------------------------------------------------------ */
/* 1. FLR of nvme1 while a remote host streams NVMe Writes into it by RDMA */
/* ------------------------------------------------------------------ */

/** Host Y's staging buffer: a block, an SQE, a doorbell value, a CQE read back. */
const Y_BLOCK = 0;
const Y_SQE = 0x1000;
const Y_DOORBELL = 0x1040;
const Y_CQE = 0x1080;
const Y_SIZE = 0x2000;
/** How long pci-emu holds the FLR (a fault rule's delay): the window in which the buffers are revoked and the controller still runs. */
const FLR_HOLD_MS = 1500;
const WRITE = rdma.WrOpcode.WR_OPCODE_RDMA_WRITE;
/** A work request not completed within this bound counts as a hang. */
const WR_BOUND_MS = 10_000;

interface QueueLayout {
  readonly qid: number;
  readonly entries: number;
  readonly sqOffset: number;
  readonly cqOffset: number;
}

/**
 * Host Y driving one I/O queue pair of nvme1 by RDMA alone (the seed's
 * flow): each command is three RDMA WRITEs posted together (the block into
 * the CMB, the SQE into the SQ in the CMB, the SQ tail doorbell), then
 * RDMA READs of the CQE until its phase tag flips, then the CQ head
 * doorbell. Every work request it posts and every completion it reaps is
 * recorded; one that does not complete within WR_BOUND_MS fails the test.
 */
class RemoteNvme {
  readonly posted: bigint[] = [];
  readonly completions: rdma.WorkCompletion[] = [];
  #nextWrId = 1n;
  #commands = 0;

  constructor(
    private readonly y: VerbsContext,
    private readonly qp: { qpNum: number; cq: number },
    private readonly lkey: number,
    private readonly staging: Buffer,
    private readonly keys: { cmb: number; doorbell: number },
    private readonly cmbAddress: bigint,
    private readonly layout: QueueLayout,
    private readonly blockSize: number,
  ) {}

  /** Posts `ops` as one list and waits for each one's completion; their statuses. */
  async ops(ops: ReadonlyArray<{ opcode: rdma.WrOpcode; local: number; length: number; remote: number; rkey: number }>): Promise<rdma.WcStatus[]> {
    const wrs = ops.map((op) => ({
      wrId: this.#nextWrId++,
      opcode: op.opcode,
      sgList: [{ addr: BigInt(op.local), length: op.length, lkey: this.lkey }],
      sendFlags: IBV_SEND_SIGNALED,
      immData: 0,
      remoteAddr: BigInt(op.remote),
      rkey: op.rkey,
      compareAdd: 0n,
      swap: 0n,
    }));
    this.posted.push(...wrs.map((wr) => wr.wrId));
    await this.y.postSend(this.qp.qpNum, wrs);
    const ids = new Set(wrs.map((wr) => wr.wrId));
    const statuses = new Map<bigint, rdma.WcStatus>();
    const deadline = Date.now() + WR_BOUND_MS;
    while (statuses.size < ids.size) {
      if (Date.now() > deadline) throw new Error(`work requests ${[...ids].filter((id) => !statuses.has(id)).join(', ')} did not complete within ${WR_BOUND_MS} ms`);
      for (const wc of await this.y.pollCq(this.qp.cq, 16)) {
        this.completions.push(wc);
        if (ids.has(wc.wrId)) statuses.set(wc.wrId, wc.status);
      }
    }
    return wrs.map((wr) => statuses.get(wr.wrId)!);
  }

  /** The three RDMA WRITEs of a Write of block `lba` of `generation` (block, SQE, SQ tail doorbell): their statuses, and where its CQE will be. */
  async submit(lba: number, generation: number): Promise<{ statuses: rdma.WcStatus[]; slot: number; phase: boolean }> {
    const { qid, entries, sqOffset } = this.layout;
    const slot = this.#commands % entries;
    const phase = Math.floor(this.#commands / entries) % 2 === 0;
    const data = CMB_DATA + (this.#commands % 16) * this.blockSize;
    this.#commands++;
    stampBlock(this.staging, Y_BLOCK, BigInt(lba), generation, this.blockSize);
    encodeNvmeCommand({ opcode: NVME_CMD_WRITE, commandId: slot, nsid: NSID, prp1: this.cmbAddress + BigInt(data), cdw10: lba, cdw11: 0, cdw12: 0 }, this.staging, Y_SQE);
    this.staging.writeUInt32LE((slot + 1) % entries, Y_DOORBELL);
    const statuses = await this.ops([
      { opcode: WRITE, local: Y_BLOCK, length: this.blockSize, remote: data, rkey: this.keys.cmb },
      { opcode: WRITE, local: Y_SQE, length: NVME_SQE_SIZE, remote: sqOffset + slot * NVME_SQE_SIZE, rkey: this.keys.cmb },
      { opcode: WRITE, local: Y_DOORBELL, length: 4, remote: sqTailDoorbell(qid), rkey: this.keys.doorbell },
    ]);
    return { statuses, slot, phase };
  }

  /**
   * One NVMe Write of block `lba` of `generation`, submitted and reaped:
   * the NVMe status, or 'rdma-error' once an RDMA operation of it completed
   * in error.
   */
  async write(lba: number, generation: number): Promise<number | 'rdma-error'> {
    const { qid, entries, cqOffset } = this.layout;
    const { statuses, slot, phase } = await this.submit(lba, generation);
    if (statuses.some((status) => status !== rdma.WcStatus.WC_STATUS_SUCCESS)) return 'rdma-error';
    for (;;) {
      const [read] = await this.ops([{ opcode: rdma.WrOpcode.WR_OPCODE_RDMA_READ, local: Y_CQE, length: NVME_CQE_SIZE, remote: cqOffset + slot * NVME_CQE_SIZE, rkey: this.keys.cmb }]);
      if (read !== rdma.WcStatus.WC_STATUS_SUCCESS) return 'rdma-error';
      const completion = decodeNvmeCompletion(this.staging, Y_CQE);
      if (completion.phase === phase) {
        this.staging.writeUInt32LE((slot + 1) % entries, Y_DOORBELL);
        const [head] = await this.ops([{ opcode: WRITE, local: Y_DOORBELL, length: 4, remote: cqHeadDoorbell(qid), rkey: this.keys.doorbell }]);
        return head === rdma.WcStatus.WC_STATUS_SUCCESS ? completion.status : 'rdma-error';
      }
    }
  }
}

describe('NVMe faults: FLR of nvme1 while host Y streams NVMe Writes into its CMB and doorbell by RDMA (every service its own process)', function () {
  this.timeout(60_000);
  let stack: RdmaStack;
  let dataDir: string;
  const cleanups: Array<() => unknown> = [];

  before(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-nvme-data-'));
    stack = await RdmaStack.start({ env: { PCI_EMU_DATA_DIR: dataDir } });
  });

  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    await stack?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('VFIO_DEVICE_RESET (an FLR) mid-stream: every work request completes exactly once, in error (REM_ACCESS_ERR, then flushed) while revoked; no command rung after the reset runs; completed Writes are on the namespace and no block is torn', async () => {
    const { shmDir } = stack;
    await bindToVfio(shmDir, stack.vfioPci.address, NVME1);
    const hostX = await RegistrySession.open(stack.registry.address, { name: 'nvme-target', shmDir });
    const hostY = await stack.host(0, 'rdma-initiator');
    cleanups.push(() => hostY.close(), () => hostX.close());
    const as = { name: 'vfio-pci', token: hostX.credential };
    const peers = [
      connectPeer(vfio.VfioPciServiceDefinition, stack.vfioPci.address, as),
      connectPeer(vfio.VfioDeviceIommufdServiceDefinition, stack.vfioPci.address, as),
      connectPeer(iommufd.IommufdServiceDefinition, stack.vfioPci.address, as),
    ] as const;
    cleanups.push(() => peers.forEach((peer) => peer.close()));
    const clients = { device: peers[0].client, deviceIommufd: peers[1].client, iommufd: peers[2].client };

    // Host X: nvme1 up, I/O queue pair 1 in its CMB, the CMB and doorbell page registered on nic1.
    const target = await openCmbTarget(hostX, clients);
    const { blockSize } = await target.driver.identifyNamespace(NSID);
    const layout1: QueueLayout = { qid: 1, entries: 64, sqOffset: 0, cqOffset: 0x1000 };
    await createCmbQueues(hostX, clients, target, layout1.qid, layout1.entries, layout1.sqOffset, layout1.cqOffset);
    const x = await VerbsContext.open(stack.nics[1].process.address, hostX);
    cleanups.push(() => x.close());
    const xPd = await x.allocPd();
    const { cmbMr, doorbellMr } = await registerCmbTarget(x, xPd, target);

    // Host Y: a staging buffer on nic0 and an RC QP to host X's.
    const { fd: stagingFd } = await hostY.session.heapAllocate(Y_SIZE);
    const stagingMr = await hostY.ctx.regMr(hostY.pd, { heapFd: stagingFd, length: Y_SIZE, iova: 0, access: IBV_ACCESS_LOCAL_WRITE });
    const staging = cpuView(await hostY.session.mmapFd(stagingFd, 0, Y_SIZE));
    const remoteOn = async (layout: QueueLayout, cmbAddress: bigint): Promise<RemoteNvme> => {
      const { initiator } = await connectRcPair({ ctx: x, pd: xPd }, { ctx: hostY.ctx, pd: hostY.pd });
      return new RemoteNvme(hostY.ctx, initiator, stagingMr.lkey, staging, { cmb: cmbMr.rkey, doorbell: doorbellMr.rkey }, cmbAddress, layout, blockSize);
    };
    const remote = await remoteOn(layout1, target.cmbAddress);

    // pci-emu holds the FLR: vfio-pci has revoked the buffers (the NIC was told), the controller still runs.
    const admin = asAdmin(shmDir);
    const faults = new fault.FaultInjectionServiceClient(stack.pciEmu.address, admin.credentials, admin.options);
    cleanups.push(() => faults.close());
    await rpc((cb) =>
      faults.addFaultRule({ rule: { id: '', methodPattern: '/p2p.pci.v1.PciEmuService/FunctionLevelReset', delay: { delayMs: FLR_HOLD_MS, percentage: 100 }, abort: undefined, maxActivations: 1, activations: 0n } }, cb),
    );

    // Host Y streams Writes of LBA 0, 1, 2... (generation 1) until an RDMA operation fails.
    const outcomes: Array<number | 'rdma-error'> = [];
    const streaming = (async (): Promise<void> => {
      for (let lba = 0; ; lba++) {
        const outcome = await remote.write(lba, 1);
        outcomes.push(outcome);
        if (outcome === 'rdma-error') return;
      }
    })();
    await eventually('host Y to complete 3 Writes', () => outcomes.length >= 3);
    await clients.device.reset({ pid: hostX.pid, deviceFd: target.nvme.fd });
    const file = namespaceFile(dataDir, NVME1);
    await streaming;
    const streamed = outcomes.length;
    const afterReset = readNamespaceFile(file, 0, streamed, blockSize);

    // The QP is in error: what host Y posts now is flushed, not lost.
    const late = await remote.ops([
      { opcode: rdma.WrOpcode.WR_OPCODE_RDMA_WRITE, local: Y_BLOCK, length: blockSize, remote: CMB_DATA, rkey: cmbMr.rkey },
      { opcode: rdma.WrOpcode.WR_OPCODE_RDMA_WRITE, local: Y_DOORBELL, length: 4, remote: sqTailDoorbell(1), rkey: doorbellMr.rkey },
    ]);
    expect(late, 'work requests posted after the error').to.deep.equal([rdma.WcStatus.WC_STATUS_WR_FLUSH_ERR, rdma.WcStatus.WC_STATUS_WR_FLUSH_ERR]);
    // Every posted work request completed exactly once.
    expect(remote.completions.map((wc) => wc.wrId).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), 'completed work request ids').to.deep.equal(remote.posted);
    const statuses = remote.completions.map((wc) => wc.status);
    const firstError = statuses.findIndex((status) => status !== rdma.WcStatus.WC_STATUS_SUCCESS);
    expect(rdma.WcStatus[statuses[firstError]!], 'the first error completion').to.equal('WC_STATUS_REM_ACCESS_ERR');
    expect(statuses.slice(firstError + 1).every((status) => status === rdma.WcStatus.WC_STATUS_WR_FLUSH_ERR), `completions after the first error: ${statuses.slice(firstError + 1).map((s) => rdma.WcStatus[s]).join(', ')}`).to.equal(true);
    expect(outcomes.slice(0, -1).every((outcome) => outcome === NVME_SC_SUCCESS), `NVMe statuses seen by host Y: ${outcomes.join(', ')}`).to.equal(true);

    // The reset left the controller disabled: CSTS.RDY is 0.
    expect((await target.nvme.registers.read32(NVME_REG_CSTS)) & NVME_CSTS_RDY, 'CSTS.RDY after the reset').to.equal(0);

    // After the reset, host Y (a new QP) rings SQ 1 again with a Write of LBA 1000: the RDMA lands (the buffers are back), the command must not run.
    const ROGUE_LBA = 1000;
    const rogue = await remoteOn(layout1, target.cmbAddress);
    const rung = await rogue.submit(ROGUE_LBA, 7);
    expect(rung.statuses, 'the RDMA WRITEs of a Write rung on SQ 1 after the reset').to.deep.equal([rdma.WcStatus.WC_STATUS_SUCCESS, rdma.WcStatus.WC_STATUS_SUCCESS, rdma.WcStatus.WC_STATUS_SUCCESS]);
    // Host X brings the controller up again with queue pair 2 in the CMB; host Y writes LBA 2000 through it.
    // The NIC's notices of host Y's writes reach pci-emu in order: once this Write completes, the rogue doorbell has been seen.
    const driver = await NvmeDriver.start(target.nvme.registers, target.space);
    const cmb = await driver.enableCmb(await target.nvme.barAddress(NVME_CMB_BAR));
    const recovered: CmbTarget = { ...target, driver, cmbAddress: cmb.address };
    const layout2: QueueLayout = { qid: 2, entries: 16, sqOffset: 0x2000, cqOffset: 0x3000 };
    await createCmbQueues(hostX, clients, recovered, layout2.qid, layout2.entries, layout2.sqOffset, layout2.cqOffset);
    const legit = await remoteOn(layout2, cmb.address);
    expect(await legit.write(2000, 2), 'a Write on the queue created after the reset').to.equal(NVME_SC_SUCCESS);

    // The namespace: nothing changed after the reset returned; every Write host Y saw complete is there whole; no block torn.
    const final = readNamespaceFile(file, 0, streamed, blockSize);
    expect(final.equals(afterReset), 'the streamed blocks changed after the reset returned').to.equal(true);
    const contents = blocksOf(final, 0, blockSize).map(describeBlock);
    const expected = outcomes.map((outcome) => (outcome === NVME_SC_SUCCESS ? 'gen 1' : 'gen 1 or zero'));
    expect(
      contents.map((content, lba) => (expected[lba] === 'gen 1 or zero' && (content === 'gen 1' || content === 'zero') ? expected[lba] : content)),
      'streamed blocks on the namespace',
    ).to.deep.equal(expected);
    expect(describeBlock(classifyBlock(readNamespaceFile(file, ROGUE_LBA, 1, blockSize), BigInt(ROGUE_LBA))), 'the block of the Write rung after the reset').to.equal('zero');
    expect(readNamespaceFile(file, 2000, 1, blockSize).equals(stampedBlock(2000n, 2, blockSize)), 'the block written after recovery').to.equal(true);
    await driver.shutdown();
  });
});

/* ------------------------------------------------------------------ */
/* 2. pci-emu killed mid-Write                                         */
/* ------------------------------------------------------------------ */

/**
 * pci-emu SIGKILLed under a process writing to nvme1, then started again on
 * its port and data directory. vfio-pci survives that (it reaches the new
 * pci-emu; its open devices count as surprise-removed), so only pci-emu is
 * restarted: the writer's process exits (its session closes, and its fds
 * with it) and a fresh process opens nvme1 and reads through the device.
 */
describe('NVMe faults: pci-emu killed (SIGKILL) mid-Write and restarted on the same data directory (every service its own process)', function () {
  this.timeout(60_000);
  let stack: NvmeStack;

  beforeEach(async () => {
    stack = await NvmeStack.start();
  });

  afterEach(async () => {
    await stack?.stop();
  });

  it('kills pci-emu with SIGKILL after a flushed write and reads the data back after restart', async () => {
    const writer = await stack.openApp('writer');
    const block = await writer.space.allocate(writer.blockSize);
    stampBlock(block.view, 0, 7n, 1, writer.blockSize);
    await writer.driver.io(writer.queue, NVME_CMD_WRITE, NSID, 7n, 1, block.address, writer.blockSize);
    await writer.driver.flush(writer.queue, NSID);
    await stack.pciEmu.stop('SIGKILL');
    await writer.close();
    await stack.restartPciEmu();

    const reader = await stack.openApp('reader');
    const data = await readThroughDevice(reader, 7, 1);
    expect(data.equals(stampedBlock(7n, 1, reader.blockSize)), `LBA 7 after the restart: ${describeBlock(classifyBlock(data, 7n))}`).to.equal(true);
    await reader.close();
  });

  it('kills pci-emu with Writes in flight: blocks written and flushed before are intact, every other block is old or new, none torn', async () => {
    const writer = await stack.openApp('writer');
    const { blockSize } = writer;
    // Generation 1: LBAs 0..63, each Write completed, then a Flush completed.
    const first = await writer.space.allocate(64 * blockSize);
    for (let lba = 0; lba < 64; lba++) stampBlock(first.view, lba * blockSize, BigInt(lba), 1, blockSize);
    for (let lba = 0; lba < 64; lba++) await writer.driver.io(writer.queue, NVME_CMD_WRITE, NSID, BigInt(lba), 1, first.address + BigInt(lba * blockSize), blockSize);
    await writer.driver.flush(writer.queue, NSID);

    // Generation 2: LBAs 0..31 again and 64..127 new,, not flushed.
    const lbas = [...Array.from({ length: 32 }, (_v, i) => i), ...Array.from({ length: 64 }, (_v, i) => 64 + i)];
    const second = await writer.space.allocate(lbas.length * blockSize);
    lbas.forEach((lba, i) => stampBlock(second.view, i * blockSize, BigInt(lba), 2, blockSize));
    // Four at a time, each completion submitting the next; pci-emu dies the moment the driver reaps the 8th:
    // the Writes submitted after it are in flight.
    const completed = new Set<number>();
    let completedAtKill = 0;
    let outstandingAtKill = 0;
    let next = 0;
    const killed = new Promise<void>((resolve) => {
      const submit = (): void => {
        const i = next++;
        if (i >= lbas.length) return;
        writer.driver.io(writer.queue, NVME_CMD_WRITE, NSID, BigInt(lbas[i]!), 1, second.address + BigInt(i * blockSize), blockSize).then(
          () => {
            completed.add(lbas[i]!);
            if (completed.size === 8) {
              completedAtKill = completed.size;
              outstandingAtKill = writer.queue.outstanding;
              stack.pciEmu.child.kill('SIGKILL');
              resolve();
            } else if (completed.size < 8) {
              submit();
            }
          },
          () => undefined,
        );
      };
      for (let k = 0; k < 4; k++) submit();
    });
    await killed;
    await stack.pciEmu.stop('SIGKILL');
    writer.queue.abandon(new Error('pci-emu was killed'));
    await writer.close();
    expect(outstandingAtKill, 'generation-2 Writes submitted and not completed when pci-emu was killed').to.be.above(0);

    await stack.restartPciEmu();
    const reader = await stack.openApp('reader');
    const contents = blocksOf(await readThroughDevice(reader, 0, 128), 0, blockSize).map(describeBlock);
    await reader.close();
    const allowed = (lba: number): string[] => (lba < 32 ? ['gen 1', 'gen 2'] : lba < 64 ? ['gen 1'] : ['zero', 'gen 2']);
    const wrong = contents.map((content, lba) => ({ lba, content })).filter(({ lba, content }) => !allowed(lba).includes(content));
    expect(wrong, `blocks outside old-or-new (${completedAtKill} of ${lbas.length} generation-2 Writes had completed at the kill, ${outstandingAtKill} outstanding)`).to.deep.equal([]);
  });
});

/* ------------------------------------------------------------------ */
/* 3. the owning process killed                                        */
/* ------------------------------------------------------------------ */

describe('NVMe faults: the process owning nvme1 through vfio-pci killed (SIGKILL) while it streams Reads (every service its own process)', function () {
  this.timeout(60_000);
  let stack: NvmeStack;
  let helper: HelperProcess | undefined;

  before(async () => {
    stack = await NvmeStack.start();
  });

  after(async () => {
    await helper?.kill();
    await stack?.stop();
  });

  it('vfio-pci releases nvme1: its dma-bufs are revoked, the function is reset (CSTS.RDY 0), its IOAS is gone, nothing leaks, and a new process reads the flushed data', async () => {
    const { shmDir } = stack;
    await bindToVfio(shmDir, stack.vfioPci.address, NVME1);
    const raw = rawClient(stack.registry.address, shmDir);
    const events = await EventLog.open(stack.registry.address, shmDir);
    const pciAdmin = stack.pciAdmin();
    const vfioAdmin = connectPeer(vfio.VfioPciServiceDefinition, stack.vfioPci.address, { name: 'vfio-pci', token: platformSecretsOf(shmDir).adminToken });
    const nic = await RegistrySession.open(stack.registry.address, { name: 'rdma-nic', shmDir, privilegedCredential: platformSecretsOf(shmDir).platformToken });
    try {
      const csts = async (): Promise<number> => Number((await pciAdmin.client.mmioRead({ bdf: NVME1, bar: NVME_BAR0, offset: BigInt(NVME_REG_CSTS), width: 4 })).value);
      const listing = async (): Promise<vfio.DeviceListing | undefined> => (await vfioAdmin.client.listDevices({})).devices.find((d) => d.bdf === NVME1);

      const started = await HelperProcess.startFile(path.join(__dirname, 'processes', 'nvme-owner.js'), [stack.registry.address, stack.vfioPci.address, shmDir, 'spdk-owner']);
      helper = started.helper;
      const pid = started.ready['pid'] as number;
      const cmbFd = started.ready['cmbFd'] as number;
      await helper.ok('write 5 1');
      await helper.ok('write 6 1');
      await helper.ok('flush');
      await helper.ok('write 7 1');

      // A NIC imports the owner's CMB dma-buf and maps it.
      const notices: MoveNotice[] = [];
      const importer = await nic.importDmaBuf({ fd: cmbFd, holderPid: pid, importerBdf: NIC1, onMoveNotify: (notice) => void notices.push(notice) });
      await importer.map();
      expect(await listing()).to.include({ openCount: 1, ownerPid: pid, dmaBufs: 2 });
      expect((await csts()) & NVME_CSTS_RDY, 'CSTS.RDY while the owner runs').to.equal(NVME_CSTS_RDY);
      const domains = (await pciAdmin.client.listIommuDomains({ domainId: 0 })).domains.length;
      expect(domains, 'IOMMU domains while the owner runs').to.be.above(0);

      await helper.ok('stream 5');
      await helper.kill();

      // Process exit closed its fds: the device's release revoked its buffers for good and reset the function.
      await events.waitFor(EventKind.EVENT_KIND_PROCESS_EXIT, { pid });
      expect((await registryState(raw)).processes.processes.find((p) => p.pid === pid), 'the dead process in ListProcesses').to.equal(undefined);
      await eventually('the importer to get move_notify', () => notices.length >= 1);
      expect(await rejection(importer.read(0, 8))).to.be.instanceOf(ErrnoError).with.property('errno', 'ENODEV');
      await eventually('nvme1 to be closed', async () => (await listing())?.openCount === 0);
      await eventually('the dead process\'s IOAS to go', async () => (await pciAdmin.client.listIommuDomains({ domainId: 0 })).domains.length === 0);

      // A new process opens nvme1 (after the release: the open waits for it); the controller it finds is reset.
      let rdyAtOpen = -1;
      const next = await stack.openApp('spdk-next', async () => {
        rdyAtOpen = (await csts()) & NVME_CSTS_RDY;
      });
      expect(rdyAtOpen, 'CSTS.RDY after the owner died, before the new owner brings the controller up').to.equal(0);
      expect(await listing()).to.include({ openCount: 1, ownerPid: next.session.pid });
      const data = await readThroughDevice(next, 5, 2);
      expect(blocksOf(data, 5, next.blockSize).map(describeBlock), 'LBAs 5 and 6, flushed before the kill').to.deep.equal(['gen 1', 'gen 1']);
      await next.driver.shutdown();
      await next.close();

      // Nothing left: no process but vfio-pci's, no buffer once the importer lets go, no device open, no segment but pci-emu's.
      await importer.detach();
      await nic.close();
      await eventually('every buffer to be released', async () => (await registryState(raw)).buffers.length === 0);
      await eventually('nvme1 to be closed again', async () => (await listing())?.openCount === 0);
      const state = await registryState(raw);
      expect(state.processes.processes.map((p) => [p.name, p.fds.length, p.vmaCount, p.pinCount]), 'processes left').to.deep.equal([['vfio-pci', 0, 0, 0]]);
      expect((await vfioAdmin.client.listDevices({})).dmaBufs, 'vfio dma-bufs').to.deep.equal([]);
      expect(segmentNames(shmDir).filter((name) => !name.startsWith('pci-emu.')), 'segment files other than pci-emu BAR memory').to.deep.equal([]);
    } finally {
      await nic.close().catch(() => undefined);
      events.close();
      raw.close();
      pciAdmin.close();
      vfioAdmin.close();
    }
  });
});
