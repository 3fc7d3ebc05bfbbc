import { expect } from 'chai';
import { readAdminToken } from '@p2p/auth';
import { RdmaStack } from '../harness/rdma-hosts';
import { runExample } from '../harness/run-example';
import { crossHostRead, type CrossHostReadOptions } from './cross-host-read';

/** Host B's NICs, on host A's wire port: another host, with its own registry and tmpfs. */
const HOST_B_IPS = ['127.0.0.4', '127.0.0.5'] as const;
const NIC0 = 0;
const NIC1 = 1;

/**
 * The cross-host example against two hosts, each a whole stack of its own
 * (pci-emu, registry, vfio-pci, two NICs) on its own segment directory, as
 * the cross-host tests build them: called as a function, and run as the
 * command the README shows.
 */
describe('example: cross-host-read (host A reads host B\'s accel0 BAR over the wire)', function () {
  this.timeout(90_000);
  let hostA: RdmaStack;
  let hostB: RdmaStack;

  before(async () => {
    hostA = await RdmaStack.start();
    hostB = await RdmaStack.start({ nicIps: HOST_B_IPS, wirePort: hostA.wirePort });
  });

  after(async () => {
    await hostB?.stop();
    await hostA?.stop();
  });

  const options = (nicB: typeof NIC0 | typeof NIC1): CrossHostReadOptions => ({
    hostA: { registry: hostA.registry.address, nic: hostA.nics[NIC0].process.address },
    hostB: { registry: hostB.registry.address, vfioPci: hostB.vfioPci.address, nic: hostB.nics[nicB].process.address, adminToken: readAdminToken(hostB.shmDir, {}) },
    length: 256 * 1024,
  });

  it("reads accel0's bytes through host B's nic1 (beside accel0, P2P through their switch)", async () => {
    const { received, expected } = await crossHostRead(options(NIC1));
    expect(received.equals(expected)).to.equal(true);
  });

  it("reads accel0's bytes through host B's nic0 (across the host bridge: a pod's one NIC)", async () => {
    const { received, expected } = await crossHostRead(options(NIC0));
    expect(received.equals(expected)).to.equal(true);
  });

  it('runs as the README shows it, its addresses from HOST_A_* and HOST_B_*, and ends with "identical"', async () => {
    const { code, stdout, stderr } = await runExample('cross-host-read', {
      HOST_A_REGISTRY_ADDRESS: hostA.registry.address,
      HOST_A_NIC_ADDRESS: hostA.nics[NIC0].process.address,
      HOST_B_REGISTRY_ADDRESS: hostB.registry.address,
      HOST_B_VFIO_PCI_ADDRESS: hostB.vfioPci.address,
      HOST_B_NIC_ADDRESS: hostB.nics[NIC0].process.address,
      HOST_B_SHM_DIR: hostB.shmDir,
    });
    expect(code, stderr).to.equal(0);
    expect(stdout.trim().split('\n').at(-1)).to.equal("read 1048576 bytes of host-b's accel0 BAR into host-a's memory over the wire: identical");
  });

  it('exits 1 naming the variable when an address is missing', async () => {
    const { code, stderr } = await runExample('cross-host-read', { HOST_A_REGISTRY_ADDRESS: hostA.registry.address, HOST_B_SHM_DIR: hostB.shmDir });
    expect(code).to.equal(1);
    expect(stderr).to.include('HOST_A_NIC_ADDRESS is not set');
  });
});
