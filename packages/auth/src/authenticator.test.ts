import { Metadata } from '@grpc/grpc-js';
import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { Authenticator } from './authenticator';
import { ADMIN, ANONYMOUS, type Caller, PLATFORM } from './caller';
import { bearerMetadata } from './metadata';
import { newToken } from './tokens';

const PID = 4242;

describe('Authenticator', () => {
  const adminToken = newToken();
  const platformToken = newToken();
  const credential = newToken();
  /** The live processes' credentials, as the registry knows them, and every token it was asked about. */
  let live: Map<string, number>;
  let asked: string[];
  let auth: Authenticator;

  beforeEach(() => {
    live = new Map([[credential, PID]]);
    asked = [];
    auth = new Authenticator(
      { adminToken, platformToken },
      {
        resolve: (token) => {
          asked.push(token);
          return live.get(token);
        },
      },
    );
  });

  const callerOf = (token: string): Caller | Promise<Caller> => auth.callerOf(bearerMetadata(token));
  const refusal = (token: string): ErrnoError => {
    try {
      callerOf(token);
    } catch (error) {
      return error as ErrnoError;
    }
    return expect.fail('the call was let through');
  };

  it('tells the administrator, the platform and a process apart, and never asks the registry about the secrets, however many process calls came before', () => {
    for (let i = 0; i < 3; i++) expect(callerOf(credential)).to.deep.equal({ kind: 'process', pid: PID });
    expect(callerOf(adminToken)).to.equal(ADMIN);
    expect(callerOf(platformToken)).to.equal(PLATFORM);
    expect(asked).to.deep.equal([credential, credential, credential]);
  });

  it('refuses a credential with EPERM once its process has exited, though it proved the process before', () => {
    expect(callerOf(credential)).to.deep.equal({ kind: 'process', pid: PID });
    live.delete(credential);
    for (let i = 0; i < 2; i++) expect(refusal(credential).errno).to.equal('EPERM');
  });

  it('refuses a forged credential with EPERM', () => {
    expect(refusal(newToken()).errno).to.equal('EPERM');
  });

  it('takes a call without a credential as anonymous', () => {
    expect(auth.callerOf(new Metadata())).to.equal(ANONYMOUS);
  });

  it('takes any other token as anonymous on a server that knows no processes', () => {
    const platformOnly = new Authenticator({ adminToken, platformToken });
    expect(platformOnly.callerOf(bearerMetadata(credential))).to.equal(ANONYMOUS);
    expect(platformOnly.callerOf(bearerMetadata(platformToken))).to.equal(PLATFORM);
  });

  it('answers a credential the registry resolves later once it has', async () => {
    const later = new Authenticator({ adminToken, platformToken }, { resolve: (token) => Promise.resolve(token === credential ? PID : undefined) });
    for (let i = 0; i < 2; i++) expect(await later.callerOf(bearerMetadata(credential))).to.deep.equal({ kind: 'process', pid: PID });
    expect(await later.callerOf(bearerMetadata(adminToken))).to.equal(ADMIN);
  });
});
