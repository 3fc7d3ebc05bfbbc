import * as fs from 'node:fs';
import { expect } from 'chai';
import { type ServiceProcess, startServiceProcess, tempShmDir } from '@p2p/testing';
import { startPlatformProcesses } from '../harness/platform-processes';
import { type ExampleEnv, runExample } from '../harness/run-example';
import { fenceFrozenImporter } from './fence-frozen-importer';

/** The registry's ack deadline in this test (npm start's is 1000 ms). */
const ACK_TIMEOUT_MS = 500;

/**
 * The fencing example against pci-emu, the registry and vfio-pci, each its
 * own process on one segment directory: called as a function, and run as
 * the command the README shows.
 */
describe('example: fence-frozen-importer (a frozen importer is fenced and the revoke returns)', function () {
  this.timeout(60_000);
  let shmDir: string;
  const services: ServiceProcess[] = [];
  let env: ExampleEnv;

  before(async () => {
    shmDir = tempShmDir();
    const base = { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn', DMABUF_REGISTRY_ACK_TIMEOUT_MS: String(ACK_TIMEOUT_MS) };
    const { pciEmu, registry } = await startPlatformProcesses(base);
    services.push(pciEmu, registry);
    const vfioPci = await startServiceProcess('vfio-pci', 'VFIO_PCI', { env: { ...base, PCI_EMU_ADDRESS: pciEmu.address, DMABUF_REGISTRY_ADDRESS: registry.address } });
    services.push(vfioPci);
    env = { DMABUF_REGISTRY_ADDRESS: registry.address, VFIO_PCI_ADDRESS: vfioPci.address, PCI_EMU_ADDRESS: pciEmu.address, P2P_SHM_DIR: shmDir };
  });

  after(async () => {
    for (const service of services.reverse()) await service.stop('SIGKILL');
    fs.rmSync(shmDir, { recursive: true, force: true });
  });

  it('fences the frozen importer after the ack deadline, and its late write through the stale mapping leaves the BAR as it was', async () => {
    const lines: string[] = [];
    const result = await fenceFrozenImporter({
      registry: env.DMABUF_REGISTRY_ADDRESS!,
      vfioPci: env.VFIO_PCI_ADDRESS!,
      pciEmu: env.PCI_EMU_ADDRESS!,
      shmDir,
      log: (line) => lines.push(line),
    });
    expect(result.fence).to.deep.equal({ pid: result.importerPid, attachmentId: result.importerAttachment });
    expect(result.revokeMs, 'the revoke waits for the ack deadline').to.be.at.least(ACK_TIMEOUT_MS - 20);
    expect(result.revokeMs, 'and not much longer').to.be.below(ACK_TIMEOUT_MS + 2000);
    expect(result.importerSegments, 'the segments the importer mapped').to.not.deep.equal([]);
    expect([result.importerState, result.libraryWrite]).to.deep.equal(['fenced', 'ENODEV']);
    expect(result.before.every((byte) => byte === 0xa1)).to.equal(true);
    expect(result.after.equals(result.before), 'the BAR after the late write').to.equal(true);
    expect(lines).to.include('registry events: ' + ['REVOKE', `MOVE_NOTIFY pid ${result.importerPid}`, `FENCE pid ${result.importerPid}`].join(', '));
  });

  it('runs as the README shows it, a second time on the same stack, and ends with "its late write reached nothing"', async () => {
    const { code, stderr, lines } = await runExample('fence-frozen-importer', env);
    expect(code, stderr).to.equal(0);
    expect(lines.at(-1)).to.match(/^the registry fenced the frozen importer: the revoke returned in \d+ ms, its late write reached nothing$/);
  });
});
