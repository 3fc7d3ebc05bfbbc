import type { ChannelOptions } from '@grpc/grpc-js';

/**
 * Channel options of both ends of a wire stream. Keepalive finds a peer NIC
 * that vanished without closing the connection (a frozen host, a cable
 * pulled), as the other services do. Inline payloads can be as large as a
 * message (up to 2^31 bytes, IBA's maximum), so there is no message-size
 * limit: the peer is another NIC of the same deployment. The reconnect
 * backoff is short because the requester's retries (every transport timeout)
 * are what paces reconnecting, not gRPC: a restarted peer must be reachable
 * again within a retry or two, and the backoff floor keeps a dead peer from
 * being dialled more than every 100 ms.
 */
export const WIRE_CHANNEL_OPTIONS: ChannelOptions = {
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.max_receive_message_length': -1,
  'grpc.max_send_message_length': -1,
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 1_000,
};

/**
 * A connect attempt to a peer comes at least this long after the previous
 * one, and the wait doubles with every failed attempt up to
 * RECONNECT_MAX_MS; a completed handshake resets it.
 */
export const RECONNECT_MIN_MS = 100;
export const RECONNECT_MAX_MS = 1_000;

/** The name every NIC's certificate carries for the wire, its gRPC stream and bulk stream alike (a GID's address is assigned at run time). */
export const WIRE_TLS_NAME = 'rdma-nic';

/**
 * Payloads from this size go on the bulk stream of a link that has one
 * (NICs on different registries); smaller ones ride inline in the frame
 * that places them, which costs no second connection's latency.
 */
export const BULK_MIN_BYTES = 16 * 1024;

/** A peer that does not complete the handshake within this fails the stream. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * A frame is written at the end of the event-loop turn, or at once when it
 * holds this many inline payload bytes or packet bytes: big inline frames
 * would only delay the peer and hold memory.
 */
export const FLUSH_INLINE_BYTES = 4 * 1024 * 1024;
export const FLUSH_PACKET_BYTES = 256 * 1024;

/** Payload bytes a link copies per turn before it lets the turn's frames go out (see WireLink's drain). */
export const RX_SLICE_BYTES = 4 * 1024 * 1024;
