// deploy/rbac/*.yaml: least privilege, checked as properties of the files, and then on a
// real kube-apiserver (RBAC authorizer) with the ServiceAccounts they make: what each
// identity needs it is allowed, what it must not do it is refused — asked of the
// authorizer (SelfSubjectAccessReview, what `kubectl auth can-i` sends) and tried for real.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { ControlPlane } from '../../src/lab/control-plane.ts';
import { FULCRUM_NAMESPACE, installFulcrum } from '../../src/lab/install.ts';
import type { FulcrumIdentities } from '../../src/lab/install.ts';
import { RESOURCES } from '../../src/operator/kinds.ts';
import { KubeClient } from '../../src/shared/kube/client.ts';
import { isApiError } from '../../src/shared/kube/errors.ts';
import { REPO_ROOT, START_TIMEOUT_MS, STOP_TIMEOUT_MS, TEST_TIMEOUT_MS, kubeConfigFrom } from './harness.ts';

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
    assert.deepEqual([...verbsOn(operator, 'fulcrum.dev', 'vippools/status')].sort(), ['patch']);
    assert.deepEqual([...verbsOn(operator, 'fulcrum.dev', 'loadbalancervips/status')].sort(), ['patch']);
    assert.deepEqual([...verbsOn(operator, '', 'services')].sort(), [...READ].sort());
    assert.deepEqual([...verbsOn(operator, '', 'services/status')].sort(), ['patch']);
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

// ------------------------------------------------------------------ on a real API server

type Access = { verb: string; group?: string; resource: string; subresource?: string; namespace?: string; name?: string };

function describeAccess(a: Access): string {
  return `${a.verb} ${a.group ? `${a.group}/` : ''}${a.resource}${a.subresource ? `/${a.subresource}` : ''}${a.name ? ` ${a.name}` : ''}${a.namespace ? ` in ${a.namespace}` : ''}`;
}

/** Asks the RBAC authorizer, as `client`, whether it may (SelfSubjectAccessReview). */
async function allowed(client: KubeClient, a: Access): Promise<boolean> {
  const review = await client.request<{ status: { allowed: boolean } }>('POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', {
    body: {
      apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview',
      spec: { resourceAttributes: { verb: a.verb, group: a.group ?? '', resource: a.resource, subresource: a.subresource ?? '', namespace: a.namespace ?? '', name: a.name ?? '' } },
    },
  });
  return review.status.allowed;
}

const OPERATOR_MAY: Access[] = [
  ...['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'].map((verb) => ({ verb, group: 'fulcrum.dev', resource: 'balancernodes' })),
  ...['get', 'list', 'watch', 'create', 'patch', 'delete'].map((verb) => ({ verb, group: 'fulcrum.dev', resource: 'loadbalancervips', namespace: 'default' })),
  { verb: 'patch', group: 'fulcrum.dev', resource: 'loadbalancervips', subresource: 'status', namespace: 'default' },
  { verb: 'patch', group: 'fulcrum.dev', resource: 'vippools', subresource: 'status' },
  ...['get', 'list', 'watch'].flatMap((verb) => [
    { verb, group: 'fulcrum.dev', resource: 'vippools' }, { verb, resource: 'services', namespace: 'default' }, { verb, resource: 'pods' },
    { verb, resource: 'nodes' }, { verb, resource: 'namespaces' }, { verb, group: 'discovery.k8s.io', resource: 'endpointslices' },
  ]),
  { verb: 'patch', resource: 'services', subresource: 'status', namespace: 'default' },
  { verb: 'update', resource: 'services', subresource: 'finalizers', namespace: 'default' },
  { verb: 'create', group: 'events.k8s.io', resource: 'events', namespace: 'default' },
  { verb: 'patch', resource: 'events', namespace: 'default' },
  { verb: 'create', group: 'coordination.k8s.io', resource: 'leases', namespace: FULCRUM_NAMESPACE },
  { verb: 'update', group: 'coordination.k8s.io', resource: 'leases', namespace: FULCRUM_NAMESPACE, name: 'fulcrum-operator' },
];

const OPERATOR_MUST_NOT: Access[] = [
  ...['get', 'list', 'watch'].map((verb) => ({ verb, resource: 'secrets', namespace: FULCRUM_NAMESPACE })),
  { verb: 'get', resource: 'configmaps', namespace: 'kube-system' },
  ...['create', 'update', 'patch', 'delete'].flatMap((verb) => [
    { verb, resource: 'pods', namespace: 'default' }, { verb, resource: 'nodes' }, { verb, group: 'discovery.k8s.io', resource: 'endpointslices', namespace: 'default' },
    { verb, resource: 'services', namespace: 'default' }, { verb, group: 'fulcrum.dev', resource: 'vippools' },
  ]),
  { verb: 'update', group: 'fulcrum.dev', resource: 'balancernodes', subresource: 'status' },
  // Everything it writes but BalancerNodes goes by merge patch with a precondition: no PUT.
  { verb: 'update', group: 'fulcrum.dev', resource: 'loadbalancervips', namespace: 'default' },
  { verb: 'update', group: 'fulcrum.dev', resource: 'loadbalancervips', subresource: 'status', namespace: 'default' },
  { verb: 'update', group: 'fulcrum.dev', resource: 'vippools', subresource: 'status' },
  { verb: 'update', resource: 'services', subresource: 'status', namespace: 'default' },
  { verb: 'update', group: 'coordination.k8s.io', resource: 'leases', namespace: FULCRUM_NAMESPACE, name: 'someone-else' },
  { verb: 'update', group: 'coordination.k8s.io', resource: 'leases', namespace: 'kube-system', name: 'fulcrum-operator' },
  { verb: 'create', resource: 'serviceaccounts', subresource: 'token', namespace: FULCRUM_NAMESPACE, name: 'fulcrum-agent' },
  { verb: 'impersonate', resource: 'serviceaccounts' },
  { verb: 'deletecollection', group: 'fulcrum.dev', resource: 'balancernodes' },
];

