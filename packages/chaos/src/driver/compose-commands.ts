import type { ServiceName } from '../plan/schedule';

/** docker-compose.yml's names for the services: the NICs are rdma-nic-a (nic0) and rdma-nic-b (nic1). */
export const COMPOSE_SERVICES: Record<ServiceName, string> = {
  'pci-emu': 'pci-emu',
  'vfio-pci': 'vfio-pci',
  'dmabuf-registry': 'dmabuf-registry',
  'rdma-nic-0': 'rdma-nic-a',
  'rdma-nic-1': 'rdma-nic-b',
};

/** Each service's gRPC port inside its container (docker-compose.yml). */
export const CONTAINER_PORTS: Record<ServiceName, number> = { 'pci-emu': 50051, 'vfio-pci': 50052, 'dmabuf-registry': 50053, 'rdma-nic-0': 50054, 'rdma-nic-1': 50054 };

/** Which compose: the v2 plugin (`docker compose`) or v1 (`docker-compose`), and the project it acts on. */
export interface ComposeProject {
  readonly flavour: 'v2' | 'v1';
  /** -f: the compose file (default: docker-compose.yml in the working directory). */
  readonly file?: string;
  /** --project-directory. */
  readonly directory?: string;
  /** -p: the project name (default: compose's, the directory's name). */
  readonly name?: string;
}

/** A command line: the program and its arguments. */
export interface CommandLine {
  readonly program: string;
  readonly args: readonly string[];
}

/** `docker compose <project flags> <args>`, or `docker-compose ...` for v1. */
export function composeCommand(project: ComposeProject, args: readonly string[]): CommandLine {
  const flags = [
    ...(project.file === undefined ? [] : ['-f', project.file]),
    ...(project.directory === undefined ? [] : ['--project-directory', project.directory]),
    ...(project.name === undefined ? [] : ['-p', project.name]),
  ];
  return project.flavour === 'v2' ? { program: 'docker', args: ['compose', ...flags, ...args] } : { program: 'docker-compose', args: [...flags, ...args] };
}

/** The compose commands of each process fault and its heal. */
export const composeFaults = {
  kill: (project: ComposeProject, service: ServiceName): CommandLine => composeCommand(project, ['kill', '-s', 'SIGKILL', COMPOSE_SERVICES[service]]),
  /** Every stopped service of the project: the killed one, and those that ended themselves when it went (vfio-pci and the NICs lose the registry). */
  revive: (project: ComposeProject): CommandLine => composeCommand(project, ['start']),
  pause: (project: ComposeProject, service: ServiceName): CommandLine => composeCommand(project, ['pause', COMPOSE_SERVICES[service]]),
  unpause: (project: ComposeProject, service: ServiceName): CommandLine => composeCommand(project, ['unpause', COMPOSE_SERVICES[service]]),
  /** The container id of a service, for `docker network`. */
  containerId: (project: ComposeProject, service: ServiceName): CommandLine => composeCommand(project, ['ps', '-q', COMPOSE_SERVICES[service]]),
  /** The host address its gRPC port is published on. */
  port: (project: ComposeProject, service: ServiceName): CommandLine => composeCommand(project, ['port', COMPOSE_SERVICES[service], String(CONTAINER_PORTS[service])]),
  /** The administrator's token, from the segment volume as the services wrote it. */
  adminToken: (project: ComposeProject): CommandLine => composeCommand(project, ['exec', '-T', 'pci-emu', 'cat', '/dev/shm/p2p-dmabuf/.admin-token']),
} as const;

/** `docker network disconnect|connect <network> <container>`: a partition on the compose network and its heal. */
export function networkCommand(action: 'disconnect' | 'connect', network: string, container: string): CommandLine {
  return { program: 'docker', args: ['network', action, network, container] };
}

/** The network compose makes for a project: `<project>_default`. */
export function defaultNetwork(projectName: string): string {
  return `${projectName}_default`;
}

/** `docker compose port` prints `0.0.0.0:49153` (or `[::]:49153`): the address to dial from this host. */
export function dialAddress(portOutput: string): string {
  const line = portOutput.trim().split('\n')[0] ?? '';
  const match = /:(\d+)$/.exec(line);
  if (match === null) throw new Error(`no published port in ${JSON.stringify(portOutput)}`);
  return `127.0.0.1:${match[1]}`;
}
