import { powerStateName } from '@p2p/device-faults';
import { pci } from '@p2p/proto';
import { hex, size } from './format';

/** Who drives a function: vfio-pci (and the process holding its device fd), a NIC service, or nobody. */
export interface FunctionOwner {
  readonly driver: string;
  /** The process holding the device open; 0 or absent when none does. */
  readonly pid?: number;
}

/** One ordered pair's pci_p2pdma_distance(): the provider's memory as the client reaches it. */
export interface P2pDistance {
  readonly provider: string;
  readonly client: string;
  readonly mapType: pci.P2pMapType;
  readonly distance: number;
}

export interface TopologyView {
  readonly topology: pci.GetTopologyResponse;
  readonly owners: ReadonlyMap<string, FunctionOwner>;
  readonly distances: readonly P2pDistance[];
}

const ROLE: Record<string, string> = {
  root_port: 'root port',
  switch_upstream: 'switch upstream port',
  switch_downstream: 'switch downstream port',
  endpoint: 'endpoint',
};

const KIND: Record<pci.FunctionKind, string> = {
  [pci.FunctionKind.FUNCTION_KIND_UNSPECIFIED]: 'function',
  [pci.FunctionKind.FUNCTION_KIND_NVME]: 'Non-Volatile memory controller',
  [pci.FunctionKind.FUNCTION_KIND_ACCEL]: 'Processing accelerator',
  [pci.FunctionKind.FUNCTION_KIND_NIC]: 'Ethernet controller (RoCE)',
  [pci.FunctionKind.FUNCTION_KIND_GENERIC]: 'Test device',
  [pci.FunctionKind.UNRECOGNIZED]: 'function',
};

const BAR_KIND: Record<pci.BarKind, string> = {
  [pci.BarKind.BAR_KIND_UNSPECIFIED]: '',
  [pci.BarKind.BAR_KIND_REGISTERS]: 'registers',
  [pci.BarKind.BAR_KIND_MEMORY]: 'memory',
  [pci.BarKind.BAR_KIND_IO]: 'I/O',
  [pci.BarKind.BAR_KIND_ROM]: 'expansion ROM',
  [pci.BarKind.UNRECOGNIZED]: '',
};

export { powerStateName };

/** pci_p2pdma_map_type as the kernel spells it. */
export function mapTypeName(type: pci.P2pMapType): string {
  switch (type) {
    case pci.P2pMapType.P2P_MAP_TYPE_BUS_ADDR:
      return 'PCI_P2PDMA_MAP_BUS_ADDR';
    case pci.P2pMapType.P2P_MAP_TYPE_THRU_HOST_BRIDGE:
      return 'PCI_P2PDMA_MAP_THRU_HOST_BRIDGE';
    case pci.P2pMapType.P2P_MAP_TYPE_NOT_SUPPORTED:
      return 'PCI_P2PDMA_MAP_NOT_SUPPORTED';
    default:
      return 'PCI_P2PDMA_MAP_UNKNOWN';
  }
}

function barLine(bar: pci.Bar): string {
  const flags = [bar.is64bit ? '64-bit' : '32-bit', bar.prefetchable ? 'prefetchable' : 'non-prefetchable', BAR_KIND[bar.kind]].filter((f) => f !== '');
  const window = bar.window === undefined ? '' : `, memory window ${hex(bar.window.offset)}+${size(bar.window.length)}`;
  const name = bar.index === 6 ? 'ROM ' : `BAR${bar.index}`;
  return `${name} ${hex(bar.busAddress, 8)} [size=${size(bar.size)}] ${flags.join(' ')}${window}`;
}

function functionLine(fn: pci.FunctionInfo, owner: FunctionOwner | undefined): string {
  const ids = `[${fn.vendorId.toString(16).padStart(4, '0')}:${fn.deviceId.toString(16).padStart(4, '0')}]`;
  const state = [
    powerStateName(fn.powerState),
    fn.memoryEnabled ? 'Mem+' : 'Mem-',
    fn.busMaster ? 'BusMaster+' : 'BusMaster-',
    ...(fn.present ? [] : ['unplugged']),
  ].join(' ');
  const driver = owner === undefined ? 'no driver' : `driver ${owner.driver}${owner.pid ? `, open by pid ${owner.pid}` : ''}`;
  return `${fn.bdf} ${fn.name}: ${KIND[fn.kind]} ${ids} (${state}; ${driver})`;
}

/**
 * The PCIe tree as `lspci -tv` draws it, one line per port or function and
 * its BARs beneath: host bridges, root ports, switches, endpoints.
 */
