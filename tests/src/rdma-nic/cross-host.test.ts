import { expect } from 'chai';
import { rdma } from '@p2p/proto';
import { type RdmaHost, RdmaStack } from '../harness/rdma-hosts';
import { notLanded, patterned, tallyCompletions, transferBetween, WC_STATUS_RETRY_EXC_ERR, WC_STATUS_SUCCESS, wcStatusName, QUICK_RETRY, TRANSFER_ACCESS as ACCESS, TRANSFER_IOVA as IOVA } from '../harness/rdma-transfer';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 64 * KiB;
const COUNT = 256;
/** Host B's NICs, on host A's wire port: another host, with its own registry and tmpfs. */
const HOST_B_IPS = ['127.0.0.4', '127.0.0.5'] as const;

/**
 * Two emulated hosts, each a whole stack of its own (pci-emu, registry,
 * vfio-pci, NICs) on its own segment directory, reaching each other only
 * through their NICs' wire, as two pods do: payloads travel on the links'
 * bulk streams, beside the gRPC streams that carry the packets.
 */
describe('across hosts (each host a stack of its own, no shared tmpfs)', function () {
  this.timeout(90_000);
  let hostA: RdmaStack;
  let hostB: RdmaStack | undefined;
  const processes: RdmaHost[] = [];

  beforeEach(async () => {
    hostA = await RdmaStack.start();
    hostB = await RdmaStack.start({ nicIps: HOST_B_IPS, wirePort: hostA.wirePort });
  });

  afterEach(async () => {
    for (const process of processes.splice(0)) await process.close().catch(() => undefined);
    await hostB?.stop();
    await hostA.stop();
  });

  async function connected(y: RdmaHost, x: RdmaHost) {
    const source = await y.hostBuffer(COUNT * SIZE, IOVA, ACCESS);
    const target = await x.hostBuffer(COUNT * SIZE, IOVA, ACCESS);
    await source.cpu.copyFromBuffer(0, patterned(COUNT, SIZE));
    const { transfer, a } = await transferBetween(y, x, QUICK_RETRY, {
      opcode: rdma.WrOpcode.WR_OPCODE_RDMA_WRITE,
      count: COUNT,
      size: SIZE,
      local: { key: source.mr.lkey, iova: IOVA },
      remote: { key: target.mr.rkey, iova: IOVA },
      depth: 16,
    });
    return { a, target, transfer };
  }

  it('moves bytes between the hosts; a host killed mid-transfer is RETRY_EXC_ERR at its peer, once, the rest flushed; restarted, a new QP moves bytes again', async () => {
    const y = await hostA.host(0, 'host-a-y');
    processes.push(y);
    const x = await hostB!.host(0, 'host-b-x');
    processes.push(x);
    const { a, transfer } = await connected(y, x);
    const running = transfer.run();
    await transfer.whenCompleted(20);
    // The whole host goes: its NICs, vfio-pci, registry and pci-emu, as a pod killed.
    await hostB!.stop();
    hostB = undefined;
    await running;
    await transfer.settled(20_000);
    transfer.close();
    const tally = tallyCompletions(transfer);
    expect(tally.everyOnce, `every WR completed exactly once (${tally.runs.join(', ')})`).to.equal(true);
    expect(tally.failed.map((failed) => wcStatusName(failed.status))).to.deep.equal([wcStatusName(WC_STATUS_RETRY_EXC_ERR)]);
    expect(tally.inPostOrder, 'completions in post order').to.equal(true);
    expect(tally.succeeded.length).to.be.at.least(20);
    expect((await y.ctx.queryQp(a.qpNum)).qpState).to.equal(rdma.QpState.QP_STATE_ERR);

    // The host comes back (a new pod at the same address): a new QP to it works.
    hostB = await RdmaStack.start({ nicIps: HOST_B_IPS, wirePort: hostA.wirePort });
    const again = await hostB.host(0, 'host-b-x-again');
    processes.push(again);
    const second = await connected(y, again);
    await second.transfer.run();
    await second.transfer.settled(20_000);
    second.transfer.close();
    expect(second.transfer.byStatus(WC_STATUS_SUCCESS)).to.have.length(COUNT);
    expect(notLanded(await second.target.cpu.read(0, COUNT * SIZE), second.transfer.byStatus(WC_STATUS_SUCCESS), SIZE)).to.deep.equal([]);
  });
  it("moves 16 MiB WRITEs eight deep between the hosts with rdma-core's usual ack timeout (67 ms): a request's timer starts once its payload has left, not while 112 MiB queue ahead of it", async () => {
    const y = await hostA.host(0, 'host-a-big');
    processes.push(y);
    const x = await hostB!.host(0, 'host-b-big');
    processes.push(x);
    const size = 16 * MiB;
    const slots = 4;
    const source = await y.hostBuffer(slots * size, IOVA, ACCESS);
    const target = await x.hostBuffer(slots * size, IOVA, ACCESS);
    await source.cpu.copyFromBuffer(0, patterned(slots, size));
    const { transfer } = await transferBetween(y, x, { timeout: 14, retryCnt: 7, access: ACCESS }, {
      opcode: rdma.WrOpcode.WR_OPCODE_RDMA_WRITE,
      count: 16,
      size,
      slots,
      local: { key: source.mr.lkey, iova: IOVA },
      remote: { key: target.mr.rkey, iova: IOVA },
      depth: 8,
    });
    await transfer.run();
    await transfer.settled(60_000);
    transfer.close();
    expect(transfer.byStatus(WC_STATUS_SUCCESS)).to.have.length(16);
    const landed = Buffer.concat(await Promise.all([0, 1, 2, 3].map((slot) => target.cpu.read(slot * size, size))));
    expect(notLanded(landed, [0, 1, 2, 3], size)).to.deep.equal([]);
  });
});
