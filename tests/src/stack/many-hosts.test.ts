import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { expect } from 'chai';
import { HOSTS_FILE, type HostsFile, PORT_STRIDE, readHostsFile } from '@p2p/hosts';
import { rdma } from '@p2p/proto';
import { freePort, tempShmDir } from '@p2p/testing';
import { IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_REMOTE_READ, IBV_ACCESS_REMOTE_WRITE } from '@p2p/verbs';
import { runP2p, runP2pJson } from '../harness/p2p-cli';
import { RdmaHost } from '../harness/rdma-hosts';
import { notLanded, patterned, transferBetween, WC_STATUS_SUCCESS } from '../harness/rdma-transfer';

const STACK_MAIN = path.resolve(__dirname, '../../../services/stack/dist/main.js');
const HOSTS = 2;
const KiB = 1024;
const SIZE = 64 * KiB;
const COUNT = 64;
const IOVA = 0x1_0000_0000;
const ACCESS = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;

/** True when nothing listens on 127.0.0.1:`port`. */
function isFree(port: number): Promise<boolean> {
  const server = net.createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A port base whose `hosts` strides are all free now, so this test never meets a running `npm start`. */
async function freePortBase(hosts: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 2000) * PORT_STRIDE + 1;
    const ports = Array.from({ length: hosts * PORT_STRIDE }, (_, i) => base + i);
    if ((await Promise.all(ports.map(isFree))).every(Boolean)) return base;
  }
  throw new Error('no free port range for the hosts');
}

/**
 * `npm start --hosts 2`, as a user runs it: two hosts, each its own process
 * and segment directory under one P2P_SHM_DIR, NICs on 127.0.0.2/.3 and
 * 127.0.1.2/.3 on one wire port (a free one here, and a free port base,
 * so a running stack is left alone). The hosts reach each other only
 * through their NICs' wire.
 */
describe('npm start --hosts: many hosts on one machine', function () {
  this.timeout(120_000);
  let root: string;
  let parent: ChildProcess;
  let output = '';
  let exited: Promise<number | null>;
  let hosts: HostsFile['hosts'];
  const cli = (): NodeJS.ProcessEnv => ({ PATH: process.env.PATH, P2P_SHM_DIR: root });

  before(async () => {
    root = tempShmDir('p2p-hosts-');
    const portBase = await freePortBase(HOSTS);
    const { P2P_ADMIN_TOKEN: _admin, P2P_PLATFORM_TOKEN: _platform, ...env } = process.env;
    parent = spawn(process.execPath, [STACK_MAIN, '--hosts', String(HOSTS), '--port-base', String(portBase), '--metrics-port-base', '0'], {
      env: { ...env, P2P_SHM_DIR: root, RDMA_NIC_WIRE_PORT: String(await freePort()), LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    parent.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    parent.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    exited = new Promise((resolve) => parent.once('exit', (code) => resolve(code)));
    const file = path.join(root, HOSTS_FILE);
    const deadline = Date.now() + 100_000;
    while (!fs.existsSync(file)) {
      if (parent.exitCode !== null) throw new Error(`npm start --hosts exited (${parent.exitCode}):\n${output}`);
      if (Date.now() > deadline) throw new Error(`no ${file} within 100 s:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    hosts = readHostsFile(file).hosts;
  });

  after(async () => {
    if (parent.exitCode === null && parent.signalCode === null) parent.kill('SIGTERM');
    await exited;
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('lists every host in hosts.json: its own segment directory, services and NIC addresses', () => {
    expect(hosts.map((h) => [h.name, h.shmDir])).to.deep.equal([
      ['host0', path.join(root, 'host0')],
      ['host1', path.join(root, 'host1')],
    ]);
    expect(hosts.map((h) => h.nics.map((n) => n.gid))).to.deep.equal([
      ['::ffff:127.0.0.2', '::ffff:127.0.0.3'],
      ['::ffff:127.0.1.2', '::ffff:127.0.1.3'],
    ]);
  });

  it('p2p topology prints each host under a heading naming its NICs and their GIDs, as the NICs report them', async () => {
    const run = await runP2p(cli(), ['topology']);
    expect(run.code, run.stderr).to.equal(0);
    for (const host of hosts) {
      const [nic0, nic1] = host.nics;
      expect(run.stdout).to.include(
        `${host.name}  pci-emu ${host.services.pciEmu}  shm ${host.shmDir}  nic0 ${nic0!.bdf} gid ${nic0!.gid}  nic1 ${nic1!.bdf} gid ${nic1!.gid}\n`,
      );
    }
    expect(run.stdout.match(/^hb0 host bridge/gm)).to.have.length(HOSTS);
  });

  it('p2p --json topology gains a hosts array; --host picks one', async () => {
    const all = await runP2pJson<{ hosts: { name: string; nics: { gid: string }[]; functions: unknown[] }[] }>(cli(), ['topology']);
    expect(all.hosts.map((h) => h.name)).to.deep.equal(['host0', 'host1']);
    expect(all.hosts[1]!.nics.map((n) => n.gid)).to.deep.equal(['::ffff:127.0.1.2', '::ffff:127.0.1.3']);
    const one = await runP2pJson<{ hosts: { name: string }[] }>(cli(), ['topology', '--host', 'host1']);
    expect(one.hosts.map((h) => h.name)).to.deep.equal(['host1']);
  });

  it("moves bytes by RDMA WRITE from host0's nic0 to host1's nic0, over the wire alone", async () => {
    const [a, b] = hosts;
    const y = await RdmaHost.open('many-hosts-y', a!.services.registry, a!.nics[0]!.address, a!.shmDir);
    const x = await RdmaHost.open('many-hosts-x', b!.services.registry, b!.nics[0]!.address, b!.shmDir);
    try {
      const source = await y.hostBuffer(COUNT * SIZE, IOVA, ACCESS);
      const target = await x.hostBuffer(COUNT * SIZE, IOVA, ACCESS);
      await source.cpu.copyFromBuffer(0, patterned(COUNT, SIZE));
      const { transfer } = await transferBetween(y, x, { access: ACCESS }, {
        opcode: rdma.WrOpcode.WR_OPCODE_RDMA_WRITE,
        count: COUNT,
        size: SIZE,
        local: { key: source.mr.lkey, iova: IOVA },
        remote: { key: target.mr.rkey, iova: IOVA },
        depth: 16,
      });
      await transfer.run();
      await transfer.settled(30_000);
      transfer.close();
      expect(transfer.byStatus(WC_STATUS_SUCCESS)).to.have.length(COUNT);
      expect(notLanded(await target.cpu.read(0, COUNT * SIZE), transfer.byStatus(WC_STATUS_SUCCESS), SIZE)).to.deep.equal([]);
    } finally {
      await y.close();
      await x.close();
    }
  });

  it('a host that dies stops every host: the log names it, the exit status is 1, hosts.json goes', async () => {
    process.kill(hosts[1]!.pid!, 'SIGKILL');
    expect(await exited).to.equal(1);
    expect(output).to.match(/"host":"host1".*host1 exited \(SIGKILL\): stopping every host/);
    expect(fs.existsSync(path.join(root, HOSTS_FILE))).to.equal(false);
    expect(() => process.kill(hosts[0]!.pid!, 0), 'host0 stopped too').to.throw();
  });
});