const AGENT_MAY: Access[] = [
  ...['get', 'list', 'watch'].map((verb) => ({ verb, group: 'fulcrum.dev', resource: 'balancernodes' })),
  { verb: 'update', group: 'fulcrum.dev', resource: 'balancernodes', subresource: 'status' },
];

const AGENT_MUST_NOT: Access[] = [
  ...['create', 'update', 'patch', 'delete'].map((verb) => ({ verb, group: 'fulcrum.dev', resource: 'balancernodes' })),
  { verb: 'patch', group: 'fulcrum.dev', resource: 'balancernodes', subresource: 'status' },
  { verb: 'get', group: 'fulcrum.dev', resource: 'loadbalancervips', namespace: 'default' },
  { verb: 'list', resource: 'pods' },
  { verb: 'get', resource: 'secrets', namespace: FULCRUM_NAMESPACE },
  { verb: 'create', group: 'events.k8s.io', resource: 'events', namespace: 'default' },
];

describe('RBAC on a real kube-apiserver', { timeout: TEST_TIMEOUT_MS * 2 }, () => {
  let cp: ControlPlane;
  let ids: FulcrumIdentities;
  let operator: KubeClient;
  let agent: KubeClient;

  before(async () => {
    cp = await ControlPlane.start({ controllerManager: false });
    ids = await installFulcrum(cp);
    operator = new KubeClient(kubeConfigFrom(ids.operatorKubeconfig), { userAgent: 'rbac-test-operator' });
    agent = new KubeClient(kubeConfigFrom(ids.agentKubeconfig), { userAgent: 'rbac-test-agent' });
  }, { timeout: START_TIMEOUT_MS });
  after(async () => {
    operator?.close();
    agent?.close();
    await cp?.stop();
  }, { timeout: STOP_TIMEOUT_MS });

  it('the identities are the ServiceAccounts deploy/rbac makes', async () => {
    for (const [client, user] of [[operator, ids.operatorUser], [agent, ids.agentUser]] as const) {
      const review = await client.request<{ status: { userInfo: { username: string } } }>('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', {
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
      });
      assert.equal(review.status.userInfo.username, user);
    }
  });

  it('the operator may do what it needs, and nothing it must not', async () => {
    const denied = [];
    for (const a of OPERATOR_MAY) if (!(await allowed(operator, a))) denied.push(describeAccess(a));
    assert.deepEqual(denied, [], 'refused to the operator');
    const granted = [];
    for (const a of OPERATOR_MUST_NOT) if (await allowed(operator, a)) granted.push(describeAccess(a));
    assert.deepEqual(granted, [], 'allowed to the operator');
    // kubectl auth can-i with the operator's kubeconfig says the same.
    assert.equal((await cp.kubectl(['auth', 'can-i', 'patch', 'balancernodes.fulcrum.dev'], { kubeconfig: ids.operatorKubeconfig })).trim(), 'yes');
    await assert.rejects(cp.kubectl(['auth', 'can-i', 'get', 'secrets', '-n', FULCRUM_NAMESPACE], { kubeconfig: ids.operatorKubeconfig }), /exited 1/);
  });

  it('the agent may read BalancerNodes and write their status, and nothing else', async () => {
    const denied = [];
    for (const a of AGENT_MAY) if (!(await allowed(agent, a))) denied.push(describeAccess(a));
    assert.deepEqual(denied, [], 'refused to the agent');
    const granted = [];
    for (const a of AGENT_MUST_NOT) if (await allowed(agent, a)) granted.push(describeAccess(a));
    assert.deepEqual(granted, [], 'allowed to the agent');
  });

  it('real requests: each writes its part of a BalancerNode and is refused the other\'s, and secrets and pods stay out of reach', async () => {
    const bn = await operator.create(RESOURCES.balancerNodes, { apiVersion: 'fulcrum.dev/v1alpha1', kind: 'BalancerNode', metadata: { name: 'rbac-node' }, spec: { vips: [], decap: [] } });
    const reported = await agent.replace(RESOURCES.balancerNodes, { ...bn, status: { observedGeneration: 1, attachMode: 'generic', vipCount: 0 } }, 'status');
    const refused = async (what: string, p: Promise<unknown>): Promise<void> => {
      await assert.rejects(p, (err: unknown) => isApiError(err, 403), `${what}: expected 403 Forbidden`);
    };
    await refused('the operator writes node status', operator.patch(RESOURCES.balancerNodes, 'rbac-node', undefined, { status: { vipCount: 9 } }, { subresource: 'status' }));
    await refused('the agent writes a spec', agent.replace(RESOURCES.balancerNodes, { ...reported, spec: { vips: [], decap: [] } }));
    await refused('the agent deletes a node', agent.delete(RESOURCES.balancerNodes, 'rbac-node'));
    await refused('the operator lists secrets', operator.request('GET', `/api/v1/namespaces/${FULCRUM_NAMESPACE}/secrets`));
    await refused('the operator creates a pod', operator.create(RESOURCES.pods, { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'nope', namespace: 'default' }, spec: { containers: [{ name: 'c', image: 'busybox' }] } } as never));
    await refused('the operator writes a VipPool spec', operator.create(RESOURCES.vipPools, { apiVersion: 'fulcrum.dev/v1alpha1', kind: 'VipPool', metadata: { name: 'nope' }, spec: { addresses: ['192.0.2.0/30'] } }));
    await refused('the agent reads pods', agent.list(RESOURCES.pods));
    await operator.delete(RESOURCES.balancerNodes, 'rbac-node');
  });
});
