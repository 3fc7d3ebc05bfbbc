import type { Command } from 'commander';
import { applyDeviceFault, DEVICE_FAULTS, isDeviceFault } from '@p2p/device-faults';
import { errno } from '@p2p/errno';
import { action, type Context } from '../context';

async function deviceFault(context: Context, ref: string, name: string): Promise<void> {
  if (!isDeviceFault(name)) throw errno('EINVAL', `no device fault ${JSON.stringify(name)}: one of ${Object.keys(DEVICE_FAULTS).join(', ')}`);
  const { bdf } = await context.clients.findFunction(ref);
  const said = await applyDeviceFault(context.clients.pci, bdf, name);
  context.print({ bdf, fault: name }, () => said);
}

/** `p2p reset`, `p2p power`, `p2p unplug`, `p2p replug`: the device faults as their own commands. */
export function deviceCommands(program: Command): void {
  program
    .command('reset')
    .description('reset a function: a Function Level Reset (default), or --method reset for the function\'s reset method')
    .argument('<function>', 'a BDF or a name')
    .option('--method <method>', 'flr or reset', 'flr')
    .action(action<{ method: string }>(async (context, [ref], options) => deviceFault(context, ref!, options.method)));
  program
    .command('power')
    .description('set a function\'s power state')
    .argument('<function>', 'a BDF or a name')
    .argument('<state>', 'd0 or d3hot')
    .action(
      action(async (context, [ref, state]) => {
        const fault = { d0: 'd0', d3hot: 'd3', d3: 'd3' }[state!.toLowerCase()];
        if (fault === undefined) throw errno('EINVAL', `power state ${JSON.stringify(state)}: d0 or d3hot`);
        await deviceFault(context, ref!, fault);
      }),
    );
  program
    .command('unplug')
    .description('surprise hot-unplug of a function')
    .argument('<function>', 'a BDF or a name')
    .action(action(async (context, [ref]) => deviceFault(context, ref!, 'unplug')));
  program
    .command('replug')
    .description('plug an unplugged function back in')
    .argument('<function>', 'a BDF or a name')
    .action(action(async (context, [ref]) => deviceFault(context, ref!, 'replug')));
}

export { deviceFault, DEVICE_FAULTS };
