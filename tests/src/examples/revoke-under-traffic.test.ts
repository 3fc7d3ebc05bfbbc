import { expect } from 'chai';
import { useRdmaStack } from '../harness/rdma-stack-hooks';
import { WC_STATUS_REM_ACCESS_ERR } from '../harness/rdma-transfer';
import { type ExampleEnv, rdmaStackEnv, runExample } from '../harness/run-example';
import { revokeUnderTraffic } from './revoke-under-traffic';

/**
 * The revocation example against the whole stack as separate processes
 * (pci-emu, the registry, vfio-pci, nic0 and nic1): called as a function,
 * and run as the command the README shows.
 */
describe('example: revoke-under-traffic (accel0’s BAR revoked while host Y streams RDMA WRITEs into it)', function () {
  this.timeout(90_000);
  const stack = useRdmaStack();
  const addresses = (): ExampleEnv => rdmaStackEnv(stack());

  it('completes every WR once (SUCCESS, then one REM_ACCESS_ERR, then flushes), lands nothing after the revoke, and moves bytes again once MEM is set', async () => {
    const lines: string[] = [];
    const env = addresses();
    const result = await revokeUnderTraffic({
      registry: env.DMABUF_REGISTRY_ADDRESS!,
      vfioPci: env.VFIO_PCI_ADDRESS!,
      pciEmu: env.PCI_EMU_ADDRESS!,
      nicY: env.RDMA_NIC_A_ADDRESS!,
      nicX: env.RDMA_NIC_B_ADDRESS!,
      shmDir: stack().shmDir,
      log: (line) => lines.push(line),
    });
    const { tally } = result;
    expect(tally.everyOnce, tally.runs.join(', ')).to.equal(true);
    expect(tally.inPostOrder).to.equal(true);
    const boundary = tally.succeeded.length;
    expect(boundary, 'WRs that succeeded before the revoke').to.be.at.least(result.completedAtRevoke);
    expect(tally.succeeded).to.deep.equal(Array.from({ length: boundary }, (_, i) => i));
    expect(tally.failed).to.deep.equal([{ wrId: boundary, status: WC_STATUS_REM_ACCESS_ERR }]);
    expect(tally.flushed).to.deep.equal(Array.from({ length: tally.posted - boundary - 1 }, (_, i) => boundary + 1 + i));
    expect(result.missing, 'successful WRs whose bytes were not in the BAR').to.deep.equal([]);
    expect(result.changedAfterRevoke, 'BAR bytes changed after the revoke returned').to.equal(false);
    expect(result.again.tally.succeeded).to.have.length(16);
    expect(result.again.missing).to.deep.equal([]);
    expect(lines.at(-1)).to.match(/PCI_COMMAND\.MEMORY set again, the dma-buf re-registered .*16 WRITEs, 16 SUCCESS, their bytes in the BAR$/);
  });

  it('runs as the README shows it, a second time on the same stack, and ends with "nothing landed after the revoke"', async () => {
    const { code, stderr, lines } = await runExample('revoke-under-traffic', addresses());
    expect(code, stderr).to.equal(0);
    expect(lines.at(-1)).to.equal("accel0's BAR revoked under traffic: every work request completed once, nothing landed after the revoke");
  });
});
