import { ErrnoError } from '@p2p/errno';
import { z } from 'zod';
import { canonicalBdf } from './bdf';

const KiB = 2 ** 10;
const MiB = 2 ** 20;
const GiB = 2 ** 30;
const UNITS: Readonly<Record<string, number>> = { '': 1, KiB, MiB, GiB, TiB: 2 ** 40 };

/** 65536, "0x10000", "64KiB" or "64 KiB": JSON has no hex literals and sizes read better with units. */
function parseQuantity(input: number | string): number | undefined {
  if (typeof input === 'number') {
    return Number.isSafeInteger(input) ? input : undefined;
  }
  const hex = /^0x([0-9a-f]+)$/i.exec(input.trim());
  if (hex) {
    const value = parseInt(hex[1]!, 16);
    return Number.isSafeInteger(value) ? value : undefined;
  }
  const scaled = /^(\d+)\s*(KiB|MiB|GiB|TiB)?$/.exec(input.trim());
  if (!scaled) {
    return undefined;
  }
  const value = parseInt(scaled[1]!, 10) * UNITS[scaled[2] ?? '']!;
  return Number.isSafeInteger(value) ? value : undefined;
}

function quantity(min: number, max: number) {
  return z.union([z.number(), z.string()]).transform((input, ctx) => {
    const value = parseQuantity(input);
    if (value === undefined || value < min || value > max) {
      ctx.addIssue({
        code: 'custom',
        message: `expected an integer ${min}..${max} (a number, "0x..." or "<n> KiB|MiB|GiB|TiB"), got ${JSON.stringify(input)}`,
      });
      return z.NEVER;
    }
    return value;
  });
}

const isPowerOfTwo = (value: number): boolean => value > 0 && 2 ** Math.round(Math.log2(value)) === value;

/** A BAR or ROM size: a power of two, so the BAR decodes naturally aligned addresses. */
function size(min: number, max: number) {
  return quantity(min, max).refine(isPowerOfTwo, { message: 'must be a power of two' });
}

/** The largest BAR the model backs with memory: the accelerator's 64 GiB. */
export const MAX_BAR_SIZE = 64 * GiB;

/** The largest generic BAR with a memory window: its registers live on the heap, a dword per 4 bytes. */
export const MAX_WINDOWED_BAR_SIZE = 1 * MiB;

const NameSchema = z
  .string()
  .regex(/^[a-z][a-z0-9_-]{0,31}$/i, 'expected a name of 1-32 letters, digits, "_" or "-", starting with a letter');

const BdfSchema = z.string().transform((text, ctx) => {
  try {
    return canonicalBdf(text);
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: error instanceof ErrnoError ? error.detail : String(error) });
    return z.NEVER;
  }
});

const IdsSchema = z.strictObject({
  vendorId: quantity(0, 0xffff).optional(),
  deviceId: quantity(0, 0xffff).optional(),
  classCode: quantity(0, 0xffffff).optional(),
  revision: quantity(0, 0xff).optional(),
  subsystemVendorId: quantity(0, 0xffff).optional(),
  subsystemId: quantity(0, 0xffff).optional(),
});

/** Fields every kind of function has. */
const common = {
  name: NameSchema,
  bdf: BdfSchema,
  /** Overrides of the kind's default identity registers. */
  ids: IdsSchema.optional(),
  /** Expansion ROM size; 0 for none. PCI allows 2 KiB .. 16 MiB. */
  romSize: z.union([z.literal(0), size(2 * KiB, 16 * MiB)]).optional(),
  /** PMCSR No_Soft_Reset: when true, D3hot -> D0 keeps the function's state. */
  noSoftReset: z.boolean().default(false),
};

/** One namespace: its size in bytes (a whole number of blocks) and its logical block size. */
const NamespaceSchema = z
  .strictObject({
    size: size(64 * KiB, 2 ** 44),
    blockSize: z.union([z.literal(512), z.literal(4096)]).default(512),
  })
  .refine((ns) => ns.size % ns.blockSize === 0, { message: 'a namespace size must be a whole number of blocks' });

const NvmeSchema = z.strictObject({
  kind: z.literal('nvme'),
  ...common,
  /** Controller Memory Buffer, exposed as BAR2. */
  cmbSize: size(4 * KiB, 4 * GiB).default(16 * MiB),
  /** Namespaces, NSID 1 first: sparse files in PCI_EMU_DATA_DIR (heap memory in unit tests). */
  namespaces: z.array(NamespaceSchema).max(16).default([{ size: 256 * MiB, blockSize: 512 }]),
});

