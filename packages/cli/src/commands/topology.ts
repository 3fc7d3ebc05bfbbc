import type { Command } from 'commander';
import Table from 'cli-table3';
import { RegistrySession } from '@p2p/dmabuf-client';
import { errno } from '@p2p/errno';
import { readHostsFile } from '@p2p/hosts';
import { pci } from '@p2p/proto';
import { resolveShmDir } from '@p2p/shm';
import { gidText, VerbsContext } from '@p2p/verbs';
import { Clients } from '../clients';
import { action, type Context } from '../context';
import { hostsFileOf, hostTarget, type Target } from '../target';
import { distanceMatrix, type FunctionOwner, type HostView, hostHeading, type NicView, type P2pDistance, renderTree, type TopologyView } from '../topology-tree';

interface TopologyOptions {
  readonly hostsFile?: string;
  readonly host?: string;
}

/** A host to show: its name, its services, its segment directory. */
interface HostTarget {
  readonly name: string;
  readonly shmDir: string;
  readonly target: Target;
}

/** The tree, each function's owner, and every endpoint pair's P2P distance. */
async function readTopology(clients: Clients): Promise<TopologyView> {
  const topology = await clients.pci.getTopology({});
  const owners = new Map<string, FunctionOwner>();
  const { devices } = await clients.vfio.listDevices({});
  for (const device of devices) owners.set(device.bdf, { driver: 'vfio-pci', pid: device.ownerPid });
  for (const fn of topology.functions) {
    if (fn.kind === pci.FunctionKind.FUNCTION_KIND_NIC && !owners.has(fn.bdf)) owners.set(fn.bdf, { driver: 'rdma-nic' });
  }
  const endpoints = topology.functions.map((f) => f.bdf);
  const pairs = endpoints.flatMap((provider) => endpoints.map((client) => ({ provider, client })));
  const distances: P2pDistance[] = await Promise.all(
    pairs.map(async ({ provider, client }) => {
      const answer = await clients.pci.getP2pDistance({ providerBdf: provider, clientBdf: client });
      return { provider, client, mapType: answer.mapType, distance: answer.distance };
    }),
  );
  return { topology, owners, distances };
}

/**
 * Each NIC's function and GID as the NIC reports them (ibv_query_device,
 * ibv_query_port's GID): a process of the host's registry opens a verbs
 * context on each. A NIC that does not answer is shown with its error.
 */
async function readNics(host: HostTarget, functions: readonly pci.FunctionInfo[]): Promise<NicView[]> {
  const { target } = host;
  const failed = (address: string, error: unknown): NicView => ({ address, error: error instanceof Error ? error.message : String(error) });
  let session: RegistrySession;
  try {
    session = await RegistrySession.open(target.registry, { name: 'p2p topology', shmDir: host.shmDir, tls: target.tls });
  } catch (error) {
    return target.nics.map((address) => failed(address, error));
  }
  try {
    return await Promise.all(
      target.nics.map(async (address): Promise<NicView> => {
        let ctx: VerbsContext | undefined;
        try {
          ctx = await VerbsContext.open(address, session, target.tls, { queues: 'calls' });
          const [device, port] = await Promise.all([ctx.queryDevice(), ctx.queryPort(1)]);
          return { address, bdf: device.bdf, name: functions.find((f) => f.bdf === device.bdf)?.name, gid: gidText(port.gid) };
        } catch (error) {
          return failed(address, error);
        } finally {
          ctx?.close();
        }
      }),
    );
  } finally {
    await session.close().catch(() => undefined);
  }
}

/** The hosts of the hosts file (or only `--host`), else the one deployment the global options name, as host0. */
function hostTargets(context: Context, options: TopologyOptions): HostTarget[] {
  const file = hostsFileOf({ ...context.global, hostsFile: options.hostsFile });
  const hosts: HostTarget[] =
    file === undefined
      ? [{ name: 'host0', shmDir: resolveShmDir(), target: context.clients.target }]
      : readHostsFile(file).hosts.map((host) => ({ name: host.name, shmDir: host.shmDir, target: hostTarget(host) }));
  if (options.host === undefined) return hosts;
  const chosen = hosts.filter((host) => host.name === options.host);
  if (chosen.length === 0) throw errno('ENOENT', `no host ${options.host}: ${file === undefined ? 'without a hosts file there is host0' : `${file} lists ${hosts.map((h) => h.name).join(', ')}`}`);
  return chosen;
}

async function readHost(host: HostTarget): Promise<HostView> {
  const clients = new Clients(host.target);
  try {
    const view = await readTopology(clients);
    return { name: host.name, pciEmu: host.target.pciEmu, shmDir: host.shmDir, nics: await readNics(host, view.topology.functions), view };
  } finally {
    clients.close();
  }
}

/** A topology as JSON: enums by name. */
function topologyJson(view: TopologyView): Record<string, unknown> {
  return {
    ...view.topology,
    functions: view.topology.functions.map((f) => ({
      ...f,
      kind: pci.functionKindToJSON(f.kind),
      powerState: pci.powerStateToJSON(f.powerState),
      bars: f.bars.map((b) => ({ ...b, kind: pci.barKindToJSON(b.kind) })),
    })),
    owners: Object.fromEntries(view.owners),
    distances: view.distances.map((d) => ({ ...d, mapType: pci.p2pMapTypeToJSON(d.mapType) })),
  };
}

function hostLines(host: HostView): string[] {
  const matrix = distanceMatrix(host.view);
  const table = new Table({ head: matrix[0], style: { head: [], border: [] } });
  table.push(...matrix.slice(1));
  return [hostHeading(host), '', ...renderTree(host.view), '', 'P2P distance (pci_p2pdma_distance; "host": through the host bridge, "-": not supported):', table.toString()];
}

export function topologyCommand(program: Command): void {
  program
    .command('topology')
    .description("the PCIe tree like `lspci -tv`: ports, functions, BARs, power state, decode, each function's driver, and the P2P distances between functions; per host, with its NICs' GIDs, when `npm start --hosts` runs many")
    .option('--hosts-file <file>', 'the hosts file `npm start --hosts` writes (default: hosts.json in $P2P_SHM_DIR, when it is there and no --target or service address is given)')
    .option('--host <name>', 'only this host (host0, host1...)')
    .action(
      action<TopologyOptions>(async (context, _args, options) => {
        const hosts = await Promise.all(hostTargets(context, options).map(readHost));
        context.print(
          {
            // The first host's tree at the top level, as for one host; every host's under `hosts`.
            ...topologyJson(hosts[0]!.view),
            hosts: hosts.map((host) => ({ name: host.name, pciEmu: host.pciEmu, shmDir: host.shmDir, nics: host.nics, ...topologyJson(host.view) })),
          },
          () => hosts.flatMap((host, i) => [...(i > 0 ? [''] : []), ...hostLines(host)]),
        );
      }),
    );
}
