/**
 * The layouts of a context's user queues (OpenUserQueues, CreateCq and
 * CreateQp with a ring_fd), shared by the process that writes and polls
 * them and the NIC that reads and completes them, as mlx5's WQE, CQE and
 * doorbell-record formats are shared by libmlx5 and the HCA. Every buffer
 * is a system-heap dma-buf mapped by both; integers are little-endian;
 * counters count modulo 2^32.
 *
 * Doorbell page (DOORBELL_PAGE_BYTES):
 *   @0  u32 nic_asleep: the NIC stores 1 before it stops polling the
 *       context's doorbell records, 0 once it polls again. A poster that
 *       reads 1 after storing a doorbell record sends a wake-up.
 *
 * QP buffer (qpRingBytes()):
 *   @0  u32 sq doorbell record: send WQEs posted
 *   @4  u32 rq doorbell record: receive WQEs posted
 *   @64 the send queue, sqEntries slots of sqStride bytes (WQE n at slot n mod sqEntries)
 *   then the receive queue, rqEntries slots of rqStride bytes
 *
 * Send WQE (sqStride(max_send_sge) bytes):
 *   @0  wr_id u64      @8  opcode u8 (WrOpcode)  @9  num_sge u8
 *   @10 send_flags u16 @12 imm_data u32          @16 remote_addr u64
 *   @24 rkey u32       @32 compare_add u64       @40 swap u64
 *   @48 num_sge SGEs of 16 bytes: addr u64, length u32, lkey u32
 *
 * Receive WQE (rqStride(max_recv_sge) bytes):
 *   @0  wr_id u64      @8  num_sge u8            @16 SGEs as above
 *
 * CQ buffer (cqRingBytes()):
 *   @0  u32 consumer index: CQEs polled (the process stores it; the NIC
 *       reads it to know the ring's free slots)
 *   @4  u32 arm: the process stores 1 (ibv_req_notify_cq()); the NIC
 *       clears it and sends a completion event with the next CQE
 *   @64 the ring, entries slots of CQE_RING_BYTES
 *
 * CQE (CQE_RING_BYTES):
 *   @0  the 32-byte packed CQE of cqe.ts (wr_id, status, opcode, wc_flags,
 *       byte_len, imm_data, qp_num, src_qp, vendor_err)
 *   @32 wqe_counter u32: the WQE's number in its queue
 *   (send or receive by opcode), which frees its slot and the ones before
 *   @63 owner u8: the NIC writes the entry, then owner = 1 on the ring's
 *   first pass, 0 on the second, and so on; an entry is new to a poller
 *   whose pass it matches
 */

import { decodeCqe, encodeCqe, type PackedCompletion } from './cqe';
import type { RecvWr, SendWr, Sge } from './work-request';

export const DOORBELL_PAGE_BYTES = 4096;
export const DB_NIC_ASLEEP = 0;

export const QP_SQ_DBREC = 0;
export const QP_RQ_DBREC = 4;
export const QP_QUEUES_AT = 64;

export const CQ_CONSUMER_INDEX = 0;
export const CQ_ARM = 4;
export const CQ_RING_AT = 64;
export const CQE_RING_BYTES = 64;
export const CQE_WQE_COUNTER = 32;
export const CQE_OWNER = 63;

export const SEND_WQE_HEADER = 48;
export const RECV_WQE_HEADER = 16;
export const SGE_BYTES = 16;

/** The wake-up a process sends on the doorbell socket, and the completion event the NIC sends. */
export const WAKE_KEY_BYTES = 16;
export const WAKE_BYTE = 0x77;
export const CQ_EVENT_TAG = 1;
export const CQ_EVENT_BYTES = 5;

function powerOfTwoAtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** A send WQE slot for `maxSge` SGEs: a power of two, at least 64 bytes. */
export function sqStride(maxSge: number): number {
  return powerOfTwoAtLeast(SEND_WQE_HEADER + SGE_BYTES * maxSge);
}

/** A receive WQE slot for `maxSge` SGEs: a power of two, at least 32 bytes. */
export function rqStride(maxSge: number): number {
  return powerOfTwoAtLeast(RECV_WQE_HEADER + SGE_BYTES * maxSge);
}

/** The caps a QP was created with, as its buffer lays them out (CreateQpResponse.cap). */
export interface QueueCaps {
  readonly maxSendWr: number;
  readonly maxRecvWr: number;
  readonly maxSendSge: number;
  readonly maxRecvSge: number;
}

