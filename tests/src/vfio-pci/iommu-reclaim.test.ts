import { expect } from 'chai';
import { NVME_CMD_READ, NVME_CMD_WRITE } from '@p2p/pci-emu';
import { eventually } from '@p2p/testing';
import { NVME1 } from '../harness/nvme-cmb-target';
import { type NvmeApp, NvmeStack } from '../harness/nvme-stack';

/** pci-emu's IOMMU domains, as its administrator lists them: [id, attached functions, mapped bytes]. */
async function domains(stack: NvmeStack): Promise<{ id: number; bdfs: string[]; mappedBytes: bigint }[]> {
  const admin = stack.pciAdmin();
  try {
    const { domains: listed } = await admin.client.listIommuDomains({ domainId: 0 });
    return listed.map((d) => ({ id: d.domainId, bdfs: d.bdfs, mappedBytes: d.mappedBytes }));
  } finally {
    admin.close();
  }
}

describe('vfio-pci killed (SIGKILL) with a device attached to an IOAS (pci-emu, registry and vfio-pci as processes)', function () {
  this.timeout(60_000);
  let stack: NvmeStack;
  const apps: NvmeApp[] = [];

  before(async () => {
    stack = await NvmeStack.start();
  });

  after(async () => {
    for (const app of apps) await app.close();
    await stack?.stop();
  });

  it('the restarted vfio-pci frees the IOMMU domain its predecessor left attached: the function attaches to a new IOAS, and only that domain is left', async () => {
    const first = await stack.openApp('before-the-kill');
    apps.push(first);
    const held = await domains(stack);
    expect(held.map((d) => d.bdfs), 'domains while the first process drives nvme1').to.deep.equal([[NVME1]]);

    await stack.restartVfioPci();
    await first.close();
    await eventually('the stale domain to be freed', async () => (await domains(stack)).length === 0, 15_000);

    const second = await stack.openApp('after-the-restart');
    apps.push(second);
    const block = Buffer.alloc(second.blockSize, 0x5c);
    const out = await second.space.allocate(block.length);
    block.copy(out.view);
    await second.driver.io(second.queue, NVME_CMD_WRITE, 1, 0n, 1, out.address, second.blockSize);
    const back = await second.space.allocate(block.length);
    await second.driver.io(second.queue, NVME_CMD_READ, 1, 0n, 1, back.address, second.blockSize);
    expect(back.view.subarray(0, block.length).equals(block)).to.equal(true);

    const now = await domains(stack);
    expect(now.map((d) => d.bdfs)).to.deep.equal([[NVME1]]);
    expect(now[0]!.id).to.not.equal(held[0]!.id);
  });
});
