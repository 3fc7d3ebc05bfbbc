import { expect } from 'chai';
import { NVME_CMD_READ, NVME_CMD_WRITE } from '@p2p/pci-emu';
import { fault } from '@p2p/proto';
import { asAdmin, eventually } from '@p2p/testing';
import { rpc } from '../harness/rpc';
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

describe('the platform IOMMU domains vfio-pci must let go of: after its own kill, or while pci-emu does not take the release (pci-emu, registry and vfio-pci as processes)', function () {
  this.timeout(60_000);
  let stack: NvmeStack;
  const apps: NvmeApp[] = [];

  before(async () => {
    stack = await NvmeStack.start();
  });

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    // What the closed processes held goes before the next test takes the device.
    await eventually('the domains of the closed processes to go', async () => (await domains(stack)).length === 0, 10_000);
  });

  after(async () => {
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

  it("the detach and the domain's destruction pci-emu did not take reach it once it answers again: the function is free for a new IOAS", async () => {
    const first = await stack.openApp('cut-off');
    apps.push(first);
    expect((await domains(stack)).map((d) => d.bdfs)).to.deep.equal([[NVME1]]);

    // Every IOMMU release of pci-emu fails as a cut link does, while the process exits.
    const admin = asAdmin(stack.shmDir);
    const faults = new fault.FaultInjectionServiceClient(stack.pciEmu.address, admin.credentials, admin.options);
    try {
      for (const method of ['DetachIommuDomain', 'DestroyIommuDomain']) {
        await rpc((cb) =>
          faults.addFaultRule({ rule: { id: '', methodPattern: `/p2p.pci.v1.PciEmuService/${method}`, delay: undefined, abort: { errno: 'ECONNRESET', grpcCode: 0, percentage: 100 }, maxActivations: 0, activations: 0n } }, cb),
        );
      }
      await first.close();
      apps.splice(apps.indexOf(first), 1);
      const refusedDetaches = async (): Promise<bigint> => {
        const { rules } = await rpc<fault.ListFaultRulesResponse>((cb) => faults.listFaultRules({}, cb));
        return rules.find((rule) => rule.methodPattern.endsWith('/DetachIommuDomain'))?.activations ?? 0n;
      };
      await eventually('vfio-pci to try the detach', async () => (await refusedDetaches()) > 0n, 10_000);
      // The kernel's detach cannot fail: vfio-pci keeps it, while pci-emu still has the function on the dead process's domain.
      await new Promise((resolve) => setTimeout(resolve, 600));
      expect((await domains(stack)).map((d) => d.bdfs)).to.deep.equal([[NVME1]]);
      expect(Number(await refusedDetaches()), 'the detach sent again while pci-emu refuses it').to.be.greaterThan(1);
      await rpc((cb) => faults.clearFaultRules({}, cb));
    } finally {
      faults.close();
    }
    await eventually('the release to reach pci-emu', async () => (await domains(stack)).length === 0, 10_000);

    const second = await stack.openApp('after-the-cut');
    apps.push(second);
    const block = Buffer.alloc(second.blockSize, 0x3e);
    const out = await second.space.allocate(block.length);
    block.copy(out.view);
    await second.driver.io(second.queue, NVME_CMD_WRITE, 1, 0n, 1, out.address, second.blockSize);
    expect((await domains(stack)).map((d) => d.bdfs)).to.deep.equal([[NVME1]]);
  });
});