/** Where a QP's queues lie in its buffer. */
export interface QpRingLayout {
  readonly sqAt: number;
  readonly sqEntries: number;
  readonly sqStride: number;
  readonly rqAt: number;
  readonly rqEntries: number;
  readonly rqStride: number;
  readonly bytes: number;
}

/**
 * The layout for the caps the NIC grants (work queues rounded up to powers
 * of two, as createQp() does): the process sizes its buffer for the caps it
 * asks, rounded the same way.
 */
export function qpRingLayout(cap: QueueCaps): QpRingLayout {
  const sqEntries = powerOfTwoAtLeast(cap.maxSendWr);
  const rqEntries = powerOfTwoAtLeast(cap.maxRecvWr);
  const sq = sqStride(cap.maxSendSge);
  const rq = rqStride(cap.maxRecvSge);
  const sqAt = QP_QUEUES_AT;
  const rqAt = sqAt + sqEntries * sq;
  return { sqAt, sqEntries, sqStride: sq, rqAt, rqEntries, rqStride: rq, bytes: rqAt + rqEntries * rq };
}

export function qpRingBytes(cap: QueueCaps): number {
  return qpRingLayout(cap).bytes;
}

/** A CQ's ring holds the cqe the NIC grants plus one (roundCqe()): a power of two. */
export function cqRingEntries(cqe: number): number {
  return cqe + 1;
}

export function cqRingBytes(cqe: number): number {
  return CQ_RING_AT + cqRingEntries(cqe) * CQE_RING_BYTES;
}

/** The owner byte that makes the CQE the `produced`-th ever written (0-based) new, on a ring of `entries`. */
export function cqeOwner(produced: number, entries: number): number {
  return Math.floor(produced / entries) % 2 === 0 ? 1 : 0;
}

/** An address as a WQE takes it: a JS number (the NIC's) or a u64 (the gRPC API's). */
export type RingAddress = number | bigint;

/** struct ibv_sge as a poster gives it. */
export interface RingSgeInput {
  readonly addr: RingAddress;
  readonly length: number;
  readonly lkey: number;
}

/** struct ibv_send_wr as a poster gives it. */
export interface RingSendWrInput {
  readonly wrId: bigint;
  readonly opcode: number;
  readonly sgList: readonly RingSgeInput[];
  readonly sendFlags: number;
  readonly immData?: number;
  readonly remoteAddr?: RingAddress;
  readonly rkey?: number;
  readonly compareAdd?: bigint;
  readonly swap?: bigint;
}

/** struct ibv_sge, ibv_send_wr and ibv_recv_wr as a WQE holds them: work-request.ts's, with the opcode as read (the QP judges it). */
export type RingSge = Sge;
export type RingSendWr = Omit<SendWr, 'opcode'> & { readonly opcode: number };
export type RingRecvWr = RecvWr;

const TWO_32 = 2 ** 32;

function writeAddress(view: DataView, at: number, value: RingAddress): void {
  if (typeof value === 'bigint') {
    view.setBigUint64(at, value, true);
    return;
  }
  view.setUint32(at, value >>> 0, true);
  view.setUint32(at + 4, Math.floor(value / TWO_32), true);
}

function readAddress(view: DataView, at: number): number {
  return view.getUint32(at, true) + view.getUint32(at + 4, true) * TWO_32;
}

function writeSges(view: DataView, at: number, sges: readonly RingSgeInput[]): void {
  for (const sge of sges) {
    writeAddress(view, at, sge.addr);
    view.setUint32(at + 8, sge.length >>> 0, true);
    view.setUint32(at + 12, sge.lkey >>> 0, true);
    at += SGE_BYTES;
  }
}

function readSges(view: DataView, at: number, count: number): RingSge[] {
  const out = new Array<RingSge>(count);
  for (let i = 0; i < count; i++, at += SGE_BYTES) out[i] = { addr: readAddress(view, at), length: view.getUint32(at + 8, true), lkey: view.getUint32(at + 12, true) };
  return out;
}

/** Writes a send WQE at `at`; the caller checked that its SGEs fit the stride. Addresses above 2^53 do not occur (they are JS numbers). */
export function encodeSendWqe(view: DataView, at: number, wr: RingSendWrInput): void {
  view.setBigUint64(at, wr.wrId, true);
  view.setUint8(at + 8, wr.opcode);
  view.setUint8(at + 9, wr.sgList.length);
  view.setUint16(at + 10, wr.sendFlags, true);
  view.setUint32(at + 12, (wr.immData ?? 0) >>> 0, true);
  writeAddress(view, at + 16, wr.remoteAddr ?? 0);
  view.setUint32(at + 24, (wr.rkey ?? 0) >>> 0, true);
  view.setUint32(at + 28, 0, true);
  view.setBigUint64(at + 32, wr.compareAdd ?? 0n, true);
  view.setBigUint64(at + 40, wr.swap ?? 0n, true);
  writeSges(view, at + SEND_WQE_HEADER, wr.sgList);
}

