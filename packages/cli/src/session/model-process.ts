import { type DmaBufImporter, RegistrySession } from '@p2p/dmabuf-client';
import { errno } from '@p2p/errno';
import { vfio } from '@p2p/proto';
import { connectPeer, type Peer } from '@p2p/rpc';
import { VerbsContext } from '@p2p/verbs';
import type { Target } from '../target';

/** A NIC as this process opened it: its verbs context (ibv_open_device) and one protection domain. */
export interface OpenNic {
  readonly name: string;
  readonly context: VerbsContext;
  readonly pdHandle: number;
}

/** A memory region this process registered, for `p2p dereg-mr` and the listing. */
export interface RegisteredMr {
  readonly nic: string;
  readonly mrHandle: number;
  readonly lkey: number;
  readonly rkey: number;
  readonly fd: number;
  readonly iova: bigint;
  readonly length: bigint;
}

/**
 * A process of the model that outlives single commands: its registry
 * session (pid, fd table), its vfio-pci client acting as it, the attachments
 * it imported, and its NICs' verbs contexts and MRs. A `p2p session` daemon
 * or shell holds one; closing it is the process's exit (the registry closes
 * its fds, the NICs drop its contexts).
 */
export class ModelProcess {
  readonly attachments = new Map<bigint, { readonly importer: DmaBufImporter; readonly fd: number; readonly importerName: string }>();
  readonly nics = new Map<string, OpenNic>();
  /** By `<nic>:<handle>`: handles are per NIC. */
  readonly mrs = new Map<string, RegisteredMr>();
  /** The sizes of the dma-bufs this process made (lseek(fd, 0, SEEK_END) has no call here): the default MR length. */
  readonly sizes = new Map<number, bigint>();

  private constructor(
    readonly name: string,
    readonly target: Target,
    readonly session: RegistrySession,
    readonly vfioPeer: Peer<typeof vfio.VfioPciServiceDefinition>,
  ) {}

  /** Starts the process: a registry session named `name` on the target's shared segment directory. */
  static async open(target: Target, name: string, shmDir?: string): Promise<ModelProcess> {
    const session = await RegistrySession.open(target.registry, { name, shmDir, tls: target.tls });
    const vfioPeer = connectPeer(vfio.VfioPciServiceDefinition, target.vfioPci, { name: 'vfio-pci', tls: target.tls, token: session.credential });
    return new ModelProcess(name, target, session, vfioPeer);
  }

  get pid(): number {
    return this.session.pid;
  }

  /** vfio-pci's client, every call carrying this process's credential (the pid is proven, not typed). */
  get vfio(): Peer<typeof vfio.VfioPciServiceDefinition>['client'] {
    return this.vfioPeer.client;
  }

  /** The verbs context on a NIC (opened on first use, with a PD), by the name `p2p` gives NICs: nic0, nic1... */
  async nic(name: string): Promise<OpenNic> {
    const open = this.nics.get(name);
    if (open !== undefined) return open;
    const index = /^nic(\d+)$/.exec(name);
    const address = index === null ? undefined : this.target.nics[Number(index[1])];
    if (address === undefined) throw errno('ENODEV', `no NIC ${name}: ${this.target.nics.map((_, i) => `nic${i}`).join(', ')}`);
    const context = await VerbsContext.open(address, this.session, this.target.tls);
    const nic = { name, context, pdHandle: await context.allocPd() };
    this.nics.set(name, nic);
    return nic;
  }

  attachment(id: bigint): { readonly importer: DmaBufImporter; readonly fd: number; readonly importerName: string } {
    const found = this.attachments.get(id);
    if (found === undefined) throw errno('ENOENT', `this process has no attachment 0x${id.toString(16)}`);
    return found;
  }

  /**
   * The process exits: its MRs are deregistered and its attachments detached
   * (what the kernel's release of its files does), its NICs close, its session
   * ends (the registry closes whatever fds are left).
   */
  async close(): Promise<void> {
    for (const mr of this.mrs.values()) await this.nics.get(mr.nic)?.context.deregMr(mr.mrHandle).catch(() => undefined);
    this.mrs.clear();
    for (const { importer } of this.attachments.values()) await importer.detach().catch(() => undefined);
    this.attachments.clear();
    for (const nic of this.nics.values()) nic.context.close();
    this.nics.clear();
    this.vfioPeer.close();
    await this.session.close();
  }
}
