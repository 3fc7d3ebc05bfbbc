import type { rdma } from '@p2p/proto';
import { expect } from 'chai';
import { ClientPool, type Conversation, conversationCall, duplexCall, type Identity, messageProblems, type Outcome, problemsOf, serverStreamCall, unaryCall } from './fuzz-calls';
import { FuzzFixture } from './fuzz-fixture';
import { Prng } from '@p2p/chaos';
import { corruption, FRAME_RING_BYTES, MIN_RING_BYTES, RequestGenerator, WIRE_VERSION, WireFrames, type WirePeer } from './fuzz-requests';
import { declaredMethodPaths, loadMethods, type MethodShape } from './fuzz-schema';

/** P2P_FUZZ_SEED replays a run; the default is fixed so that CI runs the same requests every time. */
const SEED = Number(process.env['P2P_FUZZ_SEED'] ?? 0x5eed_2026) >>> 0;
/** P2P_FUZZ_CALLS runs longer (and lifts the time budget); by default the run ends at whichever bound comes first. */
const CALLS = Number(process.env['P2P_FUZZ_CALLS'] ?? 2400);
const TIME_BUDGET_MS = process.env['P2P_FUZZ_CALLS'] === undefined ? 25_000 : Number.POSITIVE_INFINITY;
/** Random requests per server-streaming method, each opened under every identity. */
const STREAM_REQUESTS = Number(process.env['P2P_FUZZ_STREAMS'] ?? 8);
/** A unary call that has not answered by then stalled. */
const DEADLINE_MS = 5000;
/** How long a server stream may stay open before the fuzzer cancels it. */
const STREAM_OPEN_MS = 150;
/** Calls between two checks that every service still serves. */
const BATCH = 50;
/** The NICs' link to each other: served on each NIC's GID address, not on its service port. */
const WIRE_SERVICE = 'p2p.rdma.v1.RdmaWireService';
/** Rounds of wire conversations: each opens one Connect on each NIC under every identity, then checks the stack. */
const WIRE_ROUNDS = STREAM_REQUESTS;
/** How long a wire conversation stays quiet before the fuzzing peer half-closes it. */
const WIRE_QUIET_MS = 100;
/** A conversation has few frames: each is spoiled more often than a request of the other tests (its hellos are not), so that a run sees several. */
const WIRE_FRAME_CORRUPTION_RATE = 0.15;
/** P2P_FUZZ_VERBOSE=1 prints how each method's calls ended (OK, or by errno), to see how deep the run got. */
const VERBOSE = process.env['P2P_FUZZ_VERBOSE'] === '1';

interface Finding {
  readonly call: number;
  readonly method: string;
  readonly identity: Identity['name'];
  readonly problems: readonly string[];
  readonly status: string;
  readonly request: string;
}

/**
 * Issue "no single call can crash or stall the stack": random and edge-value
 * requests, mixed with a live session's pids, fds and handles, on every
 * unary method of every service (each service its own process), under every
 * identity. Each call ends within 5 s with OK or a bounded errno status that
 * is not INTERNAL; every 50 calls every service still answers health and no
 * process exited.
 *
 * Contained rather than fuzzed blind (see FuzzFixture): destructive pci-emu
 * calls of the platform and the administrator on accel0, nic0 and nic1 go
 * to nvme1 instead; unplug, power-down and resets of nvme0/nvme1 are
 * undone; the administrator's Bind/Unbind and fault rules are undone right
 * after the call, so no injected abort or delay reaches another call.
 *
 * The NICs' wire (RdmaWireService.Connect, served on each NIC's GID
 * address) asks a caller for no credential: a peer is whoever sends a
 * hello. Under every identity the fuzzer plays a peer NIC through the
 * handshake (with the registry incarnation A's session knows, so that
 * rings are offered both ways) and then sends frames of packets addressed
 * to a fresh QP of the NIC, some of them broken; every stream must end
 * with OK (the peer half-closed) or a bounded errno status, and the NICs
 * may log no error, the wire's only sign of a handler that threw.
 */
