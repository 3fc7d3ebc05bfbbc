import type { Command } from 'commander';
import Table from 'cli-table3';
import { errno, isErrnoName } from '@p2p/errno';
import type { fault } from '@p2p/proto';
import { action } from '../context';
import { parseSmall } from '../format';
import { DEVICE_FAULTS, deviceFault } from './device-faults';

interface AddOptions {
  readonly method: string;
  readonly errno?: string;
  readonly delayMs?: string;
  readonly percent: string;
  readonly max: string;
}

function percentage(text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0 || value > 100) throw errno('EINVAL', `--percent ${text}: 0 to 100`);
  return value;
}

function ruleRow(service: string, rule: fault.FaultRule): string[] {
  const delay = rule.delay ? `${rule.delay.delayMs} ms (${rule.delay.percentage}%)` : '';
  const abort = rule.abort ? `${rule.abort.errno} (${rule.abort.percentage}%)` : '';
  return [service, rule.id, rule.methodPattern, delay, abort, rule.maxActivations === 0 ? '' : String(rule.maxActivations), String(rule.activations)];
}

/**
 * `p2p fault`: the services' gRPC fault rules (delay or abort calls by
 * method pattern, as the xDS fault filter does), and the device faults.
 */
export function faultCommands(program: Command): void {
  const faults = program.command('fault').description('fault injection: rules that delay or fail a service\'s calls, and device faults (FLR, MEM off, D3, unplug)');

  faults
    .command('add')
    .description('add a rule to a service: matching calls are delayed, then failed with an errno')
    .argument('<service>', 'pci-emu, vfio-pci, dmabuf-registry, rdma-nic-0, rdma-nic-1')
    .requiredOption('-m, --method <pattern>', 'full method name with * wildcards, e.g. "/p2p.pci.v1.PciEmuService/Mmio*" or "*"')
    .option('-e, --errno <name>', 'fail matching calls with this errno (EIO, ENODEV, EBUSY...)')
    .option('-d, --delay-ms <ms>', 'delay matching calls this long first')
    .option('-p, --percent <0-100>', 'the share of matching calls the rule acts on', '100')
    .option('--max <count>', 'stop after this many faulted calls (0: no limit)', '0')
    .action(
      action<AddOptions>(async (context, [service], options) => {
        if (options.errno === undefined && options.delayMs === undefined) throw errno('EINVAL', 'a rule needs --errno, --delay-ms or both');
        if (options.errno !== undefined && !isErrnoName(options.errno)) throw errno('EINVAL', `--errno ${options.errno} is not an errno name`);
        const share = percentage(options.percent);
        const rule: fault.FaultRule = {
          id: '',
          methodPattern: options.method,
          delay: options.delayMs === undefined ? undefined : { delayMs: parseSmall(options.delayMs, '--delay-ms', 600_000), percentage: share },
          abort: options.errno === undefined ? undefined : { errno: options.errno, grpcCode: 0, percentage: share },
          maxActivations: parseSmall(options.max, '--max'),
          activations: 0n,
        };
        const added = await context.clients.faults(service!).addFaultRule({ rule });
        context.print({ service, rule: added.rule }, () => `${service}: rule ${added.rule?.id} added`);
      }),
    );

  faults
    .command('list')
    .description("every service's rules and how many calls each faulted")
    .action(
      action(async (context) => {
        const rows: { service: string; rule: fault.FaultRule }[] = [];
        for (const service of context.clients.serviceAddresses().keys()) {
          const { rules } = await context.clients.faults(service).listFaultRules({});
          rows.push(...rules.map((rule) => ({ service, rule })));
        }
        context.print(rows, () => {
          if (rows.length === 0) return 'no fault rules';
          const table = new Table({ head: ['service', 'id', 'method', 'delay', 'abort', 'max', 'faulted'], style: { head: [], border: [] } });
          table.push(...rows.map((r) => ruleRow(r.service, r.rule)));
          return table.toString();
        });
      }),
    );

  faults
    .command('clear')
    .description("remove one service's rules, or every service's")
    .argument('[service]', 'only this service')
    .action(
      action(async (context, [only]) => {
        const services = only === undefined ? [...context.clients.serviceAddresses().keys()] : [only];
        const removed: Record<string, number> = {};
        for (const service of services) removed[service] = (await context.clients.faults(service).clearFaultRules({})).removed;
        context.print(removed, () => Object.entries(removed).map(([service, count]) => `${service}: ${count} rule${count === 1 ? '' : 's'} removed`));
      }),
    );

  faults
    .command('device')
    .description(`a device fault: ${Object.keys(DEVICE_FAULTS).join(', ')}`)
    .argument('<function>', 'a BDF or a name')
    .argument('<fault>', Object.entries(DEVICE_FAULTS).map(([name, what]) => `${name}: ${what}`).join('; '))
    .action(action(async (context, [ref, name]) => deviceFault(context, ref!, name!)));
}
