import type { Command } from 'commander';
import { errno } from '@p2p/errno';
import { pci } from '@p2p/proto';
import { action, type Context } from '../context';
import { resolveFunction } from '../device-ref';
import { powerStateName } from '../topology-tree';

/**
 * The device faults by name, as an administrator or the hardware causes
 * them: each is what the platform does, and every exporter and importer
 * sees it the way the kernel's would (revoke, move_notify, all-ones reads).
 */
export const DEVICE_FAULTS = {
  flr: 'Function Level Reset (PCI_EXP_DEVCTL_BCR_FLR): the function resets, its BARs stop decoding until a driver re-enables them',
  reset: 'a reset by whatever method the function supports (pci_reset_function)',
  'mem-off': 'clear Memory Space Enable in PCI_COMMAND: BAR accesses stop decoding, vfio-pci revokes the dma-bufs',
  'mem-on': 'set Memory Space Enable in PCI_COMMAND again',
  d3: 'put the function in D3hot (PCI_PM_CTRL): no decode until D0',
  d0: 'bring the function back to D0',
  unplug: 'surprise hot-unplug: the function disappears from the bus',
  replug: 'plug an unplugged function back in',
} as const;

export type DeviceFault = keyof typeof DEVICE_FAULTS;

function isDeviceFault(name: string): name is DeviceFault {
  return Object.hasOwn(DEVICE_FAULTS, name);
}

/** Applies one device fault to `bdf` and says what happened. */
export async function applyDeviceFault(context: Context, bdf: string, fault: DeviceFault): Promise<string> {
  const { pci: platform } = context.clients;
  switch (fault) {
    case 'flr':
      await platform.functionLevelReset({ bdf });
      return `${bdf}: Function Level Reset done`;
    case 'reset':
      await platform.resetFunction({ bdf });
      return `${bdf}: reset`;
    case 'mem-off':
    case 'mem-on': {
      // Loaded here: the service's module takes half a second to load, which every other command would pay.
      const { pciRegs } = await import('@p2p/vfio-pci');
      const { value } = await platform.configRead({ bdf, offset: pciRegs.PCI_COMMAND, width: 2 });
      const command = fault === 'mem-off' ? value & ~pciRegs.PCI_COMMAND_MEMORY : value | pciRegs.PCI_COMMAND_MEMORY;
      await platform.configWrite({ bdf, offset: pciRegs.PCI_COMMAND, width: 2, value: command, hardware: true });
      return `${bdf}: PCI_COMMAND 0x${value.toString(16).padStart(4, '0')} -> 0x${command.toString(16).padStart(4, '0')} (Memory Space ${fault === 'mem-off' ? 'off' : 'on'})`;
    }
    case 'd3':
    case 'd0': {
      const state = fault === 'd3' ? pci.PowerState.POWER_STATE_D3HOT : pci.PowerState.POWER_STATE_D0;
      const { previous } = await platform.setPowerState({ bdf, state });
      return `${bdf}: ${powerStateName(previous)} -> ${powerStateName(state)}`;
    }
    case 'unplug':
      await platform.unplug({ bdf });
      return `${bdf}: unplugged`;
    case 'replug':
      await platform.replug({ bdf });
      return `${bdf}: plugged back in`;
  }
}

async function deviceFault(context: Context, ref: string, name: string): Promise<void> {
  if (!isDeviceFault(name)) throw errno('EINVAL', `no device fault ${JSON.stringify(name)}: one of ${Object.keys(DEVICE_FAULTS).join(', ')}`);
  const { functions } = await context.clients.pci.listFunctions({});
  const bdf = resolveFunction(functions, ref).bdf;
  const said = await applyDeviceFault(context, bdf, name);
  context.print({ bdf, fault: name }, () => said);
}

/** `p2p reset`, `p2p power`, `p2p unplug`, `p2p replug`: the device faults as their own commands. */
export function deviceCommands(program: Command): void {
  program
    .command('reset')
    .description('reset a function: --flr (default) or the function\'s reset method')
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

export { deviceFault };
