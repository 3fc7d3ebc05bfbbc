import { errno } from '@p2p/errno';

/** One NIC of a host: its PCI function, its gRPC and metrics ports, and the IPv4 address its GID is made from and its wire listens on. */
export interface NicLayout {
  readonly name: string;
  readonly bdf: string;
  readonly port: number;
  readonly metricsPort: number;
  readonly gidAddress: string;
}

/** Where one host's services listen: pci-emu, vfio-pci and the registry, and its NICs. */
export interface HostLayout {
  readonly index: number;
  readonly name: string;
  readonly ports: { readonly pciEmu: number; readonly vfioPci: number; readonly registry: number };
  readonly metricsPorts: { readonly pciEmu: number; readonly vfioPci: number; readonly registry: number };
  readonly nics: readonly NicLayout[];
}

/** The first host's ports; host i's are these plus i * PORT_STRIDE. */
export interface LayoutBases {
  /** pci-emu's gRPC port on host 0; vfio-pci, the registry and the NICs follow it. */
  readonly portBase: number;
  /** pci-emu's metrics port on host 0, the others following; 0: every service picks a free one, -1: no metrics. */
  readonly metricsPortBase: number;
}

/** `npm start`'s ports: host 0 of the layout is the one-host stack, port for port. */
export const DEFAULT_BASES: LayoutBases = { portBase: 50051, metricsPortBase: 9451 };

/** Ports between one host's first service and the next host's: five services, room to spare. */
export const PORT_STRIDE = 10;

/** Host i's NICs are on 127.0.<i>.2 and 127.0.<i>.3: one octet of loopback addresses. */
export const MAX_HOSTS = 256;

/**
 * pci-emu's default topology's NICs, as the one-host stack places them:
 * nic0 beside nvme0 and nic1 beside accel0, each at its own address.
 */
const NIC_FUNCTIONS = [
  { name: 'nic0', bdf: '0000:04:00.0', hostOctet: 2 },
  { name: 'nic1', bdf: '0000:09:00.0', hostOctet: 3 },
] as const;

/** Offsets of each service's ports from its host's first one, in start order. */
const OFFSET = { pciEmu: 0, vfioPci: 1, registry: 2, nics: 3 } as const;

/**
 * Host `index` of a machine running many: its ports are the bases plus
 * `index * PORT_STRIDE` (host 0 keeps `npm start`'s), and its NICs' GIDs are
 * 127.0.<index>.2 and .3 (host 0 keeps 127.0.0.2 and .3). Every NIC listens
 * on the same wire port of its own address, as RoCEv2 NICs share UDP 4791.
 */
export function hostLayout(index: number, bases: LayoutBases = DEFAULT_BASES): HostLayout {
  if (!Number.isInteger(index) || index < 0 || index >= MAX_HOSTS) throw errno('EINVAL', `host index ${index}: 0 to ${MAX_HOSTS - 1}`);
  const first = bases.portBase + index * PORT_STRIDE;
  const last = first + OFFSET.nics + NIC_FUNCTIONS.length - 1;
  if (bases.portBase < 1 || last > 65535) throw errno('EINVAL', `host ${index}'s ports ${first}-${last} are not all TCP ports: lower the port base (${bases.portBase})`);
  const metrics = (offset: number): number => (bases.metricsPortBase <= 0 ? bases.metricsPortBase : bases.metricsPortBase + index * PORT_STRIDE + offset);
  if (bases.metricsPortBase > 0 && metrics(OFFSET.nics + NIC_FUNCTIONS.length - 1) > 65535) throw errno('EINVAL', `host ${index}'s metrics ports pass 65535: lower the metrics port base (${bases.metricsPortBase})`);
  return {
    index,
    name: `host${index}`,
    ports: { pciEmu: first + OFFSET.pciEmu, vfioPci: first + OFFSET.vfioPci, registry: first + OFFSET.registry },
    metricsPorts: { pciEmu: metrics(OFFSET.pciEmu), vfioPci: metrics(OFFSET.vfioPci), registry: metrics(OFFSET.registry) },
    nics: NIC_FUNCTIONS.map((nic, i) => ({
      name: nic.name,
      bdf: nic.bdf,
      port: first + OFFSET.nics + i,
      metricsPort: metrics(OFFSET.nics + i),
      gidAddress: `127.0.${index}.${nic.hostOctet}`,
    })),
  };
}

/** The layouts of hosts 0 to count - 1. */
export function hostLayouts(count: number, bases: LayoutBases = DEFAULT_BASES): HostLayout[] {
  if (!Number.isInteger(count) || count < 1 || count > MAX_HOSTS) throw errno('EINVAL', `${count} hosts: 1 to ${MAX_HOSTS}`);
  return Array.from({ length: count }, (_, i) => hostLayout(i, bases));
}

/** The services' loopback address on `port`: a host's services listen on 127.0.0.1, its NICs' wires on their GID addresses. */
export function loopback(port: number): string {
  return `127.0.0.1:${port}`;
}

/**
 * The environment of a host's pci-emu, vfio-pci and registry (the variables
 * each service's settings read): their ports, metrics ports, and the
 * addresses by which they reach each other.
 */
export function serviceEnv(host: HostLayout): NodeJS.ProcessEnv {
  return {
    PCI_EMU_PORT: String(host.ports.pciEmu),
    PCI_EMU_METRICS_PORT: String(host.metricsPorts.pciEmu),
    VFIO_PCI_PORT: String(host.ports.vfioPci),
    VFIO_PCI_METRICS_PORT: String(host.metricsPorts.vfioPci),
    DMABUF_REGISTRY_PORT: String(host.ports.registry),
    DMABUF_REGISTRY_METRICS_PORT: String(host.metricsPorts.registry),
    PCI_EMU_ADDRESS: loopback(host.ports.pciEmu),
    DMABUF_REGISTRY_ADDRESS: loopback(host.ports.registry),
  };
}

/** One NIC's own variables: which function it is, its ports, its GID's address. */
export function nicEnv(nic: NicLayout): NodeJS.ProcessEnv {
  return { RDMA_NIC_BDF: nic.bdf, RDMA_NIC_PORT: String(nic.port), RDMA_NIC_METRICS_PORT: String(nic.metricsPort), RDMA_NIC_GID_ADDRESS: nic.gidAddress };
}
