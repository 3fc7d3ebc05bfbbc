import * as net from 'node:net';
import { errno } from '@p2p/errno';
import { MAX_ANSWER_BYTES, type SessionRequest, type SessionResponse } from './session-protocol';

/**
 * Sends one request to the session at `socket` and resolves with its
 * answer. ENOENT when no session listens there (with how to start one).
 */
export function askSession(socket: string, name: string, request: SessionRequest, timeoutMs = 120_000): Promise<SessionResponse> {
  return new Promise((resolve, reject) => {
    const connection = net.createConnection(socket);
    let buffered = '';
    const timer = setTimeout(() => {
      connection.destroy();
      reject(errno('ETIMEDOUT', `session ${name} did not answer within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    const fail = (error: Error): void => {
      clearTimeout(timer);
      reject(error);
    };
    connection.setEncoding('utf8');
    connection.on('connect', () => connection.write(`${JSON.stringify(request)}\n`));
    connection.on('data', (chunk: string) => {
      buffered += chunk;
      const end = buffered.indexOf('\n');
      if (end < 0) {
        if (buffered.length > MAX_ANSWER_BYTES) {
          connection.destroy();
          fail(errno('EIO', `session ${name} sent an answer longer than ${MAX_ANSWER_BYTES} bytes`));
        }
        return;
      }
      clearTimeout(timer);
      connection.end();
      try {
        resolve(JSON.parse(buffered.slice(0, end)) as SessionResponse);
      } catch {
        reject(errno('EIO', `session ${name} sent an answer that is not JSON`));
      }
    });
    connection.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ECONNREFUSED') {
        fail(errno('ENOENT', `no session ${name}: start one with \`p2p session start${name === 'default' ? '' : ` ${name}`}\``));
      } else {
        fail(errno('EIO', `session ${name}: ${error.message}`));
      }
    });
    connection.on('close', () => fail(errno('EIO', `session ${name} closed the connection without an answer`)));
  });
}
