import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { choosePool, isOurService, serviceVip } from '../../src/operator/compute/service.ts';
import type { PoolCandidate } from '../../src/operator/compute/service.ts';
import type { Service } from '../../src/operator/kinds.ts';

function svc(extra: { annotations?: Record<string, string>; labels?: Record<string, string>; spec?: Partial<NonNullable<Service['spec']>> } = {}): Service {
  return {
    metadata: { name: 'web', namespace: 'team-a', ...(extra.annotations ? { annotations: extra.annotations } : {}), ...(extra.labels ? { labels: extra.labels } : {}) },
    spec: { type: 'LoadBalancer', loadBalancerClass: 'fulcrum.dev/xdp', ports: [{ port: 443, protocol: 'TCP' }, { port: 80 }, { port: 53, protocol: 'UDP' }], ...extra.spec },
  };
}
const pool = (name: string, extra: Partial<PoolCandidate['spec']> = {}, available?: number): PoolCandidate => ({
  name, created: '2026-01-01T00:00:00Z', spec: { addresses: ['192.0.2.0/24'], autoAssign: true, avoidBuggyIPs: false, ...extra }, available,
});

describe('compute/service', () => {
  it('recognises only LoadBalancer Services of our class', () => {
    assert.equal(isOurService(svc()), true);
    assert.equal(isOurService(svc({ spec: { loadBalancerClass: 'other.example/lb' } })), false);
    assert.equal(isOurService(svc({ spec: { loadBalancerClass: null } })), false);
    assert.equal(isOurService(svc({ spec: { type: 'ClusterIP' } })), false);
    assert.equal(isOurService(undefined), false);
  });

  it('takes the address from the annotation, then loadBalancerIP, then a pool', () => {
    const cases: { name: string; service: Service; want: unknown }[] = [
      { name: 'annotation', service: svc({ annotations: { 'fulcrum.dev/address': '2001:DB8::1' }, spec: { loadBalancerIP: '192.0.2.9' } }), want: { address: '2001:db8::1' } },
      { name: 'loadBalancerIP', service: svc({ spec: { loadBalancerIP: '192.0.2.9' } }), want: { address: '192.0.2.9' } },
      { name: 'pool annotation', service: svc({ annotations: { 'fulcrum.dev/pool': 'special' } }), want: { pool: 'special' } },
      { name: 'auto pool', service: svc(), want: { pool: 'general' } },
      { name: 'bad address', service: svc({ annotations: { 'fulcrum.dev/address': 'nope' } }), want: 'invalidAnnotation' },
    ];
    for (const c of cases) {
      const out = serviceVip({ service: c.service, namespaceLabels: {}, pools: [pool('general')] });
      if (typeof c.want === 'string') assert.equal(out.kind, c.want, c.name);
      else {
        assert.equal(out.kind, 'vip', c.name);
        if (out.kind === 'vip') {
          assert.deepEqual({ address: out.spec.address, pool: out.spec.pool }, { address: undefined, pool: undefined, ...(c.want as object) }, c.name);
        }
      }
    }
  });

  it('maps ports, session affinity, sharing key and family', () => {
    const out = serviceVip({
      service: svc({ annotations: { 'fulcrum.dev/allow-shared-ip': 'k' }, spec: { sessionAffinity: 'ClientIP', ipFamilies: ['IPv6'], ports: [{ port: 80 }, { port: 80, protocol: 'TCP' }, { port: 9, protocol: 'SCTP' }, { port: 53, protocol: 'UDP' }] } }),
      namespaceLabels: {}, pools: [pool('v6', { addresses: ['2001:db8::/64'] })],
    });
    assert.equal(out.kind, 'vip');
    if (out.kind !== 'vip') return;
    assert.deepEqual(out.spec, {
      pool: 'v6', ports: [{ port: 80, protocol: 'TCP' }, { port: 53, protocol: 'UDP' }], backends: { service: 'web' }, encapsulation: 'ipip',
      hashing: { sourceIpOnly: true, lruBypass: false },
    });
    assert.deepEqual(out.annotations, { 'fulcrum.dev/allow-shared-ip': 'k', 'fulcrum.dev/ip-family': 'IPv6' });
    assert.deepEqual(out.unsupportedPorts.map((p) => p.protocol), ['SCTP']);
  });

  it('refuses a Service with no TCP or UDP port', () => {
    assert.equal(serviceVip({ service: svc({ spec: { ports: [{ port: 9, protocol: 'SCTP' }] } }), namespaceLabels: {}, pools: [pool('a')] }).kind, 'noSupportedPorts');
  });

  it('chooses pools: selectors, autoAssign, family, room, stickiness', () => {
    const base = { service: svc({ labels: { tier: 'edge' } }), namespaceLabels: { team: 'a' } };
    const cases: { name: string; pools: PoolCandidate[]; current?: string; service?: Service; want: string | undefined }[] = [
      { name: 'none', pools: [], want: undefined },
      { name: 'autoAssign off', pools: [pool('manual', { autoAssign: false })], want: undefined },
      { name: 'namespace selector mismatch', pools: [pool('b', { namespaceSelector: { matchLabels: { team: 'b' } } })], want: undefined },
      { name: 'specific before catch-all', pools: [pool('any'), pool('edge', { serviceSelector: { matchLabels: { tier: 'edge' } } })], want: 'edge' },
      { name: 'room before full', pools: [pool('full', {}, 0), pool('roomy', {}, 5)], want: 'roomy' },
      { name: 'by name', pools: [pool('b'), pool('a')], want: 'a' },
      { name: 'current pool kept', pools: [pool('a'), pool('b')], current: 'b', want: 'b' },
      { name: 'current pool no longer eligible', pools: [pool('a'), pool('b', { autoAssign: false })], current: 'b', want: 'a' },
      { name: 'family', pools: [pool('v4'), pool('v6', { addresses: ['2001:db8::/64'] })], service: svc({ spec: { ipFamilies: ['IPv6'] } }), want: 'v6' },
    ];
    for (const c of cases) {
      assert.equal(choosePool({ ...base, ...(c.service ? { service: c.service } : {}), pools: c.pools, currentPool: c.current }), c.want, c.name);
    }
  });
});
