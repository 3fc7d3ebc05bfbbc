import { parseArgs } from 'node:util';
import { errno } from '@p2p/errno';
import { DEFAULT_BASES, type LayoutBases, MAX_HOSTS } from '@p2p/hosts';

/** What `npm start` was asked for. */
export interface StackOptions {
  /** Run this many hosts, each its own process; absent: one host in this process, as always. */
  readonly hosts?: number;
  /** This process is host `hostIndex` of many (the parent starts each host so). */
  readonly hostIndex?: number;
  readonly bases: LayoutBases;
  readonly help: boolean;
}

export const USAGE = `usage: npm start [-- [--hosts N] [--port-base P] [--metrics-port-base M]]

  --hosts N              run N emulated hosts, each its own process, segment directory and NICs
                         (also \`npm start --hosts N\`, or P2P_HOSTS=N); without it, one host in one process
  --port-base P          host 0's pci-emu port; every service of host i listens at P + 10 i + 0..4
                         (default ${DEFAULT_BASES.portBase}; also P2P_PORT_BASE)
  --metrics-port-base M  the same for the metrics ports (default ${DEFAULT_BASES.metricsPortBase}; 0: free ports, -1: off;
                         also P2P_METRICS_PORT_BASE)`;

/**
 * The options from the command line, else from the environment: npm turns
 * `npm start --hosts 4` (no `--`) into npm_config_hosts=4, and P2P_HOSTS
 * says the same for scripts. EINVAL naming the option for a bad value.
 */
export function parseStackOptions(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): StackOptions {
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: true,
      options: {
        hosts: { type: 'string' },
        'host-index': { type: 'string' },
        'port-base': { type: 'string' },
        'metrics-port-base': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    throw errno('EINVAL', (error as Error).message);
  }
  const pick = (name: string, ...vars: string[]): string | undefined => {
    const given = values[name];
    if (typeof given === 'string') return given;
    return vars.map((v) => env[v]).find((v) => v !== undefined && v !== '');
  };
  // npm takes an unknown `--hosts` before the script's `--` for a flag: `npm start --hosts 4` sets
  // npm_config_hosts=true and passes 4 to the script (`--hosts=4` sets npm_config_hosts=4).
  const npmFlag = values.hosts === undefined && env.npm_config_hosts === 'true' && positionals.length === 1;
  if (positionals.length > 0 && !npmFlag) throw errno('EINVAL', `unexpected argument ${positionals.join(' ')}`);
  const hosts = npmFlag ? positionals[0] : pick('hosts', 'npm_config_hosts', 'P2P_HOSTS');
  const hostIndex = pick('host-index');
  const portBase = pick('port-base', 'npm_config_port_base', 'P2P_PORT_BASE');
  const metricsPortBase = pick('metrics-port-base', 'npm_config_metrics_port_base', 'P2P_METRICS_PORT_BASE');
  return {
    hosts: hosts === undefined ? undefined : integer('--hosts', hosts, 1, MAX_HOSTS),
    hostIndex: hostIndex === undefined ? undefined : integer('--host-index', hostIndex, 0, MAX_HOSTS - 1),
    bases: {
      portBase: portBase === undefined ? DEFAULT_BASES.portBase : integer('--port-base', portBase, 1, 65535),
      metricsPortBase: metricsPortBase === undefined ? DEFAULT_BASES.metricsPortBase : integer('--metrics-port-base', metricsPortBase, -1, 65535),
    },
    help: values.help === true,
  };
}

function integer(option: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^-?\d+$/.test(text.trim()) || value < min || value > max) throw errno('EINVAL', `${option} ${text}: a whole number from ${min} to ${max}`);
  return value;
}
