export { connectPeer, DEFAULT_DEADLINE_MS, type Peer, type PeerCallOptions, type PeerOptions } from './peer';
export { credentialMiddleware, errnoMiddleware, PeerError, peerUnreachable } from './middleware';
