import type { TlsConfig } from '@p2p/auth';
import type { CpuAccess } from '@p2p/user-driver';
import type { ServiceName } from '../plan/schedule';
import type { SegmentFiles } from './segment-files';

/** Where the campaign reaches a deployment: each service's address, the administrator's token, TLS. */
export interface Deployment {
  readonly pciEmu: string;
  readonly vfioPci: string;
  readonly registry: string;
  /** nic0 (host Y's NIC), nic1 (host X's, beside accel0). */
  readonly nics: readonly [string, string];
  readonly adminToken: string | undefined;
  readonly tls: TlsConfig;
  /**
   * The segment directory the workload's sessions are given: the services'
   * own under the local driver (they map segments there), a private empty
   * one under compose (the registry then streams, TRANSPORT_STREAM).
   */
  readonly shmDir: string;
  /** How a workload process's CPU reaches its DMA memory: mapped beside the services (local), copied through the registry (compose). */
  readonly cpuAccess: CpuAccess;
  /** The services' segment files, for the checkers: the BAR's bytes while it does not decode, stray files. */
  readonly segments: SegmentFiles;
}

/**
 * How a campaign reaches and hurts a deployment: the process faults. Device
 * faults go through pci-emu whatever the driver (they are what the platform
 * does), and so do partitions made with the services' own fault rules.
 */
export interface Driver {
  readonly name: 'local' | 'compose';
  /** How this driver cuts a service off, for the campaign's output. */
  readonly partitionMethod: string;
  /** Brings the deployment up (local) or finds it (compose), every service serving. */
  start(): Promise<Deployment>;
  /** SIGKILL: the service is gone until revive(). */
  kill(service: ServiceName): Promise<void>;
  /** Starts a killed service again on its old address, and whatever exited with it; resolves once every service serves. */
  revive(service: ServiceName): Promise<void>;
  /** SIGSTOP (docker pause): the service is frozen, its connections open. */
  pause(service: ServiceName): Promise<void>;
  resume(service: ServiceName): Promise<void>;
  /** Cuts the service off from every client: its calls fail, or hang, until heal(). */
  partition(service: ServiceName): Promise<void>;
  heal(service: ServiceName): Promise<void>;
  /** Resolves once every service answers its health check (rejects after `timeoutMs`). */
  waitServing(timeoutMs: number): Promise<void>;
  /** Stops what start() started; a compose deployment is left as it was found. */
  stop(): Promise<void>;
}

export function addressOf(deployment: Deployment, service: ServiceName): string {
  switch (service) {
    case 'pci-emu':
      return deployment.pciEmu;
    case 'vfio-pci':
      return deployment.vfioPci;
    case 'dmabuf-registry':
      return deployment.registry;
    case 'rdma-nic-0':
      return deployment.nics[0];
    case 'rdma-nic-1':
      return deployment.nics[1];
  }
}