const AccelSchema = z.strictObject({
  kind: z.literal('accel'),
  ...common,
  /** Device memory, exposed as BAR2. */
  memorySize: size(1 * MiB, MAX_BAR_SIZE).default(16 * GiB),
});

const NicSchema = z.strictObject({ kind: z.literal('nic'), ...common });

const GenericBarSchema = z.strictObject({
  index: z.int().min(0).max(5),
  size: size(4, MAX_BAR_SIZE),
  space: z.enum(['memory', 'io']).default('memory'),
  bits: z.union([z.literal(32), z.literal(64)]).default(32),
  prefetchable: z.boolean().default(false),
  /**
   * Makes the BAR one of scratch registers with a memory window at
   * [offset, offset + length) (page aligned), whose writes the device
   * reports as BarWritten events: a test device for doorbell-style memory.
   */
  window: z.strictObject({ offset: quantity(0, MAX_WINDOWED_BAR_SIZE), length: quantity(1, MAX_WINDOWED_BAR_SIZE) }).optional(),
});

const GenericSchema = z.strictObject({
  kind: z.literal('generic'),
  ...common,
  bars: z.array(GenericBarSchema).max(6).default([]),
});

const FunctionSchema = z.discriminatedUnion('kind', [NvmeSchema, AccelSchema, NicSchema, GenericSchema]);

const AcsSchema = z.strictObject({
  sourceValidation: z.boolean().default(false),
  requestRedirect: z.boolean().default(false),
  completionRedirect: z.boolean().default(false),
  upstreamForwarding: z.boolean().default(false),
});

/**
 * A root port or switch downstream port. A PCIe link reaches one device, so a
 * port leads to either a switch or the functions of one device, or is empty.
 */
const PortSchema = z.strictObject({
  bdf: BdfSchema,
  get switch() {
    return SwitchSchema.optional();
  },
  functions: z.array(FunctionSchema).optional(),
});

const SwitchSchema = z.strictObject({
  name: NameSchema,
  /** The upstream port. */
  bdf: BdfSchema,
  /** ACS control of every downstream port. */
  acs: AcsSchema.default({
    sourceValidation: false,
    requestRedirect: false,
    completionRedirect: false,
    upstreamForwarding: false,
  }),
  get downstreamPorts() {
    return z.array(PortSchema).min(1);
  },
});

const WindowSchema = z.strictObject({ base: quantity(0, Number.MAX_SAFE_INTEGER), size: quantity(1, 2 ** 52) });

const HostBridgeSchema = z.strictObject({
  name: NameSchema,
  domain: quantity(0, 0xffff).default(0),
  /** Root bus number: the bus the root ports sit on. */
  bus: quantity(0, 0xff).default(0),
  /** Whether P2P between root ports is routed (host_bridge_whitelist / cpu_supports_p2pdma). */
  p2pAllowed: z.boolean().default(true),
  mmio32: WindowSchema.optional(),
  mmio64: WindowSchema.optional(),
  io: WindowSchema.optional(),
  rootPorts: z.array(PortSchema).min(1),
});

export const TopologySchema = z.strictObject({
  hostBridges: z.array(HostBridgeSchema).min(1),
});

/** A topology file as validated, with defaults filled in. */
export type TopologySpec = z.output<typeof TopologySchema>;
export type HostBridgeSpec = TopologySpec['hostBridges'][number];
export type PortSpec = z.output<typeof PortSchema>;
export type SwitchSpec = z.output<typeof SwitchSchema>;
export type AcsFlags = z.output<typeof AcsSchema>;
export type FunctionSpec = z.output<typeof FunctionSchema>;
export type FunctionKind = FunctionSpec['kind'];
export type GenericBarSpec = z.output<typeof GenericBarSchema>;
/** The spec of one kind: FunctionSpecOf<'nvme'> has cmbSize. */
export type FunctionSpecOf<K extends FunctionKind> = Extract<FunctionSpec, { kind: K }>;
/** What a topology file may contain, before defaults: the type of a literal topology. */
export type TopologyInput = z.input<typeof TopologySchema>;
