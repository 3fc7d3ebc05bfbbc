import { errno } from '@p2p/errno';
import { rdma } from '@p2p/proto';

/** The tests, by perftest's program names without the `ib_`. */
export const TEST_NAMES = ['write_bw', 'read_bw', 'write_lat', 'read_lat'] as const;
export type TestName = (typeof TEST_NAMES)[number];

/** What a test does: its verb, whether it measures bandwidth or latency, and perftest's title for it. */
export interface TestKind {
  readonly name: TestName;
  readonly verb: 'write' | 'read';
  readonly measure: 'bw' | 'lat';
  readonly opcode: rdma.WrOpcode;
  /** The banner's title, as perftest prints it ("RDMA_Write BW Test"). */
  readonly title: string;
}

export function testKind(name: TestName): TestKind {
  const [verb, measure] = name.split('_') as ['write' | 'read', 'bw' | 'lat'];
  return {
    name,
    verb,
    measure,
    opcode: verb === 'write' ? rdma.WrOpcode.WR_OPCODE_RDMA_WRITE : rdma.WrOpcode.WR_OPCODE_RDMA_READ,
    title: `RDMA_${verb === 'write' ? 'Write' : 'Read'} ${measure === 'bw' ? 'BW' : 'Latency'} Test`,
  };
}

export function isTestName(name: string): name is TestName {
  return (TEST_NAMES as readonly string[]).includes(name);
}

/* perftest_parameters.h: the defaults and limits this model keeps. */
export const DEF_SIZE_BW = 65536;
export const DEF_SIZE_LAT = 2;
export const DEF_ITERS = 1000;
/** ib_write_bw's own default (DEF_ITERS_WB). */
export const DEF_ITERS_WB = 5000;
export const MIN_ITER = 5;
export const MAX_ITER = 100_000_000;
/** The largest message, and the last size of `-a` (MAX_SIZE, 2^23). */
export const MAX_SIZE = 2 ** 23;
/** QPs a bandwidth test may run at once: perftest allows 16384; each of ours is a stream of the NIC's, so far fewer. */
export const MAX_QPS = 16;
/** The longest `-D` run, in seconds. */
export const MAX_DURATION = 3600;

/** The flags as typed, before checking (commander's option values). */
export interface RawParams {
  readonly size?: string;
  readonly all?: boolean;
  readonly iters?: string;
  readonly duration?: string;
  readonly qp?: string;
  readonly reportGbits?: boolean;
}

/** A checked run: the sizes in order, iterations per size (or a duration), QPs, units. */
export interface PerfParams {
  readonly test: TestKind;
  readonly sizes: readonly number[];
  /** Messages per size and QP (perftest's -n); ignored when durationSeconds is set. */
  readonly iterations: number;
  /** perftest's -D: run each size this long instead of a number of iterations. */
  readonly durationSeconds?: number;
  readonly qps: number;
  /** Gb/s (10^9 bits) instead of MB/s (2^20 bytes), as perftest's --report_gbits. */
  readonly reportGbits: boolean;
}

/** `-a`: 2, 4, 8 ... 2^23, as perftest runs them. */
export function allSizes(): number[] {
  const sizes: number[] = [];
  for (let size = 2; size <= MAX_SIZE; size *= 2) sizes.push(size);
  return sizes;
}

/** A whole number in [min, max] from `-x, --long` flag text; EINVAL naming the flag otherwise. */
function integer(text: string, flag: string, min: number, max: number): number {
  const value = /^(0x[0-9a-f]+|\d+)$/i.test(text.trim()) ? Number(text.trim()) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) throw errno('EINVAL', `${flag} ${JSON.stringify(text)}: a whole number from ${min} to ${max}`);
  return value;
}

/**
 * Checks the flags as perftest's parser does (perftest_parameters.c), each
 * refusal an EINVAL that names its flag.
 */
export function perfParams(name: string, raw: RawParams): PerfParams {
  if (!isTestName(name)) throw errno('EINVAL', `no test ${JSON.stringify(name)}: one of ${TEST_NAMES.join(', ')}`);
  const test = testKind(name);
  if (raw.all === true && raw.size !== undefined) throw errno('EINVAL', '-a/--all and -s/--size: one or the other');
  if (raw.duration !== undefined && raw.iters !== undefined) throw errno('EINVAL', '-D/--duration and -n/--iters: one or the other');
  if (raw.duration !== undefined && raw.all === true) throw errno('EINVAL', '-D/--duration runs one size: not with -a/--all');
  const qps = raw.qp === undefined ? 1 : integer(raw.qp, '-q/--qp', 1, MAX_QPS);
  if (qps > 1 && test.measure === 'lat') throw errno('EINVAL', `-q/--qp ${qps}: a latency test runs one QP`);
  const defaultSize = test.measure === 'bw' ? DEF_SIZE_BW : DEF_SIZE_LAT;
  const sizes = raw.all === true ? allSizes() : [raw.size === undefined ? defaultSize : integer(raw.size, '-s/--size', 1, MAX_SIZE)];
  const defaultIters = test.name === 'write_bw' ? DEF_ITERS_WB : DEF_ITERS;
  const iterations = raw.iters === undefined ? defaultIters : integer(raw.iters, '-n/--iters', MIN_ITER, MAX_ITER);
  const durationSeconds = raw.duration === undefined ? undefined : integer(raw.duration, '-D/--duration', 1, MAX_DURATION);
  return { test, sizes, iterations, durationSeconds, qps, reportGbits: raw.reportGbits === true };
}
