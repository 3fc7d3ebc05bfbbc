import type { Fabric, FabricEndpoint, WireReply, WireRequest } from '../transport/fabric';

/**
 * A fabric in one process: endpoints by GID, answered synchronously, and
 * partitions that make a GID unreachable (its requests time out at once:
 * model time, not wall time).
 */
export class InMemoryFabric implements Fabric {
  readonly #endpoints = new Map<string, FabricEndpoint>();
  readonly #partitioned = new Set<string>();
  /** Requests carried, answered or not. */
  requests = 0;

  attach(endpoint: FabricEndpoint): void {
    this.#endpoints.set(endpoint.gid, endpoint);
  }

  /** Cut (or restore) the GID off the fabric: requests to it go unanswered. */
  partition(gid: string, cut: boolean): void {
    if (cut) {
      this.#partitioned.add(gid);
    } else {
      this.#partitioned.delete(gid);
    }
  }

  request(dgid: string, dqpn: number, request: WireRequest, _timeoutMs: number, reply: WireReply): void {
    this.requests++;
    reply(this.#partitioned.has(dgid) ? undefined : this.#endpoints.get(dgid)?.receive(dqpn, request));
  }

  rnrCleared(dgid: string, dqpn: number): void {
    if (!this.#partitioned.has(dgid)) {
      this.#endpoints.get(dgid)?.retryAfterRnr(dqpn);
    }
  }
}
