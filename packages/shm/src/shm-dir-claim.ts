import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { type ErrnoError, errno } from '@p2p/errno';
import { fsCall, fsErrno } from './fs-errno';
import { MAX_SOCKET_PATH } from './limits';
import { isValidSegmentName } from './segment-name';
import { SHM_DIR_ENV } from './shm-dir';

/** How long a prober waits for a live holder to say who it is (a stopped holder accepts but never answers). */
const HOLDER_REPLY_MS = 1000;

/** Each round either claims, fails EBUSY, or clears one stale lock; only racing claimants need a third. */
const MAX_ROUNDS = 3;

/** Who holds a claim, as the holder tells a prober. */
interface Holder {
  readonly pid: number;
  readonly host: string;
  readonly since: string;
}

/** What connecting to a lock socket found: a listener, a socket nobody listens on any more, or no file. */
type Probe = { readonly state: 'live'; readonly holder: Holder | undefined } | { readonly state: 'stale' | 'gone' };

/** A held claim on a segment directory for one service kind (see claimShmDir). */
export interface ShmDirClaim {
  readonly dir: string;
  readonly kind: string;
  /** `<dir>/.<kind>.lock`, the socket the holder listens on. */
  readonly lockPath: string;
  /** Gives the directory up: unlinks the lock and stops listening. Later calls do nothing. */
  release(): Promise<void>;
}

/**
 * Claims `dir` for one kind of service ("pci-emu", "dmabuf-registry"): a
 * service that sweeps its predecessor's segment files at start must hold the
 * claim first, or it would unlink the files of a live one. A second claim of
 * the same directory and kind, from another process, another container or
 * this very process, fails with EBUSY naming the directory and the holder.
 * Kinds are independent: all services of `npm start` share one pid.
 *
 * The lock is a Unix socket the holder listens on, at `<dir>/.<kind>.lock`:
 * a claimant that finds the name taken connects to it. A live holder accepts
 * (even a stopped one: the kernel queues the connection) and answers who it
 * is; a dead one cannot, because the kernel closed its socket with the
 * process however it died, and the connection is refused: that lock is stale
 * and is taken over. Why not the alternatives:
 * - A pid file (O_EXCL, then kill(pid, 0)) cannot judge a holder in another
 *   pid namespace: docker-compose runs each service in its own container on
 *   one shared segment volume, and a restarted container's pid 1 would read
 *   its dead predecessor's pid 1 as alive. connect() goes by the file's
 *   inode, whichever namespace asks.
 * - flock(2) has no binding in Node; the npm packages that add one (fs-ext,
 *   fs-native-extensions) are native addons, a second native build beside
 *   mmap-io for one syscall.
 *
 * The socket listens under a private name first and is then hard-linked to
 * the lock name (link(2) never replaces a file), so the lock name only ever
 * names a socket that was already listening: a refused connection always
 * means a dead holder, never one between bind() and listen(). A stale lock
 * is renamed away and unlinked only if it is still the file that was probed.
 */
export async function claimShmDir(dir: string, kind: string): Promise<ShmDirClaim> {
  if (!isValidSegmentName(kind)) {
    throw errno('EINVAL', `claim kind ${JSON.stringify(kind)} must be a valid segment name`);
  }
  const directory = path.resolve(dir);
  const lockPath = path.join(directory, `.${kind}.lock`);
  const listenPath = `${lockPath}.${randomBytes(4).toString('hex')}`;
  if (Buffer.byteLength(listenPath) > MAX_SOCKET_PATH) {
    throw errno('EINVAL', `${directory} is too long for its lock socket (${listenPath} exceeds ${MAX_SOCKET_PATH} bytes): use a shorter ${SHM_DIR_ENV}`);
  }
  const holder: Holder = { pid: process.pid, host: os.hostname(), since: new Date().toISOString() };
  const server = await listen(listenPath, holder);
  try {
    const inode = fsCall(() => fs.lstatSync(listenPath), `lstat ${listenPath}`).ino;
    for (let round = 0; round < MAX_ROUNDS; round++) {
      if (publish(listenPath, lockPath)) {
        fsCall(() => fs.unlinkSync(listenPath), `unlink ${listenPath}`);
        return new HeldClaim(directory, kind, lockPath, inode, server);
      }
      const probed = inodeAt(lockPath);
      if (probed === undefined) continue;
      const found = await probe(lockPath);
      if (found.state === 'live') throw busy(directory, kind, lockPath, found.holder);
      if (found.state === 'stale') removeStale(lockPath, probed);
    }
    throw errno('EBUSY', `${directory}: the ${kind} lock ${lockPath} kept changing hands while it was being claimed`);
  } catch (error) {
    await close(server);
    throw error;
  }
}