describe('trust: no single call crashes or stalls the stack (fuzz, every service its own process)', function () {
  this.timeout(TIME_BUDGET_MS === Number.POSITIVE_INFINITY ? 0 : TIME_BUDGET_MS + 60_000);
  let fixture: FuzzFixture;
  const pool = new ClientPool();
  const methods = loadMethods();

  before(async () => {
    fixture = await FuzzFixture.start();
  });

  after(async () => {
    if (VERBOSE) for (const { name, logs } of fixture?.services ?? []) if (logs.length > 0) console.log(`  ${name} logged:\n${logs.slice(0, 40).map((line) => `    ${line.slice(0, 300)}`).join('\n')}`);
    pool.close();
    await fixture?.stop();
  });

  it('covers every method of every service', () => {
    const services = new Set(methods.map((m) => m.service));
    expect([...services].sort()).to.deep.equal([
      'p2p.dmabuf.v1.DmaBufRegistryService',
      'p2p.fault.v1.FaultInjectionService',
      'p2p.pci.v1.PciEmuService',
      'p2p.rdma.v1.RdmaNicService',
      'p2p.rdma.v1.RdmaWireService',
      'p2p.vfio.v1.IommufdService',
      'p2p.vfio.v1.VfioDeviceIommufdService',
      'p2p.vfio.v1.VfioPciService',
    ]);
    // Every method the .proto files declare, so a new one is fuzzed from the day it is added; the NICs'
    // link to each other too, on each NIC's GID address (see the wire test below).
    expect(methods.map((m) => m.path).sort()).to.deep.equal(declaredMethodPaths().sort());
    expect(methods.filter((m) => m.service === WIRE_SERVICE).map((m) => m.name)).to.deep.equal(['Connect']);
    // The newest: pci-emu's IOMMU, the registry's address spaces and user-page pins, the DMA-mapping uAPI.
    expect(methods.map((m) => m.name)).to.include.members([
      'CreateIommuDomain',
      'AttachIommuDomain',
      'IommuMap',
      'IommuUnmap',
      'DetachIommuDomain',
      'DestroyIommuDomain',
      'ListIommuDomains',
      'Munmap',
      'GetProcessMaps',
      'PinUserPages',
      'UnpinUserPages',
      'IoasMap',
      'IoasMapFile',
      'VfioIommuMapDma',
      'BindIommufd',
      'SetContainer',
    ]);
    expect(methods.filter(isUnary)).to.have.length.greaterThan(60);
  });

  it('answers every unary method, under every identity, with OK or a bounded errno status within 5 s, and no service goes down', () =>
    withSeed(async () => {
      const prng = new Prng(SEED);
      const generator = new RequestGenerator(prng, fixture.handles);
      const unary = methods.filter(isUnary);
      const run = new Run();
      const deadline = Date.now() + TIME_BUDGET_MS;
      let round: MethodShape[] = [];
      let sinceCheck = 0;
      while (run.calls < CALLS && Date.now() < deadline) {
        if (round.length === 0) round = prng.shuffle([...unary]);
        const method = round.pop()!;
        const { request, nic } = generator.request(method.request);
        const address = fixture.addressOf(method, nic, prng);
        const spoil = corruption(prng);
        for (const identity of fixture.identities) {
          const sent = { ...request };
          fixture.contain(method, identity, sent);
          const bytes = method.requestSerialize(sent);
          const spoiled = spoil !== undefined && !fixture.isDestructive(method, identity);
          const outcome = await unaryCall(pool.client(address, identity), method, spoiled ? spoil.apply(bytes) : bytes, DEADLINE_MS);
          run.record(method, identity, outcome, problemsOf(outcome), sent, spoiled ? spoil.what : undefined);
          await fixture.undo(method, address, sent, outcome);
        }
        sinceCheck += fixture.identities.length;
        if (sinceCheck >= BATCH) {
          sinceCheck = 0;
          await run.check(fixture, 'batch check');
          if (fixture.services.some((s) => s.exited() !== undefined)) break;
        }
      }
      await run.check(fixture, 'final check');
      run.expectNoProblems();
      if (run.calls >= unary.length * fixture.identities.length * 2) {
        expect(unary.map((m) => m.path).filter((path) => !run.reached(path)), `methods the run never reached (${run.calls} calls)`).to.deep.equal([]);
      }
    }));

  it('ends every server stream under every identity with an errno status, or delivers, and no service goes down', () =>
    withSeed(async () => {
      const prng = new Prng(SEED ^ 0x5757);
      const generator = new RequestGenerator(prng, fixture.handles);
      const streaming = methods.filter((m) => m.responseStream && !m.requestStream);
      expect(streaming.map((m) => m.name).sort()).to.deep.equal(['ReadAttachment', 'WatchAsyncEvents', 'WatchCompletions', 'WatchEvents', 'WatchEvents']);
      const run = new Run();
      for (const method of streaming) {
        for (let i = 0; i < STREAM_REQUESTS; i++) {
          const { request, nic } = generator.request(method.request);
          const address = fixture.addressOf(method, nic, prng);
          const spoil = corruption(prng);
          const bytes = spoil === undefined ? method.requestSerialize(request) : spoil.apply(method.requestSerialize(request));
          const outcomes = await Promise.all(fixture.identities.map((identity) => serverStreamCall(pool.client(address, identity), method, bytes, STREAM_OPEN_MS)));
          fixture.identities.forEach((identity, k) => {
            const outcome = outcomes[k]!;
            // Still open when we cancelled: it neither failed nor stalled anyone.
            run.record(method, identity, outcome, outcome.cancelledByUs ? [] : problemsOf(outcome), request, spoil?.what);
          });
        }
        await run.check(fixture, `check after ${method.path}`);
      }
      run.expectNoProblems();
    }));

  it('ends every client-streaming and bidi stream under every identity with an errno status, or answers, and no service goes down', () =>
    withSeed(async () => {
      const prng = new Prng(SEED ^ 0xb1d1);
      const generator = new RequestGenerator(prng, fixture.handles);
      const streaming = methods.filter((m) => m.requestStream && m.service !== WIRE_SERVICE);
      expect(streaming.map((m) => m.name).sort()).to.deep.equal(['OpenOwnerSession', 'OpenSession', 'PostStream', 'WriteAttachment']);
      const run = new Run();
      for (const method of streaming) {
        for (let i = 0; i < STREAM_REQUESTS; i++) {
          const generated = Array.from({ length: 1 + prng.below(4) }, (_, k) => generator.request(method.request, { opening: k === 0 }));
          const address = fixture.addressOf(method, generated[0]!.nic, prng);
          const spoil = corruption(prng);
          const last = generated.length - 1;
          const messages = generated.map(({ request }, k) => (spoil !== undefined && k === last ? spoil.apply(method.requestSerialize(request)) : method.requestSerialize(request)));
          const outcomes = await Promise.all(fixture.identities.map((identity) => duplexCall(pool.client(address, identity), method, messages, STREAM_OPEN_MS)));
          fixture.identities.forEach((identity, k) => {
            const outcome = outcomes[k]!;
            const problems = [...(outcome.cancelledByUs ? [] : problemsOf(outcome)), ...messageProblems(outcome.responses)];
            run.record(method, identity, outcome, problems, generated.map(({ request }) => request), spoil && `the last message's ${spoil.what}`);
          });
        }
        await run.check(fixture, `check after ${method.path}`);
      }
      run.expectNoProblems();
    }));

  it("holds the NICs' wire under every identity: a peer's handshake, then random and corrupted frames, on each NIC's GID address; every stream ends with a bounded status, no packet is logged as a server bug, and no service goes down", () =>
    withSeed(async () => {
      const prng = new Prng(SEED ^ 0x3172);
      const generator = new RequestGenerator(prng, fixture.handles);
      const wire = new WireFrames(prng, fixture.handles);
      const connect = methods.find((m) => m.service === WIRE_SERVICE)!;
      const run = new Run();
      const deepest: [WireDepth, WireDepth] = ['refused', 'refused'];
      fixture.loggedErrors();
      for (let round = 0; round < WIRE_ROUNDS; round++) {
        const targets = await Promise.all(([0, 1] as const).map((nic) => fixture.wireTarget(nic)));
        const plans = ([0, 1] as const).map((nic) => planConversation(prng, generator, wire, wire.peer(nic, targets[nic]?.target), connect));
        const conversations = await Promise.all(plans.map((plan) => converse(fixture, pool, connect, plan)));
        await Promise.all(targets.map((target) => target?.close()));
        plans.forEach((plan, nic) => {
          for (const { identity, outcome, depth } of conversations[nic]!) {
            if (WIRE_DEPTHS.indexOf(depth) > WIRE_DEPTHS.indexOf(deepest[nic]!)) deepest[nic] = depth;
            run.record(connect, identity, { ...outcome, reached: depth }, [...problemsOf(outcome), ...nicFrameProblems(outcome.responses)], plan.sent, plan.spoiled);
          }
        });
        run.noteLogged(fixture.loggedErrors(), `wire round ${round}`);
        await run.check(fixture, `check after wire round ${round}`);
      }
      run.expectNoProblems();
      // The run reached the NICs' packet handling, past the handshake, on both NICs (a shorter run may not).
      if (WIRE_ROUNDS >= 8) expect(deepest, 'how far the conversations with nic0 and nic1 got').to.deep.equal(['answered', 'answered']);
    }));
});

