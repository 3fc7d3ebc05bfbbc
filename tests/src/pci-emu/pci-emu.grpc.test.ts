import * as fs from 'node:fs';
import * as http from 'node:http';
import {
  encodeNvmeCommand,
  NVME_ADMIN_IDENTIFY,
  NVME_CC_NVM_ENABLE,
  NVME_CMBMSC_CMSE,
  NVME_CMBMSC_CRE,
  NVME_ID_CNS_CTRL,
  NVME_REG_ACQ,
  NVME_REG_AQA,
  NVME_REG_ASQ,
  NVME_REG_CC,
  NVME_REG_CMBMSC,
  NVME_REG_CSTS,
  NVME_REG_DBS,
} from '@p2p/pci-emu';
import { expect } from 'chai';
import { pci, fault } from '@p2p/proto';
import { listSegmentFiles, SegmentStore } from '@p2p/shm';
import { healthCheck, reflectedServices } from '../harness/generic-clients';
import { expectErrno, rpc } from '../harness/rpc';
import { asAdmin, type ServiceProcess, startServiceProcess, tempShmDir } from '@p2p/testing';
import { watchPciEvents } from '../harness/pci-events';

const PCI_COMMAND = 0x04;
const PCI_COMMAND_MEMORY = 0x2;

describe('pci-emu over gRPC (a separate process on loopback)', function () {
  this.timeout(30000);
  let shmDir: string;
  let service: ServiceProcess;
  let client: pci.PciEmuServiceClient;
  let faults: fault.FaultInjectionServiceClient;
  let nvme: pci.FunctionInfo;
  let accel: pci.FunctionInfo;

  before(async () => {
    shmDir = tempShmDir();
    service = await startServiceProcess('pci-emu', 'PCI_EMU', { env: { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'info' } });
    // The hardware's raw access and its fault rules are the administrator's.
    const admin = asAdmin(shmDir);
    client = new pci.PciEmuServiceClient(service.address, admin.credentials, admin.options);
    faults = new fault.FaultInjectionServiceClient(service.address, admin.credentials, admin.options);
    const { functions } = await rpc<pci.ListFunctionsResponse>((cb) => client.listFunctions({}, cb));
    nvme = functions.find((f) => f.kind === pci.FunctionKind.FUNCTION_KIND_NVME)!;
    accel = functions.find((f) => f.kind === pci.FunctionKind.FUNCTION_KIND_ACCEL)!;
  });

  after(async () => {
    client?.close();
    faults?.close();
    await service?.stop();
    fs.rmSync(shmDir, { recursive: true, force: true });
  });

  const mmioRead = (bdf: string, bar: number, offset: number, width: number): Promise<pci.MmioReadResponse> =>
    rpc((cb) => client.mmioRead({ bdf, bar, offset: BigInt(offset), width }, cb));
  const configRead = async (bdf: string, offset: number, width: number): Promise<number> =>
    (await rpc<pci.ConfigReadResponse>((cb) => client.configRead({ bdf, offset, width }, cb))).value;
  const configWrite = (bdf: string, offset: number, width: number, value: number): Promise<pci.ConfigWriteResponse> =>
    rpc((cb) => client.configWrite({ bdf, offset, width, value, hardware: false }, cb));

  it('is SERVING on grpc.health.v1 and lists its services through reflection', async () => {
    expect(await healthCheck(service.address)).to.equal('SERVING');
    expect(await healthCheck(service.address, 'p2p.pci.v1.PciEmuService')).to.equal('SERVING');
    expect(await reflectedServices(service.address)).to.include.members([
      'p2p.pci.v1.PciEmuService',
      'p2p.fault.v1.FaultInjectionService',
      'grpc.health.v1.Health',
    ]);
  });

  it('serves the default topology: two NVMe controllers, an accelerator and two NICs', async () => {
    const topology = await rpc<pci.GetTopologyResponse>((cb) => client.getTopology({}, cb));
    const kinds = topology.functions.map((f) => f.kind).sort();
    expect(kinds).to.deep.equal(
      [pci.FunctionKind.FUNCTION_KIND_NVME, pci.FunctionKind.FUNCTION_KIND_NVME, pci.FunctionKind.FUNCTION_KIND_ACCEL, pci.FunctionKind.FUNCTION_KIND_NIC, pci.FunctionKind.FUNCTION_KIND_NIC].sort(),
    );
    expect(topology.switches.length).to.be.greaterThanOrEqual(2);
    expect(nvme.vendorId).to.be.greaterThan(0);
    expect(nvme.classCode).to.equal(0x010802);
  });

  it('reads NVMe registers and sets CSTS.RDY when CC.EN is written with the admin queues in place', async () => {
    const cap = await mmioRead(nvme.bdf, 0, 0, 8);
    expect(cap.decoded).to.equal(true);
    expect(cap.value).to.not.equal(0n);
    const write = (offset: number, width: number, value: bigint): Promise<unknown> => rpc((cb) => client.mmioWrite({ bdf: nvme.bdf, bar: 0, offset: BigInt(offset), width, value }, cb));
    await write(NVME_REG_AQA, 4, 0x001f001fn);
    await write(NVME_REG_ASQ, 8, 0x10_0000n);
    await write(NVME_REG_ACQ, 8, 0x20_0000n);
    await write(NVME_REG_CC, 4, BigInt(NVME_CC_NVM_ENABLE));
    expect((await mmioRead(nvme.bdf, 0, NVME_REG_CSTS, 4)).value & 1n).to.equal(1n);
  });

  it('returns all ones and drops writes while PCI_COMMAND.MEM is clear, and reports the decode change as an event', async () => {
    const events = await watchPciEvents(client, [accel.bdf]);
    const bar = accel.bars.find((b) => b.kind === pci.BarKind.BAR_KIND_MEMORY)!;
    await rpc((cb) => client.mmioWrite({ bdf: accel.bdf, bar: bar.index, offset: 0n, width: 8, value: 0x1122334455667788n }, cb));
    const command = await configRead(accel.bdf, PCI_COMMAND, 2);
    await configWrite(accel.bdf, PCI_COMMAND, 2, command & ~PCI_COMMAND_MEMORY);
    const offRead = await mmioRead(accel.bdf, bar.index, 0, 8);
    expect(offRead).to.deep.equal({ value: 0xffffffffffffffffn, decoded: false });
    const dropped = await rpc<pci.MmioWriteResponse>((cb) => client.mmioWrite({ bdf: accel.bdf, bar: bar.index, offset: 0n, width: 8, value: 0n }, cb));
    expect(dropped.decoded).to.equal(false);
    await configWrite(accel.bdf, PCI_COMMAND, 2, command);
    expect((await mmioRead(accel.bdf, bar.index, 0, 8)).value).to.equal(0x1122334455667788n);
    const seen = await events.take(2);
    expect(seen.map((e) => e.event?.$case)).to.deep.equal(['decodeChanged', 'decodeChanged']);
    expect(seen.map((e) => (e.event?.$case === 'decodeChanged' ? e.event.value.memoryEnabled : undefined))).to.deep.equal([false, true]);
    expect(seen[1]!.sequence > seen[0]!.sequence).to.equal(true);
  });

  it('shares BAR memory through mapped segments: bytes written in place are read back over gRPC', async () => {
    const bar = accel.bars.find((b) => b.kind === pci.BarKind.BAR_KIND_MEMORY)!;
    const offset = 3 * 4096;
    const { directory, extents } = await rpc<pci.GetBarSegmentsResponse>((cb) =>
      client.getBarSegments({ bdf: accel.bdf, bar: bar.index, offset: BigInt(offset), length: 4096n }, cb),
    );
    expect(directory).to.equal(shmDir);
    expect(extents).to.have.length(1);
    const view = new SegmentStore({ dir: directory }).open(extents[0]!.segment).view(Number(extents[0]!.offset), 4096);
    view.write('hello from a mapping', 0);
    const back = await rpc<pci.BulkReadResponse>((cb) => client.bulkRead({ bdf: accel.bdf, bar: bar.index, offset: BigInt(offset), length: 20n }, cb));
    expect(back.data.toString()).to.equal('hello from a mapping');
  });

  it('relocates a memory BAR: its bytes move to new segment files, and a stale mapping no longer reaches it', async () => {
    const bar = accel.bars.find((b) => b.kind === pci.BarKind.BAR_KIND_MEMORY)!;
    const segments = (): Promise<pci.GetBarSegmentsResponse> =>
      rpc((cb) => client.getBarSegments({ bdf: accel.bdf, bar: bar.index, offset: 0n, length: 4096n }, cb));
    const before = await segments();
    const stale = new SegmentStore({ dir: shmDir }).open(before.extents[0]!.segment).view(0, 4096);
    stale.write('kept', 64);
    const { generation } = await rpc<pci.RelocateBarResponse>((cb) => client.relocateBar({ bdf: accel.bdf, bar: bar.index }, cb));
    expect(generation).to.equal(1n);
    const after = await segments();
    expect(after.extents[0]!.segment).to.not.equal(before.extents[0]!.segment);
    expect(fs.existsSync(`${shmDir}/${before.extents[0]!.segment}`)).to.equal(false);
    stale.write('lost', 64);
    const read = await rpc<pci.BulkReadResponse>((cb) => client.bulkRead({ bdf: accel.bdf, bar: bar.index, offset: 64n, length: 4n }, cb));
    expect(read.data.toString()).to.equal('kept');
    // A register BAR has no memory to move (NVMe's BAR0 does: its doorbell window).
    const nic = (await rpc<pci.ListFunctionsResponse>((cb) => client.listFunctions({}, cb))).functions.find((f) => f.kind === pci.FunctionKind.FUNCTION_KIND_NIC)!;
    await expectErrno(rpc((cb) => client.relocateBar({ bdf: nic.bdf, bar: 0 }, cb)), 'EINVAL');
  });

  it('goes to D3hot and back: decode off in D3hot, a power-on reset on the way back, events in order', async () => {
    const events = await watchPciEvents(client, [nvme.bdf]);
    const previous = await rpc<pci.SetPowerStateResponse>((cb) => client.setPowerState({ bdf: nvme.bdf, state: pci.PowerState.POWER_STATE_D3HOT }, cb));
    expect(previous.previous).to.equal(pci.PowerState.POWER_STATE_D0);
    expect((await mmioRead(nvme.bdf, 0, 0, 4)).decoded).to.equal(false);
    await rpc((cb) => client.setPowerState({ bdf: nvme.bdf, state: pci.PowerState.POWER_STATE_D0 }, cb));
    const seen = await events.take(4);
    expect(seen.map((e) => e.event?.$case)).to.deep.equal(['powerChanged', 'decodeChanged', 'powerChanged', 'reset']);
    expect(seen[3]!.event).to.deep.equal({ $case: 'reset', value: { kind: pci.ResetKind.RESET_KIND_POWER_ON } });
    // No_Soft_Reset is clear: the function came back reset, with PCI_COMMAND 0.
    expect(await configRead(nvme.bdf, PCI_COMMAND, 2)).to.equal(0);
    expect((await mmioRead(nvme.bdf, 0, 0, 4)).decoded).to.equal(false);
    await configWrite(nvme.bdf, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    expect((await mmioRead(nvme.bdf, 0, 0, 4)).decoded).to.equal(true);
  });

  it('carries NVMe controller events to a watch that asks, counts the command on /metrics and logs the state change', async () => {
    const { functions } = await rpc<pci.ListFunctionsResponse>((cb) => client.listFunctions({}, cb));
    const nvme1 = functions.filter((f) => f.kind === pci.FunctionKind.FUNCTION_KIND_NVME)[1]!;
    const cba = nvme1.bars.find((b) => b.index === 2)!.busAddress;
    const write = (offset: number, width: number, value: bigint): Promise<unknown> =>
      rpc((cb) => client.mmioWrite({ bdf: nvme1.bdf, bar: 0, offset: BigInt(offset), width, value }, cb));
    const events = await watchPciEvents(client, [nvme1.bdf], { nvme: true });
    // The admin queues and the Identify data in the controller's own CMB: no IOMMU mapping needed.
    await write(NVME_REG_CMBMSC, 8, NVME_CMBMSC_CRE | NVME_CMBMSC_CMSE | cba);
    await write(NVME_REG_AQA, 4, 0x000f000fn);
    await write(NVME_REG_ASQ, 8, cba);
    await write(NVME_REG_ACQ, 8, cba + 0x1000n);
    await write(NVME_REG_CC, 4, BigInt(NVME_CC_NVM_ENABLE));
    const identify = encodeNvmeCommand({ opcode: NVME_ADMIN_IDENTIFY, commandId: 7, prp1: cba + 0x2000n, cdw10: NVME_ID_CNS_CTRL });
    await rpc((cb) => client.bulkWrite({ bdf: nvme1.bdf, bar: 2, offset: 0n, data: identify }, cb));
    await write(NVME_REG_DBS, 4, 1n);
    const seen = await events.take(5);
    expect(seen.map((e) => e.event?.$case)).to.deep.equal(['nvmeQueueCreated', 'nvmeQueueCreated', 'nvmeStateChanged', 'nvmeDoorbell', 'nvmeCommand']);
    expect(seen[3]!.event).to.deep.equal({ $case: 'nvmeDoorbell', value: { index: 0, value: 1, path: pci.BarWritePath.BAR_WRITE_PATH_MMIO, accepted: true } });
    expect(seen[4]!.event).to.deep.equal({ $case: 'nvmeCommand', value: { qid: 0, cid: 7, opcode: NVME_ADMIN_IDENTIFY, status: 0, bytes: 4096n } });
    const text = await scrape(service);
    const bdf = nvme1.bdf.replace(/\./g, '\\.');
    expect(text).to.match(new RegExp(`p2p_nvme_commands_total\\{bdf="${bdf}",queue="admin",opcode="Identify",status="SUCCESS"[^}]*\\} 1\n`));
    const ready = (): boolean => logEntries(service).some((entry) => entry['msg'] === 'NVMe controller state changed' && entry['bdf'] === nvme1.bdf && entry['state'] === 'ready');
    for (const deadline = Date.now() + 5000; !ready() && Date.now() < deadline; ) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(ready(), 'the ready state logged').to.equal(true);
  });

  it('unplugs and re-plugs: every access is ENODEV in between', async () => {
    const nic = (await rpc<pci.ListFunctionsResponse>((cb) => client.listFunctions({}, cb))).functions.find((f) => f.kind === pci.FunctionKind.FUNCTION_KIND_NIC)!;
    await rpc((cb) => client.unplug({ bdf: nic.bdf }, cb));
    await expectErrno(configRead(nic.bdf, 0, 4), 'ENODEV');
    await expectErrno(mmioRead(nic.bdf, 0, 0, 4), 'ENODEV');
    await rpc((cb) => client.replug({ bdf: nic.bdf }, cb));
    expect(await configRead(nic.bdf, 0, 2)).to.equal(nic.vendorId);
  });

  it('rejects bad input with the errno and leaves state unchanged', async () => {
    const before = await configRead(nvme.bdf, PCI_COMMAND, 2);
    await expectErrno(configRead('0000:7f:00.0', 0, 4), 'ENODEV');
    await expectErrno(configRead('not-a-bdf', 0, 4), 'EINVAL');
    await expectErrno(configRead(nvme.bdf, 1, 2), 'EINVAL');
    await expectErrno(configRead(nvme.bdf, 0, 3), 'EINVAL');
    await expectErrno(configRead(nvme.bdf, 4096, 4), 'EINVAL');
    await expectErrno(configWrite(nvme.bdf, 0x00, 2, 0x1234), 'EPERM');
    await expectErrno(mmioRead(nvme.bdf, 0, 2, 4), 'EINVAL');
    await expectErrno(mmioRead(nvme.bdf, 9, 0, 4), 'EINVAL');
    await expectErrno(mmioRead(nvme.bdf, 0, 0, 16), 'EINVAL');
    expect(await configRead(nvme.bdf, PCI_COMMAND, 2)).to.equal(before);
  });

  it('injects faults at run time: delay then abort with an errno, counted and cleared', async () => {
    const added = await rpc<fault.AddFaultRuleResponse>((cb) =>
      faults.addFaultRule(
        { rule: { id: '', methodPattern: '/p2p.pci.v1.PciEmuService/MmioRead', delay: { delayMs: 100, percentage: 100 }, abort: { errno: 'EIO', grpcCode: 0, percentage: 100 }, maxActivations: 1, activations: 0n } },
        cb,
      ),
    );
    const started = Date.now();
    await expectErrno(mmioRead(nvme.bdf, 0, 0, 4), 'EIO');
    expect(Date.now() - started).to.be.greaterThanOrEqual(90);
    expect((await mmioRead(nvme.bdf, 0, 0, 4)).decoded).to.equal(true);
    const { rules } = await rpc<fault.ListFaultRulesResponse>((cb) => faults.listFaultRules({}, cb));
    expect(rules.map((r) => [r.id, r.activations])).to.deep.equal([[added.rule!.id, 1n]]);
    expect(await rpc<fault.ClearFaultRulesResponse>((cb) => faults.clearFaultRules({}, cb))).to.deep.equal({ removed: 1 });
  });

  it('exports Prometheus metrics with per-method RPC counts', async () => {
    const text = await scrape(service);
    expect(text).to.match(/grpc_server_handled_total\{[^}]*method="\/p2p.pci.v1.PciEmuService\/ListFunctions"[^}]*code="OK"/);
  });

  it('shuts down gracefully on SIGTERM and leaves no segment files behind', async () => {
    expect(listSegmentFiles(shmDir).length).to.be.greaterThan(0);
    expect(await service.stop('SIGTERM')).to.equal(0);
    expect(listSegmentFiles(shmDir)).to.deep.equal([]);
  });
});

/** The service's /metrics, as a scraper reads it. */
function scrape(service: ServiceProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get(`http://127.0.0.1:${portOf(service, 'metricsPort')}/metrics`, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

/** The service's log entries so far (its pino JSON lines; other lines skipped). */
function logEntries(service: ServiceProcess): Array<Record<string, unknown>> {
  return service.logs.flatMap((line) => {
    try {
      return [JSON.parse(line) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
}

/** The first logged value of `key` (pino JSON lines of the service). */
function portOf(service: ServiceProcess, key: string): number {
  for (const entry of logEntries(service)) {
    const value = entry[key];
    if (typeof value === 'number') return value;
  }
  throw new Error(`no ${key} in the service's logs`);
}
