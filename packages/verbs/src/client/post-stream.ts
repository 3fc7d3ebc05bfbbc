import type { ClientDuplexStream } from '@grpc/grpc-js';
import { errno, isErrnoName } from '@p2p/errno';
import type { rdma } from '@p2p/proto';

type Stream = ClientDuplexStream<rdma.PostStreamRequest, rdma.PostStreamResponse>;

/** ibv_post_send() of packed WQEs (abi/wqe.ts) at message rate. */
export interface PostStream {
  /** Posts packed WQEs; resolves to how many were posted, rejects with the errno of a bad one (the ones before it went in). */
  post(wqes: Buffer): Promise<number>;
  /** Posts without waiting for the answer: for pipelines that learn of failures from their completions. */
  postAndForget(wqes: Buffer): void;
  close(): void;
}

/**
 * PostStream through calls: each post() is one PostStreamRequest of packed
 * WQEs on one open stream, answered in order. A bad WQE rejects that post
 * with its errno (the WQEs before it went in); the stream stays open.
 */
export class CallPostStream implements PostStream {
  readonly #stream: Stream;
  readonly #base: Pick<rdma.PostStreamRequest, 'pid' | 'contextFd' | 'qpNum'>;
  readonly #waiting = new Map<bigint, { resolve: (posted: number) => void; reject: (error: Error) => void }>();
  #seq = 0n;
  #ended: Error | undefined;

  constructor(stream: Stream, pid: number, contextFd: number, qpNum: number) {
    this.#stream = stream;
    this.#base = { pid, contextFd, qpNum };
    stream.on('data', (answer: rdma.PostStreamResponse) => {
      const waiter = this.#waiting.get(answer.seq);
      if (waiter === undefined) return;
      this.#waiting.delete(answer.seq);
      if (answer.errno === '') waiter.resolve(answer.posted);
      else waiter.reject(Object.assign(errno(isErrnoName(answer.errno) ? answer.errno : 'EIO', answer.message), { posted: answer.posted }));
    });
    const end = (error: Error): void => {
      this.#ended = error;
      for (const waiter of this.#waiting.values()) waiter.reject(error);
      this.#waiting.clear();
    };
    stream.on('error', end);
    stream.on('end', () => end(errno('ESHUTDOWN', 'the post stream ended')));
  }

  /** Posts packed WQEs; resolves to how many were posted. */
  post(wqes: Buffer): Promise<number> {
    if (this.#ended) return Promise.reject(this.#ended);
    const seq = this.#seq++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(seq, { resolve, reject });
      this.#stream.write({ ...this.#base, wrs: [], wqes, seq });
    });
  }

  /** Posts without waiting for the answer: for pipelines that learn of failures from their completions. */
  postAndForget(wqes: Buffer): void {
    if (this.#ended) throw this.#ended;
    this.#stream.write({ ...this.#base, wrs: [], wqes, seq: this.#seq++ });
  }

  close(): void {
    this.#stream.end();
  }
}
