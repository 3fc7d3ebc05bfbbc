import { errno } from '@p2p/errno';
import { PCI_ACS_CR, PCI_ACS_RR } from '../config-space/pci-regs';
import type { NodeRole, Topology, TopologyNode } from './topology';

/** enum pci_p2pdma_map_type, less UNKNOWN (the model always knows). */
export type P2pMapType = 'NOT_SUPPORTED' | 'BUS_ADDR' | 'THRU_HOST_BRIDGE';

/** A bridge a TLP crosses: a port by BDF, or a host bridge by name. */
export interface P2pHop {
  readonly role: Exclude<NodeRole, 'endpoint'> | 'host_bridge';
  readonly id: string;
}

export interface P2pDistance {
  readonly mapType: P2pMapType;
  /** Hops as calc_map_type_and_dist() counts them; -1 when not supported, as pci_p2pdma_distance() returns. */
  readonly distance: number;
  /**
   * Bridges from client to provider. BUS_ADDR turns at the common upstream
   * bridge; THRU_HOST_BRIDGE climbs to the root complex (for NOT_SUPPORTED:
   * the route the host bridge refuses).
   */
  readonly path: readonly P2pHop[];
}

/**
 * pci_bridge_has_acs_redir(): Request or Completion Redirect make a port send
 * peer TLPs upstream instead of across (PCI_ACS_EC is not modelled).
 */
function hasAcsRedirect(node: TopologyNode): boolean {
  return (node.acsCtrl & (PCI_ACS_RR | PCI_ACS_CR)) !== 0;
}

/** The node and its upstream bridges up to the root port (pci_upstream_bridge() until NULL). */
function upstreamChain(topology: Topology, bdf: string): TopologyNode[] {
  const chain: TopologyNode[] = [];
  for (let node = topology.node(bdf); node; node = node.parentBdf === undefined ? undefined : topology.node(node.parentBdf)) {
    chain.push(node);
  }
  return chain;
}

function endpoint(topology: Topology, bdf: string, what: string): TopologyNode {
  const node = topology.node(bdf);
  if (!node || node.role !== 'endpoint') {
    throw errno('ENODEV', `${what} ${bdf} is not a function in the topology`);
  }
  return node;
}

const hop = (node: TopologyNode): P2pHop => ({ role: node.role as P2pHop['role'], id: node.bdf });

/**
 * How a DMA from `client` reaches BAR memory of `provider`, following
 * drivers/pci/p2pdma.c calc_map_type_and_dist(): walk up from the provider
 * until a bridge is also above the client; with no ACS redirect on the way
 * (counted on every device from the provider up to and including that bridge,
 * and from the client up to below it) the TLPs turn there: BUS_ADDR.
 * Otherwise they go through the host bridge, allowed only if it is
 * whitelisted (host_bridge_whitelist(): both ends' host bridges must allow it).
 */
export function p2pDistance(topology: Topology, providerBdf: string, clientBdf: string): P2pDistance {
  const provider = endpoint(topology, providerBdf, 'provider');
  const client = endpoint(topology, clientBdf, 'client');
  const a = upstreamChain(topology, provider.bdf);
  const b = upstreamChain(topology, client.bdf);

  let acsCount = 0;
  let distance = a.length + b.length;
  for (let distA = 0; distA < a.length; distA++) {
    if (hasAcsRedirect(a[distA]!)) {
      acsCount++;
    }
    const distB = b.indexOf(a[distA]!);
    if (distB >= 0) {
      acsCount += b.slice(0, distB).filter(hasAcsRedirect).length;
      distance = distA + distB;
      if (acsCount === 0) {
        const path = [...b.slice(1, distB + 1), ...a.slice(1, distA).reverse()].map(hop);
        return { mapType: 'BUS_ADDR', distance, path };
      }
      break;
    }
  }

  const providerBridge = topology.hostBridge(provider.hostBridge);
  const clientBridge = topology.hostBridge(client.hostBridge);
  const bridges = providerBridge === clientBridge ? [clientBridge] : [clientBridge, providerBridge];
  const path = [
    ...b.slice(1).map(hop),
    ...bridges.map((bridge): P2pHop => ({ role: 'host_bridge', id: bridge.name })),
    ...a.slice(1).reverse().map(hop),
  ];
  if (!bridges.every((bridge) => bridge.p2pAllowed)) {
    return { mapType: 'NOT_SUPPORTED', distance: -1, path };
  }
  return { mapType: 'THRU_HOST_BRIDGE', distance, path };
}
