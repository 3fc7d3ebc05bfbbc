import * as http from 'node:http';
import type { ServerInterceptor } from '@grpc/grpc-js';
import { Counter, collectDefaultMetrics, Registry } from 'prom-client';
import { MeteredCall } from './metered-call';
import { MethodTally, registerHandledTotal, registerHandlingSeconds } from './method-tally';

/** One server's Prometheus registry: RPC counts and latencies by method and code. */
export class ServerMetrics {
  readonly registry = new Registry();
  /** By full method path: grpc_server_handled_total and grpc_server_handling_seconds. */
  readonly #tallies = new Map<string, MethodTally>();
  readonly faults: Counter<'method' | 'kind'>;

  /**
   * `labels` go on every metric beside `service`: an instance's name where
   * one process serves several of a kind (the stack's two NICs, `nic`).
   */
  constructor(service: string, labels: Readonly<Record<string, string>> = {}) {
    this.registry.setDefaultLabels({ ...labels, service });
    // prom-client's process metrics (resident memory, CPU, event-loop lag,
    // heap) on every server: in `npm start` they describe the one process all
    // services share, each under its own service label.
    collectDefaultMetrics({ register: this.registry });
    registerHandledTotal(this.registry, this.#tallies);
    registerHandlingSeconds(this.registry, this.#tallies);
    this.faults = new Counter({
      name: 'p2p_faults_injected_total',
      help: 'Calls delayed or aborted by fault rules',
      labelNames: ['method', 'kind'],
      registers: [this.registry],
    });
  }

  /** Records every call's status and duration, whichever handler ends it. */
  interceptor(): ServerInterceptor {
    return (methodDescriptor, call) => new MeteredCall(call, this.#tallyOf(methodDescriptor.path));
  }

  /** Only methods the server serves get here (grpc-js answers any other path itself), so the map stays that small. */
  #tallyOf(method: string): MethodTally {
    let tally = this.#tallies.get(method);
    if (tally === undefined) {
      tally = new MethodTally(method);
      this.#tallies.set(method, tally);
    }
    return tally;
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
