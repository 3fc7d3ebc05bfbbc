import { Client, credentials, type Interceptor, Metadata, type ServiceError, status as Code, type StatusObject } from '@grpc/grpc-js';
import { isErrnoName } from '@p2p/errno';
import { errnoOf } from '@p2p/status';
import type { MethodShape } from './fuzz-schema';

/** The most of a status message the README promises ("cut at 512 characters"). */
export const MAX_DETAILS = 512;
/** Trailers a stock client reads without trouble: the errno, its rich details, nothing that echoes a request. */
export const MAX_TRAILER_BYTES = 4096;

/** Who a call is made as. */
export interface Identity {
  readonly name: 'anonymous' | 'process' | 'platform' | 'admin';
  readonly interceptors: readonly Interceptor[];
}

/** How one call ended, as the client saw it. */
export interface Outcome {
  readonly code: Code;
  /** The errno name of a failed call; undefined for OK or a status without one. */
  readonly errno: string | undefined;
  readonly details: string;
  readonly trailerBytes: number;
  readonly response: unknown;
  readonly ms: number;
}

/**
 * One generic grpc-js client per (address, identity). Requests go out as
 * bytes the caller made (with the method's ts-proto serializer, so that a
 * serialization error throws in the test instead of coming back as a
 * status; or spoiled on purpose); answers of any size come back.
 */
export class ClientPool {
  readonly #clients = new Map<string, Client>();

  client(address: string, identity: Identity): Client {
    const key = `${address} ${identity.name}`;
    let client = this.#clients.get(key);
    if (client === undefined) {
      client = new Client(address, credentials.createInsecure(), {
        interceptors: [...identity.interceptors],
        'grpc.max_receive_message_length': -1,
        'grpc.max_send_message_length': -1,
      });
      this.#clients.set(key, client);
    }
    return client;
  }

  close(): void {
    for (const client of this.#clients.values()) client.close();
    this.#clients.clear();
  }
}

/** One unary call with a deadline; resolves with how it ended, never rejects. */
export function unaryCall(client: Client, method: MethodShape, request: Buffer, deadlineMs: number): Promise<Outcome> {
  const started = Date.now();
  return new Promise<Outcome>((resolve) => {
    client.makeUnaryRequest<Buffer, unknown>(
      method.path,
      (bytes) => bytes,
      (bytes) => method.responseDeserialize(bytes),
      request,
      new Metadata(),
      { deadline: started + deadlineMs },
      (error: ServiceError | null, response?: unknown) => {
        const ms = Date.now() - started;
        resolve(error === null ? { code: Code.OK, errno: undefined, details: '', trailerBytes: 0, response, ms } : outcomeOf(error, ms));
      },
    );
  });
}

/**
 * Opens a server stream and waits up to `openMs` for it to end; cancels it
 * then. Resolves with the status it ended with (CANCELLED by us when it was
 * still running) and how many messages it delivered.
 */
export function serverStreamCall(client: Client, method: MethodShape, request: Buffer, openMs: number): Promise<Outcome & { messages: number; cancelledByUs: boolean }> {
  const started = Date.now();
  return new Promise((resolve) => {
    let messages = 0;
    let cancelledByUs = false;
    const stream = client.makeServerStreamRequest<Buffer, unknown>(method.path, (bytes) => bytes, (bytes) => method.responseDeserialize(bytes), request, new Metadata(), {
      deadline: started + openMs + 5000,
    });
    const timer = setTimeout(() => {
      cancelledByUs = true;
      stream.cancel();
    }, openMs);
    stream.on('data', () => messages++);
    // 'error' carries the status of a failed stream; 'status' comes for every end.
    stream.on('error', () => undefined);
    stream.on('status', (status: StatusObject) => {
      clearTimeout(timer);
      const ms = Date.now() - started;
      const base = streamOutcome(status, ms);
      resolve({ ...base, messages, cancelledByUs });
    });
  });
}

/**
 * Opens a client-streaming or bidi stream, writes `messages`, half-closes
 * and waits up to `openMs` for the status; cancels it then. Resolves like
 * serverStreamCall.
 */
export function duplexCall(
  client: Client,
  method: MethodShape,
  messages: readonly Buffer[],
  openMs: number,
): Promise<Outcome & { messages: number; cancelledByUs: boolean; responses: unknown[] }> {
  const started = Date.now();
  return new Promise((resolve) => {
    let received = 0;
    const responses: unknown[] = [];
    let cancelledByUs = false;
    const options = { deadline: started + openMs + 5000 };
    const serialize = (bytes: Buffer): Buffer => bytes;
    const deserialize = (bytes: Buffer): unknown => method.responseDeserialize(bytes);
    const stream = method.responseStream
      ? client.makeBidiStreamRequest<Buffer, unknown>(method.path, serialize, deserialize, new Metadata(), options)
      : client.makeClientStreamRequest<Buffer, unknown>(method.path, serialize, deserialize, new Metadata(), options, () => undefined);
    const timer = setTimeout(() => {
      cancelledByUs = true;
      stream.cancel();
    }, openMs);
    stream.on('data', (response: unknown) => {
      if (received++ < 100) responses.push(response);
    });
    stream.on('error', () => undefined);
    stream.on('status', (status: StatusObject) => {
      clearTimeout(timer);
      const ms = Date.now() - started;
      const base = streamOutcome(status, ms);
      resolve({ ...base, messages: received, cancelledByUs, responses });
    });
    for (const message of messages) stream.write(message);
    stream.end();
  });
}

/** A peer that takes turns on a bidi stream: what it writes first, then what it writes in answer to each message it receives. */
export interface Conversation {
  readonly opening: readonly Buffer[];
  /** It waits for the other side's answer to what it wrote (a handshake's next step), which may be slow to come. */
  readonly awaitingAnswer: boolean;
  /** The messages to write in answer to `response` (as the method decodes it); none to stay silent. Never rejects. */
  answer(response: unknown): Promise<readonly Buffer[]>;
}

/**
 * Opens a bidi stream and holds `conversation` on it; half-closes once the
 * conversation has been quiet for `quietMs` (nothing written, no answer
 * being prepared), or for `quietMs` x 5 while it awaits an answer, and
 * waits for the status, which must come within 5 s of that (the call's
 * deadline). A peer that keeps writing is cut off at `quietMs` x 20.
 * Resolves like duplexCall (never cancelledByUs).
 */
export function conversationCall(
  client: Client,
  method: MethodShape,
  conversation: Conversation,
  quietMs: number,
): Promise<Outcome & { messages: number; cancelledByUs: boolean; responses: unknown[] }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const responses: unknown[] = [];
    let received = 0;
    let answering = Promise.resolve();
    let ended = false;
    let quiet: NodeJS.Timeout | undefined;
    const stream = client.makeBidiStreamRequest<Buffer, unknown>(method.path, (bytes: Buffer) => bytes, (bytes: Buffer) => method.responseDeserialize(bytes), new Metadata(), {
      deadline: started + quietMs * 20 + 5000,
    });
    const halfClose = (): void => {
      clearTimeout(quiet);
      if (!ended) stream.end();
      ended = true;
    };
    const cutOff = setTimeout(halfClose, quietMs * 20);
    const write = (messages: readonly Buffer[]): void => {
      if (ended) return;
      for (const message of messages) stream.write(message);
      clearTimeout(quiet);
      quiet = setTimeout(halfClose, conversation.awaitingAnswer ? quietMs * 5 : quietMs);
    };
    stream.on('data', (response: unknown) => {
      if (received++ < 100) responses.push(response);
      clearTimeout(quiet);
      // Answers go out in the order their messages came, each once it is ready.
      answering = answering.then(() => conversation.answer(response)).then(write);
    });
    stream.on('error', () => undefined);
    stream.on('status', (status: StatusObject) => {
      clearTimeout(quiet);
      clearTimeout(cutOff);
      ended = true;
      const ms = Date.now() - started;
      const base = streamOutcome(status, ms);
      resolve({ ...base, messages: received, cancelledByUs: false, responses });
    });
    write(conversation.opening);
  });
}

