import { expect } from 'chai';
import { composeFaults, dialAddress, gatewayRun, networkCommand } from './compose-commands';

describe('compose driver commands', () => {
  it('kills a NIC by its compose name with SIGKILL, on the v2 plugin with the project flags', () => {
    expect(composeFaults.kill({ flavour: 'v2', file: 'docker-compose.yml', name: 'p2p' }, 'rdma-nic-1')).to.deep.equal({
      program: 'docker',
      args: ['compose', '-f', 'docker-compose.yml', '-p', 'p2p', 'kill', '-s', 'SIGKILL', 'rdma-nic-b'],
    });
  });

  it('pauses through docker-compose (v1) and starts every stopped service to revive', () => {
    expect(composeFaults.pause({ flavour: 'v1' }, 'dmabuf-registry')).to.deep.equal({ program: 'docker-compose', args: ['pause', 'dmabuf-registry'] });
    expect(composeFaults.revive({ flavour: 'v1', name: 'x' })).to.deep.equal({ program: 'docker-compose', args: ['-p', 'x', 'start'] });
  });

  it('heals a partition under the compose name the disconnect took away', () => {
    expect(networkCommand('disconnect', 'p2p_default', 'abc')).to.deep.equal({ program: 'docker', args: ['network', 'disconnect', 'p2p_default', 'abc'] });
    expect(networkCommand('connect', 'p2p_default', 'abc', 'rdma-nic-b')).to.deep.equal({ program: 'docker', args: ['network', 'connect', '--alias', 'rdma-nic-b', 'p2p_default', 'abc'] });
  });

  it('runs the gateway on the project network, the volume read-only, every port on loopback, routed to the compose names', () => {
    const { program, args } = gatewayRun({ name: 'g', image: 'p2p-dmabuf/services:dev', network: 'p2p_default', volumesFrom: 'abc', token: 't' });
    expect(program).to.equal('docker');
    expect(args.slice(0, 9)).to.deep.equal(['run', '-i', '--rm', '--name', 'g', '--network', 'p2p_default', '--volumes-from', 'abc:ro']);
    expect(args.filter((a) => a.startsWith('127.0.0.1::'))).to.deep.equal(['127.0.0.1::50051', '127.0.0.1::50052', '127.0.0.1::50053', '127.0.0.1::50054', '127.0.0.1::50055', '127.0.0.1::8080']);
    expect(args).to.include('GATEWAY_ROUTES=50051=pci-emu:50051,50052=vfio-pci:50052,50053=dmabuf-registry:50053,50054=rdma-nic-a:50054,50055=rdma-nic-b:50054');
    expect(args.slice(-3)).to.deep.equal(['p2p-dmabuf/services:dev', 'node', 'packages/chaos/dist/driver/compose-gateway-main.js']);
  });

  it('dials a published port on loopback', () => {
    expect(dialAddress('0.0.0.0:49153\n[::]:49153\n')).to.equal('127.0.0.1:49153');
  });
});
