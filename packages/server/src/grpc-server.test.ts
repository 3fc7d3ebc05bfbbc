import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { credentials, makeClientConstructor, status as Code, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Authenticator, bearerInterceptor, newToken } from '@p2p/auth';
import { ErrnoError } from '@p2p/errno';
import { fault, pci } from '@p2p/proto';
import { errnoOf, grpcCodeFor } from '@p2p/status';
import { service as healthService } from 'grpc-health-check';
import { loadServerConfig } from './config';
import { startServer } from './grpc-server';
import { unary } from './handlers';

const silent = { port: 0, metricsPort: -1 };

describe('loadServerConfig', () => {
  it('takes defaults and prefixed overrides', () => {
    const config = loadServerConfig('PCI_EMU', { port: 50051, metricsPort: 9451 }, { PCI_EMU_PORT: '6000', LOG_LEVEL: 'warn' });
    expect(config).to.include({ port: 6000, metricsPort: 9451, host: '0.0.0.0', logLevel: 'warn', shutdownTimeoutMs: 5000 });
  });

  it('fails with EINVAL naming every bad variable', () => {
    const bad = (): unknown => loadServerConfig('PCI_EMU', silent, { PCI_EMU_PORT: '70000', PCI_EMU_LOG_LEVEL: 'loud' });
    expect(bad).to.throw(ErrnoError).that.satisfies((e: ErrnoError) => e.errno === 'EINVAL' && /PCI_EMU_PORT/.test(e.detail) && /PCI_EMU_LOG_LEVEL/.test(e.detail));
  });
});

