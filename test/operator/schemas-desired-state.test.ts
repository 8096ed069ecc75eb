// BalancerNode.spec → NodeDesiredState (toNodeDesiredState), and the helpers the
// operator uses on parsed specs (vipPorts, poolRanges). Pure: no API server.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isFulcrumError } from '../../src/shared/errors.ts';
import {
  BalancerNodeSpec, LoadBalancerVipSpec, VipPoolSpec, parsePoolEntry, poolRanges, toNodeDesiredState, vipPorts,
} from '../../src/shared/api/index.ts';
import type { NetnsResolver } from '../../src/shared/api/index.ts';

const UID_A = '5f0c7a4e-7a1d-4c36-9e2b-6a3c1d2e4f50';
const UID_B = '0b6f9a8e-1c2d-4e3f-8a9b-0c1d2e3f4a5b';

const spec = BalancerNodeSpec.parse({
  vips: [
    { name: 'default/web', address: '2001:DB8::10', port: 443, protocol: 'TCP', backends: [{ address: '2001:db8:1::1' }, { address: '2001:db8:1::2', weight: 0 }] },
    { name: 'default/dns', address: '192.0.2.53', port: 0, protocol: 'UDP', encapsulation: 'gue', sourceIpOnly: true, backends: [{ address: '10.0.0.5', weight: 3 }] },
  ],
  decap: [
    { pod: 'default/web-0', podUID: UID_A, addresses: ['10.0.0.1', 'fd00::1'], vips: ['2001:db8::10'] },
    { pod: 'default/web-1', podUID: UID_B, addresses: ['10.0.0.2'], vips: ['192.0.2.53'], interface: 'net1' },
  ],
});

const table = new Map([[UID_A, '/proc/4242/ns/net']]);
const resolver: NetnsResolver = ({ podUID }) => table.get(podUID);

describe('toNodeDesiredState', () => {
  it('maps every VIP with its defaults, canonicalising addresses', () => {
    const { state } = toNodeDesiredState(spec, resolver, { generation: 7 });
    assert.equal(state.generation, 7);
    assert.deepEqual(state.vips, [
      {
        name: 'default/web', address: '2001:db8::10', port: 443, protocol: 'TCP', encapsulation: 'ipip', sourceIpOnly: false, lruBypass: false,
        backends: [{ address: '2001:db8:1::1', weight: 1 }, { address: '2001:db8:1::2', weight: 0 }],
      },
      {
        name: 'default/dns', address: '192.0.2.53', port: 0, protocol: 'UDP', encapsulation: 'gue', sourceIpOnly: true, lruBypass: false,
        backends: [{ address: '10.0.0.5', weight: 3 }],
      },
    ]);
  });

  it('takes each duty\'s network namespace from the resolver and lists the duties it cannot resolve', () => {
    const asked: string[] = [];
    const { state, unresolved } = toNodeDesiredState(spec, (pod) => {
      asked.push(`${pod.pod}@${pod.podUID}`);
      return resolver(pod);
    });
    assert.deepEqual(asked, [`default/web-0@${UID_A}`, `default/web-1@${UID_B}`]);
    assert.deepEqual(state.decap, [{ pod: 'default/web-0', netns: '/proc/4242/ns/net', interface: 'eth0', addresses: ['10.0.0.1', 'fd00::1'], vips: ['2001:db8::10'] }]);
    assert.deepEqual(unresolved, [{ pod: 'default/web-1', podUID: UID_B }]);
    assert.equal(state.generation, 0, 'generation defaults to 0');
  });

  it('maps an empty spec to an empty state', () => {
    const { state, unresolved } = toNodeDesiredState(BalancerNodeSpec.parse({}), resolver, { generation: 1 });
    assert.deepEqual(state, { generation: 1, vips: [], decap: [] });
    assert.deepEqual(unresolved, []);
  });

  it('rejects what the API server lets through but the contract does not: one VIP written two ways', () => {
    const twice = BalancerNodeSpec.parse({
      vips: [
        { name: 'a/x', address: '2001:db8::1', port: 80, protocol: 'TCP' },
        { name: 'b/y', address: '2001:DB8:0::1', port: 80, protocol: 'TCP' },
      ],
    });
    assert.throws(() => toNodeDesiredState(twice, resolver), (err: unknown) => {
      assert.ok(isFulcrumError(err, 'ERR_DESIRED_STATE'));
      assert.match(err.message, /TCP\/\[2001:db8::1\]:80 is also VIP a\/x/);
      return true;
    });
  });

  it('rejects one backend written two ways', () => {
    const twice = BalancerNodeSpec.parse({
      vips: [{ name: 'a/x', address: '192.0.2.1', port: 80, protocol: 'TCP', backends: [{ address: 'fd00::1' }, { address: 'FD00::1' }] }],
    });
    assert.throws(() => toNodeDesiredState(twice, resolver), (err: unknown) => isFulcrumError(err, 'ERR_DESIRED_STATE'));
  });
});

describe('helpers on parsed specs', () => {
  it('vipPorts: listed ports, or port 0 per protocol for allPorts', () => {
    const listed = LoadBalancerVipSpec.parse({ address: '192.0.2.1', ports: [{ port: 80 }, { port: 53, protocol: 'UDP' }], backends: { service: 'web' } });
    assert.deepEqual(vipPorts(listed), [{ port: 80, protocol: 'TCP' }, { port: 53, protocol: 'UDP' }]);
    const all = LoadBalancerVipSpec.parse({ address: '192.0.2.1', allPorts: { protocols: ['UDP', 'TCP'] }, backends: { service: 'web' } });
    assert.deepEqual(vipPorts(all), [{ port: 0, protocol: 'UDP' }, { port: 0, protocol: 'TCP' }]);
  });

  it('poolRanges: CIDRs and ranges as first..last, in spec order', () => {
    const pool = VipPoolSpec.parse({ addresses: ['192.0.2.0/28', '2001:db8::ff00-2001:db8::ffff', '198.51.100.7-198.51.100.7'] });
    assert.deepEqual(poolRanges(pool), [
      { family: 4, first: 0xc0000200n, last: 0xc000020fn },
      { family: 6, first: 0x20010db8000000000000000000000000n | 0xff00n, last: 0x20010db8000000000000000000000000n | 0xffffn },
      { family: 4, first: 0xc6336407n, last: 0xc6336407n },
    ]);
  });

  it('parsePoolEntry explains each problem', () => {
    assert.deepEqual(parsePoolEntry('192.0.2.9-192.0.2.1'), { kind: 'invalid', messages: ['a range must run from the lower address to the higher (192.0.2.100-192.0.2.110)'] });
    assert.deepEqual(parsePoolEntry('192.0.2.1-2001:db8::1'), { kind: 'invalid', messages: ['both ends of a range must be of one family'] });
    assert.equal(parsePoolEntry('192.0.2.5/28').kind, 'invalid');
  });
});
