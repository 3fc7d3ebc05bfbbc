/**
 * The compose driver's gateway, run in a container of the services' image
 * on the project's network with its segment volume mounted read-only (see
 * compose-gateway.ts, which starts it). It forwards one port per service to
 * the service's compose name, resolved again at each connection, so a
 * campaign on the host keeps one address per service while containers are
 * killed, started again (new published ports) and taken off the network;
 * and it serves the segment files to the campaign's checkers over HTTP.
 *
 * Environment: GATEWAY_ROUTES (`<listen port>=<service>:<port>,...`),
 * GATEWAY_SEGMENTS_PORT, GATEWAY_TOKEN (the bearer the segment requests
 * carry), P2P_SHM_DIR. It ends when its stdin closes: the driver that
 * started it, or the process that ran the driver, is gone.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';

const shmDir = process.env.P2P_SHM_DIR ?? '/dev/shm/p2p-dmabuf';
const token = process.env.GATEWAY_TOKEN ?? '';

function forward(listenPort: number, host: string, port: number): Promise<void> {
  const server = net.createServer((client) => {
    const upstream = net.connect(port, host);
    // A service that is down, paused or cut off is the client's to see: reset, or silence.
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream).pipe(client);
  });
  return new Promise((resolve) => server.listen(listenPort, '0.0.0.0', resolve));
}

function serveSegments(port: number): Promise<void> {
  const server = http.createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://gateway');
    const fail = (status: number, message: string): void => void response.writeHead(status, { 'content-type': 'text/plain' }).end(message);
    if (token === '' || request.headers.authorization !== `Bearer ${token}`) return fail(401, 'unauthenticated');
    try {
      if (url.pathname === '/segments') {
        const names = fs.readdirSync(shmDir, { withFileTypes: true }).filter((d) => d.isFile() && !d.name.startsWith('.')).map((d) => d.name);
        return void response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(names));
      }
      if (url.pathname === '/admin-token') {
        const file = path.join(shmDir, '.admin-token');
        return fs.existsSync(file) ? void response.writeHead(200).end(fs.readFileSync(file, 'utf8').trim()) : fail(404, 'no .admin-token on the volume');
      }
      const name = /^\/segments\/([^/]+)$/.exec(url.pathname)?.[1];
      if (name === undefined) return fail(404, 'not found');
      const offset = Number(url.searchParams.get('offset'));
      const length = Number(url.searchParams.get('length'));
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) return fail(400, 'offset and length: non-negative integers');
      const out = Buffer.alloc(length);
      const fd = fs.openSync(path.join(shmDir, path.basename(decodeURIComponent(name))), 'r');
      try {
        fs.readSync(fd, out, 0, length, offset);
      } finally {
        fs.closeSync(fd);
      }
      response.writeHead(200, { 'content-type': 'application/octet-stream' }).end(out);
    } catch (error) {
      fail((error as NodeJS.ErrnoException).code === 'ENOENT' ? 404 : 500, error instanceof Error ? error.message : String(error));
    }
  });
  return new Promise((resolve) => server.listen(port, '0.0.0.0', resolve));
}

async function main(): Promise<void> {
  const routes = (process.env.GATEWAY_ROUTES ?? '').split(',').filter((r) => r !== '');
  await Promise.all(
    routes.map((route) => {
      const match = /^(\d+)=([^:]+):(\d+)$/.exec(route);
      if (match === null) throw new Error(`GATEWAY_ROUTES: ${route} is not <listen port>=<service>:<port>`);
      return forward(Number(match[1]), match[2]!, Number(match[3]));
    }),
  );
  await serveSegments(Number(process.env.GATEWAY_SEGMENTS_PORT));
  process.stdin.on('end', () => process.exit(0)).resume();
  process.stdout.write('gateway ready\n');
}

main().catch((error: unknown) => {
  process.stderr.write(`gateway: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
