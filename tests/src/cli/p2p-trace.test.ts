import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'chai';
import { RegistrySession } from '@p2p/dmabuf-client';
import { vfio } from '@p2p/proto';
import { asAdmin, platformSecretsOf, type ServiceProcess, startServiceProcess, tempShmDir } from '@p2p/testing';
import { P2P_BIN } from '../harness/p2p-cli';
import { rpc } from '../harness/rpc';

const ACCEL0 = '0000:07:00.0';
const NIC1 = '0000:09:00.0';
const BAR2 = 2;
const CONFIG_REGION = 7;
const PCI_COMMAND = 0x04;
const PCI_COMMAND_MEMORY = 0x2;
const FEATURE_DMA_BUF = 11;
const GET = 1 << 16;
const ISO_MICROS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;

interface Running {
  readonly child: ChildProcess;
  stdout: string;
  stderr: string;
  readonly exited: Promise<number>;
}

/** `p2p` as a long-running child: resolves once its stderr says every service's stream is live. */
async function startP2p(env: NodeJS.ProcessEnv, args: string[]): Promise<Running> {
  const child = spawn(process.execPath, [P2P_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const running: Running = {
    child,
    stdout: '',
    stderr: '',
    exited: new Promise((resolve) => child.on('close', (code) => resolve(code ?? -1))),
  };
  child.stdout!.on('data', (chunk: Buffer) => (running.stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (running.stderr += chunk.toString()));
  const deadline = Date.now() + 20_000;
  while (!(running.stderr.includes('watching pci-emu') && running.stderr.includes('watching dmabuf-registry'))) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`p2p ${args.join(' ')} did not start watching: ${running.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return running;
}

/** SIGINT, as Ctrl-C, once the reorder window has let the last events out. */
async function interrupt(running: Running): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 300));
  running.child.kill('SIGINT');
  return running.exited;
}

/**
 * `p2p watch` and `p2p trace` against pci-emu, the registry and vfio-pci as
 * processes: a process exports accel0's BAR2, a NIC driver imports it
 * dynamically and maps it, and clearing Memory Space through vfio-pci
 * revokes it under the attachment (move_notify, ack, the revoke's return).
 */
describe('p2p watch and p2p trace: every service\'s events, timestamped and linked', function () {
  this.timeout(60_000);
  let shmDir: string;
  let services: ServiceProcess[] = [];
  let env: NodeJS.ProcessEnv;
  let client: vfio.VfioPciServiceClient;
  let spdk: RegistrySession;
  let nic: RegistrySession;
  let deviceFd: number;

  before(async () => {
    shmDir = tempShmDir();
    const base = { P2P_SHM_DIR: shmDir, LOG_LEVEL: 'warn', DMABUF_REGISTRY_ACK_TIMEOUT_MS: '1000' };
    const pciEmu = await startServiceProcess('pci-emu', 'PCI_EMU', { env: base });
    const registry = await startServiceProcess('dmabuf-registry', 'DMABUF_REGISTRY', { env: { ...base, PCI_EMU_ADDRESS: pciEmu.address } });
    const vfioPci = await startServiceProcess('vfio-pci', 'VFIO_PCI', { env: { ...base, PCI_EMU_ADDRESS: pciEmu.address, DMABUF_REGISTRY_ADDRESS: registry.address } });
    services = [vfioPci, registry, pciEmu];
    env = { PATH: process.env.PATH, P2P_SHM_DIR: shmDir, PCI_EMU_ADDRESS: pciEmu.address, VFIO_PCI_ADDRESS: vfioPci.address, DMABUF_REGISTRY_ADDRESS: registry.address };
    const admin = asAdmin(shmDir);
    client = new vfio.VfioPciServiceClient(vfioPci.address, admin.credentials, admin.options);
    spdk = await RegistrySession.open(registry.address, { name: 'spdk', shmDir });
    nic = await RegistrySession.open(registry.address, { name: 'rdma-nic', shmDir, privilegedCredential: platformSecretsOf(shmDir).platformToken });
    await rpc((cb) => client.bind({ bdf: ACCEL0, variants: undefined }, cb));
    deviceFd = (await rpc<vfio.OpenDeviceResponse>((cb) => client.openDevice({ pid: spdk.pid, bdf: ACCEL0 }, cb))).fd;
  });

  after(async () => {
    await Promise.all([spdk?.close(), nic?.close()].map((p) => p?.catch(() => undefined)));
    client?.close();
    for (const service of services) await service.stop();
    fs.rmSync(shmDir, { recursive: true, force: true });
  });

  const setMemory = async (on: boolean): Promise<void> => {
    const read = await rpc<vfio.RegionReadResponse>((cb) => client.regionRead({ pid: spdk.pid, deviceFd, index: CONFIG_REGION, offset: BigInt(PCI_COMMAND), count: 2 }, cb));
    const command = read.data.readUInt16LE(0);
    const data = Buffer.alloc(2);
    data.writeUInt16LE(on ? command | PCI_COMMAND_MEMORY : command & ~PCI_COMMAND_MEMORY);
    await rpc((cb) => client.regionWrite({ pid: spdk.pid, deviceFd, index: CONFIG_REGION, offset: BigInt(PCI_COMMAND), data }, cb));
  };

  /** Export, dynamic attach and map, revoke by MEM off, restore, detach: the importer acks each move_notify. */
  const revokeUnderAttachment = async (): Promise<void> => {
    const { fd } = await rpc<vfio.DeviceFeatureResponse>((cb) =>
      client.deviceFeature(
        {
          pid: spdk.pid,
          deviceFd,
          argsz: 0,
          flags: GET | FEATURE_DMA_BUF,
          payload: { $case: 'dmaBuf', value: { regionIndex: BAR2, openFlags: 2, flags: 0, dmaRanges: [{ offset: 0n, length: 65536n }] } },
        },
        cb,
      ),
    );
    const importer = await nic.importDmaBuf({ fd, holderPid: spdk.pid, importerBdf: NIC1, onMoveNotify: async () => undefined });
    await importer.map();
    await setMemory(false);
    await setMemory(true);
    await importer.detach();
    await spdk.closeFd(fd);
  };

  it('p2p watch --json: one object per line, in wall-clock order, with µs ISO times; the revoke linked to its move_notify, ack and return; SIGINT exits 0', async () => {
    const watch = await startP2p(env, ['--json', 'watch']);
    await revokeUnderAttachment();
    expect(await interrupt(watch), watch.stderr).to.equal(0);

    const lines = watch.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, string | number | boolean>);
    for (const line of lines) expect(line.time).to.match(ISO_MICROS);
    const times = lines.map((line) => line.time as string);
    expect(times).to.deep.equal([...times].sort());

    const revoke = lines.find((l) => l.event === 'revoke')!;
    expect(revoke, 'a revoke').to.not.equal(undefined);
    const move = revoke.sequence;
    const notify = lines.find((l) => l.event === 'move_notify' && l.move === move)!;
    expect(notify, 'its move_notify').to.not.equal(undefined);
    expect(notify).to.include({ buffer: revoke.buffer });
    const ack = lines.find((l) => l.event === 'ack' && l.notification === notify.notification)!;
    expect(ack).to.include({ move, attachment: notify.attachment, pid: notify.pid });
    const done = lines.find((l) => l.event === 'move_done' && l.move === move)!;
    expect(lines.indexOf(revoke)).to.be.below(lines.indexOf(notify));
    expect(lines.indexOf(ack)).to.be.below(lines.indexOf(done));

    // vfio-pci revokes before the write clearing MEM lands: the platform's decode change comes after the revoke.
    const decodeOff = lines.find((l) => l.service === 'pci-emu' && l.event === 'decode-changed' && l.bdf === ACCEL0 && l.memoryEnabled === false)!;
    expect(decodeOff, 'MEM off on accel0').to.not.equal(undefined);
    expect(lines.indexOf(decodeOff)).to.be.above(lines.indexOf(revoke));
  });

  it('p2p watch prints a line per event: time, service, event and its ids', async () => {
    const watch = await startP2p(env, ['watch']);
    await setMemory(false);
    await setMemory(true);
    expect(await interrupt(watch), watch.stderr).to.equal(0);
    expect(watch.stdout).to.match(/^\d{4}-\d\d-\d\dT[\d:.]{15}Z pci-emu +#\d+ decode-changed 0000:07:00\.0 memoryEnabled=false /m);
  });

  it('p2p trace --out writes a Chrome trace: named tracks, the revoke flowing to each move_notify and ack, attachment slices that end', async () => {
    const out = path.join(shmDir, 'run.json');
    const trace = await startP2p(env, ['trace', '--out', out]);
    await revokeUnderAttachment();
    expect(await interrupt(trace), trace.stderr).to.equal(0);
    expect(trace.stdout).to.match(/run\.json: \d+ events, \d+ trace events/);

    const { traceEvents } = JSON.parse(fs.readFileSync(out, 'utf8')) as { traceEvents: { name: string; ph: string; pid: number; tid?: number; ts?: number; id?: number; cat?: string; args?: Record<string, unknown> }[] };
    const processNames = traceEvents.filter((e) => e.ph === 'M' && e.name === 'process_name').map((e) => e.args?.name);
    expect(processNames).to.have.members(['pci-emu', 'dmabuf-registry']);
    expect(traceEvents.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => e.args?.name)).to.include(`pid ${nic.pid}`);

    const revoke = traceEvents.find((e) => e.ph === 'X' && e.name.startsWith('revoke'))!;
    expect(revoke, 'the revoke slice').to.not.equal(undefined);
    const bound = (flow: { pid: number; tid?: number; ts?: number }): string | undefined =>
      traceEvents.find((e) => e.ph === 'X' && e.pid === flow.pid && e.tid === flow.tid && e.ts === flow.ts)?.name.split(' ')[0];
    const starts = traceEvents.filter((e) => e.ph === 's' && e.pid === revoke.pid && e.tid === revoke.tid && e.ts === revoke.ts);
    expect(starts, 'flows out of the revoke').to.have.length(1);
    const steps = traceEvents.filter((e) => ['s', 't', 'f'].includes(e.ph) && e.id === starts[0]!.id && e.cat === starts[0]!.cat);
    expect(steps.map((e) => `${e.ph} ${bound(e)}`)).to.deep.equal(['s revoke', 't move_notify', 't ack', 'f move_done']);

    for (const cat of ['attachment', 'mapping']) {
      const begins = traceEvents.filter((e) => e.cat === cat && e.ph === 'b').map((e) => e.id);
      const ends = traceEvents.filter((e) => e.cat === cat && e.ph === 'e').map((e) => e.id);
      expect(begins, cat).to.not.be.empty;
      expect(ends, cat).to.have.members(begins);
    }
  });
});
