import { fault } from '@p2p/proto';
import { connectPeer } from '@p2p/rpc';
import type { Deployment } from './driver';

/**
 * A partition made with the service's own fault rules: every call it
 * receives (but health, reflection and the fault service itself, which the
 * rules never touch) ends with ECONNRESET, UNAVAILABLE on the wire, as a
 * peer that cannot reach it sees. Streams already open go on: what a
 * partition cuts is new calls, the NICs' wire excepted.
 */
export async function partitionByFaultRule(deployment: Deployment, address: string): Promise<void> {
  const peer = connectPeer(fault.FaultInjectionServiceDefinition, address, { name: 'fault', token: deployment.adminToken, tls: deployment.tls });
  try {
    await peer.client.addFaultRule({
      rule: { id: '', methodPattern: '*', delay: undefined, abort: { errno: 'ECONNRESET', grpcCode: 0, percentage: 100 }, maxActivations: 0, activations: 0n },
    });
  } finally {
    peer.close();
  }
}

export async function healFaultRulePartition(deployment: Deployment, address: string): Promise<void> {
  const peer = connectPeer(fault.FaultInjectionServiceDefinition, address, { name: 'fault', token: deployment.adminToken, tls: deployment.tls });
  try {
    await peer.client.clearFaultRules({});
  } finally {
    peer.close();
  }
}

/** What the output says of partitions made this way. */
export const FAULT_RULE_PARTITION = "the service's fault rules (pattern *, every call ECONNRESET/UNAVAILABLE)";
