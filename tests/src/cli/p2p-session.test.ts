import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expect } from 'chai';
import { dmabuf, vfio } from '@p2p/proto';
import { asAdmin, eventually } from '@p2p/testing';
import { type CliRun, cliEnv, runP2p, runP2pJson } from '../harness/p2p-cli';
import { RdmaStack } from '../harness/rdma-hosts';
import { rpc } from '../harness/rpc';

/**
 * `p2p session`: a model process whose fds outlive single commands, in the
 * background (each command line goes to it) and as a shell; the real binary
 * against every service as its own process.
 */
describe('p2p session: a process of the model across commands', function () {
  this.timeout(60_000);
  let stack: RdmaStack;
  let env: NodeJS.ProcessEnv;
  let sessionDir: string;
  let registry: dmabuf.DmaBufRegistryServiceClient;
  let vfioPci: vfio.VfioPciServiceClient;

  const p2p = (...args: string[]): Promise<CliRun> => runP2p(env, args);
  const json = <T>(...args: string[]): Promise<T> => runP2pJson<T>(env, args);
  const processNames = async (): Promise<string[]> => (await rpc<dmabuf.ListProcessesResponse>((cb) => registry.listProcesses({}, cb))).processes.map((p) => p.name);
  const buffers = async (): Promise<dmabuf.BufInfo[]> => (await rpc<dmabuf.GetBufInfoResponse>((cb) => registry.getBufInfo({}, cb))).buffers;
  const openDevices = async (): Promise<vfio.DeviceListing[]> => (await rpc<vfio.ListDevicesResponse>((cb) => vfioPci.listDevices({}, cb))).devices.filter((d) => d.openCount > 0);

  before(async () => {
    stack = await RdmaStack.start();
    sessionDir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-sessions-'));
    env = cliEnv(stack, { P2P_SESSION_DIR: sessionDir, P2P_HISTORY: path.join(sessionDir, 'history') });
    const admin = asAdmin(stack.shmDir);
    registry = new dmabuf.DmaBufRegistryServiceClient(stack.registry.address, admin.credentials, admin.options);
    vfioPci = new vfio.VfioPciServiceClient(stack.vfioPci.address, admin.credentials, admin.options);
  });

  after(async () => {
    await p2p('session', 'stop');
    registry?.close();
    vfioPci?.close();
    await stack?.stop();
    fs.rmSync(sessionDir, { recursive: true, force: true });
  });

  it('says how to start a session when a process command has none (exit 1, ENOENT)', async () => {
    const run = await p2p('heap', 'alloc', '4096');
    expect(run.code).to.equal(1);
    expect(run.stderr).to.equal('p2p: ENOENT: no session default: start one with `p2p session start`\n');
  });

  it('keeps fds across commands: open, export with named flags, heap alloc, import and map, reg-mr, close; then stop closes them all', async () => {
    const started = await json<{ pid: number; name: string }>('session', 'start');
    expect(started.name).to.equal('default');
    expect(await processNames()).to.include('p2p-session-default');
    expect((await p2p('session', 'start')).stderr).to.match(/^p2p: EEXIST: session default is running/);

    expect((await p2p('open', 'accel0')).stdout).to.equal(`pid ${started.pid}: fd 3 is vfio device 0000:07:00.0 (accel0)\n`);
    expect((await p2p('export', '3', '2', '--range', '0:64K', '--flags', 'rdwr,cloexec')).stdout).to.equal(
      `pid ${started.pid}: fd 4 is a dma-buf of BAR2 [0x0, +0x10000), 0x10000 bytes, O_RDWR|O_CLOEXEC\n`,
    );
    expect((await p2p('heap', 'alloc', '1M')).stdout).to.match(new RegExp(`^pid ${started.pid}: fd 5 is a system-heap dma-buf of 0x100000 bytes`));
    expect((await p2p('import', '4', '--importer', 'nic1')).stdout).to.match(/^attachment 0x[0-9a-f]+: buffer 0x[0-9a-f]+ \(fd 4\) attached to nic1 \(0000:09:00\.0\)\n$/);
    const attachment = (await json<{ attachments: { id: string }[] }>('fds')).attachments[0]!.id;
    expect((await p2p('map', attachment)).stdout).to.match(/mapped: DMA_MAP_TYPE_BUS_ADDR over TRANSPORT_SHARED_MEMORY/);
    const mr = await json<{ rkey: number; verb: string; access: string }>('reg-mr', '4', '--nic', 'nic1', '--access', 'local_write,remote_read,remote_write');
    expect(mr).to.include({ verb: 'ibv_reg_dmabuf_mr', access: 'IBV_ACCESS_LOCAL_WRITE|IBV_ACCESS_REMOTE_WRITE|IBV_ACCESS_REMOTE_READ' });
    expect((await json<{ verb: string }>('reg-mr', '5', '--nic', 'nic0')).verb).to.equal('ibv_reg_mr');

    const listed = await json<{ fds: { fd: number; kind: string; owner: string }[]; attachments: { state: string }[]; mrs: unknown[] }>('fds');
    expect(listed.fds.map((f) => [f.fd, f.kind, f.owner])).to.deep.equal([
      [3, 'owned', 'vfio-pci'],
      [4, 'dma_buf', 'vfio-pci'],
      [5, 'dma_buf', 'system-heap'],
      // ibv_open_device() on each NIC: the verbs contexts are files of the process too.
      [6, 'owned', 'rdma-nic/0000:09:00.0'],
      [7, 'owned', 'rdma-nic/0000:04:00.0'],
    ]);
    expect(listed.attachments.map((a) => a.state)).to.deep.equal(['mapped']);
    expect(listed.mrs).to.have.lengthOf(2);

    expect((await p2p('detach', attachment)).code).to.equal(0);
    expect((await p2p('close', '5')).stdout).to.equal(`pid ${started.pid}: fd 5 closed\n`);
    expect((await json<{ fds: { fd: number }[] }>('fds')).fds.map((f) => f.fd)).to.deep.equal([3, 4, 6, 7]);
    expect(await openDevices()).to.have.lengthOf(1);

    expect((await p2p('session', 'stop')).stdout).to.equal('session default stopped\n');
    // The process exited: the registry closed its fds, vfio-pci its device, and nothing is left behind.
    expect(await processNames()).not.to.include('p2p-session-default');
    expect(await openDevices()).to.deep.equal([]);
    await eventually('no buffers', async () => (await buffers()).length === 0, 5000);
    expect(fs.readdirSync(sessionDir).filter((f) => f.endsWith('.sock'))).to.deep.equal([]);
  });

  describe('bad input in a session: the errno, and nothing changed', () => {
    before(async () => {
      expect((await p2p('session', 'start', 'bad-input')).code).to.equal(0);
    });
    after(async () => {
      await p2p('session', 'stop', 'bad-input');
    });

    it('an fd the process does not hold fails with EBADF (exit 1)', async () => {
      const run = await p2p('--session', 'bad-input', 'close', '42');
      expect(run.code).to.equal(1);
      expect(run.stderr).to.match(/^p2p: EBADF: dmabuf-registry CloseFd: EBADF: pid \d+ holds no fd 42\n$/);
    });

    it('a flag name that does not exist exits 2 with EINVAL listing the names, and makes no fd', async () => {
      const run = await p2p('--session', 'bad-input', 'heap', 'alloc', '4096', '--flags', 'rdwr,sync');
      expect(run.code).to.equal(2);
      expect(run.stderr).to.equal('p2p: EINVAL: --flags: no flag sync; one of O_RDONLY, O_WRONLY, O_RDWR, O_CLOEXEC, O_NONBLOCK\n');
      expect((await runP2pJson<{ fds: unknown[] }>(env, ['--session', 'bad-input', 'fds'])).fds).to.deep.equal([]);
    });

    it('a session name that cannot be a file name exits 2', async () => {
      const run = await p2p('session', 'start', '../x');
      expect(run.code).to.equal(2);
      expect(run.stderr).to.match(/^p2p: EINVAL: session name "\.\.\/x"/);
    });
  });

  it('runs a shell whose process lives until exit, keeping its history', async () => {
    const run = await runP2p(env, ['session', 'shell'], 'heap alloc 64K\nfds\nbogus\nexit\n');
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout).to.match(/^process p2p-shell-shell, pid (\d+): type a p2p command/);
    expect(run.stdout).to.match(/fd 3 is a system-heap dma-buf of 0x10000 bytes/);
    expect(run.stdout).to.match(/│ 3 +│ dma_buf │ 0x[0-9a-f]+ +│ system-heap │/);
    expect(run.stderr).to.match(/error: unknown command 'bogus'/);
    expect(run.stdout).to.match(/process \d+ exited: its fds are closed\n$/);
    expect(fs.readFileSync(path.join(sessionDir, 'history'), 'utf8')).to.equal('heap alloc 64K\nfds\nbogus\n');
    expect(await processNames()).not.to.include('p2p-shell-shell');
  });
});
