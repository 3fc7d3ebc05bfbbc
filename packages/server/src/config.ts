import { z } from 'zod';
import { loadTlsConfig, type TlsConfig } from '@p2p/auth';
import { errno } from '@p2p/errno';

/** Settings every server has; each is read from `<PREFIX>_<NAME>` (e.g. PCI_EMU_PORT). */
export interface ServerConfig {
  host: string;
  port: number;
  /** Port of the Prometheus endpoint: 0 picks a free one, -1 turns it off. */
  metricsPort: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  shutdownTimeoutMs: number;
  maxMessageBytes: number;
  keepaliveTimeMs: number;
  keepaliveTimeoutMs: number;
  /** P2P_TLS_*: the server's certificate (TLS), and the CA its clients must be signed by (mutual TLS). */
  tls: TlsConfig;
}

const port = z.coerce.number().int().min(0).max(65535);

const schema = z.object({
  HOST: z.string().min(1).default('0.0.0.0'),
  PORT: port,
  METRICS_PORT: z.coerce.number().int().min(-1).max(65535),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(0).max(600_000).default(5_000),
  MAX_MESSAGE_BYTES: z.coerce.number().int().min(4096).max(256 * 1024 * 1024).default(16 * 1024 * 1024),
  KEEPALIVE_TIME_MS: z.coerce.number().int().min(1_000).default(10_000),
  KEEPALIVE_TIMEOUT_MS: z.coerce.number().int().min(100).default(5_000),
});

/**
 * Reads a server's settings from the environment. A bad value fails start-up
 * with EINVAL naming the variable, instead of running with a surprise.
 */
export function loadServerConfig(
  prefix: string,
  defaults: { port: number; metricsPort: number },
  env: NodeJS.ProcessEnv = process.env,
): ServerConfig {
  const pick = (name: string): string | undefined => env[`${prefix}_${name}`] ?? (name === 'LOG_LEVEL' ? env.LOG_LEVEL : undefined);
  const raw = Object.fromEntries(Object.keys(schema.shape).map((name) => [name, pick(name)]));
  raw.PORT ??= String(defaults.port);
  raw.METRICS_PORT ??= String(defaults.metricsPort);
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${prefix}_${issue.path.join('.')}: ${issue.message}`);
    throw errno('EINVAL', `bad configuration: ${problems.join('; ')}`);
  }
  const c = parsed.data;
  return {
    host: c.HOST,
    port: c.PORT,
    metricsPort: c.METRICS_PORT,
    logLevel: c.LOG_LEVEL,
    shutdownTimeoutMs: c.SHUTDOWN_TIMEOUT_MS,
    maxMessageBytes: c.MAX_MESSAGE_BYTES,
    keepaliveTimeMs: c.KEEPALIVE_TIME_MS,
    keepaliveTimeoutMs: c.KEEPALIVE_TIMEOUT_MS,
    tls: loadTlsConfig(env),
  };
}
