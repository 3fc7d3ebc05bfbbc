import {
  credentials,
  makeClientConstructor,
  Server,
  ServerCredentials,
  type ServiceDefinition,
  type ServiceError,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { expect } from 'chai';
import { errno } from '@p2p/errno';
import { grpcCodeFor } from '@p2p/status';
import { faultInterceptor, type FaultInterceptorHooks } from './fault-interceptor';
import { type FaultDecision, FaultRuleSet } from './fault-rules';

const ECHO = '/test.v1.Echo/Echo';

const identity = (value: Buffer): Buffer => value;
const echoService: ServiceDefinition = {
  Echo: {
    path: ECHO,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};
const EchoClient = makeClientConstructor(echoService, 'test.v1.Echo');

/** A rule set that fails the way an unforeseen bug would. */
/** A set with a rule whose decision throws. */
class BrokenRuleSet extends FaultRuleSet {
  override get size(): number {
    return 1;
  }

  override decide(): FaultDecision {
    throw new Error('decide broke');
  }
}

/** Serves Echo behind the fault interceptor; `echo()` resolves to the call's error, or null. */
async function echoServer(rules: FaultRuleSet, hooks: FaultInterceptorHooks) {
  const server = new Server({ interceptors: [faultInterceptor(rules, hooks)] });
  const implementation: UntypedServiceImplementation = {
    Echo: (call: { request: Buffer }, callback: (error: null, value: Buffer) => void) => callback(null, call.request),
  };
  server.addService(echoService, implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  const client = new EchoClient(`127.0.0.1:${port}`, credentials.createInsecure());
  const echo = (): Promise<ServiceError | null> =>
    new Promise((resolve) => client.makeUnaryRequest(ECHO, identity, identity, Buffer.from('ping'), (error) => resolve(error)));
  const close = (): void => {
    client.close();
    server.forceShutdown();
  };
  return { echo, close };
}

describe('faultInterceptor', () => {
  it('aborts a call a rule matches with the errno status, and tells onFault', async () => {
    const rules = new FaultRuleSet();
    rules.add({ methodPattern: '/test.v1.Echo/*', abort: { errno: 'EIO', percentage: 100 }, maxActivations: 0 });
    const faults: Array<[string, number, boolean]> = [];
    const { echo, close } = await echoServer(rules, { onFault: (...fault) => faults.push(fault) });
    expect((await echo())?.code).to.equal(grpcCodeFor('EIO'));
    expect(faults).to.deep.equal([[ECHO, 0, true]]);
    close();
  });

  it('lets the call through and reports the error when deciding throws', async () => {
    const errors: Array<[string, unknown]> = [];
    const { echo, close } = await echoServer(new BrokenRuleSet(), { onError: (...report) => errors.push(report) });
    expect(await echo()).to.equal(null);
    expect(errors).to.have.length(1);
    expect(errors[0][0]).to.equal(ECHO);
    expect((errors[0][1] as Error).message).to.equal('decide broke');
    close();
  });

  it('still faults the call and reports the error when onFault throws', async () => {
    const rules = new FaultRuleSet();
    rules.add({ methodPattern: '*', abort: { errno: 'EIO', percentage: 100 }, maxActivations: 0 });
    const errors: unknown[] = [];
    const { echo, close } = await echoServer(rules, {
      onFault: () => {
        throw errno('EIO', 'log sink gone');
      },
      onError: (_method, error) => errors.push(error),
    });
    expect((await echo())?.code).to.equal(grpcCodeFor('EIO'));
    expect(errors).to.have.length(1);
    close();
  });

  it('lets the call through when deciding throws and no hooks are given', async () => {
    const { echo, close } = await echoServer(new BrokenRuleSet(), {});
    expect(await echo()).to.equal(null);
    close();
  });
});
