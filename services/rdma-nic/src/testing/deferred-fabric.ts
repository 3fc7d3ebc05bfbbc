import type { Fabric, FabricEndpoint, WireReply, WireRequest } from '../transport/fabric';

interface Carried {
  readonly dgid: string;
  readonly dqpn: number;
  readonly request: WireRequest;
  readonly reply: WireReply;
}

/**
 * A fabric whose packets wait until the test delivers them, as a wire with
 * latency: many requests are in flight at once, and answers can be lost
 * (the requester's timer runs out although the responder ran the request).
 */
export class DeferredFabric implements Fabric {
  readonly #endpoints = new Map<string, FabricEndpoint>();
  #queue: Carried[] = [];
  /** The most requests that were in flight at once. */
  maxInFlight = 0;

  attach(endpoint: FabricEndpoint): void {
    this.#endpoints.set(endpoint.gid, endpoint);
  }

  get inFlight(): number {
    return this.#queue.length;
  }

  request(dgid: string, dqpn: number, request: WireRequest, _timeoutMs: number, reply: WireReply): void {
    // The payload views are valid during this call only: the wire takes its copy now.
    const payload = request.payload.map((view) => view.slice());
    this.#queue.push({ dgid, dqpn, request: { ...request, payload }, reply });
    this.maxInFlight = Math.max(this.maxInFlight, this.#queue.length);
  }

  rnrCleared(dgid: string, dqpn: number): void {
    this.#endpoints.get(dgid)?.retryAfterRnr(dqpn);
  }

  /**
   * Deliver what is in flight, in order (and what that sends, until the
   * wire is quiet). With `loseAnswers` the responder runs each request but
   * its answer is lost: the requester sees its timer run out.
   */
  deliver(options: { loseAnswers?: boolean } = {}): void {
    while (this.#queue.length > 0) {
      const batch = this.#queue;
      this.#queue = [];
      for (const carried of batch) {
        const response = this.#endpoints.get(carried.dgid)?.receive(carried.dqpn, carried.request);
        carried.reply(options.loseAnswers === true ? undefined : response);
      }
      if (options.loseAnswers === true) {
        return;
      }
    }
  }
}
