import { Command } from 'commander';
import { bindInvocation, type Invocation } from './invocation';
import { accessCommands } from './commands/access';
import { chaosCommand } from './commands/chaos';
import { deviceCommands } from './commands/device-faults';
import { faultCommands } from './commands/faults';
import { perfCommand } from './commands/perf';
import { processCommands } from './commands/process';
import { sessionCommands } from './commands/session';
import { topologyCommand } from './commands/topology';
import { watchCommands } from './commands/watch';

/** The `p2p` command tree for one invocation; run.ts runs it. */
export function buildProgram(invocation: Invocation): Command {
  const program = new Command('p2p')
    .description('The workbench of the P2P dma-buf model: look at the PCIe platform, poke registers, inject faults.')
    .version('0.1.0')
    .option('-t, --target <host>', 'the host running every service on the default ports (default: $P2P_TARGET or 127.0.0.1, `npm start`); PCI_EMU_ADDRESS, VFIO_PCI_ADDRESS, DMABUF_REGISTRY_ADDRESS and RDMA_NIC_ADDRESSES override it per service')
    .option('--token-file <file>', "the administrator's token (default: $P2P_ADMIN_TOKEN, else .admin-token in $P2P_SHM_DIR)")
    .option('--json', 'print JSON for scripts (64-bit values as 0x hex strings)')
    .option('-S, --session <name>', 'the background session process commands (open, export, close...) act in (default: $P2P_SESSION or "default")')
    .showHelpAfterError('(run with --help for usage)')
    // Usage errors throw (main gives them exit status 2) instead of exiting; subcommands inherit this.
    .exitOverride()
    .configureOutput({ writeOut: (text) => invocation.stdout.write(text), writeErr: (text) => invocation.stderr.write(text) })
    .addHelpText('after', '\nTLS: P2P_TLS_CA, P2P_TLS_CERT, P2P_TLS_KEY and P2P_TLS_SERVER_NAME, as for the services.');
  bindInvocation(program, invocation);
  topologyCommand(program);
  accessCommands(program);
  deviceCommands(program);
  faultCommands(program);
  perfCommand(program);
  chaosCommand(program);
  watchCommands(program);
  sessionCommands(program);
  processCommands(program);
  return program;
}
