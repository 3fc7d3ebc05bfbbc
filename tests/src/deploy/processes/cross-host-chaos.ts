/**
 * The workload of the swarm test's chaos run, beside the hosts (a container
 * on their overlay network, on neither host's tmpfs): the cross-host
 * example, again and again, for each pair of hosts at once, until it is
 * killed, while the test kills and pauses the hosts' containers.
 *
 * Env: PAIRS, "reader<target" pairs by host name, comma-separated
 * ("host-a<host-b,host-b<host-c"); for each host named, <HOST>_REGISTRY,
 * <HOST>_VFIO_PCI and <HOST>_NIC addresses (HOST_A_REGISTRY for host-a);
 * ADMIN_TOKEN, the platform administrator's token (the same on every host).
 *
 * Stdout: one JSON object a line per read, as it ends:
 *   {"pair":"host-a<host-b","startedAt":ms,"ms":n,"outcome":"identical"}
 *   ... "outcome":"different"            the READ completed, with other bytes
 *   ... "outcome":"error","error":"..."  it failed, with what
 *   ... "outcome":"stalled"              it did not end within READ_DEADLINE_MS
 */
import { errnoOf } from '@p2p/status';
import { crossHostRead } from '../../examples/cross-host-read';

/** A read that has not ended by then is a stall: every call it makes is bounded by a timeout or a peer's death. */
const READ_DEADLINE_MS = 60_000;
const LENGTH = 256 * 1024;

function env(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') throw new Error(`${name} is not set`);
  return value;
}

function addresses(host: string): { registry: string; vfioPci: string; nic: string } {
  const prefix = host.toUpperCase().replace(/-/g, '_');
  return { registry: env(`${prefix}_REGISTRY`), vfioPci: env(`${prefix}_VFIO_PCI`), nic: env(`${prefix}_NIC`) };
}

async function readOnce(pair: string, reader: string, target: string, adminToken: string): Promise<void> {
  const startedAt = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const stalled = new Promise<'stalled'>((resolve) => (timer = setTimeout(() => resolve('stalled'), READ_DEADLINE_MS)));
  const read = crossHostRead({
    hostA: addresses(reader),
    hostB: { ...addresses(target), adminToken },
    length: LENGTH,
  }).then(
    ({ received, expected }) => ({ outcome: received.equals(expected) ? 'identical' : 'different' }),
    (error: unknown) => ({ outcome: 'error', error: `${errnoOf(error) ?? 'no errno'}: ${error instanceof Error ? error.message : String(error)}` }),
  );
  const result = await Promise.race([read, stalled.then((outcome) => ({ outcome }))]);
  clearTimeout(timer);
  console.log(JSON.stringify({ pair, startedAt, ms: Date.now() - startedAt, ...result }));
  if (result.outcome === 'stalled') process.exit(1);
}

async function loop(pair: string, adminToken: string): Promise<never> {
  const [reader, target] = pair.split('<') as [string, string];
  for (;;) {
    await readOnce(pair, reader, target, adminToken);
    // A failed read is retried after a breath: the host is on its way back.
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const adminToken = env('ADMIN_TOKEN');
void Promise.all(
  env('PAIRS')
    .split(',')
    .map((pair) => loop(pair.trim(), adminToken)),
);
