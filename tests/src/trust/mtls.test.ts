import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { credentials, makeClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { channelCredentials, loadTlsConfig, readAdminToken, type TlsConfig } from '@p2p/auth';
import { RegistrySession } from '@p2p/dmabuf-client';
import { service as healthService } from 'grpc-health-check';
import { crossHostRead } from '../examples/cross-host-read';
import { readAccelBar } from '../examples/read-accel-bar';
import { RdmaStack } from '../harness/rdma-hosts';

const MiB = 1024 * 1024;
const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

/** Makes the development CA and certificates with the repo's script into `dir`; false without openssl. */
function makeCertificates(dir: string): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
  } catch {
    return false;
  }
  execFileSync('bash', [path.join(REPO_ROOT, 'deploy', 'scripts', 'make-dev-certs.sh'), dir], { stdio: 'ignore' });
  return true;
}

/** grpc.health.v1 Check over `creds`: the status, or the error that refused the connection. */
function check(address: string, creds: ReturnType<typeof credentials.createInsecure>): Promise<string | ServiceError> {
  const Health = makeClientConstructor(healthService, 'grpc.health.v1.Health');
  const client = new Health(address, creds, { 'grpc.ssl_target_name_override': 'localhost' });
  return new Promise((resolve) =>
    client.Check({ service: '' }, { deadline: Date.now() + 5000 }, (error: ServiceError | null, response: { status: string }) => {
      client.close();
      resolve(error ?? response.status);
    }),
  );
}

/**
 * Mutual TLS with every service its own process: the stack serves TLS and
 * asks each client for a certificate its CA signed; services call each
 * other, and the NICs each other's wire, over mutual TLS too.
 */
describe('mutual TLS (every service its own process)', function () {
  this.timeout(60_000);
  let dir: string;
  let stack: RdmaStack | undefined;
  let tls: TlsConfig;
  let stackEnv: Record<string, string>;

  before(async function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-certs-'));
    if (!makeCertificates(dir)) {
      console.warn('      no openssl on this machine: the mutual TLS test is skipped');
      this.skip();
    }
    stackEnv = { P2P_TLS_CA: path.join(dir, 'ca.crt'), P2P_TLS_CERT: path.join(dir, 'service.crt'), P2P_TLS_KEY: path.join(dir, 'service.key') };
    stack = await RdmaStack.start({ env: stackEnv });
    tls = loadTlsConfig({ P2P_TLS_CA: stackEnv.P2P_TLS_CA, P2P_TLS_CERT: path.join(dir, 'client.crt'), P2P_TLS_KEY: path.join(dir, 'client.key') });
  });

  after(async () => {
    await stack?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const addresses = (): string[] => [stack!.pciEmu.address, stack!.registry.address, stack!.vfioPci.address, ...stack!.nics.map((n) => n.process.address)];

  it('answers a client with a certificate the CA signed, on every service', async () => {
    for (const address of addresses()) expect(await check(address, channelCredentials(tls)), address).to.equal('SERVING');
  });

  it('checks the server certificate against P2P_TLS_SERVER_NAME instead of the host dialled', async () => {
    const named = (serverName: string): TlsConfig => ({ ...tls, serverName });
    for (const address of addresses()) {
      expect(await check(address, channelCredentials(named('dmabuf-registry'))), address).to.equal('SERVING');
      const refused = await check(address, channelCredentials(named('elsewhere.example')));
      expect((refused as ServiceError).code, address).to.be.oneOf([14 /* UNAVAILABLE */, 4 /* DEADLINE_EXCEEDED */]);
    }
  });

  it('refuses a plaintext client, a client without a certificate and one whose certificate another CA signed', async () => {
    const other = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-other-ca-'));
    try {
      makeCertificates(other);
      const strangers = [
        credentials.createInsecure(),
        credentials.createSsl(tls.ca),
        credentials.createSsl(tls.ca, fs.readFileSync(path.join(other, 'client.key')), fs.readFileSync(path.join(other, 'client.crt'))),
      ];
      for (const address of addresses()) {
        for (const creds of strangers) {
          const answer = await check(address, creds);
          expect(answer, address).to.not.equal('SERVING');
          expect((answer as ServiceError).code, address).to.be.oneOf([14 /* UNAVAILABLE */, 4 /* DEADLINE_EXCEEDED */]);
        }
      }
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  });

  it("runs the README example over mutual TLS: vfio-pci's export, both NICs and their wire", async () => {
    const { received, expected } = await readAccelBar({
      registry: stack!.registry.address,
      vfioPci: stack!.vfioPci.address,
      nicY: stack!.nics[0].process.address,
      nicX: stack!.nics[1].process.address,
      shmDir: stack!.shmDir,
      tls,
      length: 256 * 1024,
    });
    expect(received.equals(expected)).to.equal(true);
  });

  it("reads another host's accel0 BAR over mutual TLS: payloads on the NICs' bulk streams, TLS too", async () => {
    // Host B: a second TLS stack on the first one's wire port, sharing neither registry nor tmpfs with it.
    const hostB = await RdmaStack.start({ env: stackEnv, nicIps: ['127.0.0.4', '127.0.0.5'], wirePort: stack!.wirePort });
    try {
      const { received, expected } = await crossHostRead({
        hostA: { registry: stack!.registry.address, nic: stack!.nics[0].process.address },
        hostB: { registry: hostB.registry.address, vfioPci: hostB.vfioPci.address, nic: hostB.nics[1].process.address, adminToken: readAdminToken(hostB.shmDir, {}) },
        tls,
        length: MiB,
      });
      expect(received.equals(expected)).to.equal(true);
      // A bulk stream that did not come up over TLS would have left its NIC's warning, and the payload inline.
      const logs = [...stack!.nics, ...hostB.nics].flatMap((nic) => nic.process.logs).join('\n');
      expect(logs).to.not.match(/bulk stream/);
    } finally {
      await hostB.stop();
    }
  });

  it('opens a registry session over mutual TLS and refuses one without a client certificate', async () => {
    const session = await RegistrySession.open(stack!.registry.address, { name: 'mtls', shmDir: stack!.shmDir, tls, openTimeoutMs: 5000 });
    expect(session.pid).to.be.greaterThan(0);
    await session.close();
    const refused = await RegistrySession.open(stack!.registry.address, { name: 'no-cert', shmDir: stack!.shmDir, tls: { ca: tls.ca }, openTimeoutMs: 5000 }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).to.be.instanceOf(Error);
  });
});
