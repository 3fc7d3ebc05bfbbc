import { createHash } from 'node:crypto';
import { Prng } from './prng';

/**
 * The two RDMA streams of a campaign's workload: host Y (nic0) writing into
 * and reading from accel0's BAR on host X (nic1), and host X writing into
 * and reading from host Y's memory.
 */
export const QUEUES = ['bar', 'host'] as const;
export type QueueName = (typeof QUEUES)[number];

export type PlannedOpcode = 'RDMA_WRITE' | 'RDMA_READ';

/** One work request as the plan decides it: which opcode, which slot of the remote memory, which bytes. */
export interface PlannedRequest {
  readonly opcode: PlannedOpcode;
  readonly slot: number;
  /** Seeds the payload of a WRITE (payloadOf). */
  readonly payloadSeed: number;
}

/** One revoke of the BAR by its owner: when, and how long Memory Space stays cleared. */
export interface PlannedRevoke {
  readonly atMs: number;
  readonly holdMs: number;
}

/** The shape of the workload's memory: `slots` regions of `slotBytes` each, per remote memory. */
export interface WorkloadShape {
  readonly slots: number;
  readonly slotBytes: number;
  /** Work requests in flight per queue. */
  readonly depth: number;
}

/**
 * One size that fits the model's wire: a slot is one message of one MTU
 * (IBV_MTU_4096), so a WRITE that fails cannot have landed in part.
 */
export const DEFAULT_SHAPE: WorkloadShape = { slots: 8, slotBytes: 4096, depth: 4 };

/**
 * Each queue's stream of work requests: an endless, seeded sequence, the
 * same for the same seed wherever and however fast it runs. WRITEs and
 * READs half and half, on slots chosen at random.
 */
export function* requestPlan(seed: number, queue: QueueName, shape: WorkloadShape): Generator<PlannedRequest, never> {
  const prng = new Prng(seed ^ (queue === 'bar' ? 0x62617220 : 0x686f7374));
  for (;;) yield { opcode: prng.chance(0.5) ? 'RDMA_WRITE' : 'RDMA_READ', slot: prng.below(shape.slots), payloadSeed: prng.u32() };
}

/** The workloads a campaign can run (`--workload`): RDMA streams, DMA-engine copies, NVMe I/O. */
export const WORKLOADS = ['rdma', 'dma', 'nvme'] as const;
export type WorkloadName = (typeof WORKLOADS)[number];

export function isWorkloadName(name: string): name is WorkloadName {
  return (WORKLOADS as readonly string[]).includes(name);
}

/** Where a DMA-engine copy lands: a slot of a host buffer, or of nvme1's controller memory buffer (peer to peer). */
export type DmaTarget = 'host' | 'cmb';

/** One step of the DMA worker: ring a copy of a seeded payload into a slot, or read a slot back. */
export interface PlannedCopy {
  readonly op: 'copy' | 'read';
  readonly target: DmaTarget;
  readonly slot: number;
  readonly payloadSeed: number;
}

/** The DMA worker's steps: copies (three in five) and reads, host and CMB half and half, slots at random. */
export function* copyPlan(seed: number, shape: WorkloadShape): Generator<PlannedCopy, never> {
  const prng = new Prng(seed ^ 0x646d6120);
  for (;;) yield { op: prng.chance(0.6) ? 'copy' : 'read', target: prng.chance(0.5) ? 'host' : 'cmb', slot: prng.below(shape.slots), payloadSeed: prng.u32() };
}

/** One step of the NVMe worker: a Write of a seeded payload to a slot's LBA range, a Read of one, or a Flush. */
export interface PlannedBlockIo {
  readonly op: 'write' | 'read' | 'flush';
  readonly slot: number;
  readonly payloadSeed: number;
}

/** The NVMe worker's steps: Writes and Reads (each nine in twenty) and Flushes, on slots chosen at random. */
export function* blockIoPlan(seed: number, shape: WorkloadShape): Generator<PlannedBlockIo, never> {
  const prng = new Prng(seed ^ 0x6e766d65);
  for (;;) {
    const roll = prng.below(20);
    yield { op: roll < 9 ? 'write' : roll < 18 ? 'read' : 'flush', slot: prng.below(shape.slots), payloadSeed: prng.u32() };
  }
}

/** The owner's revokes of the BAR: one every 2 to 4 s, Memory Space cleared for 50 to 250 ms. */
export function revokePlan(seed: number, durationMs: number): PlannedRevoke[] {
  const prng = new Prng(seed ^ 0x7265766b);
  const revokes: PlannedRevoke[] = [];
  for (let atMs = 1500 + prng.below(1000); atMs < durationMs - 500; atMs += 2000 + prng.below(2000)) revokes.push({ atMs, holdMs: 50 + prng.below(200) });
  return revokes;
}

/** The bytes a WRITE carries: a function of its seed alone. */
export function payloadOf(payloadSeed: number, length: number): Buffer {
  return new Prng(payloadSeed).bytes(length);
}

/** What the history records of a payload: enough of its SHA-256 to tell payloads apart. */
export function digestOf(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 16);
}