/** How far a wire conversation got: the NIC never answered the hello, answered it, opened the link, or answered packets. */
const WIRE_DEPTHS = ['refused', 'hello', 'open', 'answered'] as const;
type WireDepth = (typeof WIRE_DEPTHS)[number];

/**
 * One round's conversation with one NIC, fixed up front so that a seed
 * replays it and every identity sends the same: the opening hello (now and
 * then a random ConnectRequest instead), the second hello given the ring
 * token, the frames that follow it (the first one clean, later ones now and
 * then random ConnectRequests), and, per message, a corruption of its bytes
 * (see corruption(): about one conversation in three has one).
 */
interface WirePlan {
  readonly nic: 0 | 1;
  readonly opening: Buffer;
  readonly second: (ringToken: string) => Buffer;
  readonly frames: readonly Buffer[];
  /**
   * The frames go with the second hello, before the link is open, rather
   * than after the NIC's first frame, as a connecting NIC sends them (the
   * NIC queues them; a frame it cannot read ends the link before it opens).
   */
  readonly eager: boolean;
  readonly offersRing: boolean;
  /** The registry pid the opening hello named: the NIC's ring token in its answer is addressed to it. */
  readonly helloPid: number;
  readonly sent: readonly object[];
  readonly spoiled: string | undefined;
}

