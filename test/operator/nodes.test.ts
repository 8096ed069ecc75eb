import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ServiceBackends } from '../../src/operator/compute/backends.ts';
import { balancerNodesFor, canonicalSpec, computeNodeSpecs, nodeSpec, placeNode, vipContribution } from '../../src/operator/compute/nodes.ts';
import type { NodeInfo, VipModel } from '../../src/operator/compute/nodes.ts';
import { NodeDesiredState } from '../../src/shared/desired-state.ts';

const nodes: NodeInfo[] = [
  { name: 'lb-b', labels: { 'fulcrum.dev/balancer': 'true', zone: 'b' } },
  { name: 'lb-a', labels: { 'fulcrum.dev/balancer': 'true', zone: 'a' } },
  { name: 'w1', labels: { zone: 'a' } },
  { name: 'w2' },
];

const vip = (key: string, address: string, extra: Partial<VipModel> = {}): VipModel => ({
  key, address, ports: [{ protocol: 'TCP', port: 80 }], encapsulation: 'ipip', sourceIpOnly: false, lruBypass: false, ...extra,
});

function backends(v4: [string, number, string?, string?][], v6: [string, number, string?, string?][] = []): ServiceBackends {
  const make = ([address, weight, node, podName]: [string, number, string?, string?]) => ({
    address, weight, state: weight === 0 ? 'draining' as const : 'ready' as const,
    ...(node !== undefined ? { nodeName: node } : {}),
    ...(podName !== undefined ? { pod: { namespace: 'ns', name: podName, uid: `uid-${podName}`, addresses: [address] } } : {}),
  });
  return { 4: v4.map(make), 6: v6.map(make), issues: [] };
}

