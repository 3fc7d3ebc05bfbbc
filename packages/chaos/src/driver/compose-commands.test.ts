import { expect } from 'chai';
import { composeFaults, dialAddress, networkCommand } from './compose-commands';

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

  it('partitions on the project network and dials the published port on loopback', () => {
    expect(networkCommand('disconnect', 'p2p_default', 'abc')).to.deep.equal({ program: 'docker', args: ['network', 'disconnect', 'p2p_default', 'abc'] });
    expect(dialAddress('0.0.0.0:49153\n[::]:49153\n')).to.equal('127.0.0.1:49153');
  });
});
