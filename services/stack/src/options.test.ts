import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { parseStackOptions } from './options';

describe('npm start options', () => {
  it('without --hosts runs one host on the default ports', () => {
    expect(parseStackOptions([], {})).to.deep.equal({ hosts: undefined, hostIndex: undefined, bases: { portBase: 50051, metricsPortBase: 9451 }, help: false });
  });

  it('takes --hosts from the command line (npm start -- --hosts 4)', () => {
    expect(parseStackOptions(['--hosts', '4'], {}).hosts).to.equal(4);
  });

  it('takes npm start --hosts 16, which npm passes as npm_config_hosts=true and the argument 16', () => {
    expect(parseStackOptions(['16'], { npm_config_hosts: 'true' }).hosts).to.equal(16);
  });

  it('takes npm start --hosts=16, which npm passes as npm_config_hosts=16', () => {
    expect(parseStackOptions([], { npm_config_hosts: '16' }).hosts).to.equal(16);
  });

  it('is EINVAL for an argument that is not an option', () => {
    expect(() => parseStackOptions(['16'], {})).to.throw(ErrnoError, 'unexpected argument 16').with.property('errno', 'EINVAL');
  });

  it('takes P2P_HOSTS and P2P_PORT_BASE from the environment, the command line winning', () => {
    const options = parseStackOptions(['--port-base', '40001'], { P2P_HOSTS: '2', P2P_PORT_BASE: '30001', P2P_METRICS_PORT_BASE: '0' });
    expect(options.hosts).to.equal(2);
    expect(options.bases).to.deep.equal({ portBase: 40001, metricsPortBase: 0 });
  });

  it('is EINVAL for a count that is not a whole number of hosts (npm start --hosts with no value sets "true")', () => {
    expect(() => parseStackOptions([], { npm_config_hosts: 'true' })).to.throw(ErrnoError, '--hosts true').with.property('errno', 'EINVAL');
    expect(() => parseStackOptions(['--hosts', '0'], {})).to.throw(ErrnoError, '--hosts 0').with.property('errno', 'EINVAL');
  });

  it('is EINVAL for an option it does not know', () => {
    expect(() => parseStackOptions(['--host', '2'], {})).to.throw(ErrnoError, '--host').with.property('errno', 'EINVAL');
  });
});