class HeldClaim implements ShmDirClaim {
  #released = false;

  constructor(
    readonly dir: string,
    readonly kind: string,
    readonly lockPath: string,
    private readonly inode: number,
    private readonly server: net.Server,
  ) {}

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    // Unlink before closing, and only our own socket: once closed, a
    // successor may claim at once, and its lock must not be the one unlinked.
    if (inodeAt(this.lockPath) === this.inode) fsCall(() => fs.unlinkSync(this.lockPath), `unlink ${this.lockPath}`);
    await close(this.server);
  }
}

/** Listens on `socketPath`, answering every connection with who holds the claim. */
function listen(socketPath: string, holder: Holder): Promise<net.Server> {
  const server = net.createServer((socket) => {
    // A prober may hang up before the answer is out; that is its business.
    socket.on('error', () => socket.destroy());
    socket.end(JSON.stringify(holder));
  });
  return new Promise((resolve, reject) => {
    // After listening this only ever sees accept failures, which concern the
    // prober that caused them and must not take the holding service down.
    server.on('error', (err) => reject(fsErrno(err, `listen on ${socketPath}`)));
    server.listen(socketPath, () => {
      // The claim must not keep a process alive that has nothing else to do.
      server.unref();
      resolve(server);
    });
  });
}

function close(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** link(2) the listening socket to the lock name: true if it took, false if the name is taken. */
function publish(listenPath: string, lockPath: string): boolean {
  try {
    fs.linkSync(listenPath, lockPath);
    return true;
  } catch (err) {
    const failure = fsErrno(err, `link ${listenPath} to ${lockPath}`);
    if (failure.errno === 'EEXIST') return false;
    throw failure;
  }
}

/** Connects to a lock socket and reads the holder's answer. */
function probe(socketPath: string): Promise<Probe> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    const chunks: Buffer[] = [];
    let connected = false;
    let failure: NodeJS.ErrnoException | undefined;
    const timer = setTimeout(() => socket.destroy(), HOLDER_REPLY_MS);
    socket.on('connect', () => {
      connected = true;
    });
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (err) => (failure ??= err));
    socket.on('close', () => {
      clearTimeout(timer);
      const code = failure?.code;
      if (connected) resolve({ state: 'live', holder: parseHolder(Buffer.concat(chunks).toString()) });
      else if (code === 'ECONNREFUSED') resolve({ state: 'stale' });
      else if (code === 'ENOENT') resolve({ state: 'gone' });
      // No answer in time, or EAGAIN (a full accept queue): someone listens.
      else if (failure === undefined || code === 'EAGAIN') resolve({ state: 'live', holder: undefined });
      else reject(fsErrno(failure, `connect to ${socketPath}`));
    });
  });
}

/**
 * Unlinks a lock found stale, if the name still holds the file that was
 * probed: it is renamed away first (atomic), then checked. A racing
 * claimant's fresh lock, moved by mistake, is linked back; should a third
 * claimant have taken the name in that instant, the two would both believe
 * they hold it, a window of three simultaneous starts on a stale lock that
 * only flock(2) would close.
 */
function removeStale(lockPath: string, probed: number): void {
  const grave = `${lockPath}.${randomBytes(4).toString('hex')}.stale`;
  try {
    fs.renameSync(lockPath, grave);
  } catch (err) {
    const failure = fsErrno(err, `rename ${lockPath} to ${grave}`);
    if (failure.errno === 'ENOENT') return;
    throw failure;
  }
  try {
    if (inodeAt(grave) !== probed) publish(grave, lockPath);
  } finally {
    fsCall(() => fs.unlinkSync(grave), `unlink ${grave}`);
  }
}

function inodeAt(file: string): number | undefined {
  try {
    return fs.lstatSync(file).ino;
  } catch (err) {
    const failure = fsErrno(err, `lstat ${file}`);
    if (failure.errno === 'ENOENT') return undefined;
    throw failure;
  }
}

function parseHolder(answer: string): Holder | undefined {
  try {
    const parsed: unknown = JSON.parse(answer);
    if (typeof parsed !== 'object' || parsed === null) return undefined;
    const { pid, host, since } = parsed as Record<string, unknown>;
    if (typeof pid !== 'number' || typeof host !== 'string' || typeof since !== 'string') return undefined;
    return { pid, host, since };
  } catch {
    return undefined;
  }
}

function busy(directory: string, kind: string, lockPath: string, holder: Holder | undefined): ErrnoError {
  const who =
    holder === undefined
      ? 'a live process that did not say who it is (stopped?)'
      : `pid ${holder.pid} on ${holder.host}, since ${holder.since}`;
  return errno('EBUSY', `${directory} already has a ${kind}: held by ${who} (lock ${lockPath})`);
}
