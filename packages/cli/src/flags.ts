import { O_CLOEXEC, O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY } from '@p2p/dmabuf-client';
import { errno } from '@p2p/errno';
import { IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_RELAXED_ORDERING, IBV_ACCESS_REMOTE_ATOMIC, IBV_ACCESS_REMOTE_READ, IBV_ACCESS_REMOTE_WRITE } from '@p2p/verbs';

/** A flag word's names, as the kernel and rdma-core spell them, and the prefix a user may leave out. */
export interface FlagTable {
  readonly prefix: string;
  readonly flags: Readonly<Record<string, number>>;
}

/** open(2) flags of a dma-buf fd (O_RDONLY is 0: the absence of O_WRONLY and O_RDWR). */
export const OPEN_FLAGS: FlagTable = { prefix: 'O_', flags: { O_RDONLY, O_WRONLY, O_RDWR, O_CLOEXEC, O_NONBLOCK } };

/** enum ibv_access_flags, as ibv_reg_mr() takes them. */
export const ACCESS_FLAGS: FlagTable = {
  prefix: 'IBV_ACCESS_',
  flags: {
    IBV_ACCESS_LOCAL_WRITE,
    IBV_ACCESS_REMOTE_WRITE,
    IBV_ACCESS_REMOTE_READ,
    IBV_ACCESS_REMOTE_ATOMIC,
    IBV_ACCESS_RELAXED_ORDERING,
  },
};

/**
 * A flag word from names joined by `,` or `|`, each with or without its
 * prefix and in any case (`rdwr,cloexec`, `O_RDWR|O_CLOEXEC`); EINVAL for a
 * name the table lacks, listing the ones it has.
 */
export function parseFlags(text: string, table: FlagTable, what: string): number {
  let value = 0;
  for (const word of text.split(/[,|]/).map((w) => w.trim()).filter((w) => w !== '')) {
    const upper = word.toUpperCase();
    const name = upper.startsWith(table.prefix) ? upper : `${table.prefix}${upper}`;
    const flag = table.flags[name];
    if (flag === undefined) throw errno('EINVAL', `${what}: no flag ${word}; one of ${Object.keys(table.flags).join(', ')}`);
    value |= flag;
  }
  return value;
}

/** The names of the flags set in `value`, joined by `|` (`0` when none is). */
export function flagNames(value: number, table: FlagTable): string {
  const names = Object.entries(table.flags)
    .filter(([, flag]) => flag !== 0 && (value & flag) === flag)
    .map(([name]) => name);
  const zero = Object.entries(table.flags).find(([, flag]) => flag === 0);
  // O_RDONLY is the access mode (O_ACCMODE, the low two bits) being 0.
  if (zero !== undefined && (value & 3) === 0) names.unshift(zero[0]);
  return names.length === 0 ? '0' : names.join('|');
}
