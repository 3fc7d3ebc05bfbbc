import { topologyFromObject } from './load-topology';
import type { Topology } from './topology';
import type { TopologyInput } from './topology-schema';

/**
 * The built-in machine: one host bridge, two root ports, a switch behind each.
 *
 *   hb0 ─ 00:01.0 ─ swA 01:00.0 ─┬ 02:00.0 ─ nvme0  03:00.0
 *       │                        └ 02:01.0 ─ nic0   04:00.0
 *       └ 00:02.0 ─ swB 05:00.0 ─┬ 06:00.0 ─ accel0 07:00.0
 *                                ├ 06:01.0 ─ nvme1  08:00.0
 *                                └ 06:02.0 ─ nic1   09:00.0
 *
 * Peers under one switch reach each other through it (BUS_ADDR); peers under
 * different switches go through the host bridge, which allows it. ACS is off.
 */
export const DEFAULT_TOPOLOGY: TopologyInput = {
  hostBridges: [
    {
      name: 'hb0',
      p2pAllowed: true,
      rootPorts: [
        {
          bdf: '00:01.0',
          switch: {
            name: 'swA',
            bdf: '01:00.0',
            downstreamPorts: [
              { bdf: '02:00.0', functions: [{ kind: 'nvme', name: 'nvme0', bdf: '03:00.0' }] },
              { bdf: '02:01.0', functions: [{ kind: 'nic', name: 'nic0', bdf: '04:00.0' }] },
            ],
          },
        },
        {
          bdf: '00:02.0',
          switch: {
            name: 'swB',
            bdf: '05:00.0',
            downstreamPorts: [
              { bdf: '06:00.0', functions: [{ kind: 'accel', name: 'accel0', bdf: '07:00.0' }] },
              { bdf: '06:01.0', functions: [{ kind: 'nvme', name: 'nvme1', bdf: '08:00.0' }] },
              { bdf: '06:02.0', functions: [{ kind: 'nic', name: 'nic1', bdf: '09:00.0' }] },
            ],
          },
        },
      ],
    },
  ],
};

export function defaultTopology(): Topology {
  return topologyFromObject(DEFAULT_TOPOLOGY);
}