/** A send WQE read at `at` of a slot of `stride` bytes: the WR, or why it cannot be one. */
export function decodeSendWqe(view: DataView, at: number, stride: number): RingSendWr | string {
  const numSge = view.getUint8(at + 9);
  if (SEND_WQE_HEADER + numSge * SGE_BYTES > stride) return `num_sge ${numSge} does not fit a ${stride}-byte WQE`;
  return {
    wrId: view.getBigUint64(at, true),
    opcode: view.getUint8(at + 8),
    sendFlags: view.getUint16(at + 10, true),
    immData: view.getUint32(at + 12, true),
    remoteAddr: readAddress(view, at + 16),
    rkey: view.getUint32(at + 24, true),
    compareAdd: view.getBigUint64(at + 32, true),
    swap: view.getBigUint64(at + 40, true),
    sgList: readSges(view, at + SEND_WQE_HEADER, numSge),
  };
}

export function encodeRecvWqe(view: DataView, at: number, wr: { readonly wrId: bigint; readonly sgList: readonly RingSgeInput[] }): void {
  view.setBigUint64(at, wr.wrId, true);
  view.setUint8(at + 8, wr.sgList.length);
  writeSges(view, at + RECV_WQE_HEADER, wr.sgList);
}

export function decodeRecvWqe(view: DataView, at: number, stride: number): RingRecvWr | string {
  const numSge = view.getUint8(at + 8);
  if (RECV_WQE_HEADER + numSge * SGE_BYTES > stride) return `num_sge ${numSge} does not fit a ${stride}-byte receive WQE`;
  return { wrId: view.getBigUint64(at, true), sgList: readSges(view, at + RECV_WQE_HEADER, numSge) };
}

/** struct ibv_wc as a ring CQE holds it, with the WQE it completes. */
export interface RingCompletion extends PackedCompletion {
  readonly wqeCounter: number;
}

/** Writes the CQE's body (the packed CQE of cqe.ts, then the WQE counter), then its owner byte: a poller that sees the owner sees the body. */
export function encodeRingCqe(view: DataView, at: number, wc: Omit<RingCompletion, 'wqeCounter'>, owner: number, wqeCounter = (wc as RingCompletion).wqeCounter): void {
  encodeCqe(view, at, wc);
  view.setUint32(at + CQE_WQE_COUNTER, wqeCounter >>> 0, true);
  view.setUint8(at + CQE_OWNER, owner);
}

/** The struct ibv_wc of the CQE at `at`, without its WQE counter (read that with ringCqeWqeCounter()). */
export function decodeRingWc(view: DataView, at: number): Omit<RingCompletion, 'wqeCounter'> {
  return decodeCqe(view, at);
}

export function ringCqeWqeCounter(view: DataView, at: number): number {
  return view.getUint32(at + CQE_WQE_COUNTER, true);
}

export function decodeRingCqe(view: DataView, at: number): RingCompletion {
  return { ...decodeRingWc(view, at), wqeCounter: ringCqeWqeCounter(view, at) };
}

/** The receive-side opcodes (IBV_WC_RECV and above) complete receive WQEs. */
export function completesReceive(opcode: number): boolean {
  return opcode >= 128;
}

/**
 * A u32 doorbell word in a mapping, read and written with sequentially
 * consistent Atomics: a store of a doorbell record followed by a load of
 * nic_asleep (the poster), and the store of nic_asleep followed by loads of
 * the records (the NIC), cannot both miss each other, as plain accesses
 * could on x86 (a store may wait in the store buffer past a later load).
 */
export class DoorbellWord {
  readonly #words: Int32Array;
  readonly #index: number;

  constructor(memory: Uint8Array, at: number) {
    const offset = memory.byteOffset + at;
    if (offset % 4 !== 0) throw new RangeError(`a doorbell word at byte ${offset} is not 4-byte aligned`);
    this.#words = new Int32Array(memory.buffer, offset, 1);
    this.#index = 0;
  }

  load(): number {
    return Atomics.load(this.#words, this.#index) >>> 0;
  }

  store(value: number): void {
    Atomics.store(this.#words, this.#index, value | 0);
  }
}
