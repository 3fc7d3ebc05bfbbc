import { errno } from '@p2p/errno';
import type { dmabuf } from '@p2p/proto';

/** The largest WriteAttachment message payload: well under the servers' 16 MiB message limit. */
export const WRITE_CHUNK_BYTES = 1024 * 1024;

export interface StreamTarget {
  readonly client: dmabuf.DmaBufRegistryServiceClient;
  readonly pid: number;
  readonly attachmentId: bigint;
}

/**
 * ReadAttachment: the streamed fallback for an importer that shares no tmpfs
 * with the memory. The chunks are concatenated into `target` at
 * `targetOffset` as they arrive; a stream that ends short is EIO.
 */
export function readAttachmentInto(on: StreamTarget, offset: number, target: Uint8Array, targetOffset: number, length: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const call = on.client.readAttachment({ pid: on.pid, attachmentId: on.attachmentId, offset: BigInt(offset), length: BigInt(length) });
    let received = 0;
    let failed = false;
    const fail = (error: Error): void => {
      if (failed) return;
      failed = true;
      call.cancel();
      reject(error);
    };
    call.on('data', (message: dmabuf.ReadAttachmentResponse) => {
      if (received + message.data.length > length) {
        fail(errno('EIO', `ReadAttachment sent more than the ${length} bytes asked for`));
        return;
      }
      target.set(message.data, targetOffset + received);
      received += message.data.length;
    });
    call.on('error', fail);
    call.on('end', () => {
      if (failed) return;
      if (received === length) resolve();
      else fail(errno('EIO', `ReadAttachment ended after ${received} of ${length} bytes`));
    });
  });
}

/**
 * WriteAttachment: `data` goes out in messages of at most WRITE_CHUNK_BYTES;
 * pid, attachment and offset ride on the first one, as the server reads them
 * from it only. Resolves once the server confirmed every byte.
 */
export function writeAttachmentFrom(on: StreamTarget, offset: number, data: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    const call = on.client.writeAttachment((error, response) => {
      if (error) reject(error);
      else if (response.written !== BigInt(data.length)) reject(errno('EIO', `WriteAttachment wrote ${response.written} of ${data.length} bytes`));
      else resolve();
    });
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    let at = 0;
    // Flow control: write while the stream accepts, resume on 'drain', so a
    // large write never buffers more than a window of chunks in memory.
    const pump = (): void => {
      while (at < bytes.length) {
        const chunk = bytes.subarray(at, Math.min(at + WRITE_CHUNK_BYTES, bytes.length));
        const first = at === 0;
        at += chunk.length;
        const more = call.write({ pid: first ? on.pid : 0, attachmentId: first ? on.attachmentId : 0n, offset: first ? BigInt(offset) : 0n, data: chunk });
        if (!more) {
          call.once('drain', pump);
          return;
        }
      }
      call.end();
    };
    if (bytes.length === 0) {
      // One empty message still names the attachment, so the server checks access.
      call.write({ pid: on.pid, attachmentId: on.attachmentId, offset: BigInt(offset), data: Buffer.alloc(0) });
      call.end();
    } else {
      pump();
    }
  });
}
