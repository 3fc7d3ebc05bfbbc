import * as http from 'node:http';
import { type ServerInterceptor, ServerInterceptingCall, status as Code } from '@grpc/grpc-js';
import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';

/** One server's Prometheus registry: RPC counts and latencies by method and code. */
export class ServerMetrics {
  readonly registry = new Registry();
  private readonly handled: Counter<'method' | 'code'>;
  private readonly seconds: Histogram<'method'>;
  readonly faults: Counter<'method' | 'kind'>;

  constructor(service: string) {
    this.registry.setDefaultLabels({ service });
    // prom-client's process metrics (resident memory, CPU, event-loop lag,
    // heap) on every server: in `npm start` they describe the one process all
    // services share, each under its own service label.
    collectDefaultMetrics({ register: this.registry });
    this.handled = new Counter({
      name: 'grpc_server_handled_total',
      help: 'RPCs completed on the server, by method and status code',
      labelNames: ['method', 'code'],
      registers: [this.registry],
    });
    this.seconds = new Histogram({
      name: 'grpc_server_handling_seconds',
      help: 'Time from call start to status, by method',
      labelNames: ['method'],
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers: [this.registry],
    });
    this.faults = new Counter({
      name: 'p2p_faults_injected_total',
      help: 'Calls delayed or aborted by fault rules',
      labelNames: ['method', 'kind'],
      registers: [this.registry],
    });
  }

  /** Records every call's status and duration, whichever handler ends it. */
  interceptor(): ServerInterceptor {
    return (methodDescriptor, call) => {
      const started = process.hrtime.bigint();
      return new ServerInterceptingCall(call, {
        sendStatus: (status, next) => {
          const method = methodDescriptor.path;
          this.handled.inc({ method, code: Code[status.code] ?? String(status.code) });
          this.seconds.observe({ method }, Number(process.hrtime.bigint() - started) / 1e9);
          next(status);
        },
      });
    };
  }

  /** Serves GET /metrics on `port` (0 picks a free one); resolves to the bound port. */
  async listen(host: string, port: number): Promise<http.Server> {
    const server = http.createServer((req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end();
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (error: Error) => res.writeHead(500).end(error.message),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    return server;
  }
}
