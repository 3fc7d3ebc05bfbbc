import type { Fabric, FabricEndpoint, WireRequest, WireResponse } from '../wire/fabric';

/** A fabric in one process: endpoints by GID, and partitions that make a GID unreachable. */
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

  request(dgid: string, dqpn: number, request: WireRequest): WireResponse | undefined {
    this.requests++;
    if (this.#partitioned.has(dgid)) {
      return undefined;
    }
    return this.#endpoints.get(dgid)?.receive(dqpn, request);
  }

  rnrCleared(dgid: string, dqpn: number): void {
    if (!this.#partitioned.has(dgid)) {
      this.#endpoints.get(dgid)?.retryAfterRnr(dqpn);
    }
  }
}
