import { credentials, status as Code } from '@grpc/grpc-js';
import { expect } from 'chai';
import { errno } from '@p2p/errno';
import { fault, pci } from '@p2p/proto';
import { Registry } from 'prom-client';
import { loadServerConfig } from './config';
import { type RunningServer, startServer } from './grpc-server';
import { unary } from './handlers';
import { HANDLING_BUCKETS, MethodTally, registerHandlingSeconds } from './method-tally';

const LIST = '/p2p.pci.v1.PciEmuService/ListFunctions';
const GET = '/p2p.pci.v1.PciEmuService/GetFunction';
const ADD_RULE = '/p2p.fault.v1.FaultInjectionService/AddFaultRule';

/** One line of the Prometheus text format. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function samplesOf(text: string): Sample[] {
  return text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const [, name = '', labels = '', value = ''] = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line) ?? [];
      return { name, labels: Object.fromEntries([...labels.matchAll(/(\w+)="([^"]*)"/g)].map(([, key, v]) => [key, v])), value: Number(value) };
    });
}

/** The value of the one sample of `name` whose labels include `labels`. */
function valueOf(samples: Sample[], name: string, labels: Record<string, string>): number {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([key, v]) => s.labels[key] === v));
  expect(found, `${name} ${JSON.stringify(labels)}`).to.have.length(1);
  return found[0].value;
}

describe('server metrics on /metrics', () => {
  let server: RunningServer;
  let samples: Sample[];

  before(async () => {
    const config = loadServerConfig('TEST', { port: 0, metricsPort: 0 }, { TEST_HOST: '127.0.0.1', LOG_LEVEL: 'silent' });
    const implementation = {
      listFunctions: unary(() => ({ functions: [] })),
      getFunction: unary(() => {
        throw errno('ENODEV', 'no such function');
      }),
    } as unknown as pci.PciEmuServiceServer;
    server = await startServer({ name: 'test', config, services: [{ name: 'p2p.pci.v1.PciEmuService', definition: pci.PciEmuServiceService, implementation }], protoFiles: [] });
    const address = `127.0.0.1:${server.port}`;
    const client = new pci.PciEmuServiceClient(address, credentials.createInsecure());
    const faults = new fault.FaultInjectionServiceClient(address, credentials.createInsecure());
    for (let i = 0; i < 3; i++) await new Promise((resolve) => client.listFunctions({}, resolve));
    await new Promise((resolve) => client.getFunction({ bdf: '0000:03:00.0' }, resolve));
    // Refused by the access check before any handler: the administrator's alone.
    await new Promise((resolve) => faults.addFaultRule({ rule: fault.FaultRule.fromPartial({ methodPattern: '*' }) }, resolve));
    client.close();
    faults.close();
    samples = samplesOf(await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text());
  });

  after(() => server.shutdown('test done'));

  it('counts calls by method and status code, those an interceptor refused too (grpc_server_handled_total)', () => {
    expect(valueOf(samples, 'grpc_server_handled_total', { method: LIST, code: 'OK', service: 'test' })).to.equal(3);
    expect(valueOf(samples, 'grpc_server_handled_total', { method: GET, code: Code[Code.NOT_FOUND] })).to.equal(1);
    expect(valueOf(samples, 'grpc_server_handled_total', { method: ADD_RULE, code: Code[Code.PERMISSION_DENIED] })).to.equal(1);
  });

  it('exports handling times by method as a histogram: cumulative buckets, +Inf, _sum and _count (grpc_server_handling_seconds)', () => {
    const buckets = [...HANDLING_BUCKETS.map(String), '+Inf'].map((le) => valueOf(samples, 'grpc_server_handling_seconds_bucket', { method: LIST, le, service: 'test' }));
    expect(buckets).to.deep.equal([...buckets].sort((a, b) => a - b));
    expect(buckets.at(-1)).to.equal(3);
    expect(valueOf(samples, 'grpc_server_handling_seconds_count', { method: LIST })).to.equal(3);
    expect(valueOf(samples, 'grpc_server_handling_seconds_sum', { method: LIST })).to.be.within(Number.MIN_VALUE, 3 * 5);
    expect(valueOf(samples, 'grpc_server_handling_seconds_count', { method: GET })).to.equal(1);
  });

  it("counts a duration equal to a bucket's bound in that bucket (le: at most)", async () => {
    const registry = new Registry();
    const tally = new MethodTally(LIST);
    registerHandlingSeconds(registry, new Map([[LIST, tally]]));
    tally.record(Code.OK, 0.001);
    tally.record(Code.OK, 60);
    const exported = samplesOf(await registry.metrics());
    expect(valueOf(exported, 'grpc_server_handling_seconds_bucket', { le: '0.0005' })).to.equal(0);
    expect(valueOf(exported, 'grpc_server_handling_seconds_bucket', { le: '0.001' })).to.equal(1);
    expect(valueOf(exported, 'grpc_server_handling_seconds_bucket', { le: '5' })).to.equal(1);
    expect(valueOf(exported, 'grpc_server_handling_seconds_bucket', { le: '+Inf' })).to.equal(2);
    expect(valueOf(exported, 'grpc_server_handling_seconds_sum', {})).to.equal(60.001);
  });
});
