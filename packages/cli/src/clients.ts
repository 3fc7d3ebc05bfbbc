import { connectPeer, type Peer } from '@p2p/rpc';
import { dmabuf, fault, pci, vfio } from '@p2p/proto';
import { errno } from '@p2p/errno';
import { resolveFunction } from './device-ref';
import type { Target } from './target';

/** The services a command may talk to, connected on first use and closed together. */
export class Clients {
  private readonly peers: Peer<never>[] = [];

  constructor(readonly target: Target) {}

  private connect<Service extends Parameters<typeof connectPeer>[0]>(definition: Service, address: string, name: string): Peer<Service> {
    const peer = connectPeer(definition, address, { name, token: this.target.token, tls: this.target.tls });
    this.peers.push(peer as unknown as Peer<never>);
    return peer;
  }

  private pciPeer?: Peer<typeof pci.PciEmuServiceDefinition>;
  get pci(): Peer<typeof pci.PciEmuServiceDefinition>['client'] {
    this.pciPeer ??= this.connect(pci.PciEmuServiceDefinition, this.target.pciEmu, 'pci-emu');
    return this.pciPeer.client;
  }

  private vfioPeer?: Peer<typeof vfio.VfioPciServiceDefinition>;
  get vfio(): Peer<typeof vfio.VfioPciServiceDefinition>['client'] {
    this.vfioPeer ??= this.connect(vfio.VfioPciServiceDefinition, this.target.vfioPci, 'vfio-pci');
    return this.vfioPeer.client;
  }

  private registryPeer?: Peer<typeof dmabuf.DmaBufRegistryServiceDefinition>;
  get registry(): Peer<typeof dmabuf.DmaBufRegistryServiceDefinition>['client'] {
    this.registryPeer ??= this.connect(dmabuf.DmaBufRegistryServiceDefinition, this.target.registry, 'dmabuf-registry');
    return this.registryPeer.client;
  }

  /** A function by its BDF or its topology name (nvme1); ENODEV naming the ones there are. */
  async findFunction(ref: string): Promise<pci.FunctionInfo> {
    const { functions } = await this.pci.listFunctions({});
    return resolveFunction(functions, ref);
  }

  /** The services by the names `p2p fault` takes: pci-emu, vfio-pci, dmabuf-registry, rdma-nic-0... */
  serviceAddresses(): Map<string, string> {
    return new Map([
      ['pci-emu', this.target.pciEmu],
      ['vfio-pci', this.target.vfioPci],
      ['dmabuf-registry', this.target.registry],
      ...this.target.nics.map((address, i): [string, string] => [`rdma-nic-${i}`, address]),
    ]);
  }

  /** A service's FaultInjectionService; ENOENT for a service this deployment does not have. */
  faults(service: string): Peer<typeof fault.FaultInjectionServiceDefinition>['client'] {
    const address = this.serviceAddresses().get(service);
    if (address === undefined) throw errno('ENOENT', `no service ${service}: one of ${[...this.serviceAddresses().keys()].join(', ')}`);
    return this.connect(fault.FaultInjectionServiceDefinition, address, service).client;
  }

  close(): void {
    for (const peer of this.peers.splice(0)) peer.close();
  }
}