export function renderTree(view: TopologyView): string[] {
  const { topology } = view;
  const functions = new Map(topology.functions.map((f) => [f.bdf, f]));
  const switches = new Map(topology.switches.map((s) => [s.upstreamBdf, s]));
  const children = new Map<string, pci.TopologyNode[]>();
  for (const node of topology.nodes) {
    const list = children.get(node.parentBdf) ?? [];
    list.push(node);
    children.set(node.parentBdf, list);
  }
  const lines: string[] = [];
  const walk = (node: pci.TopologyNode, prefix: string, last: boolean): void => {
    const fn = functions.get(node.bdf);
    const sw = switches.get(node.bdf);
    const acs = sw === undefined ? '' : ` ${sw.name} (ACS ${acsFlags(sw)})`;
    const text = fn !== undefined ? functionLine(fn, view.owners.get(node.bdf)) : `${node.bdf} ${ROLE[node.role] ?? node.role}${acs}`;
    lines.push(`${prefix}${last ? '└─ ' : '├─ '}${text}`);
    const inner = `${prefix}${last ? '   ' : '│  '}`;
    const below = (children.get(node.bdf) ?? []).sort((a, b) => a.bdf.localeCompare(b.bdf));
    for (const bar of fn?.bars ?? []) lines.push(`${inner}${below.length > 0 ? '│' : ' '}    ${barLine(bar)}`);
    below.forEach((child, i) => walk(child, inner, i === below.length - 1));
  };
  for (const bridge of topology.hostBridges) {
    lines.push(`${bridge.name} host bridge, domain ${bridge.domain.toString(16).padStart(4, '0')} (P2P between root ports ${bridge.p2pAllowed ? 'allowed' : 'not allowed'})`);
    const roots = topology.nodes.filter((n) => bridge.rootPortBdfs.includes(n.bdf)).sort((a, b) => a.bdf.localeCompare(b.bdf));
    roots.forEach((root, i) => walk(root, '', i === roots.length - 1));
  }
  return lines;
}

function acsFlags(sw: pci.Switch): string {
  const flags = [
    sw.acsSourceValidation ? 'SrcValid+' : 'SrcValid-',
    sw.acsRequestRedirect ? 'ReqRedir+' : 'ReqRedir-',
    sw.acsCompletionRedirect ? 'CmpltRedir+' : 'CmpltRedir-',
    sw.acsUpstreamForwarding ? 'UpstreamFwd+' : 'UpstreamFwd-',
  ];
  return flags.join(' ');
}

/**
 * The P2P distances between endpoints as a matrix: a row per provider (whose
 * BAR is read or written), a column per client (the DMA initiator), each cell
 * the distance, `host` when the TLPs go through the host bridge, `-` when P2P
 * is not supported.
 */
export function distanceMatrix(view: TopologyView): string[][] {
  const names = new Map(view.topology.functions.map((f) => [f.bdf, f.name]));
  const bdfs = [...new Set(view.distances.map((d) => d.provider))].sort();
  const cell = (provider: string, client: string): string => {
    const d = view.distances.find((x) => x.provider === provider && x.client === client);
    if (d === undefined) return '';
    if (d.mapType === pci.P2pMapType.P2P_MAP_TYPE_NOT_SUPPORTED) return '-';
    return d.mapType === pci.P2pMapType.P2P_MAP_TYPE_THRU_HOST_BRIDGE ? `${d.distance} host` : String(d.distance);
  };
  const header = ['provider \\ client', ...bdfs.map((b) => names.get(b) ?? b)];
  return [header, ...bdfs.map((p) => [`${names.get(p) ?? p} ${p}`, ...bdfs.map((c) => cell(p, c))])];
}

/** A NIC as its service reports it (ibv_query_device's function, ibv_query_gid's GID index 0), or why it could not. */
export interface NicView {
  /** Its verbs service. */
  readonly address: string;
  /** The function's name in the topology (nic0). */
  readonly name?: string;
  readonly bdf?: string;
  readonly gid?: string;
  readonly error?: string;
}

/** One emulated host: its name, its pci-emu and segment directory, its NICs, its PCIe tree. */
export interface HostView {
  readonly name: string;
  readonly pciEmu: string;
  readonly shmDir: string;
  readonly nics: readonly NicView[];
  readonly view: TopologyView;
}

/** A host's heading line: its name, pci-emu, segment directory, and each NIC's function and GID (the address peers on the wire reach it at). */
export function hostHeading(host: HostView): string {
  const nics = host.nics.map((nic) =>
    nic.error !== undefined ? `NIC ${nic.address}: ${nic.error}` : `${nic.name ?? 'nic'} ${nic.bdf ?? '?'} gid ${nic.gid ?? '?'}`,
  );
  return [host.name, `pci-emu ${host.pciEmu}`, `shm ${host.shmDir}`, ...nics].join('  ');
}