function planConversation(prng: Prng, generator: RequestGenerator, wire: WireFrames, peer: WirePeer, connect: MethodShape): WirePlan {
  const random = (opening: boolean): Record<string, unknown> => generator.request(connect.request, { opening }).request;
  const opening = prng.chance(0.9) ? wire.hello(peer)('') : random(true);
  const wildSecond = prng.chance(0.1) ? random(false) : undefined;
  const plannedSecond = wire.hello(peer);
  const second = (ringToken: string): object => wildSecond ?? plannedSecond(ringToken);
  const frames = Array.from({ length: 1 + prng.below(4) }, (_, k) => (k === 0 ? wire.frame(peer, { clean: true }) : prng.chance(0.75) ? wire.frame(peer) : random(false)));
  const spoils = Array.from({ length: 2 + frames.length }, (_, k) => (k < 2 ? corruption(prng) : corruption(prng, WIRE_FRAME_CORRUPTION_RATE)));
  const bytes = (request: object, k: number): Buffer => {
    const serialized = connect.requestSerialize(connect.request.fns.fromPartial(request));
    return spoils[k]?.apply(serialized) ?? serialized;
  };
  const spoiled = spoils.flatMap((spoil, k) => (spoil === undefined ? [] : [`message ${k}'s ${spoil.what}`]));
  return {
    nic: peer.nic,
    opening: bytes(opening, 0),
    second: (ringToken) => bytes(second(ringToken), 1),
    frames: frames.map((frame, k) => bytes(frame, 2 + k)),
    eager: prng.chance(0.2),
    offersRing: peer.ringBytes > 0 && wildSecond === undefined,
    helloPid: (opening as Partial<rdma.ConnectRequest>).frame?.hello?.registryPid ?? 0,
    sent: [opening, second(''), ...frames],
    spoiled: spoiled.length > 0 ? spoiled.join(', ') : undefined,
  };
}

/**
 * One plan's conversations with its NIC, one under each identity at once,
 * on the NIC's wire address; then the rings they made are closed.
 */
