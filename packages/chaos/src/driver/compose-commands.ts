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

/** The compose commands of each process fault and its heal, and of finding the project's containers. */
export const composeFaults = {
  kill: (project: ComposeProject, service: ServiceName): CommandLine => composeCommand(project, ['kill', '-s', 'SIGKILL', COMPOSE_SERVICES[service]]),
  /** Every stopped service of the project: the killed one, and those that ended themselves when it went (vfio-pci and the NICs lose the registry). */
  revive: (project: ComposeProject): CommandLine => composeCommand(project, ['start']),
  pause: (project: ComposeProject, service: ServiceName): CommandLine => composeCommand(project, ['pause', COMPOSE_SERVICES[service]]),
  unpause: (project: ComposeProject, service: ServiceName): CommandLine => composeCommand(project, ['unpause', COMPOSE_SERVICES[service]]),
  /** The container id of a service (running or not), for `docker network` and `docker inspect`. */
  containerId: (project: ComposeProject, service: ServiceName): CommandLine => composeCommand(project, ['ps', '-q', COMPOSE_SERVICES[service]]),
} as const;

/**
 * `docker network disconnect|connect <network> <container>`: a partition on
 * the compose network and its heal. A connect gives the container back its
 * compose name (`--alias`), which the disconnect took: without it the other
 * services could no longer resolve it.
 */
export function networkCommand(action: 'disconnect' | 'connect', network: string, container: string, alias?: string): CommandLine {
  return { program: 'docker', args: ['network', action, ...(alias === undefined ? [] : ['--alias', alias]), network, container] };
}

/** `docker inspect -f <format> <ids...>`: one line per container. */
export function inspectCommand(format: string, ids: readonly string[]): CommandLine {
  return { program: 'docker', args: ['inspect', '-f', format, ...ids] };
}

/** The gateway's port for each service, inside its container (the NICs both serve 50054: the gateway tells them apart). */
export const GATEWAY_PORTS: Record<ServiceName, number> = { 'pci-emu': 50051, 'vfio-pci': 50052, 'dmabuf-registry': 50053, 'rdma-nic-0': 50054, 'rdma-nic-1': 50055 };
/** The gateway's segment-file server, inside its container. */
export const GATEWAY_SEGMENTS_PORT = 8080;
/** Where the services' image mounts the segment volume (docker-compose.yml). */
export const SERVICES_SHM_DIR = '/dev/shm/p2p-dmabuf';

/** What the gateway container needs: its name, the services' image, the project's network, a container whose volumes it mounts, its bearer token. */
export interface GatewaySpec {
  readonly name: string;
  readonly image: string;
  readonly network: string;
  readonly volumesFrom: string;
  readonly token: string;
}

/**
 * `docker run -i --rm` of the gateway (compose-gateway-main.ts) beside the
 * project: on its network (the services' compose names resolve), the
 * segment volume read-only, each port published on the host's loopback to a
 * port Docker picks. Attached, so that it ends with its stdin.
 */
export function gatewayRun(spec: GatewaySpec): CommandLine {
  const routes = (Object.keys(GATEWAY_PORTS) as ServiceName[]).map((s) => `${GATEWAY_PORTS[s]}=${COMPOSE_SERVICES[s]}:${CONTAINER_PORTS[s]}`).join(',');
  const ports = [...Object.values(GATEWAY_PORTS), GATEWAY_SEGMENTS_PORT].flatMap((port) => ['-p', `127.0.0.1::${port}`]);
  return {
    program: 'docker',
    args: [
      ...['run', '-i', '--rm', '--name', spec.name, '--network', spec.network, '--volumes-from', `${spec.volumesFrom}:ro`, ...ports],
      ...['-e', `GATEWAY_ROUTES=${routes}`, '-e', `GATEWAY_SEGMENTS_PORT=${GATEWAY_SEGMENTS_PORT}`, '-e', `GATEWAY_TOKEN=${spec.token}`, '-e', `P2P_SHM_DIR=${SERVICES_SHM_DIR}`],
      ...[spec.image, 'node', 'packages/chaos/dist/driver/compose-gateway-main.js'],
    ],
  };
}

/** `docker port <container> <port>`: where the host reaches a published port. */
export function portCommand(container: string, port: number): CommandLine {
  return { program: 'docker', args: ['port', container, `${port}/tcp`] };
}
/** `docker compose port` prints `0.0.0.0:49153` (or `[::]:49153`): the address to dial from this host. */
export function dialAddress(portOutput: string): string {
  const line = portOutput.trim().split('\n')[0] ?? '';
  const match = /:(\d+)$/.exec(line);
  if (match === null) throw new Error(`no published port in ${JSON.stringify(portOutput)}`);
  return `127.0.0.1:${match[1]}`;
}
