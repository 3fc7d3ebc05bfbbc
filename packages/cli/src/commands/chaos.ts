import * as fs from 'node:fs';
import type { Command } from 'commander';
import Table from 'cli-table3';
import type { CampaignRun, Deployment, Driver, FaultKind, Plant, WorkloadName } from '@p2p/chaos';
import { errno } from '@p2p/errno';
import { Clients } from '../clients';
import { action, type Context } from '../context';
import { ExitStatus } from '../invocation';
import { addInstantTrack, toChromeTrace } from '../trace/chrome-trace';
import { parseDuration } from '../trace/duration';
import { streamServiceEvents } from '../trace/event-sources';
import type { ServiceEvent } from '../trace/service-event';

interface ChaosOptions {
  readonly seed: string;
  readonly duration: string;
  readonly interval: string;
  readonly faultDuration: string;
  readonly faults: string;
  readonly workload?: string;
  readonly driver: string;
  readonly history: string;
  readonly trace?: string;
  readonly composeFile?: string;
  readonly composeProject?: string;
  readonly composeV1?: boolean;
  readonly plant?: string;
}

/** Follows pci-emu's and the registry's events for the whole run, each stream again after its service came back. */
function watchEvents(deployment: Deployment, events: ServiceEvent[], signal: AbortSignal): Promise<void> {
  const clients = new Clients({ pciEmu: deployment.pciEmu, vfioPci: deployment.vfioPci, registry: deployment.registry, nics: deployment.nics, token: deployment.adminToken, tls: deployment.tls });
  const follow = async (only: 'pci-emu' | 'dmabuf-registry'): Promise<void> => {
    while (!signal.aborted) {
      await streamServiceEvents(clients, { nvme: false, signal, only, onEvent: (e) => events.push(e), onLive: () => undefined, onError: () => undefined });
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  };
  return Promise.all([follow('pci-emu'), follow('dmabuf-registry')]).then(() => clients.close());
}

function ms(value: number | undefined): string {
  return value === undefined ? '-' : `${value.toFixed(1)} ms`;
}

function resultTable(run: CampaignRun): string {
  const table = new Table({ head: ['fault', 'service', 'faults', 'operations', 'ok', 'failed', 'indeterminate', 'violations', 'recovery p50', 'recovery p99'], style: { head: [], border: [] } });
  for (const row of run.result.rows) {
    table.push([row.kind, row.service, String(row.faults), String(row.operations), String(row.ok), String(row.failed), String(row.indeterminate), String(row.violations), ms(row.recoveryP50Ms), ms(row.recoveryP99Ms)]);
  }
  return table.toString();
}

async function chaos(context: Context, options: ChaosOptions): Promise<void> {
  // Loaded here: the campaign brings the workload's clients and vfio-pci's uAPI, which every other command would pay for.
  const campaign = await import('@p2p/chaos');
  const seed = Number(options.seed);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffff_ffff) throw errno('EINVAL', `--seed ${options.seed}: an integer from 0 to 2^32-1`);
  const durationMs = parseDuration(options.duration);
  const intervalMs = parseDuration(options.interval);
  const faultDurationMs = parseDuration(options.faultDuration);
  if (faultDurationMs >= intervalMs) throw errno('EINVAL', `--fault-duration ${options.faultDuration} must be shorter than --interval ${options.interval}`);
  const kinds = options.faults.split(',').map((k) => k.trim()).filter((k) => k !== '');
  const unknown = kinds.filter((k) => !campaign.isFaultKind(k));
  if (kinds.length === 0 || unknown.length > 0) throw errno('EINVAL', `--faults ${options.faults}: a list of ${campaign.FAULT_KINDS.join(', ')}`);
  const workloadList = options.workload ?? campaign.WORKLOADS.join(',');
  const workloads = workloadList.split(',').map((w) => w.trim()).filter((w) => w !== '');
  if (workloads.length === 0 || !workloads.every((w) => campaign.isWorkloadName(w))) throw errno('EINVAL', `--workload ${workloadList}: a list of ${campaign.WORKLOADS.join(', ')}`);
  if (options.plant !== undefined && !(campaign.PLANTS as readonly string[]).includes(options.plant)) throw errno('EINVAL', `--plant ${options.plant}: one of ${campaign.PLANTS.join(', ')}`);
  const { stderr } = context.invocation;
  const log = (line: string): void => stderr.write(`p2p chaos: ${line}\n`);
  let driver: Driver;
  if (options.driver === 'local') driver = new campaign.LocalDriver(log);
  else if (options.driver === 'compose') driver = new campaign.ComposeDriver({ flavour: options.composeV1 === true ? 'v1' : undefined, file: options.composeFile, name: options.composeProject });
  else throw errno('EINVAL', `--driver ${options.driver}: local or compose`);

  const events: ServiceEvent[] = [];
  const watching = new AbortController();
  let watched: Promise<void> = Promise.resolve();
  log(`seed ${seed}, ${durationMs} ms, workloads ${workloads.join(', ')}, a fault every ${intervalMs} ms held ${faultDurationMs} ms (${kinds.join(', ')}), driver ${driver.name}; partitions by ${driver.partitionMethod}`);
  let run: CampaignRun;
  try {
    run = await campaign.runCampaign({
      driver,
      seed,
      durationMs,
      intervalMs,
      faultDurationMs,
      kinds: kinds as FaultKind[],
      workloads: workloads as WorkloadName[],
      plant: options.plant as Plant | undefined,
      log,
      onDeployment: (deployment) => {
        if (options.trace !== undefined) watched = watchEvents(deployment, events, watching.signal);
      },
    });
  } finally {
    watching.abort();
    await watched;
  }
  fs.writeFileSync(options.history, campaign.historyToJsonl(run.ops));
  if (options.trace !== undefined) {
    const instants = run.faults.flatMap((f) => [
      { unixMs: f.startUnixMs, name: `${f.kind} ${f.target}${f.detail === '' ? '' : ` ${f.detail}`}`, args: { phase: 'start' } },
      ...(f.healedUnixMs === undefined ? [] : [{ unixMs: f.healedUnixMs, name: `healed: ${f.kind} ${f.target}`, args: { phase: 'healed' } }]),
    ]);
    fs.writeFileSync(options.trace, `${JSON.stringify(addInstantTrack(toChromeTrace(events), 'nemesis', instants))}\n`);
  }
  const { result } = run;
  context.print({ seed, history: options.history, trace: options.trace, partitionMethod: run.partitionMethod, valid: result.valid, rows: result.rows, violations: result.violations }, () => [
    resultTable(run),
    ...result.violations.map((v) => `violation (${v.checker}): ${v.message} [ops ${v.ops.join(', ')}]`),
    `history: ${options.history} (${run.ops.length} ops)${options.trace === undefined ? '' : `; trace: ${options.trace} (${events.length} events)`}`,
    result.valid ? `seed ${seed}: no violation` : `seed ${seed}: ${result.violations.length} violation${result.violations.length === 1 ? '' : 's'}`,
  ]);
  if (!result.valid) throw new ExitStatus(1);
}

