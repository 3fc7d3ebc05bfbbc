import type { Command } from 'commander';
import Table from 'cli-table3';
import { pci } from '@p2p/proto';
import { action, type Context } from '../context';
import { distanceMatrix, type FunctionOwner, type P2pDistance, renderTree, type TopologyView } from '../topology-tree';

/** The tree, each function's owner, and every endpoint pair's P2P distance. */
async function readTopology(context: Context): Promise<TopologyView> {
  const { clients } = context;
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

export function topologyCommand(program: Command): void {
  program
    .command('topology')
    .description("the PCIe tree like `lspci -tv`: ports, functions, BARs, power state, decode, each function's driver, and the P2P distances between functions")
    .action(
      action(async (context) => {
        const view = await readTopology(context);
        context.print(
          {
            ...view.topology,
            functions: view.topology.functions.map((f) => ({
              ...f,
              kind: pci.functionKindToJSON(f.kind),
              powerState: pci.powerStateToJSON(f.powerState),
              bars: f.bars.map((b) => ({ ...b, kind: pci.barKindToJSON(b.kind) })),
            })),
            owners: Object.fromEntries(view.owners),
            distances: view.distances.map((d) => ({ ...d, mapType: pci.p2pMapTypeToJSON(d.mapType) })),
          },
          () => {
            const matrix = distanceMatrix(view);
            const table = new Table({ head: matrix[0], style: { head: [], border: [] } });
            table.push(...matrix.slice(1));
            return [...renderTree(view), '', 'P2P distance (pci_p2pdma_distance; "host": through the host bridge, "-": not supported):', table.toString()];
          },
        );
      }),
    );
}
