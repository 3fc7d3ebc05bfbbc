import type { ClientDuplexStream, StatusObject } from '@grpc/grpc-js';
import { errno } from '@p2p/errno';

/** How an opened session consumes the rest of its stream. */
export interface StreamSink<Res> {
  data(message: Res): void;
  /** A non-OK end; 'status' follows at once. */
  error(error: Error): void;
  /** The call is over, for whatever reason: exactly once. */
  status(status: StatusObject): void;
}

export interface OpenStreamOptions<Req, Res, First, Session> {
  readonly stream: ClientDuplexStream<Req, Res>;
  /** The greeting that starts the session (Hello, RegisterOwner). */
  readonly greeting: Req;
  /** "the registry at <address>", for messages. */
  readonly peer: string;
  /** What the first answer should be, for messages ("SessionOpened"). */
  readonly expected: string;
  /** The first answer's payload, or undefined if the first answer is something else. */
  readonly first: (message: Res) => First | undefined;
  readonly timeoutMs: number;
  /** Makes the session from the first answer; `finished` settles when the stream is done. */
  readonly create: (first: First, finished: Promise<void>) => { session: Session; sink: StreamSink<Res> };
  /** Called when opening fails, after the stream was cancelled: close the channel. */
  readonly abandon: () => void;
}

/**
 * Opens a session-like stream (OpenSession, OpenOwnerSession): sends the
 * greeting and resolves with the session made from the first answer. Rejects
 * with the gRPC error if the stream fails first, ECONNRESET if it ends
 * cleanly first, EIO if the first answer is not the expected one, and
 * ETIMEDOUT (cancelling the stream) if nothing comes within timeoutMs.
 */
export function openStream<Req, Res, First, Session>(options: OpenStreamOptions<Req, Res, First, Session>): Promise<Session> {
  const { stream } = options;
  return new Promise((resolve, reject) => {
    let sink: StreamSink<Res> | undefined;
    const fail = (error: Error): void => {
      clearTimeout(timer);
      reject(error);
      stream.cancel();
    };
    const timer = setTimeout(
      () => fail(errno('ETIMEDOUT', `${options.peer} sent no ${options.expected} within ${options.timeoutMs} ms`)),
      options.timeoutMs,
    );
    const finished = new Promise<void>((settle) => {
      stream.on('error', (error: Error) => (sink !== undefined ? sink.error(error) : fail(error)));
      stream.on('status', (status: StatusObject) => {
        settle();
        if (sink !== undefined) {
          sink.status(status);
        } else {
          fail(errno('ECONNRESET', `${options.peer} ended the stream before ${options.expected} (${status.details})`));
          options.abandon();
        }
      });
    });
    stream.on('data', (message: Res) => {
      if (sink !== undefined) {
        sink.data(message);
        return;
      }
      const first = options.first(message);
      if (first === undefined) {
        fail(errno('EIO', `${options.peer} answered with something other than ${options.expected}`));
        return;
      }
      clearTimeout(timer);
      const made = options.create(first, finished);
      sink = made.sink;
      resolve(made.session);
    });
    stream.write(options.greeting);
  });
}
