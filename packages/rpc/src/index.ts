export { connectPeer, DEFAULT_DEADLINE_MS, type Peer, type PeerCallOptions, type PeerOptions } from './peer';
export { credentialMiddleware, errnoMiddleware, PeerError, peerUnreachable, callNotTaken, resendUntilTaken, RESEND_MIN_MS, RESEND_MAX_MS } from './middleware';
