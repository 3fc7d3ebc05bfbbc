/** What the wire of one NIC carried, for metrics and tests. */
export interface WireCounters {
  /** gRPC messages (WireFrames) written and read, hellos included. */
  framesSent: number;
  framesReceived: number;
  /** Of those, the frames that went through the frame ring rather than the stream. */
  ringFramesSent: number;
  ringFramesReceived: number;
  packetsSent: number;
  packetsReceived: number;
  /** Payload bytes this NIC copied into its rings, and sent inline. */
  ringBytesSent: number;
  inlineBytesSent: number;
  /** Payload bytes that came through the peers' rings, and inline. */
  ringBytesReceived: number;
  inlineBytesReceived: number;
  /** Payload bytes this NIC sent, and received, over bulk streams (links to NICs on other registries). */
  streamBytesSent: number;
  streamBytesReceived: number;
  /** Payload bytes this NIC, as responder, moved straight between an MR of its own and a peer's granted MR (the one copy of a transfer). */
  directBytes: number;
  /** Requests whose transport timer ran out (reply(undefined)). */
  timeouts: number;
  /** Streams that completed the handshake, either way. */
  linksOpened: number;
  /** Connect attempts that failed before the handshake completed. */
  connectFailures: number;
}

export function zeroCounters(): WireCounters {
  return {
    framesSent: 0,
    framesReceived: 0,
    ringFramesSent: 0,
    ringFramesReceived: 0,
    packetsSent: 0,
    packetsReceived: 0,
    ringBytesSent: 0,
    inlineBytesSent: 0,
    ringBytesReceived: 0,
    inlineBytesReceived: 0,
    streamBytesSent: 0,
    streamBytesReceived: 0,
    directBytes: 0,
    timeouts: 0,
    linksOpened: 0,
    connectFailures: 0,
  };
}