describe('compute/nodes', () => {
  it('selects balancer nodes: default label, a selector, an empty selector', () => {
    assert.deepEqual(balancerNodesFor(undefined, nodes), ['lb-a', 'lb-b']);
    assert.deepEqual(balancerNodesFor({ matchLabels: { zone: 'a' } }, nodes), ['lb-a', 'w1']);
    assert.deepEqual(balancerNodesFor({ matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['a'] }] }, nodes), ['lb-b', 'w2']);
    assert.deepEqual(balancerNodesFor({ matchExpressions: [{ key: 'zone', operator: 'DoesNotExist' }] }, nodes), ['w2']);
    assert.deepEqual(balancerNodesFor({}, nodes), ['lb-a', 'lb-b', 'w1', 'w2']);
  });

  it('places entries per port on balancer nodes and decap duties on backend nodes, same family only', () => {
    const c = vipContribution(vip('ns/web', '192.0.2.1', { ports: [{ protocol: 'UDP', port: 53 }, { protocol: 'TCP', port: 443 }, { protocol: 'TCP', port: 80 }] }),
      backends([['10.0.0.1', 1, 'w1', 'a'], ['10.0.0.2', 0, 'w2', 'b'], ['10.0.0.3', 2, 'gone-node', 'c']], [['fd00::1', 1, 'w1', 'a6']]), nodes);
    assert.deepEqual(c.entries.map((e) => `${e.protocol}/${e.port}`), ['TCP/80', 'TCP/443', 'UDP/53']);
    assert.deepEqual(c.entries[0]!.backends, [{ address: '10.0.0.1', weight: 1 }, { address: '10.0.0.2', weight: 0 }, { address: '10.0.0.3', weight: 2 }]);
    assert.deepEqual(c.balancerNodes, ['lb-a', 'lb-b']);
    assert.deepEqual([...c.decap.keys()].sort(), ['w1', 'w2'], 'no duty for a node that does not exist; no IPv6 pod for an IPv4 VIP');
  });

  it('merges duties of one pod across VIPs and sorts everything', () => {
    const specs = computeNodeSpecs([
      { vip: vip('ns/b', '192.0.2.2'), backends: backends([['10.0.0.1', 1, 'w1', 'a']]) },
      { vip: vip('ns/a', '192.0.2.1', { nodeSelector: { matchLabels: { zone: 'a' } } }), backends: backends([['10.0.0.1', 1, 'w1', 'a']]) },
      { vip: vip('ns/six', '2001:db8::1', { encapsulation: 'gue', sourceIpOnly: true }), backends: backends([], [['fd00::9', 4, 'w2', 'z']]) },
    ], nodes);
    assert.deepEqual([...specs.keys()], ['lb-a', 'lb-b', 'w1', 'w2']);
    assert.deepEqual(specs.get('lb-a')!.vips.map((v) => v.name), ['ns/a', 'ns/b', 'ns/six']);
    assert.deepEqual(specs.get('lb-b')!.vips.map((v) => v.name), ['ns/b', 'ns/six']);
    const w1 = specs.get('w1')!;
    assert.deepEqual(w1.vips.map((v) => v.name), ['ns/a'], 'w1 balances ns/a by its selector');
    assert.deepEqual(w1.decap, [{ pod: 'ns/a', podUID: 'uid-a', addresses: ['10.0.0.1'], vips: ['192.0.2.1', '192.0.2.2'], interface: 'eth0' }]);
    assert.deepEqual(specs.get('w2')!.decap.map((d) => [d.pod, d.vips]), [['ns/z', ['2001:db8::1']]]);
    for (const [name, spec] of specs) {
      const parsed = NodeDesiredState.safeParse({ generation: 1, vips: spec.vips, decap: spec.decap.map((d) => ({ pod: d.pod, netns: `/proc/1/ns/net`, interface: d.interface, addresses: d.addresses, vips: d.vips })) });
      assert.ok(parsed.success, `${name}: ${parsed.success ? '' : parsed.error.message}`);
    }
  });

  it('is deterministic whatever the input order', () => {
    const input = [
      { vip: vip('ns/b', '192.0.2.2'), backends: backends([['10.0.0.2', 1, 'w1', 'b'], ['10.0.0.1', 1, 'w2', 'a']]) },
      { vip: vip('ns/a', '192.0.2.1'), backends: backends([['10.0.0.1', 1, 'w2', 'a']]) },
    ];
    const one = JSON.stringify([...computeNodeSpecs(input, nodes)]);
    const two = JSON.stringify([...computeNodeSpecs([...input].reverse(), [...nodes].reverse())]);
    assert.equal(one, two);
  });

  it('composes the canonical JSON from per-VIP fragments, equal to serialising the spec', () => {
    const contributions = [
      vipContribution(vip('ns/b', '192.0.2.2', { ports: [{ protocol: 'UDP', port: 53 }, { protocol: 'TCP', port: 53 }] }), backends([['10.0.0.1', 1, 'w1', 'a'], ['10.0.0.2', 0, 'lb-a', 'b']]), nodes),
      vipContribution(vip('ns/a', '192.0.2.1'), backends([['10.0.0.1', 3, 'w1', 'a']]), nodes),
    ];
    for (const n of ['lb-a', 'w1', 'w2']) {
      const placed = placeNode(n, contributions);
      const text = placed.json.toString('utf8');
      assert.equal(text, JSON.stringify(canonicalSpec(JSON.parse(text))), n);
      assert.deepEqual(JSON.parse(text), placed.spec, n);
    }
    const lbA = placeNode('lb-a', contributions);
    assert.deepEqual([...lbA.keys], [['ns/a', 'TCP/192.0.2.1:80'], ['ns/b', 'TCP/192.0.2.2:53,UDP/192.0.2.2:53']]);
    assert.equal(lbA.entries.get('ns/a'), JSON.stringify(lbA.spec.vips.filter((v) => v.name === 'ns/a')));
  });

  it('never emits the same (address, port, protocol) twice on a node', () => {
    const a = vipContribution(vip('ns/a', '192.0.2.1'), backends([]), nodes);
    const b = vipContribution(vip('ns/b', '192.0.2.1'), backends([]), nodes);
    assert.deepEqual(nodeSpec('lb-a', [b, a]).vips.map((v) => v.name), ['ns/a']);
  });
});
