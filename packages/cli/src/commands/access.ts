import type { Command } from 'commander';
import { errno } from '@p2p/errno';
import { action } from '../context';
import { type AddressSpace, parseSpace, parseWidth } from '../device-ref';
import { hex, parseSmall, parseUnsigned } from '../format';

/** Bytes `p2p read --length` may dump at once: a BAR window, not a whole BAR. */
export const MAX_DUMP_BYTES = 1024 * 1024;

interface ReadOptions {
  readonly width: string;
  readonly length?: string;
}

interface WriteOptions {
  readonly width: string;
}

/** `xxd`-style lines: the address, 16 bytes in hex, and their printable characters. */
export function hexdump(data: Buffer, base: bigint): string[] {
  const lines: string[] = [];
  for (let at = 0; at < data.length; at += 16) {
    const row = data.subarray(at, at + 16);
    const bytes = [...row].map((b) => b.toString(16).padStart(2, '0'));
    const text = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${hex(base + BigInt(at), 8)}: ${bytes.join(' ').padEnd(47)}  ${text}`);
  }
  return lines;
}

function undecoded(space: AddressSpace, bdf: string): string {
  return space.kind === 'bar' ? ` (not decoded: ${bdf} has Memory Space off or is not in D0; a read returns all ones)` : '';
}

export function accessCommands(program: Command): void {
  program
    .command('read')
    .description('read a register of config space or a BAR (as the platform: pci-emu, not through a driver), or dump bytes of a memory BAR with --length')
    .argument('<function>', 'a BDF (0000:08:00.0) or a name (nvme1)')
    .argument('<space>', 'config, or bar0 to bar5')
    .argument('<offset>', 'byte offset (decimal or 0x hex)')
    .option('-w, --width <bytes>', 'access width: 1, 2, 4 or 8', '4')
    .option('-l, --length <bytes>', `dump this many bytes of a memory BAR (at most ${MAX_DUMP_BYTES})`)
    .action(
      action<ReadOptions>(async (context, [ref, spaceText, offsetText], options) => {
        const space = parseSpace(spaceText!);
        const bdf = (await context.clients.findFunction(ref!)).bdf;
        const offset = parseUnsigned(offsetText!, 'offset');
        if (options.length !== undefined) {
          if (space.kind !== 'bar') throw errno('EINVAL', '--length dumps a BAR; read config space a register at a time');
          const length = parseSmall(options.length, 'length', MAX_DUMP_BYTES);
          const { data, decoded } = await context.clients.pci.bulkRead({ bdf, bar: space.index, offset, length: BigInt(length) });
          context.print({ bdf, bar: space.index, offset, length, decoded, data }, () => [...hexdump(data, offset), ...(decoded ? [] : [undecoded(space, bdf).trim()])]);
          return;
        }
        const width = parseWidth(options.width, space);
        if (space.kind === 'config') {
          const { value } = await context.clients.pci.configRead({ bdf, offset: Number(offset), width });
          context.print({ bdf, space: 'config', offset, width, value }, () => `${bdf} config ${hex(offset, 3)}: ${hex(value, width * 2)}`);
          return;
        }
        const { value, decoded } = await context.clients.pci.mmioRead({ bdf, bar: space.index, offset, width });
        context.print({ bdf, bar: space.index, offset, width, value, decoded }, () => `${bdf} bar${space.index} ${hex(offset, 4)}: ${hex(value, width * 2)}${decoded ? '' : undecoded(space, bdf)}`);
      }),
    );

  program
    .command('write')
    .description('write a register of config space or a BAR, as the platform (a driver goes through vfio-pci)')
    .argument('<function>', 'a BDF or a name')
    .argument('<space>', 'config, or bar0 to bar5')
    .argument('<offset>', 'byte offset')
    .argument('<value>', 'the value (decimal or 0x hex), at most the width')
    .option('-w, --width <bytes>', 'access width: 1, 2, 4 or 8', '4')
    .action(
      action<WriteOptions>(async (context, [ref, spaceText, offsetText, valueText], options) => {
        const space = parseSpace(spaceText!);
        const width = parseWidth(options.width, space);
        const offset = parseUnsigned(offsetText!, 'offset');
        const value = parseUnsigned(valueText!, 'value', 2n ** BigInt(width * 8) - 1n);
        const bdf = (await context.clients.findFunction(ref!)).bdf;
        if (space.kind === 'config') {
          await context.clients.pci.configWrite({ bdf, offset: Number(offset), width, value: Number(value), hardware: false });
          context.print({ bdf, space: 'config', offset, width, value }, () => `${bdf} config ${hex(offset, 3)} <- ${hex(value, width * 2)}`);
          return;
        }
        const { decoded } = await context.clients.pci.mmioWrite({ bdf, bar: space.index, offset, width, value });
        context.print({ bdf, bar: space.index, offset, width, value, decoded }, () => `${bdf} bar${space.index} ${hex(offset, 4)} <- ${hex(value, width * 2)}${decoded ? '' : ' (dropped: not decoded)'}`);
      }),
    );
}
