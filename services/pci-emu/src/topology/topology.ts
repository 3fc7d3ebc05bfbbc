import { errno } from '@p2p/errno';
import type { AcsFlags, FunctionSpec } from './topology-schema';

/** A range of bus addresses a host bridge forwards to its root ports. */
export interface AddressWindow {
  readonly base: number;
  readonly size: number;
}

export interface HostBridge {
  readonly name: string;
  readonly domain: number;
  /** Root bus number, the bus its root ports sit on. */
  readonly bus: number;
  /** Whether p2pdma may route between its root ports (host_bridge_whitelist()). */
  readonly p2pAllowed: boolean;
  /** Non-prefetchable memory: 32-bit BARs, 64-bit non-prefetchable BARs and ROMs. Below 4 GiB. */
  readonly mmio32: AddressWindow;
  /** 64-bit prefetchable memory, above 4 GiB. */
  readonly mmio64: AddressWindow;
  readonly io: AddressWindow;
  readonly rootPortBdfs: readonly string[];
}

export interface PcieSwitch {
  readonly name: string;
  readonly upstreamBdf: string;
  readonly downstreamBdfs: readonly string[];
  /** ACS control of its downstream ports. */
  readonly acs: AcsFlags;
}

export type NodeRole = 'root_port' | 'switch_upstream' | 'switch_downstream' | 'endpoint';

/** A bridge or endpoint function with its upstream link (pci_upstream_bridge()). */
export interface TopologyNode {
  readonly bdf: string;
  readonly role: NodeRole;
  /** Undefined for a root port: above it is the host bridge, not a PCI device. */
  readonly parentBdf: string | undefined;
  readonly hostBridge: string;
  /** PCI_ACS_CTRL (PCI_ACS_SV | PCI_ACS_RR | ...): the switch's ACS on its downstream ports, else 0. */
  readonly acsCtrl: number;
}

/**
 * A validated PCIe hierarchy. Bridges are topology only: the model gives
 * config space and BARs to endpoint functions, not to ports.
 */
export class Topology {
  readonly #nodes: ReadonlyMap<string, TopologyNode>;
  readonly #hostBridges: ReadonlyMap<string, HostBridge>;

  constructor(
    readonly hostBridges: readonly HostBridge[],
    readonly switches: readonly PcieSwitch[],
    readonly nodes: readonly TopologyNode[],
    /** Endpoint functions in depth-first order, as pci_scan_child_bus() finds them. */
    readonly functions: readonly FunctionSpec[],
  ) {
    this.#nodes = new Map(nodes.map((node) => [node.bdf, node]));
    this.#hostBridges = new Map(hostBridges.map((bridge) => [bridge.name, bridge]));
  }

  /** The node at a canonical BDF, if any. */
  node(bdf: string): TopologyNode | undefined {
    return this.#nodes.get(bdf);
  }

  hostBridge(name: string): HostBridge {
    const bridge = this.#hostBridges.get(name);
    if (!bridge) {
      throw errno('ENODEV', `topology has no host bridge ${name}`);
    }
    return bridge;
  }
}