async function converse(fixture: FuzzFixture, pool: ClientPool, connect: MethodShape, plan: WirePlan): Promise<Array<{ identity: Identity; outcome: Outcome & { responses: unknown[] }; depth: WireDepth }>> {
  const address = fixture.wireAddress(plan.nic);
  const peers = fixture.identities.map(() => new PeerConversation(plan, fixture));
  const outcomes = await Promise.all(peers.map((peer, k) => conversationCall(pool.client(address, fixture.identities[k]!), connect, peer, WIRE_QUIET_MS)));
  await Promise.all(peers.map((peer) => peer.finish()));
  return fixture.identities.map((identity, k) => ({ identity, outcome: outcomes[k]!, depth: peers[k]!.depth }));
}

/**
 * The fuzzing peer's side of one Connect, played as a connecting NIC plays
 * it: its hello; once the NIC's hello came, its second hello (offering a
 * ring of A's when the plan says so); once the NIC's first frame says the
 * link is open, the plan's frames (or all at once, for an eager plan).
 * Afterwards (finish) its ring is closed and the one the NIC offered is
 * taken and closed, so that no ring outlives the run.
 */
class PeerConversation implements Conversation {
  readonly opening: readonly Buffer[];
  depth: WireDepth = 'refused';
  #offered: { token: string; close: () => Promise<void> } | undefined;
  #nicRing: string | undefined;

  constructor(
    private readonly plan: WirePlan,
    private readonly fixture: FuzzFixture,
  ) {
    this.opening = [plan.opening];
  }

