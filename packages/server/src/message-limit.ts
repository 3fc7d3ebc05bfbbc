import { errno } from '@p2p/errno';
import type { ServerConfig } from './config';

/**
 * What an answer holds besides the bytes of its data field: that field's tag
 * and length (6 bytes below 4 GiB) and the few scalar fields beside it.
 */
export const ENVELOPE_HEADROOM_BYTES = 1024;

/**
 * A server's message size limit (maxMessageBytes, which startServer sets as
 * grpc.max_send_message_length and max_receive) as its handlers need it: how
 * many data bytes one answer can carry, and a refusal of any read that asks
 * for more.
 */
export class MessageLimit {
  /** Data bytes one message can carry: maxMessageBytes less ENVELOPE_HEADROOM_BYTES. */
  readonly payloadBytes: number;

  constructor(readonly maxMessageBytes: number) {
    this.payloadBytes = maxMessageBytes - ENVELOPE_HEADROOM_BYTES;
  }

  static of(config: Pick<ServerConfig, 'maxMessageBytes'>): MessageLimit {
    return new MessageLimit(config.maxMessageBytes);
  }

  /**
   * EMSGSIZE unless an answer of `length` data bytes fits one message. Call
   * it before any work: grpc-js itself finds out only once the whole answer
   * has been read, copied and encoded, and then fails it anyway.
   * `instead` names the path for bulk data (a mapping, a stream).
   */
  checkAnswer(length: number | bigint, what: string, instead: string): void {
    if (BigInt(length) > BigInt(this.payloadBytes)) {
      throw errno(
        'EMSGSIZE',
        `${what} of ${length} bytes cannot fit one answer: the message limit is ${this.maxMessageBytes} bytes, ${this.payloadBytes} of them data; ${instead}`,
      );
    }
  }
}
