import type { BwResult, LatResult } from './measure';
import type { PerfParams } from './params';

/** perftest_parameters.h's RESULT_LINE. */
export const RESULT_LINE = '-'.repeat(87);

/** One side of a run as the banner shows it: the device, the memory, and the address the other side targets. */
export interface SideInfo {
  /** `nic0 (0000:04:00.0)`. */
  readonly device: string;
  /** `host`, `accel0`, `nvme1-cmb`. */
  readonly memory: string;
  readonly qpNums: readonly number[];
  readonly rkey: number;
  readonly vaddr: number;
  readonly gid: Uint8Array;
}

/** What the banner says of a run. */
export interface RunInfo {
  readonly params: PerfParams;
  readonly local: SideInfo;
  readonly remote: SideInfo;
  /** perftest's TX depth and CQ moderation, of the first size. */
  readonly txDepth: number;
  readonly cqModeration: number;
}

const hex = (value: number, digits: number): string => `0x${value.toString(16).padStart(digits, '0')}`;

/** A GID as perftest prints it: 16 bytes in colon-separated decimal. */
function gid(bytes: Uint8Array): string {
  return [...bytes].map((b) => String(b).padStart(2, '0')).join(':');
}

function address(side: 'local' | 'remote', info: SideInfo): string[] {
  return info.qpNums.flatMap((qpn) => [
    ` ${side} address: LID 0000 QPN ${hex(qpn, 4)} PSN 0x000000 RKey ${hex(info.rkey, 8)} VAddr ${hex(info.vaddr, 16)}`,
    ` GID: ${gid(info.gid)}`,
  ]);
}

/** The lines perftest prints before the results: the test, its settings, and both sides' addresses. */
export function banner(info: RunInfo): string[] {
  const { params, local, remote } = info;
  const bw = params.test.measure === 'bw';
  const pair = (left: string, right: string): string => `${left.padEnd(32)}${right}`;
  return [
    RESULT_LINE,
    `${' '.repeat(20)}${params.test.title}`,
    pair(` Dual-port       : OFF`, `Device         : ${local.device}`),
    pair(` Number of qps   : ${params.qps}`, `Transport type : IB`),
    pair(` Connection type : RC`, `Using SRQ      : OFF`),
    ...(bw ? [` TX depth        : ${info.txDepth}`, ` CQ Moderation   : ${info.cqModeration}`] : []),
    ` Mtu             : 4096[B]`,
    ` Link type       : Ethernet`,
    ` Max inline data : 0[B]`,
    ` rdma_cm QPs     : OFF`,
    ` Data ex. method : in process`,
    ` Local memory    : ${local.memory}`,
    ` Remote memory   : ${remote.memory}, on ${remote.device}`,
    RESULT_LINE,
    ...address('local', local),
    ...address('remote', remote),
    RESULT_LINE,
  ];
}

/** perftest's format_factor: MB/sec is 2^20 bytes a second, Gb/sec 10^9 bits. */
function rate(bytesPerSecond: number, gbits: boolean): number {
  return bytesPerSecond / (gbits ? 125_000_000 : 2 ** 20);
}

/** The column heads (RESULT_FMT, RESULT_FMT_G, RESULT_FMT_LAT, RESULT_FMT_LAT_DUR). */
export function resultHeader(params: PerfParams): string {
  if (params.test.measure === 'bw') {
    const unit = params.reportGbits ? 'Gb/sec' : 'MB/sec';
    return ` #bytes     #iterations    BW peak[${unit}]    BW average[${unit}]   MsgRate[Mpps]`;
  }
  if (params.durationSeconds !== undefined) return ' #bytes        #iterations       t_avg[usec]    tps average';
  return ' #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]    t_stdev[usec]   99% percentile[usec]   99.9% percentile[usec] ';
}

/** A column `width` wide, and at least one space after a wider value so that columns never run together. */
function col(value: number | string, width: number): string {
  return `${String(value).padEnd(width - 1)} `;
}

/** One size's line (REPORT_FMT, REPORT_FMT_LAT, REPORT_FMT_LAT_DUR), columns under the heads. */
export function resultRow(result: BwResult | LatResult, params: PerfParams): string {
  const f2 = (n: number): string => n.toFixed(2);
  if ('peak' in result) {
    const gbits = params.reportGbits;
    return ` ${col(result.bytes, 11)}${col(result.iterations, 15)}${col(f2(rate(result.peak, gbits)), 19)}${col(f2(rate(result.average, gbits)), 21)}${result.msgRate.toFixed(6)}`;
  }
  if (params.durationSeconds !== undefined) {
    return ` ${col(result.bytes, 14)}${col(result.iterations, 18)}${col(f2(result.average), 15)}${f2(result.iterations / result.seconds)}`;
  }
  const cells = [result.min, result.max, result.typical, result.average, result.stdev, result.p99, result.p999].map(f2);
  const widths = [15, 13, 17, 15, 16, 23];
  return ` ${col(result.bytes, 8)}${col(result.iterations, 16)}${cells.map((c, i) => (i < widths.length ? col(c, widths[i]!) : c)).join('')}`;
}

/** One size's figures under perftest's --out_json names: MB/sec or Gb/sec as the run reports, latencies in usec. */
export function resultJson(result: BwResult | LatResult, params: PerfParams): Record<string, number> {
  if ('peak' in result) {
    const gbits = params.reportGbits;
    return { bytes: result.bytes, iterations: result.iterations, BW_peak: rate(result.peak, gbits), BW_average: rate(result.average, gbits), MsgRate: result.msgRate };
  }
  if (params.durationSeconds !== undefined) return { bytes: result.bytes, iterations: result.iterations, t_avg: result.average, tps_average: result.iterations / result.seconds };
  return {
    bytes: result.bytes,
    iterations: result.iterations,
    t_min: result.min,
    t_max: result.max,
    t_typical: result.typical,
    t_avg: result.average,
    t_stdev: result.stdev,
    percentile_99: result.p99,
    percentile_99_9: result.p999,
  };
}

/** A whole run for scripts (--json) and for perftest's --out_json file. */
export function runJson(info: RunInfo, results: readonly (BwResult | LatResult)[]): Record<string, unknown> {
  const { params } = info;
  const side = (s: SideInfo): Record<string, unknown> => ({ device: s.device, memory: s.memory, qpNums: s.qpNums, rkey: s.rkey, vaddr: s.vaddr });
  return {
    test: params.test.name,
    title: params.test.title,
    qps: params.qps,
    units: params.test.measure === 'bw' ? (params.reportGbits ? 'Gb/sec' : 'MB/sec') : 'usec',
    ...(params.durationSeconds === undefined ? { iterations: params.iterations } : { durationSeconds: params.durationSeconds }),
    local: side(info.local),
    remote: side(info.remote),
    results: results.map((result) => resultJson(result, params)),
  };
}