  async answer(response: unknown): Promise<readonly Buffer[]> {
    const frame = (response as rdma.ConnectResponse).frame;
    if (frame?.hello === undefined) {
      const opening = this.depth === 'hello';
      this.#reach(packetsIn(frame) > 0 ? 'answered' : 'open');
      return opening && !this.plan.eager ? this.plan.frames : [];
    }
    if (this.depth !== 'refused') return [];
    this.depth = 'hello';
    if (frame.hello.ringToken !== '') this.#nicRing = frame.hello.ringToken;
    if (this.plan.offersRing) this.#offered = await this.fixture.offerRing(frame.hello.registryPid, MIN_RING_BYTES + FRAME_RING_BYTES).catch(() => undefined);
    return [this.plan.second(this.#offered?.token ?? ''), ...(this.plan.eager ? this.plan.frames : [])];
  }

  /** The NIC's hello is due, or, for a plan that waits for the link to open, its first frame: a ring to allocate can make either slow. */
  get awaitingAnswer(): boolean {
    return this.depth === 'refused' || (this.depth === 'hello' && !this.plan.eager);
  }

  async finish(): Promise<void> {
    await this.#offered?.close();
    if (this.#nicRing !== undefined) await this.fixture.redeemRing(this.plan.helloPid, this.#nicRing);
  }

  #reach(depth: WireDepth): void {
    if (WIRE_DEPTHS.indexOf(depth) > WIRE_DEPTHS.indexOf(this.depth)) this.depth = depth;
  }
}

/** The packet count a frame's header gives (0 for a frame without packets). */
function packetsIn(frame: rdma.WireFrame | undefined): number {
  return frame !== undefined && frame.packets.length >= 8 ? frame.packets.readUInt32LE(4) : 0;
}

/** What is wrong with the frames a NIC sent: each is a hello or a frame of its wire format (a version 1 header), never anything else. */
function nicFrameProblems(responses: readonly unknown[]): string[] {
  const problems = new Set<string>();
  for (const response of responses) {
    const frame = (response as rdma.ConnectResponse).frame;
    if (frame === undefined) problems.add('the NIC sent a message without a frame');
    else if (frame.packets.length > 0 && (frame.packets.length < 16 || frame.packets[0] !== WIRE_VERSION)) problems.add(`the NIC sent a frame that is no version ${WIRE_VERSION} frame (${frame.packets.length} bytes)`);
  }
  return [...problems];
}

/**
 * One run's record: every call's outcome by method (printed with
 * P2P_FUZZ_VERBOSE=1), and the problems found, each with the request that
 * showed it.
 */
class Run {
  calls = 0;
  readonly #findings: Finding[] = [];
  readonly #tally = new Map<string, Map<string, number>>();

  record(
    method: MethodShape,
    identity: Identity,
    outcome: Outcome & { cancelledByUs?: boolean; messages?: number; reached?: string },
    problems: readonly string[],
    request: object,
    spoiled: string | undefined,
  ): void {
    this.calls++;
    const status = outcome.cancelledByUs ? `open${(outcome.messages ?? 0) > 0 ? '+data' : ''}` : (outcome.errno ?? (outcome.code === 0 ? 'OK' : `code ${outcome.code}`));
    const ended = outcome.reached === undefined ? status : `${status} after ${outcome.reached}`;
    let counts = this.#tally.get(method.path);
    if (counts === undefined) this.#tally.set(method.path, (counts = new Map()));
    counts.set(`${identity.name}:${ended}`, (counts.get(`${identity.name}:${ended}`) ?? 0) + 1);
    if (problems.length === 0) return;
    const sent = spoiled === undefined ? summarize(request) : `${summarize(request)}, its bytes spoiled: ${spoiled}`;
    this.#findings.push({ call: this.calls, method: method.path, identity: identity.name, problems, status: `${outcome.code} ${outcome.errno ?? '-'} ${outcome.details.slice(0, 200)}`, request: sent });
  }

  /** Every service still up (see FuzzFixture.checkAndRestore); what is not is a problem of the calls just made. */
  async check(fixture: FuzzFixture, label: string): Promise<void> {
    const problems = await fixture.checkAndRestore();
    if (problems.length > 0) this.#findings.push({ call: this.calls, method: `(${label})`, identity: 'admin', problems, status: '', request: '' });
  }

  /** Error lines a service logged (see FuzzFixture.loggedErrors): each a problem of the calls just made. */
  noteLogged(lines: readonly string[], label: string): void {
    for (const line of lines) this.#findings.push({ call: this.calls, method: `(logged during ${label})`, identity: 'admin', problems: [line], status: '', request: '' });
  }

  reached(path: string): boolean {
    return this.#tally.has(path);
  }

  expectNoProblems(): void {
    if (VERBOSE) {
      console.log(`  fuzz seed ${SEED}: ${this.calls} calls`);
      for (const [path, counts] of [...this.#tally].sort(([a], [b]) => a.localeCompare(b))) {
        console.log(`    ${path}: ${[...counts].sort(([a], [b]) => a.localeCompare(b)).map(([ended, n]) => `${ended} ${n}`).join(', ')}`);
      }
    }
    expect(this.#findings.length, this.#report()).to.equal(0);
  }

  /** Each distinct problem once, with the first request that showed it. */
  #report(): string {
    const seen = new Map<string, { first: Finding; count: number }>();
    for (const f of this.#findings) {
      const key = `${f.method} ${f.problems.join('; ')}`;
      const entry = seen.get(key);
      if (entry) entry.count++;
      else seen.set(key, { first: f, count: 1 });
    }
    const lines = [...seen.values()].slice(0, 30).map(({ first: f, count }) => `  #${f.call} ${f.method} as ${f.identity} (x${count}): ${f.problems.join('; ')}\n      status: ${f.status}\n      request: ${f.request}`);
    return `${this.calls} calls, ${this.#findings.length} problems:\n${lines.join('\n')}`;
  }
}

/** Runs a test body so that whatever fails it, a problem found or a throw, names the seed to replay it with. */
async function withSeed(body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (error) {
    if (error instanceof Error) error.message = `fuzz seed ${SEED} (replay with P2P_FUZZ_SEED=${SEED}): ${error.message}`;
    throw error;
  }
}

function isUnary(method: MethodShape): boolean {
  return !method.requestStream && !method.responseStream;
}

/** A request as a short line: bigints as numbers, long strings, bytes and long lists by their size. */
function summarize(request: object): string {
  const walk = (value: unknown): string => {
    if (typeof value === 'bigint') return `${value}n`;
    if (typeof value === 'string') return value.length > 40 ? `<${value.length} chars: ${JSON.stringify(value.slice(0, 12))}...>` : JSON.stringify(value);
    if (value instanceof Uint8Array) return value.length > 16 ? `<${value.length} bytes>` : `<${Buffer.from(value).toString('hex')}>`;
    if (Array.isArray(value)) return value.length > 4 ? `[${value.slice(0, 4).map(walk).join(', ')}, ... ${value.length} in all]` : `[${value.map(walk).join(', ')}]`;
    if (value !== null && typeof value === 'object') return `{${Object.entries(value).map(([k, v]) => `${k}: ${walk(v)}`).join(', ')}}`;
    return String(value);
  };
  const text = walk(request);
  return text.length > 400 ? `${text.slice(0, 400)}...` : text;
}
