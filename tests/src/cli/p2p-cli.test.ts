import { expect } from 'chai';
import { type CliRun, cliEnv, runP2p, runP2pJson } from '../harness/p2p-cli';
import { RdmaStack } from '../harness/rdma-hosts';

/**
 * The real binary against the whole stack, every service its own process:
 * what a user types and reads, exit statuses included (0 done, 1 failed, 2
 * a wrong command line).
 */
describe('p2p: the workbench command against a running stack', function () {
  this.timeout(60_000);
  let stack: RdmaStack;
  let env: NodeJS.ProcessEnv;

  const p2p = (...args: string[]): Promise<CliRun> => runP2p(env, args);
  const json = <T>(...args: string[]): Promise<T> => runP2pJson<T>(env, args);

  before(async () => {
    stack = await RdmaStack.start();
    env = cliEnv(stack);
  });

  after(async () => {
    await stack?.stop();
  });

  it('draws the PCIe tree with every function, its BARs in hex, its driver, and the P2P distance matrix', async () => {
    const run = await p2p('topology');
    expect(run.code, run.stderr).to.equal(0);
    for (const line of [
      /^hb0 host bridge, domain 0000 \(P2P between root ports allowed\)$/m,
      /└─ 0000:08:00\.0 nvme1: Non-Volatile memory controller \[144d:a824\] \(D0 Mem\+ BusMaster-; no driver\)$/m,
      /BAR2 0x10401000000 \[size=16M\] 64-bit prefetchable memory$/m,
      /BAR0 0x[0-9a-f]{8} \[size=16K\] 64-bit non-prefetchable registers, memory window 0x1000\+12K$/m,
      /0000:09:00\.0 nic1: Ethernet controller \(RoCE\) .*driver rdma-nic\)$/m,
      /│ accel0 0000:07:00\.0 │ 8 host │ 8 host │ 0 +│ 4 +│ 4 +│/m,
    ]) {
      expect(run.stdout).to.match(line);
    }
  });

  it('gives the topology as JSON: enums by name, 64-bit addresses as hex strings, every ordered pair a distance', async () => {
    const topology = await json<{ functions: { name: string; kind: string; bars: { busAddress: string }[] }[]; distances: { mapType: string }[] }>('topology');
    expect(topology.functions.map((f) => f.name)).to.have.members(['nvme0', 'nvme1', 'accel0', 'nic0', 'nic1']);
    expect(topology.functions.find((f) => f.name === 'nvme1')?.kind).to.equal('FUNCTION_KIND_NVME');
    for (const fn of topology.functions) for (const bar of fn.bars) expect(bar.busAddress).to.match(/^0x[0-9a-f]+$/);
    expect(topology.distances).to.have.lengthOf(25);
    expect(topology.distances.map((d) => d.mapType)).to.include('P2P_MAP_TYPE_BUS_ADDR');
  });

  it('reads config space and registers in hex, by name or by BDF', async () => {
    expect((await p2p('read', 'nvme1', 'config', '0')).stdout).to.equal('0000:08:00.0 config 0x000: 0xa824144d\n');
    expect((await p2p('read', '0000:08:00.0', 'config', '0', '-w', '2')).stdout).to.equal('0000:08:00.0 config 0x000: 0x144d\n');
    // NVMe VS (0x08): 1.4.0.
    expect((await p2p('read', 'nvme1', 'bar0', '0x8')).stdout).to.equal('0000:08:00.0 bar0 0x0008: 0x00010400\n');
  });

  it('writes a BAR and dumps it back, as xxd and as JSON', async () => {
    expect((await p2p('write', 'accel0', 'bar2', '0x100', '0x41424344')).code).to.equal(0);
    const dump = await p2p('read', 'accel0', 'bar2', '0x100', '--length', '16');
    expect(dump.stdout).to.equal('0x00000100: 44 43 42 41 00 00 00 00 00 00 00 00 00 00 00 00  DCBA............\n');
    const data = await json<{ data: string; decoded: boolean }>('read', 'accel0', 'bar2', '0x100', '-l', '4');
    expect(data).to.include({ data: '44434241', decoded: true });
  });

  it('applies device faults by name: MEM off stops decode (reads all ones), MEM on restores it, D3hot and back', async () => {
    expect((await p2p('fault', 'device', 'nvme0', 'mem-off')).stdout).to.equal('0000:03:00.0: PCI_COMMAND 0x0002 -> 0x0000 (Memory Space off)\n');
    const undecoded = await p2p('read', 'nvme0', 'bar0', '0x8');
    expect(undecoded.stdout).to.match(/^0000:03:00\.0 bar0 0x0008: 0xffffffff \(not decoded/);
    expect((await p2p('fault', 'device', 'nvme0', 'mem-on')).code).to.equal(0);
    expect((await p2p('read', 'nvme0', 'bar0', '0x8')).stdout).to.equal('0000:03:00.0 bar0 0x0008: 0x00010400\n');
    expect((await p2p('power', 'nvme0', 'd3hot')).stdout).to.equal('0000:03:00.0: D0 -> D3hot\n');
    expect((await json<{ functions: { name: string; powerState: string }[] }>('topology')).functions.find((f) => f.name === 'nvme0')?.powerState).to.equal('POWER_STATE_D3HOT');
    expect((await p2p('power', 'nvme0', 'd0')).stdout).to.equal('0000:03:00.0: D3hot -> D0\n');
  });

  it('adds a fault rule that fails the next call with its errno (exit 1), lists it with its count, and clears it', async () => {
    const added = await p2p('fault', 'add', 'pci-emu', '--method', '/p2p.pci.v1.PciEmuService/MmioRead', '--errno', 'EIO', '--max', '1');
    expect(added.stdout).to.match(/^pci-emu: rule \S+ added\n$/);
    const failed = await p2p('read', 'nvme1', 'bar0', '0');
    expect(failed.code).to.equal(1);
    expect(failed.stderr).to.match(/^p2p: EIO: pci-emu MmioRead: EIO: fault injected/);
    const rules = await json<{ service: string; rule: { methodPattern: string; activations: string } }[]>('fault', 'list');
    expect(rules).to.have.lengthOf(1);
    expect(rules[0]).to.deep.include({ service: 'pci-emu' });
    expect(rules[0]!.rule).to.include({ methodPattern: '/p2p.pci.v1.PciEmuService/MmioRead', activations: '0x1' });
    expect(await json('fault', 'clear')).to.deep.equal({ 'pci-emu': 1, 'vfio-pci': 0, 'dmabuf-registry': 0, 'rdma-nic-0': 0, 'rdma-nic-1': 0 });
    expect((await p2p('fault', 'list')).stdout).to.equal('no fault rules\n');
  });

  describe('bad input: a clear message with the errno, and nothing changed', () => {
    const command = async (): Promise<string> => (await p2p('read', 'accel0', 'config', '4', '-w', '2')).stdout;

    it('a wrong command line exits 2 with the usage hint', async () => {
      const run = await p2p('read', 'nvme1');
      expect(run.code).to.equal(2);
      expect(run.stderr).to.match(/^error: missing required argument 'offset'|^error: missing required argument 'space'/);
    });

    it('an argument that is not a number, an address space or a width exits 2 with EINVAL, before any call', async () => {
      const before = await command();
      for (const args of [
        ['write', 'accel0', 'config', 'four', '0'],
        ['write', 'accel0', 'cfg', '4', '0', '-w', '2'],
        ['write', 'accel0', 'config', '4', '0', '-w', '8'],
        ['write', 'accel0', 'config', '4', '0x10000', '-w', '2'],
      ]) {
        const run = await p2p(...args);
        expect(run.code, args.join(' ')).to.equal(2);
        expect(run.stderr, args.join(' ')).to.match(/^p2p: EINVAL: /);
      }
      expect(await command()).to.equal(before);
    });

    it('a function that does not exist exits 1 with ENODEV naming the ones that do', async () => {
      const run = await p2p('reset', 'nvme9');
      expect(run.code).to.equal(1);
      expect(run.stderr).to.equal('p2p: ENODEV: no function nvme9: one of nvme0 (0000:03:00.0), nic0 (0000:04:00.0), accel0 (0000:07:00.0), nvme1 (0000:08:00.0), nic1 (0000:09:00.0)\n');
    });

    it('a fault rule without an action, or with an unknown errno, exits 2 and adds nothing', async () => {
      expect((await p2p('fault', 'add', 'pci-emu', '-m', '*')).stderr).to.equal('p2p: EINVAL: a rule needs --errno, --delay-ms or both\n');
      expect((await p2p('fault', 'add', 'pci-emu', '-m', '*', '-e', 'ENOPE')).code).to.equal(2);
      expect((await p2p('fault', 'add', 'nvme-emu', '-m', '*', '-e', 'EIO')).stderr).to.match(/^p2p: ENOENT: no service nvme-emu: one of pci-emu, vfio-pci/);
      expect(await json('fault', 'list')).to.deep.equal([]);
    });
  });

  it('has --help on every command, found by walking the help itself', async () => {
    const visited: string[] = [];
    const walk = async (path: string[]): Promise<void> => {
      const run = await p2p(...path, '--help');
      expect(run.code, path.join(' ')).to.equal(0);
      expect(run.stdout, path.join(' ')).to.match(new RegExp(`^Usage: p2p${path.map((word) => ` ${word}`).join('')}\\b`));
      visited.push(path.join(' '));
      const commands = run.stdout.split('\nCommands:\n')[1]?.split('\n\n')[0] ?? '';
      for (const line of commands.split('\n')) {
        const name = /^ {2}([a-z][a-z0-9_-]*)/.exec(line)?.[1];
        if (name !== undefined && name !== 'help') await walk([...path, name]);
      }
    };
    await walk([]);
    expect(visited).to.include.members(['topology', 'read', 'fault add', 'fault device', 'session start', 'session shell', 'open', 'export', 'heap alloc', 'reg-mr', 'watch', 'trace', 'perf', 'chaos']);
  });
});
