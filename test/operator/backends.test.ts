import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { endpointState, parseWeight, serviceBackends } from '../../src/operator/compute/backends.ts';
import type { EndpointSlice, Pod } from '../../src/operator/kinds.ts';

function slice(name: string, family: 'IPv4' | 'IPv6' | 'FQDN', endpoints: EndpointSlice['endpoints']): EndpointSlice {
  return { metadata: { name, namespace: 'ns', labels: { 'kubernetes.io/service-name': 'svc' } }, addressType: family, endpoints };
}
const podRef = (name: string) => ({ kind: 'Pod', name, namespace: 'ns', uid: `uid-${name}` });
function pods(list: Record<string, { weight?: string; ips?: string[]; node?: string }>): (ns: string, name: string) => Pod | undefined {
  return (_ns, name) => {
    const p = list[name];
    if (p === undefined) return undefined;
    return {
      metadata: { name, namespace: 'ns', uid: `uid-${name}`, ...(p.weight !== undefined ? { annotations: { 'fulcrum.dev/weight': p.weight } } : {}) },
      spec: { nodeName: p.node ?? 'n1' },
      status: { podIPs: (p.ips ?? []).map((ip) => ({ ip })) },
    };
  };
}

describe('compute/backends', () => {
  it('reads endpoint conditions as the API documents them', () => {
    const cases: [Parameters<typeof endpointState>[0], string][] = [
      [undefined, 'ready'],
      [{}, 'ready'],
      [{ ready: true }, 'ready'],
      [{ ready: null }, 'ready'],
      [{ ready: false }, 'out'],
      [{ ready: false, serving: true, terminating: true }, 'draining'],
      [{ ready: false, serving: false, terminating: true }, 'out'],
      [{ ready: true, terminating: true }, 'draining'],
      [{ terminating: true }, 'out'],
      [{ ready: false, serving: true, terminating: false }, 'out'],
    ];
    for (const [conditions, want] of cases) assert.equal(endpointState(conditions), want, JSON.stringify(conditions));
  });

  it('parses weights', () => {
    const cases: [string | undefined, string][] = [[undefined, 'ok:1'], ['0', 'ok:0'], ['10000', 'ok:10000'], [' 5 ', 'ok:5'], ['10001', 'invalid'], ['-1', 'invalid'], ['1.5', 'invalid'], ['x', 'invalid'], ['', 'invalid']];
    for (const [text, want] of cases) {
      const r = parseWeight(text);
      assert.equal(r.kind === 'ok' ? `ok:${r.weight}` : 'invalid', want, String(text));
    }
  });

  it('splits families, weights ready endpoints, drains terminating ones, drops the rest', () => {
    const out = serviceBackends([
      slice('s4', 'IPv4', [
        { addresses: ['10.0.0.2'], conditions: { ready: true }, nodeName: 'n1', targetRef: podRef('b') },
        { addresses: ['10.0.0.1'], conditions: { ready: true }, nodeName: 'n2', targetRef: podRef('a') },
        { addresses: ['10.0.0.3'], conditions: { ready: false, serving: true, terminating: true }, targetRef: podRef('c') },
        { addresses: ['10.0.0.4'], conditions: { ready: false } },
      ]),
      slice('s6', 'IPv6', [{ addresses: ['FD00::1'], conditions: { ready: true }, nodeName: 'n1', targetRef: podRef('a') }]),
      slice('fqdn', 'FQDN', [{ addresses: ['example.com'], conditions: { ready: true } }]),
    ], pods({ a: { weight: '5', ips: ['10.0.0.1', 'fd00::1'] }, b: { weight: 'lots' }, c: { node: 'n3' } }));
    assert.deepEqual(out[4].map((b) => [b.address, b.weight, b.state, b.nodeName]), [
      ['10.0.0.1', 5, 'ready', 'n2'], ['10.0.0.2', 1, 'ready', 'n1'], ['10.0.0.3', 0, 'draining', 'n3'],
    ]);
    assert.deepEqual(out[6].map((b) => [b.address, b.weight]), [['fd00::1', 5]]);
    assert.deepEqual(out[4][0]!.pod, { namespace: 'ns', name: 'a', uid: 'uid-a', addresses: ['10.0.0.1', 'fd00::1'] });
    assert.deepEqual(out[4][1]!.pod?.addresses, ['10.0.0.2'], 'no Pod IPs known: the endpoint address');
    assert.deepEqual(out.issues, [{ kind: 'invalidWeight', pod: 'ns/b', value: 'lots' }]);
  });

  it('keeps the better state when an address appears in two slices', () => {
    const out = serviceBackends([
      slice('a', 'IPv4', [{ addresses: ['10.0.0.1'], conditions: { ready: false, serving: true, terminating: true } }]),
      slice('b', 'IPv4', [{ addresses: ['10.0.0.1'], conditions: { ready: true } }]),
    ], pods({}));
    assert.deepEqual(out[4].map((b) => [b.address, b.state, b.weight]), [['10.0.0.1', 'ready', 1]]);
  });

  it('ignores addresses of the wrong family inside a slice', () => {
    const out = serviceBackends([slice('a', 'IPv4', [{ addresses: ['fd00::1', '10.0.0.1'], conditions: {} }])], pods({}));
    assert.deepEqual(out[4].map((b) => b.address), ['10.0.0.1']);
    assert.deepEqual(out[6], []);
  });
});
