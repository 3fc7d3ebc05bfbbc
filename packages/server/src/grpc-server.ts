import type * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { Server, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { type Access, accessInterceptor, Authenticator, newToken, serverCredentials, servesTls } from '@p2p/auth';
import { faultInjectionService, faultInterceptor, FaultRuleSet } from '@p2p/faults';
import { fault, PROTO_FILES, PROTO_ROOT } from '@p2p/proto';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import pino, { type Logger } from 'pino';
import type { ServerConfig } from './config';
import { malformedRequestInterceptor, tolerantDecoding } from './malformed-request';
import { ServerMetrics } from './metrics';
import { withProtocMapEntryNames } from './reflection';

export interface ServiceRegistration {
  /** Full service name as health checks and reflection know it, e.g. `p2p.pci.v1.PciEmuService`. */
  name: string;
  definition: ServiceDefinition;
  implementation: UntypedServiceImplementation;
  /**
   * Who may call a method of this service at all (default: anyone; the
   * handlers then check which process a caller may act as).
   */
  access?: (method: string) => Access;
}

export interface StartServerOptions {
  /** Short service name for logs and metrics, e.g. `pci-emu`. */
  name: string;
  config: ServerConfig;
  services: ServiceRegistration[];
  /** The .proto files (relative to the proto root) that reflection serves. */
  protoFiles: string[];
  logger?: Logger;
  /** Tells who calls; without one, every caller is anonymous and privileged methods are refused. */
  authenticator?: Authenticator;
  /** Labels on every metric of this server beside `service` (rdma-nic's `nic`); default none. */
  metricLabels?: Readonly<Record<string, string>>;
}

export interface RunningServer {
  readonly name: string;
  readonly port: number;
  /** -1 when metrics are off. */
  readonly metricsPort: number;
  readonly faults: FaultRuleSet;
  readonly metrics: ServerMetrics;
  readonly logger: Logger;
  readonly authenticator: Authenticator | undefined;
  /** Runs `hook` when shutdown begins (end server streams, close sessions). */
  onShutdown(hook: () => void | Promise<void>): void;
  /** NOT_SERVING, then drain in-flight calls, then force after the timeout. */
  shutdown(reason?: string): Promise<void>;
}

/**
 * Starts one service's gRPC server with everything every service shares:
 * grpc.health.v1, reflection, the FaultInjectionService and its interceptor,
 * Prometheus metrics, keepalive and explicit message-size limits.
 */
export async function startServer(options: StartServerOptions): Promise<RunningServer> {
  const { config, name } = options;
  const logger = options.logger ?? pino({ level: config.logLevel, base: { service: name } });
  const faults = new FaultRuleSet();
  const metrics = new ServerMetrics(name, options.metricLabels);
  const faultService = 'p2p.fault.v1.FaultInjectionService';
  const services: ServiceRegistration[] = [
    ...options.services,
    {
      name: faultService,
      definition: fault.FaultInjectionServiceService,
      implementation: faultInjectionService(faults),
      access: () => 'admin',
    },
  ];
  // Each method's role, asked once: a call then costs one lookup by its path.
  const accessOf = new Map<string, Access>();
  for (const service of services) {
    for (const { path: method } of Object.values(service.definition)) accessOf.set(method, service.access?.(method) ?? 'any');
  }
  const access = (method: string): Access => accessOf.get(method) ?? 'any';
  const authenticator = options.authenticator ?? new Authenticator({ adminToken: newToken(), platformToken: newToken() });
  const faulting = faultInterceptor(faults, {
    onFault: (method, delayMs, aborted) => {
      if (delayMs > 0) metrics.faults.inc({ method, kind: 'delay' });
      if (aborted) metrics.faults.inc({ method, kind: 'abort' });
      logger.info({ method, delayMs, aborted }, 'fault injected');
    },
    onError: (method, err) => logger.error({ method, err }, 'fault injection failed; call let through'),
  });

  const server = new Server({
    'grpc.max_receive_message_length': config.maxMessageBytes,
    'grpc.max_send_message_length': config.maxMessageBytes,
    'grpc.keepalive_time_ms': config.keepaliveTimeMs,
    'grpc.keepalive_timeout_ms': config.keepaliveTimeoutMs,
    'grpc.keepalive_permit_without_calls': 1,
    // No server here serves channelz (grpc.channelz.v1), so nothing would read
    // the bookkeeping grpc-js keeps for it on every call; /metrics counts calls.
    'grpc.enable_channelz': 0,
    interceptors: [
      metrics.interceptor(),
      accessInterceptor(authenticator, access),
      malformedRequestInterceptor(),
      faulting,
    ],
  });

  for (const service of services) server.addService(tolerantDecoding(service.definition), service.implementation);

  const health = new HealthImplementation({ '': 'SERVING', ...Object.fromEntries(services.map((s) => [s.name, 'SERVING' as const])) });
  health.addToServer(server);

  const reflected = protoLoader.loadSync(
    [...new Set([...options.protoFiles, PROTO_FILES.fault])].map((file) => path.join(PROTO_ROOT, file)).concat(healthProtoPath),
    { includeDirs: [PROTO_ROOT], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true },
  );
  new ReflectionService(withProtocMapEntryNames(reflected)).addToServer(server);

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${config.host}:${config.port}`, serverCredentials(config.tls), (error, bound) =>
      error ? reject(error) : resolve(bound),
    );
  });

  let metricsServer: http.Server | undefined;
  if (config.metricsPort >= 0) {
    metricsServer = await metrics.listen(config.host, config.metricsPort);
  }
  const metricsPort = metricsServer ? (metricsServer.address() as AddressInfo).port : -1;
  logger.info({ port, metricsPort, tls: servesTls(config.tls) ? (config.tls.ca ? 'mutual' : 'server') : 'off' }, `${name} serving`);

  const hooks: Array<() => void | Promise<void>> = [];
  let stopping: Promise<void> | undefined;

  const shutdown = (reason = 'shutdown requested'): Promise<void> => {
    stopping ??= (async () => {
      logger.info({ reason }, `${name} draining`);
      for (const service of services) health.setStatus(service.name, 'NOT_SERVING');
      health.setStatus('', 'NOT_SERVING');
      for (const hook of hooks) await hook();
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          logger.warn({ timeoutMs: config.shutdownTimeoutMs }, `${name} drain timed out; forcing`);
          server.forceShutdown();
          resolve();
        }, config.shutdownTimeoutMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      await new Promise<void>((resolve) => (metricsServer ? metricsServer.close(() => resolve()) : resolve()));
      logger.info(`${name} stopped`);
    })();
    return stopping;
  };

  return { name, port, metricsPort, faults, metrics, logger, authenticator: options.authenticator, onShutdown: (hook) => hooks.push(hook), shutdown };
}