/** How a stream ended, from its status: OK, or failed like a unary call. */
function streamOutcome(status: StatusObject, ms: number): Outcome {
  return status.code === Code.OK ? { code: Code.OK, errno: undefined, details: status.details, trailerBytes: 0, response: undefined, ms } : outcomeOf(Object.assign(new Error(status.details), status), ms);
}

function outcomeOf(error: ServiceError | (Error & StatusObject), ms: number): Outcome {
  return { code: error.code, errno: errnoOf(error), details: error.details ?? '', trailerBytes: metadataBytes(error.metadata), response: undefined, ms };
}

function metadataBytes(metadata: Metadata | undefined): number {
  let total = 0;
  for (const [key, values] of Object.entries(metadata?.toJSON() ?? {})) {
    for (const value of values) total += key.length + (typeof value === 'string' ? Buffer.byteLength(value) : value.length);
  }
  return total;
}

/**
 * What is wrong with how a call ended, by the README's contract ("Errors"):
 * none for OK; for a failure, an errno, a code other than INTERNAL (a server
 * bug) and UNKNOWN (an unhandled throw), a message of at most 512
 * characters and bounded trailers; and no call may run into its deadline.
 */
export function problemsOf(outcome: Outcome): string[] {
  if (outcome.code === Code.OK) return [];
  const problems: string[] = [];
  if (outcome.code === Code.DEADLINE_EXCEEDED) problems.push(`stalled: DEADLINE_EXCEEDED after ${outcome.ms} ms`);
  if (outcome.code === Code.INTERNAL) problems.push('INTERNAL (a server bug)');
  if (outcome.code === Code.UNKNOWN) problems.push('UNKNOWN (an unhandled throw)');
  if (outcome.errno === undefined) problems.push(`no errno (code ${Code[outcome.code]})`);
  if (outcome.details.length > MAX_DETAILS) problems.push(`status message of ${outcome.details.length} characters`);
  if (outcome.trailerBytes > MAX_TRAILER_BYTES) problems.push(`trailers of ${outcome.trailerBytes} bytes`);
  return problems;
}

/**
 * What is wrong with the failures a stream reports in its messages
 * (PostStream's answers, an owner session's OwnerRequestFailed, a
 * session's AckRejected): an `errno` field holds an errno name or nothing,
 * and `message`/`detail` are bounded like a status message.
 */
export function messageProblems(responses: readonly unknown[]): string[] {
  const problems = new Set<string>();
  const walk = (value: unknown): void => {
    if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return;
    for (const [key, field] of Object.entries(value)) {
      if (key === 'errno' && typeof field === 'string' && field !== '' && !isErrnoName(field)) problems.add(`a message's errno ${JSON.stringify(field.slice(0, 40))} is no errno name`);
      if ((key === 'message' || key === 'detail') && typeof field === 'string' && field.length > MAX_DETAILS) problems.add(`a message's ${key} of ${field.length} characters`);
      if ((key === 'message' || key === 'detail') && typeof field === 'string' && field.startsWith('internal error')) problems.add(`a message reports an internal error: ${field.slice(0, 120)}`);
      walk(field);
    }
  };
  responses.forEach(walk);
  return [...problems];
}
