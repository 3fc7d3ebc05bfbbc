import { credentials, status as Code, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { pci } from '@p2p/proto';
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
  async function serverAnsweringAfter(delayMs: number | undefined, env: NodeJS.ProcessEnv = {}) {
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
    const server = await startServer({ name: 'test', config, services: [{ name: 'p2p.pci.v1.PciEmuService', definition: pci.PciEmuServiceService, implementation }], protoFiles: [] });
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
});
