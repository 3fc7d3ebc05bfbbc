import { expect } from 'chai';
import { NVME_SC_SUCCESS } from '@p2p/pci-emu';
import { useRdmaStack } from '../harness/rdma-stack-hooks';
import { rdmaStackEnv, runExample } from '../harness/run-example';
import { rdmaNvmeDoorbell } from './rdma-nvme-doorbell';

/**
 * The seed's flow against the whole stack as separate processes (pci-emu,
 * the registry, vfio-pci, nic0 and nic1): called as a function, and run as
 * the command the README shows.
 */
describe('example: rdma-nvme-doorbell (host Y drives nvme1 by RDMA alone: data, SQE and doorbell into BARs, completion read back)', function () {
  this.timeout(90_000);
  const stack = useRdmaStack();
  const addresses = (): { registry: string; vfioPci: string; nicY: string; nicX: string } => ({
    registry: stack().registry.address,
    vfioPci: stack().vfioPci.address,
    nicY: stack().nics[0].process.address,
    nicX: stack().nics[1].process.address,
  });

  it('writes a block and an NVMe Write by RDMA WRITE, rings the doorbell by RDMA WRITE, and reads the block back: both commands succeed and the target made no call', async () => {
    const lines: string[] = [];
    const result = await rdmaNvmeDoorbell({ ...addresses(), shmDir: stack().shmDir, log: (line) => lines.push(line) });
    expect(result.statuses).to.deep.equal([NVME_SC_SUCCESS, NVME_SC_SUCCESS]);
    expect(result.readBack.equals(result.expected)).to.equal(true);
    expect(result.targetCalls).to.equal(0);
    expect(lines).to.include('host X made 0 calls while host Y drove nvme1');
  });

  it('runs as the README shows it, a second time on the same stack, and ends with "identical"', async () => {
    const { code, stdout, stderr } = await runExample('rdma-nvme-doorbell', rdmaStackEnv(stack()));
    expect(code, stderr).to.equal(0);
    expect(stdout.trim().split('\n').at(-1)).to.equal('4096 bytes written to nvme1 and read back by host Y through RDMA alone: identical');
  });
});