describe('startServer', () => {
  /** A server whose ListFunctions answers after `delayMs` (never, if undefined). */
  async function serverAnsweringAfter(delayMs: number | undefined, env: NodeJS.ProcessEnv = {}, authenticator?: Authenticator) {
    const config = loadServerConfig('TEST', silent, { TEST_HOST: '127.0.0.1', LOG_LEVEL: 'silent', ...env });
    let entered!: () => void;
    const handlerEntered = new Promise<void>((resolve) => (entered = resolve));
    const implementation = {
      listFunctions: unary(() => {
        entered();
        return new Promise<pci.ListFunctionsResponse>((resolve) => delayMs !== undefined && setTimeout(() => resolve({ functions: [] }), delayMs));
      }),
      bulkWrite: unary(() => ({ decoded: true })),
    } as unknown as pci.PciEmuServiceServer;
    const server = await startServer({ name: 'test', config, services: [{ name: 'p2p.pci.v1.PciEmuService', definition: pci.PciEmuServiceService, implementation }], protoFiles: [], authenticator });
    const client = new pci.PciEmuServiceClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
    const list = (): Promise<ServiceError | null> => new Promise((resolve) => client.listFunctions({}, (error) => resolve(error)));
    return { server, client, list, handlerEntered };
  }

  it('drains an in-flight call before stopping', async () => {
    const { server, client, list, handlerEntered } = await serverAnsweringAfter(150);
    const call = list();
    await handlerEntered;
    await server.shutdown('test');
    expect(await call).to.equal(null);
    client.close();
  });

  it('cuts calls that outlive the shutdown timeout', async () => {
    const { server, client, list, handlerEntered } = await serverAnsweringAfter(undefined, { TEST_SHUTDOWN_TIMEOUT_MS: '200' });
    const call = list();
    await handlerEntered;
    const started = Date.now();
    await server.shutdown('test');
    expect(Date.now() - started).to.be.within(150, 2000);
    expect((await call)?.code).to.be.oneOf([Code.UNAVAILABLE, Code.CANCELLED, Code.INTERNAL]);
    client.close();
  });

  it('enforces the message-size limit', async () => {
    const { server, client } = await serverAnsweringAfter(0, { TEST_MAX_MESSAGE_BYTES: '65536' });
    const error = await new Promise<ServiceError | null>((resolve) =>
      client.bulkWrite({ bdf: '0000:03:00.0', bar: 2, offset: 0n, data: Buffer.alloc(128 * 1024) }, (e) => resolve(e)),
    );
    expect(error?.code).to.equal(Code.RESOURCE_EXHAUSTED);
    client.close();
    await server.shutdown('test');
  });

  it('keeps the fault service and health checks out of reach of a rule that aborts everything', async () => {
    const adminToken = newToken();
    const { server, client, list } = await serverAnsweringAfter(0, {}, new Authenticator({ adminToken, platformToken: newToken() }));
    const address = `127.0.0.1:${server.port}`;
    const faults = new fault.FaultInjectionServiceClient(address, credentials.createInsecure(), { interceptors: [bearerInterceptor(adminToken)] });
    const health = new (makeClientConstructor(healthService, 'grpc.health.v1.Health'))(address, credentials.createInsecure());
    const rule = fault.FaultRule.fromPartial({ methodPattern: '*', abort: { errno: 'EIO', percentage: 100 } });
    await new Promise<void>((resolve, reject) => faults.addFaultRule({ rule }, (error) => (error ? reject(error) : resolve())));
    expect((await list())?.code).to.equal(grpcCodeFor('EIO'));

    const checked = await new Promise<{ status: string }>((resolve, reject) =>
      health.Check({ service: '' }, (error: ServiceError | null, response: { status: string }) => (error ? reject(error) : resolve(response))),
    );
    expect(checked.status).to.equal('SERVING');
    const cleared = await new Promise<fault.ClearFaultRulesResponse>((resolve, reject) =>
      faults.clearFaultRules({}, (error, response) => (error ? reject(error) : resolve(response))),
    );
    expect(cleared.removed).to.equal(1);
    expect(await list()).to.equal(null);

    for (const c of [faults, health, client]) c.close();
    await server.shutdown('test');
  });

  it('answers grpc.health.v1.Health/Check through reflection alone, as `buf curl` calls it', async function () {
    this.timeout(30_000);
    const { server, client } = await serverAnsweringAfter(0);
    const buf = path.join(require.resolve('@bufbuild/buf/package.json'), '..', 'bin', 'buf');
    const url = `http://127.0.0.1:${server.port}/grpc.health.v1.Health/Check`;
    const { stdout } = await promisify(execFile)(buf, ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', url]);
    expect(JSON.parse(stdout)).to.deep.equal({ status: 'SERVING' });
    client.close();
    await server.shutdown('test');
  });

  it("exports the process's metrics (resident memory, event-loop lag) on /metrics", async () => {
    const { server, client } = await serverAnsweringAfter(0, { TEST_METRICS_PORT: '0' });
    const text = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
    expect(text).to.match(/^process_resident_memory_bytes\{service="test"\} \d+/m);
    expect(text).to.match(/^nodejs_eventloop_lag_seconds\{service="test"\} /m);
    client.close();
    await server.shutdown('test');
  });

  it('keeps fault rules for the administrator: anyone else gets EACCES and nothing changes', async () => {
    const adminToken = newToken();
    const platformToken = newToken();
    const { server, client } = await serverAnsweringAfter(0, {}, new Authenticator({ adminToken, platformToken }));
    const address = `127.0.0.1:${server.port}`;
    const rule = fault.FaultRule.fromPartial({ methodPattern: '*', abort: { errno: 'EIO', percentage: 100 } });
    for (const interceptors of [[], [bearerInterceptor(platformToken)], [bearerInterceptor(newToken())]]) {
      const faults = new fault.FaultInjectionServiceClient(address, credentials.createInsecure(), { interceptors });
      const error = await new Promise<ServiceError | null>((resolve) => faults.addFaultRule({ rule }, (e) => resolve(e)));
      expect(errnoOf(error)).to.equal('EACCES');
      faults.close();
    }
    expect(server.faults.list()).to.deep.equal([]);
    client.close();
    await server.shutdown('test');
  });
});