/** `p2p chaos`: a fault campaign against a deployment, with a seeded workload, a nemesis on a schedule and the checkers. */
export function chaosCommand(program: Command): void {
  program
    .command('chaos')
    .description('a fault campaign: a seeded workload (RDMA into host memory and accel0\'s BAR with revokes, DMA-engine copies, NVMe I/O) while a nemesis kills, freezes, cuts off services and faults the device; then every checker over the history (exit 1 on a violation)')
    .option('--seed <n>', 'seeds the workload and the schedule (0 to 2^32-1)', '1')
    .option('--duration <time>', 'how long the workload runs: 30s, 2m', '30s')
    .option('--interval <time>', 'a fault every this long', '3s')
    .option('--fault-duration <time>', 'how long each fault holds before it is healed', '1s')
    .option('--faults <kinds>', 'the kinds to rotate through: kill, stop, partition, device', 'kill,stop,partition,device')
    .option('--workload <workloads>', 'the workloads to run: rdma (RDMA streams, revokes), dma (accel0 DMA-engine copies into host memory and nvme1\'s CMB), nvme (nvme0 I/O through a user-space driver); default all three')
    .option('--driver <driver>', 'local (starts every service as its own process on a fresh segment directory) or compose (a running `docker compose` deployment)', 'local')
    .option('--history <file>', 'the history, one JSON op per line', 'chaos-history.jsonl')
    .option('--trace <file>', "a Chrome trace of the run: the services' events and the nemesis's faults")
    .option('--compose-file <file>', 'compose driver: the compose file (-f)')
    .option('--compose-project <name>', 'compose driver: the project name (-p)')
    .option('--compose-v1', 'compose driver: docker-compose (v1) even where `docker compose` (v2) answers (without it: v2 if present, else v1)')
    .option('--plant <lie>', 'debug: make the history lie (lost-completion: drop one completion) to see the checkers catch it')
    .action(action<ChaosOptions>(async (context, _args, options) => chaos(context, options)));
}
