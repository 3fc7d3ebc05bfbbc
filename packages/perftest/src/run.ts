import type { TlsConfig } from '@p2p/auth';
import { errno } from '@p2p/errno';
import { type MemoryRegion, QpConnection } from './connection';
import { Endpoint } from './endpoint';
import { type BwResult, type LatResult, queueDepths, type RunPlan, runBw, runLat } from './measure';
import { type MemorySpec, openMemory, type VfioAccess } from './memory';
import type { PerfParams } from './params';
import type { RunInfo, SideInfo } from './report';

/** Each QP's share of the memory is at least this, so that small messages still cycle through more than a page or two. */
const MIN_SLICE = 4 * 2 ** 20;

/** A NIC of the deployment: its topology name, its BDF, where its service listens. */
export interface PerfNic {
  readonly name: string;
  readonly bdf: string;
  readonly address: string;
}

/** The deployment a run uses: the registry, the two NICs, vfio-pci, the shared segment directory. */
export interface PerfTarget {
  readonly registry: string;
  readonly nics: readonly [PerfNic, PerfNic];
  readonly vfio: VfioAccess;
  readonly shmDir?: string;
  readonly tls?: TlsConfig;
}

/** One perftest run: the checked flags, which NIC is local (the requester), each side's memory, and what to tell on the way. */
export interface PerfRun {
  readonly params: PerfParams;
  /** The requester's NIC, 0 or 1 (perftest's -d); the responder is the other. */
  readonly localNic: 0 | 1;
  readonly localMemory: MemorySpec;
  readonly remoteMemory: MemorySpec;
  readonly signal?: AbortSignal;
  /** Connected: the banner can be printed. */
  readonly onStart?: (info: RunInfo) => void;
  /** A size is done. */
  readonly onResult?: (result: BwResult | LatResult) => void;
  /** The whole run's progress, 0 to 1. */
  readonly progress?: (fraction: number) => void;
}

export interface PerfReport {
  readonly info: RunInfo;
  readonly results: readonly (BwResult | LatResult)[];
}

function memoryName(spec: MemorySpec): string {
  return spec.kind === 'host' ? 'host' : spec.name;
}

/** Region `index` of `count` equal slices of `region`: one QP's share. */
function slice(region: MemoryRegion, index: number, count: number): MemoryRegion {
  const length = Math.floor(region.length / count);
  return { ...region, iova: region.iova + index * length, length };
}

/**
 * Runs a test as perftest's client and server would, as two processes of
 * the model in this one: the requester on the local NIC, the responder on
 * the other, each with its memory registered, `qps` RC QP pairs between
 * them, then every size in turn. Everything is undone at the end, failed
 * or interrupted runs included.
 */
export async function runPerf(target: PerfTarget, run: PerfRun): Promise<PerfReport> {
  const { params } = run;
  const localNic = target.nics[run.localNic];
  const remoteNic = target.nics[1 - run.localNic]!;
  const endpoints: Endpoint[] = [];
  const connections: QpConnection[] = [];
  let outcome: { report: PerfReport } | { error: unknown };
  try {
    const open = async (nic: PerfNic, role: string): Promise<Endpoint> => {
      const endpoint = await Endpoint.open({ name: `p2p perf ${params.test.name} ${role}`, registry: target.registry, nic: nic.address, shmDir: target.shmDir, tls: target.tls });
      endpoints.push(endpoint);
      return endpoint;
    };
    const requester = await open(localNic, 'requester');
    const responder = await open(remoteNic, 'responder');
    const localMemory = await openMemory(requester, run.localMemory, target.vfio);
    const remoteMemory = await openMemory(responder, run.remoteMemory, target.vfio);
    const largest = Math.max(...params.sizes);
    const length = Math.min(params.qps * Math.max(largest, MIN_SLICE), localMemory.size, remoteMemory.size);
    if (length < params.qps * largest) {
      const sizes = [localMemory, remoteMemory].filter((m) => Number.isFinite(m.size)).map((m) => `${memoryName(m.spec)} has ${m.size}`);
      throw errno('ENOSPC', `${params.qps} QP(s) of ${largest}-byte messages need ${params.qps * largest} bytes; ${sizes.join(', ')}`);
    }
    const local = await localMemory.register(length);
    const remote = await remoteMemory.register(length);
    for (let i = 0; i < params.qps; i++) connections.push(await QpConnection.connect(requester, responder, slice(local, i, params.qps), slice(remote, i, params.qps)));

    const side = (nic: PerfNic, spec: MemorySpec, region: MemoryRegion, end: Endpoint, qpNums: number[]): SideInfo => ({
      device: `${nic.name} (${nic.bdf})`,
      memory: memoryName(spec),
      qpNums,
      rkey: region.rkey,
      vaddr: region.iova,
      gid: end.gid,
    });
    const { txDepth, batch } = queueDepths(params.sizes[0]!);
    const info: RunInfo = {
      params,
      local: side(localNic, run.localMemory, local, requester, connections.map((c) => c.qpNum)),
      remote: side(remoteNic, run.remoteMemory, remote, responder, connections.map((c) => c.remoteQpNum)),
      txDepth,
      cqModeration: batch,
    };
    run.onStart?.(info);

    const results: (BwResult | LatResult)[] = [];
    for (const [index, size] of params.sizes.entries()) {
      const slots = Math.floor(length / params.qps / size);
      const plan: RunPlan = {
        opcode: params.test.opcode,
        size,
        length: params.durationSeconds === undefined ? { iterations: params.iterations } : { seconds: params.durationSeconds },
        warmUp: Math.min(slots, params.iterations),
        signal: run.signal,
        progress: (fraction) => run.progress?.((index + Math.min(1, fraction)) / params.sizes.length),
      };
      const result = params.test.measure === 'bw' ? await runBw(connections, plan) : await runLat(connections[0]!, plan);
      results.push(result);
      run.onResult?.(result);
    }
    outcome = { report: { info, results } };
  } catch (error) {
    outcome = { error };
  }
  // Undone whatever happened: the QPs first (they use the MRs), then each side's MRs, fds, device and process.
  const failures: unknown[] = [];
  for (const connection of connections) await connection.close().catch((error: unknown) => failures.push(error));
  for (const endpoint of endpoints.reverse()) await endpoint.close().catch((error: unknown) => failures.push(error));
  if ('error' in outcome) throw outcome.error;
  if (failures.length > 0) throw failures[0];
  return outcome.report;
}
