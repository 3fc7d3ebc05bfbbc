import { RegistrySession } from '@p2p/dmabuf-client';
import { rdma } from '@p2p/proto';
import { platformSecretsOf } from '@p2p/testing';
import { IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_REMOTE_READ, IBV_ACCESS_REMOTE_WRITE } from '@p2p/verbs';
import { RdmaStack } from '../harness/rdma-hosts';
import { Transfer } from '../harness/rdma-transfer';

const ACCESS = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
async function main(): Promise<void> {
  const stack = await RdmaStack.start();
  try {
    const y = await stack.host(0, 'y');
    const x = await stack.host(1, 'x');
    const src = await y.hostBuffer(64 << 20, 0x1000_0000, ACCESS);
    const dst = await x.hostBuffer(64 << 20, 0x1000_0000, ACCESS);
    const a = await y.rcQp();
    const b = await x.rcQp();
    await y.ctx.connectRc(a.qpNum, { gid: x.gid, qpNum: b.qpNum }, { access: ACCESS });
    await x.ctx.connectRc(b.qpNum, { gid: y.gid, qpNum: a.qpNum }, { access: ACCESS });
    const t = new Transfer({ host: y, qpNum: a.qpNum, cq: a.cq, opcode: rdma.WrOpcode.WR_OPCODE_RDMA_WRITE, count: 256, size: 1 << 20, local: { key: src.mr.lkey, iova: 0x1000_0000 }, remote: { key: dst.mr.rkey, iova: 0x1000_0000 }, depth: 16 });
    await t.run();
    const admin = await RegistrySession.open(stack.registry.address, { name: 'check', shmDir: stack.shmDir, privilegedCredential: platformSecretsOf(stack.shmDir).platformToken });
    for (const info of await admin.bufInfo()) console.log(info.bufferId, info.exporter, info.size, info.attachments.map((at) => `${at.importerBdf}/${at.importerPid}`).join(' '));
    await admin.close();
    await y.close();
    await x.close();
  } finally {
    await stack.stop();
  }
}
void main();
