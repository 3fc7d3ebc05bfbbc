export { loadServerConfig, type ServerConfig } from './config';
export { startServer, type RunningServer, type ServiceRegistration, type StartServerOptions } from './grpc-server';
export { ServerMetrics } from './metrics';
export { shutdownOnSignals } from './signals';
export { failStream, unary, serverStream, whenStreamEnds } from './handlers';
export { retryUntil } from './retry';
export { ENVELOPE_HEADROOM_BYTES, MessageLimit } from './message-limit';
export { receivePaced, sendPaced } from './paced-stream';
export { type CallWithMetadata, actingPidOf, callerOf, withActingPid } from './acting';
