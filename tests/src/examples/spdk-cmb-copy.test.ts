import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expect } from 'chai';
import { pci } from '@p2p/proto';
import { asPlatform, eventually, type ServiceProcess, startServiceProcess, tempShmDir } from '@p2p/testing';
import { rpc } from '../harness/rpc';
import { spdkCmbCopy } from './spdk-cmb-copy';

/**
 * SPDK's cmb_copy against pci-emu, the registry and vfio-pci, each its own
 * process on one segment directory as npm start runs them, the namespaces
 * in a data directory of the test's: called as a function, and run as the
 * command the README shows.
 */
describe('example: spdk-cmb-copy (nvme0 -> nvme1 through nvme1’s CMB, a process owning both through vfio-pci)', function () {
  this.timeout(60_000);
  let shmDir: string;
  let dataDir: string;
  const services: ServiceProcess[] = [];
  let registryAddress: string;
  let vfioAddress: string;
  let platform: pci.PciEmuServiceClient;

  before(async () => {
    shmDir = tempShmDir();
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-nvme-data-'));
    const env = { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn' };
    const pciEmu = await startServiceProcess('pci-emu', 'PCI_EMU', { env: { ...env, PCI_EMU_DATA_DIR: dataDir } });
    services.push(pciEmu);
    const registry = await startServiceProcess('dmabuf-registry', 'DMABUF_REGISTRY', { env: { ...env, PCI_EMU_ADDRESS: pciEmu.address } });
    services.push(registry);
    const vfioPci = await startServiceProcess('vfio-pci', 'VFIO_PCI', { env: { ...env, PCI_EMU_ADDRESS: pciEmu.address, DMABUF_REGISTRY_ADDRESS: registry.address } });
    services.push(vfioPci);
    registryAddress = registry.address;
    vfioAddress = vfioPci.address;
    const hardware = asPlatform(shmDir);
    platform = new pci.PciEmuServiceClient(pciEmu.address, hardware.credentials, hardware.options);
  });

  after(async () => {
    platform?.close();
    for (const service of services.reverse()) await service.stop('SIGKILL');
    fs.rmSync(shmDir, { recursive: true, force: true });
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('copies 1 MiB from nvme0 to nvme1 through the CMB: read back identical, on nvme1’s namespace file, and no domain left', async () => {
    const lines: string[] = [];
    const { expected, copied } = await spdkCmbCopy({ registry: registryAddress, vfioPci: vfioAddress, shmDir, log: (line) => lines.push(line) });
    expect(copied.equals(expected)).to.equal(true);
    // The namespaces are files of the data directory: nvme1's first MiB is the copy.
    const file = path.join(dataDir, '0000-08-00.0-n1.img');
    const onDisk = Buffer.alloc(expected.length);
    const fd = fs.openSync(file, 'r');
    try {
      fs.readSync(fd, onDisk, 0, onDisk.length, 0);
    } finally {
      fs.closeSync(fd);
    }
    expect(onDisk.equals(expected), "nvme1's namespace file").to.equal(true);
    expect(lines.some((line) => /nvme0 Read into nvme1's CMB, nvme1 Write from its CMB/.test(line))).to.equal(true);
    await eventually('the domains to be freed', async () => (await rpc<pci.ListIommuDomainsResponse>((cb) => platform.listIommuDomains({ domainId: 0 }, cb))).domains.length === 0);
  });

  it('runs as the README shows it, a second time on the same stack, and ends with "identical"', async () => {
    const script = path.join(__dirname, 'spdk-cmb-copy.js');
    const env: NodeJS.ProcessEnv = { ...process.env, DMABUF_REGISTRY_ADDRESS: registryAddress, VFIO_PCI_ADDRESS: vfioAddress, P2P_SHM_DIR: shmDir };
    delete env.P2P_ADMIN_TOKEN;
    const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(process.execPath, [script], { env, timeout: 30_000 }, (error, out, err) => resolve({ code: error === null ? 0 : Number(error.code ?? 1), stdout: out, stderr: err })),
    );
    expect(code, stderr).to.equal(0);
    expect(stdout.trim().split('\n').at(-1)).to.equal("1048576 bytes copied from nvme0 to nvme1 through nvme1's CMB: identical");
  });
});
