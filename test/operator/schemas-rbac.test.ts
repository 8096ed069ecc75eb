// deploy/rbac/*.yaml: least privilege, checked as properties rather than by copying the
// files into the test. (No in-process RBAC to run them against; the lab's cluster does.)
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { REPO_ROOT } from '../apiserver/helpers.ts';

type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
type Doc = { kind: string; metadata: { name: string; namespace?: string }; rules?: Rule[]; roleRef?: { kind: string; name: string }; subjects?: { kind: string; name: string; namespace: string }[] };

function load(file: string): { docs: Doc[]; text: string } {
  const text = readFileSync(join(REPO_ROOT, 'deploy', 'rbac', file), 'utf8');
  const docs = parseAllDocuments(text).map((d) => d.toJSON() as Doc);
  return { docs, text };
}

/** The verbs granted on group/resource by every rule of these roles. */
function verbsOn(docs: Doc[], group: string, resource: string): Set<string> {
  const out = new Set<string>();
  for (const d of docs) {
    for (const r of d.rules ?? []) if (r.apiGroups.includes(group) && r.resources.includes(resource)) for (const v of r.verbs) out.add(v);
  }
  return out;
}

const READ = ['get', 'list', 'watch'];

for (const [file, sa] of [['operator.yaml', 'fulcrum-operator'], ['agent.yaml', 'fulcrum-agent']] as const) {
  describe(`deploy/rbac/${file}`, () => {
    const { docs, text } = load(file);
    const roles = docs.filter((d) => d.kind === 'ClusterRole' || d.kind === 'Role');

    it('has a ServiceAccount bound to each of its roles', () => {
      assert.ok(docs.some((d) => d.kind === 'ServiceAccount' && d.metadata.name === sa && d.metadata.namespace === 'fulcrum-system'));
      for (const role of roles) {
        const binding = docs.find((d) => (d.kind === 'ClusterRoleBinding' || d.kind === 'RoleBinding') && d.roleRef?.name === role.metadata.name);
        assert.ok(binding, `a binding for ${role.metadata.name}`);
        assert.equal(binding.roleRef?.kind, role.kind);
        assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: sa, namespace: 'fulcrum-system' }]);
        if (role.kind === 'Role') assert.equal(binding.metadata.namespace, role.metadata.namespace);
      }
    });

    it('grants no wildcards and nothing secret', () => {
      for (const rule of roles.flatMap((r) => r.rules ?? [])) {
        for (const v of [...rule.apiGroups, ...rule.resources, ...rule.verbs]) assert.notEqual(v, '*');
        for (const forbidden of ['secrets', 'configmaps', 'serviceaccounts', 'clusterroles', 'roles', 'rolebindings', 'clusterrolebindings']) {
          assert.ok(!rule.resources.includes(forbidden), forbidden);
        }
        assert.ok(!rule.verbs.some((v) => ['escalate', 'bind', 'impersonate', 'deletecollection'].includes(v)));
      }
    });

    it('says why for every rule', () => {
      // A rule's first line must follow a comment, or continue a rule about the same resources.
      const lines = text.split('\n');
      let previousResources = '';
      for (let i = 0; i < lines.length; i++) {
        if (!/^\s+- apiGroups:/.test(lines[i]!)) continue;
        const resources = lines.slice(i + 1, i + 3).find((l) => l.includes('resources:')) ?? '';
        const prior = lines[i - 1]!.trim();
        assert.ok(prior.startsWith('#') || resources === previousResources, `line ${i + 1} of ${file}: a rule without a comment`);
        previousResources = resources;
      }
    });
  });
}

describe('who may write what', () => {
  const operator = load('operator.yaml').docs;
  const agent = load('agent.yaml').docs;

  it('the operator writes BalancerNode specs and VIP, pool and Service status, and reads the rest', () => {
    assert.deepEqual([...verbsOn(operator, 'fulcrum.dev', 'balancernodes')].sort(), ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch']);
    assert.deepEqual([...verbsOn(operator, 'fulcrum.dev', 'balancernodes/status')], [], 'only agents report node status');
    assert.deepEqual([...verbsOn(operator, 'fulcrum.dev', 'vippools')].sort(), [...READ].sort(), 'pools are the administrator\'s');
    assert.deepEqual([...verbsOn(operator, 'fulcrum.dev', 'vippools/status')].sort(), ['patch', 'update']);
    assert.deepEqual([...verbsOn(operator, 'fulcrum.dev', 'loadbalancervips/status')].sort(), ['patch', 'update']);
    assert.deepEqual([...verbsOn(operator, '', 'services')].sort(), [...READ].sort());
    assert.deepEqual([...verbsOn(operator, '', 'services/status')].sort(), ['patch', 'update']);
    for (const resource of ['pods', 'nodes', 'namespaces']) assert.deepEqual([...verbsOn(operator, '', resource)].sort(), [...READ].sort(), resource);
    assert.deepEqual([...verbsOn(operator, 'discovery.k8s.io', 'endpointslices')].sort(), [...READ].sort());
    assert.deepEqual([...verbsOn(operator, 'coordination.k8s.io', 'leases')].sort(), ['create', 'get', 'update']);
    for (const group of ['', 'events.k8s.io']) assert.deepEqual([...verbsOn(operator, group, 'events')].sort(), ['create', 'patch']);
    const leaseRole = operator.find((d) => d.kind === 'Role')!;
    assert.equal(leaseRole.metadata.namespace, 'fulcrum-system', 'the Lease grant is namespaced');
    assert.ok(!operator.some((d) => d.kind === 'ClusterRole' && d.rules?.some((r) => r.resources.includes('leases'))));
  });

  it('the agent reads BalancerNodes and PUTs their status, and nothing else (src/agent/kubernetes.ts)', () => {
    assert.deepEqual([...verbsOn(agent, 'fulcrum.dev', 'balancernodes')].sort(), [...READ].sort());
    assert.deepEqual([...verbsOn(agent, 'fulcrum.dev', 'balancernodes/status')], ['update']);
    assert.deepEqual([...verbsOn(agent, '', 'pods')], [], 'the agent reads no pod');
    for (const resource of ['loadbalancervips', 'vippools']) assert.deepEqual([...verbsOn(agent, 'fulcrum.dev', resource)], [], resource);
    for (const group of ['', 'events.k8s.io']) assert.deepEqual([...verbsOn(agent, group, 'events')], [], 'the agent emits no Event');
  });
});
