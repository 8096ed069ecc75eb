// charts/fulcrum against a real kube-apiserver (src/lab/control-plane.ts: etcd,
// kube-apiserver, kube-controller-manager on loopback): `helm install` as a user runs it,
// every object the release holds read back as the server stored it, the workloads' pods
// created by the real Deployment and DaemonSet controllers (this test plays the kubelet
// only: it registers Nodes; no pod ever runs), PodSecurity's verdict on those pods, every
// chart variant through server-side validation, values.schema.json against the server's
// own refusals, the chart's ServiceAccounts' tokens asking for what src/operator and
// src/agent do (and for what they must not), the operator process itself running on the
// chart's identity, then `helm upgrade` and `helm uninstall`. The tests run in order on
// one release. docs/install.md#how-the-chart-is-tested says what this covers.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { ControlPlane, freeLoopbackPort, kubeconfigYaml } from '../../src/lab/control-plane.ts';
import { CHART, NAMESPACE, RELEASE, ROOT, Rendered, render, runHelm, sets, type K8sObject } from './support.ts';

/** What a user must set for a real install: where the image comes from. */
const VALUES = { 'image.repository': 'registry.example.com/fulcrum' } as const;
const CRDS = ['balancernodes.fulcrum.dev', 'loadbalancervips.fulcrum.dev', 'vippools.fulcrum.dev'];
const CLUSTER_SCOPED = new Set(['CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding', 'Namespace']);
/** Nodes this test registers in the kubelet's place: one balancer, one backend-only. */
const NODES = [
  { name: 'lb-1', labels: { 'kubernetes.io/os': 'linux', 'kubernetes.io/hostname': 'lb-1', 'fulcrum.dev/balancer': 'true' } },
  { name: 'worker-1', labels: { 'kubernetes.io/os': 'linux', 'kubernetes.io/hostname': 'worker-1' } },
];

let cp: ControlPlane;

before(async () => {
  // OwnerReferencesPermissionEnforcement as well (OpenShift and hardened clusters enable
  // it): the operator's LoadBalancerVips name their Service with blockOwnerDeletion, which
  // it allows only to who may update the Service's finalizers.
  cp = await ControlPlane.start({ apiserverFlags: ['--enable-admission-plugins=OwnerReferencesPermissionEnforcement'] });
}, { timeout: 180_000 });
after(() => cp?.stop(), { timeout: 30_000 });

// ── helpers ───────────────────────────────────────────────────────────────────

/** helm against this control plane, as the cluster admin. */
async function helmOk(args: readonly string[]): Promise<{ stdout: string; stderr: string }> {
  const result = await runHelm([...args, '--kubeconfig', cp.adminKubeconfigPath]);
  assert.ok(result.ok, `helm ${args.slice(0, 2).join(' ')} failed:\n${result.stderr}`);
  return result;
}

/** The objects the release holds, as helm recorded them. */
async function releaseManifest(): Promise<Rendered> {
  return new Rendered((await helmOk(['get', 'manifest', RELEASE, '-n', NAMESPACE])).stdout);
}

type Answer = { status: number; headers: http.IncomingHttpHeaders; body: string };

/** One request to kube-apiserver as `who`: a ServiceAccount token, or the admin's client certificate. */
function request(who: { token: string } | 'admin', method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<Answer> {
  const auth = who === 'admin' ? cp.adminTls() : { ca: cp.caPem };
  const headers: Record<string, string> = {};
  if (who !== 'admin') headers['authorization'] = `Bearer ${who.token}`;
  if (body !== undefined) headers['content-type'] = contentType;
  return new Promise((resolve, reject) => {
    const req = https.request(`${cp.url}${path}`, { method, ...auth, headers, timeout: 30_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within 30 s`)));
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** GET as the admin; 429 is retried as clients do (a CRD's storage answers it for a moment after Established). */
async function getJson(path: string): Promise<any> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const res = await request('admin', 'GET', path);
    if (res.status === 429 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      continue;
    }
    assert.equal(res.status, 200, `GET ${path}: ${res.body}`);
    return JSON.parse(res.body);
  }
}

/** Polls `check` until it returns a value other than undefined; fails naming `what` after the deadline. */
async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    assert.ok(Date.now() < deadline, `waited ${timeoutMs / 1000} s for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * Paths where `rendered` has something the stored object lacks or holds differently. The
 * server adds defaults and metadata, so only what the chart wrote is compared; a field it
 * dropped (unknown to its schema, pruned) or changed shows up here. An empty map is the
 * one thing the server leaves out by design (omitempty, e.g. `limits: {}`).
 */
function missingFrom(rendered: unknown, stored: unknown, path = ''): string[] {
  if (isEmptyMap(rendered) && (stored === undefined || isEmptyMap(stored))) return [];
  if (rendered === null || typeof rendered !== 'object') {
    return rendered === stored ? [] : [`${path}: rendered ${JSON.stringify(rendered)}, stored ${JSON.stringify(stored)}`];
  }
  if (stored === null || typeof stored !== 'object') return [`${path}: rendered ${JSON.stringify(rendered)}, stored ${JSON.stringify(stored)}`];
  if (Array.isArray(rendered)) {
    if (!Array.isArray(stored) || stored.length !== rendered.length) return [`${path}: rendered ${rendered.length} items, stored ${JSON.stringify(stored)}`];
    return rendered.flatMap((item, i) => missingFrom(item, stored[i], `${path}[${i}]`));
  }
  return Object.entries(rendered).flatMap(([k, v]) => missingFrom(v, (stored as Record<string, unknown>)[k], `${path}.${k}`));
}

function isEmptyMap(v: unknown): boolean {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0;
}

/** The API path of an object (every kind the chart renders). */
function pathOf(o: K8sObject): string {
  const plural = `${o.kind.toLowerCase()}${o.kind.endsWith('s') ? 'es' : 's'}`.replace(/ys$/, 'ies');
  const base = o.apiVersion.includes('/') ? `/apis/${o.apiVersion}` : `/api/${o.apiVersion}`;
  const ns = CLUSTER_SCOPED.has(o.kind) ? '' : `/namespaces/${o.metadata.namespace}`;
  return `${base}${ns}/${plural}/${o.metadata.name}`;
}

/**
 * What the server says to creating these objects (a dry run: nothing is stored): each
 * refusal's message and each warning, one per line; '' when it takes them silently.
 */
async function serverVerdict(objects: readonly K8sObject[]): Promise<string> {
  const said: string[] = [];
  for (const o of objects) {
    const path = pathOf(o);
    const res = await request('admin', 'POST', `${path.slice(0, path.lastIndexOf('/'))}?dryRun=All&fieldValidation=Strict`, o);
    if (res.status !== 201) said.push(`${o.kind}/${o.metadata.name}: ${(JSON.parse(res.body) as { message: string }).message}`);
    for (const w of warningsOf(res)) said.push(`${o.kind}/${o.metadata.name}: warning: ${w}`);
  }
  return said.join('\n');
}

/** The texts of an answer's Warning headers (RFC 7234 form: `299 - "text"`, quotes escaped). */
function warningsOf(res: Answer): string[] {
  const header = res.headers['warning'];
  const all = Array.isArray(header) ? header : header === undefined ? [] : [header];
  return all.map((w) => /^\d{3} \S+ "(.*)"$/.exec(w)?.[1]?.replace(/\\(.)/g, '$1') ?? w);
}

type Access = { verb: string; group?: string; resource: string; subresource?: string; namespace?: string; name?: string };

/** Whether the token's identity may do this (SelfSubjectAccessReview: the authorizer's own answer, as that identity). */
async function allowed(token: string, access: Access): Promise<boolean> {
  const res = await request({ token }, 'POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', {
    apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview',
    spec: { resourceAttributes: { group: '', ...access } },
  });
  assert.equal(res.status, 201, `SelfSubjectAccessReview: ${res.body}`);
  return (JSON.parse(res.body) as { status: { allowed: boolean } }).status.allowed;
}

const describeAccess = (a: Access): string =>
  `${a.verb} ${a.group ? `${a.group}/` : ''}${a.resource}${a.subresource ? `/${a.subresource}` : ''}${a.name ? ` ${a.name}` : ''} ${a.namespace ? `in ${a.namespace}` : 'cluster-wide'}`;

/** Every access in `yes` allowed and every one in `no` refused; a mismatch lists them all. */
async function assertAccess(token: string, who: string, yes: readonly Access[], no: readonly Access[]): Promise<void> {
  const wrong: string[] = [];
  for (const a of yes) if (!(await allowed(token, a))) wrong.push(`refused: ${describeAccess(a)}`);
  for (const a of no) if (await allowed(token, a)) wrong.push(`allowed: ${describeAccess(a)}`);
  assert.deepEqual(wrong, [], `${who}: ${wrong.join('; ')}`);
}

// ── the release ───────────────────────────────────────────────────────────────

let installed: Rendered;
/** The chart's identities, by the ServiceAccount names its workloads run as. */
let operatorAccount: string;
let agentAccount: string;
let operatorToken: string;
let agentToken: string;

describe('helm install on a real kube-apiserver', { timeout: 600_000 }, () => {
  it('installs: the server accepts and stores every object the chart renders, as rendered', async () => {
    const { stderr } = await helmOk(['install', RELEASE, CHART, '-n', NAMESPACE, '--create-namespace', '--wait=hookOnly', ...sets(VALUES)]);
    // kube-apiserver's warnings (an unknown or deprecated field, a PodSecurity verdict) reach helm's stderr.
    assert.doesNotMatch(stderr, /warn/i, `helm install printed warnings:\n${stderr}`);
    installed = await releaseManifest();
    const kinds = new Set(installed.objects.map((o) => o.kind));
    for (const kind of ['CustomResourceDefinition', 'Deployment', 'DaemonSet', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'ConfigMap']) {
      assert.ok(kinds.has(kind), `the release has a ${kind}`);
    }
    // What helm installed is what `helm template` renders with the same values.
    const templated = await render(sets(VALUES));
    const names = (r: Rendered): string[] => r.objects.map((o) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`).sort();
    assert.deepEqual(names(installed), names(templated));

    for (const o of installed.objects) {
      const id = `${o.kind}/${o.metadata.name}`;
      assert.equal(o.metadata.namespace, CLUSTER_SCOPED.has(o.kind) ? undefined : NAMESPACE, `${id}: namespace`);
      const stored = await getJson(pathOf(o));
      assert.equal(stored.metadata.annotations?.['meta.helm.sh/release-name'], RELEASE, `${id}: release annotation`);
      assert.deepEqual(missingFrom(o, stored), [], `${id}: the server stored something else than the chart rendered`);
    }
  });

  it('the CRDs are Established and served, and marked to outlive the release', async () => {
    for (const name of CRDS) {
      const crd = await until(`CRD ${name} Established`, async () => {
        const c = await getJson(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
        const ok = (c.status?.conditions ?? []).some((x: { type: string; status: string }) => x.type === 'Established' && x.status === 'True');
        return ok ? c : undefined;
      });
      assert.equal(crd.metadata.annotations['helm.sh/resource-policy'], 'keep', name);
      // A CRD that differs from crds/ only by the chart's annotations (test/chart checks the bytes of files/crds/).
      const source = parse(readFileSync(join(ROOT, 'crds', `${name}.yaml`), 'utf8')) as K8sObject;
      assert.deepEqual(missingFrom(source.spec, crd.spec), [], `${name}: spec as in crds/`);
      const list = await getJson(`/apis/fulcrum.dev/v1alpha1/${name.split('.')[0]}`);
      assert.deepEqual(list.items, [], `${name}: served, empty`);
    }
  });

  it('the real controllers make the workloads\' pods: the Deployment\'s now, each DaemonSet\'s on its kind of node', async () => {
    const operator = installed.get('Deployment', 'fulcrum-operator');
    await until(`${operator.spec.replicas} operator pods`, async () => {
      const pods = await getJson(`/api/v1/namespaces/${NAMESPACE}/pods?labelSelector=app.kubernetes.io/component=operator`);
      return pods.items.length === operator.spec.replicas ? true : undefined;
    });
    // The kubelet's part: register Nodes. The DaemonSet controller then creates one agent
    // pod per node, in the DaemonSet whose node selector and affinity take that node.
    for (const node of NODES) {
      const res = await request('admin', 'POST', '/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: node });
      assert.equal(res.status, 201, res.body);
    }
    const expected = new Map([['fulcrum-agent-balancer', 'lb-1'], ['fulcrum-agent', 'worker-1']]);
    assert.deepEqual(installed.ofKind('DaemonSet').map((d) => d.metadata.name).sort(), [...expected.keys()].sort());
    for (const [ds, node] of expected) {
      const pod = await until(`a pod of DaemonSet ${ds}`, async () => {
        const pods = await getJson(`/api/v1/namespaces/${NAMESPACE}/pods?labelSelector=fulcrum.dev/agent-role=${ds.endsWith('balancer') ? 'balancer' : 'backend'}`);
        return pods.items.length > 0 ? pods.items : undefined;
      });
      assert.equal(pod.length, 1, `${ds}: one pod`);
      // The DaemonSet controller pins its pod to the node through a matchFields term.
      const terms = pod[0].spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms;
      assert.deepEqual(terms.flatMap((t: { matchFields?: { values: string[] }[] }) => t.matchFields?.flatMap((f) => f.values) ?? []), [node], `${ds}'s pod is for ${node}`);
      await until(`${ds}'s status: one node to run on`, async () => {
        const status = await getJson(`/apis/apps/v1/namespaces/${NAMESPACE}/daemonsets/${ds}/status`);
        return status.status.desiredNumberScheduled === 1 ? true : undefined;
      });
    }
    const events = await getJson(`/api/v1/namespaces/${NAMESPACE}/events`);
    const failed = events.items.filter((e: { type: string }) => e.type === 'Warning').map((e: { reason: string; message: string }) => `${e.reason}: ${e.message}`);
    assert.deepEqual(failed, [], 'no controller failed to create a pod');
  });

  it('PodSecurity: the operator\'s pods meet "restricted"; the agents\' need the namespace at "privileged"', async () => {
    // A server-side dry run of labelling the namespace: the PodSecurity admission plugin
    // evaluates the pods there and warns which would violate the level.
    const verdict = async (level: string): Promise<string> => {
      const res = await request('admin', 'PATCH', `/api/v1/namespaces/${NAMESPACE}?dryRun=All`,
        { metadata: { labels: { 'pod-security.kubernetes.io/enforce': level } } }, 'application/merge-patch+json');
      assert.equal(res.status, 200, res.body);
      return warningsOf(res).join('\n');
    };
    const restricted = await verdict('restricted');
    assert.match(restricted, /fulcrum-agent/, 'the agents are named under restricted');
    assert.doesNotMatch(restricted, /fulcrum-operator/, `the operator's pods meet restricted:\n${restricted}`);
    const baseline = await verdict('baseline');
    assert.match(baseline, /host namespaces/, `baseline refuses the agents' hostNetwork/hostPID:\n${baseline}`);
    assert.match(baseline, /hostPath volumes/, baseline);
    assert.equal(await verdict('privileged'), '', 'privileged: no violation');
    const install = readFileSync(join(ROOT, 'docs', 'install.md'), 'utf8');
    assert.match(install, /pod-security\.kubernetes\.io\/enforce=privileged/, 'docs/install.md says to label the namespace');
  });

  it('every other variant of the chart passes the server\'s validation (server-side dry run)', async () => {
    // Another release in another namespace, so every object is new: a dry-run create
    // validates each one whole (an apply onto the installed objects would merge with
    // fields helm owns), and unknown fields are errors. The CRDs are the installed ones
    // (crds.install=false).
    const namespace = 'chart-variants';
    assert.equal((await request('admin', 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } })).status, 201);
    const variants: Record<string, string | number | boolean>[] = [
      { 'agent.privileged': true, 'agent.mountBpffs': false },
      { 'agent.uninstall': true },
      { 'agent.balancer.enabled': false, 'operator.replicas': 1, 'operator.leaderElection': false },
      { 'agent.balancer.nodeSelector.fulcrum\\.dev/balancer': 'null', 'agent.balancer.settings.nextHop.mode': 'mac', 'agent.balancer.settings.nextHop.mac': '02:42:ac:11:00:01' },
      { 'image.digest': 'sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef', 'imagePullSecrets[0].name': 'registry', 'agent.podNetns.dir': '' },
      // The metrics Services. Their ServiceMonitors need the Prometheus Operator's CRDs, which this cluster has not.
      { 'serviceMonitor.enabled': true },
      // The longest name prefix the schema allows, with the longest suffix: a Service name has at most 63 characters.
      { fullnameOverride: 'x'.repeat(46), 'serviceMonitor.enabled': true },
    ];
    for (const variant of variants) {
      const result = await runHelm(['template', 'variant', CHART, '--namespace', namespace, ...sets({ ...VALUES, 'crds.install': false, ...variant })]);
      assert.ok(result.ok, result.stderr);
      const objects = new Rendered(result.stdout).objects.filter((o) => o.kind !== 'ServiceMonitor');
      if (variant['serviceMonitor.enabled'] === true) assert.equal(objects.filter((o) => o.kind === 'Service').length, 2, 'two metrics Services');
      assert.equal(await serverVerdict(objects), '', `${JSON.stringify(variant)}: refused or warned`);
    }
    assert.equal((await request('admin', 'DELETE', `/api/v1/namespaces/${namespace}`)).status, 200);
  });

  it('values.schema.json refuses what kube-apiserver would refuse, before anything reaches it', async () => {
    // Each case twice: helm with the schema refuses it; rendered without the schema
    // (--skip-schema-validation), the server's validation refuses the objects (or warns).
    // So the schema's rules are the server's, not guesses.
    const namespace = 'chart-schema';
    assert.equal((await request('admin', 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } })).status, 201);
    const cases: [Record<string, string | number | boolean>, RegExp][] = [
      [{ 'agent.tolerations[0].operator': 'Exists', 'agent.tolerations[0].value': 'x' }, /value must be empty when `operator` is 'Exists'/],
      [{ 'agent.tolerations[0].key': 'k', 'agent.tolerations[0].value': 'v', 'agent.tolerations[0].effect': 'NoSchedule', 'agent.tolerations[0].tolerationSeconds': 30 },
        /effect must be 'NoExecute' when `tolerationSeconds` is set/],
      [{ 'agent.tolerations[0].value': 'v' }, /operator must be Exists when `key` is empty/],
      [{ 'agent.nodeSelector.role': 'edge/1' }, /spec\.template\.spec\.nodeSelector: Invalid value: "edge\/1"/],
      [{ 'operator.podLabels.team': 'x'.repeat(64) }, /spec\.template\.labels: Invalid value: "x{64}": must be no more than 63/],
      [{ 'agent.podLabels.bad key': 'v' }, /name part must consist of alphanumeric characters/],
      // Not refused, but warned about: 256m is 0.256 bytes.
      [{ 'operator.resources.requests.memory': '256m' }, /warning: .*fractional byte value "256m" is invalid/],
    ];
    for (const [values, serverSays] of cases) {
      const args = ['template', 'schema', CHART, '--namespace', namespace, ...sets({ ...VALUES, 'crds.install': false, ...values })];
      const checked = await runHelm(args);
      assert.equal(checked.ok, false, `${JSON.stringify(values)}: the schema accepted it`);
      assert.match(checked.stderr, /values don't meet the specifications of the schema/, JSON.stringify(values));
      const unchecked = await runHelm([...args, '--skip-schema-validation']);
      assert.ok(unchecked.ok, unchecked.stderr);
      const verdict = await serverVerdict(new Rendered(unchecked.stdout).objects);
      assert.match(verdict, serverSays, `${JSON.stringify(values)}: the server's answer`);
    }
    assert.equal((await request('admin', 'DELETE', `/api/v1/namespaces/${namespace}`)).status, 200);
  });

  it('the chart\'s ServiceAccounts get tokens; the operator may do what src/operator does, and no more', async () => {
    operatorAccount = installed.get('Deployment', 'fulcrum-operator').spec.template.spec.serviceAccountName;
    const agentAccounts = new Set(installed.ofKind('DaemonSet').map((d) => d.spec.template.spec.serviceAccountName as string));
    assert.equal(agentAccounts.size, 1, 'both DaemonSets run as one ServiceAccount');
    agentAccount = [...agentAccounts][0]!;
    installed.get('ServiceAccount', operatorAccount);
    installed.get('ServiceAccount', agentAccount);
    operatorToken = await cp.serviceAccountToken(NAMESPACE, operatorAccount);
    agentToken = await cp.serviceAccountToken(NAMESPACE, agentAccount);

    const fulcrum = 'fulcrum.dev';
    const watch = (resource: string, group = ''): Access[] => ['get', 'list', 'watch'].map((verb) => ({ verb, group, resource }));
    await assertAccess(operatorToken, 'operator', [
      ...watch('loadbalancervips', fulcrum), ...watch('vippools', fulcrum), ...watch('balancernodes', fulcrum),
      ...watch('services'), ...watch('endpointslices', 'discovery.k8s.io'), ...watch('nodes'), ...watch('pods'), ...watch('namespaces'),
      // A Service's LoadBalancerVip: created, patched, deleted (service-controller.ts); finalizer and status (lbvip-controller.ts).
      ...['create', 'patch', 'delete'].map((verb) => ({ verb, group: fulcrum, resource: 'loadbalancervips', namespace: 'default' })),
      { verb: 'patch', group: fulcrum, resource: 'loadbalancervips', subresource: 'status', namespace: 'default' },
      { verb: 'patch', group: fulcrum, resource: 'vippools', subresource: 'status' },
      // BalancerNodes: POST, PUT, DELETE (writer.ts).
      ...['create', 'update', 'delete'].map((verb) => ({ verb, group: fulcrum, resource: 'balancernodes' })),
      { verb: 'patch', resource: 'services', subresource: 'status', namespace: 'default' },
      { verb: 'update', resource: 'services', subresource: 'finalizers', namespace: 'default' },
      { verb: 'create', group: 'events.k8s.io', resource: 'events', namespace: 'default' },
      // Leader election (leader.ts): its Lease in the release namespace.
      { verb: 'create', group: 'coordination.k8s.io', resource: 'leases', namespace: NAMESPACE },
      ...['get', 'update'].map((verb) => ({ verb, group: 'coordination.k8s.io', resource: 'leases', namespace: NAMESPACE, name: 'fulcrum-operator' })),
    ], [
      { verb: 'get', resource: 'secrets', namespace: NAMESPACE }, { verb: 'list', resource: 'secrets' },
      { verb: 'list', resource: 'configmaps' },
      { verb: 'update', group: fulcrum, resource: 'balancernodes', subresource: 'status' },
      { verb: 'update', group: fulcrum, resource: 'loadbalancervips', namespace: 'default' },
      { verb: 'update', group: fulcrum, resource: 'loadbalancervips', subresource: 'status', namespace: 'default' },
      { verb: 'create', group: fulcrum, resource: 'vippools' }, { verb: 'delete', group: fulcrum, resource: 'vippools' },
      { verb: 'update', resource: 'services', namespace: 'default' }, { verb: 'delete', resource: 'services', namespace: 'default' },
      { verb: 'create', group: 'discovery.k8s.io', resource: 'endpointslices', namespace: 'default' },
      { verb: 'patch', resource: 'nodes' }, { verb: 'create', resource: 'pods', namespace: 'default' },
      { verb: 'update', group: 'coordination.k8s.io', resource: 'leases', namespace: NAMESPACE, name: 'someone-else' },
      { verb: 'update', group: 'coordination.k8s.io', resource: 'leases', namespace: 'kube-system', name: 'fulcrum-operator' },
      { verb: 'list', group: 'apps', resource: 'deployments' },
    ]);
    // And as real requests: the identity reads what it watches and not a Secret.
    assert.equal((await request({ token: operatorToken }, 'GET', '/apis/discovery.k8s.io/v1/endpointslices?limit=1')).status, 200);
    assert.equal((await request({ token: operatorToken }, 'GET', '/api/v1/namespaces/kube-system/secrets')).status, 403);
  });

  it('the agent may read BalancerNodes and write their status, and nothing else', async () => {
    const fulcrum = 'fulcrum.dev';
    await assertAccess(agentToken, 'agent', [
      ...['get', 'list', 'watch'].map((verb) => ({ verb, group: fulcrum, resource: 'balancernodes' })),
      { verb: 'update', group: fulcrum, resource: 'balancernodes', subresource: 'status' },
    ], [
      ...['create', 'update', 'patch', 'delete'].map((verb) => ({ verb, group: fulcrum, resource: 'balancernodes' })),
      { verb: 'get', resource: 'secrets', namespace: NAMESPACE }, { verb: 'list', resource: 'secrets' },
      { verb: 'get', resource: 'configmaps', namespace: NAMESPACE },
      { verb: 'list', resource: 'pods' }, { verb: 'list', resource: 'nodes' }, { verb: 'list', resource: 'services' },
      { verb: 'list', group: fulcrum, resource: 'loadbalancervips' }, { verb: 'list', group: fulcrum, resource: 'vippools' },
      { verb: 'create', group: 'events.k8s.io', resource: 'events', namespace: NAMESPACE },
      { verb: 'create', group: 'coordination.k8s.io', resource: 'leases', namespace: NAMESPACE },
    ]);
    // Real requests, as src/agent/kubernetes.ts makes them, on a BalancerNode the admin made.
    const created = await request('admin', 'POST', '/apis/fulcrum.dev/v1alpha1/balancernodes', {
      apiVersion: 'fulcrum.dev/v1alpha1', kind: 'BalancerNode', metadata: { name: 'chart-test-node' }, spec: {},
    });
    assert.equal(created.status, 201, created.body);
    const as = { token: agentToken };
    const listed = await request(as, 'GET', '/apis/fulcrum.dev/v1alpha1/balancernodes?fieldSelector=metadata.name%3Dchart-test-node');
    assert.equal(listed.status, 200, listed.body);
    const node = JSON.parse(listed.body).items[0];
    const status = await request(as, 'PUT', '/apis/fulcrum.dev/v1alpha1/balancernodes/chart-test-node/status', { ...node, apiVersion: 'fulcrum.dev/v1alpha1', kind: 'BalancerNode', status: { conditions: [] } });
    assert.equal(status.status, 200, `status PUT: ${status.body}`);
    const spec = await request(as, 'PUT', '/apis/fulcrum.dev/v1alpha1/balancernodes/chart-test-node', { ...JSON.parse(status.body), spec: {} });
    assert.equal(spec.status, 403, 'a spec write is refused');
    assert.equal((await request(as, 'GET', `/api/v1/namespaces/${NAMESPACE}/secrets`)).status, 403);
    assert.equal((await request('admin', 'DELETE', '/apis/fulcrum.dev/v1alpha1/balancernodes/chart-test-node')).status, 200);
  });

  it('the operator runs on the chart\'s identity: it leads on its Lease, serves /healthz and /readyz, serves a Service, and is refused nothing', async () => {
    const kubeconfig = join(cp.dir, 'chart-operator.kubeconfig');
    writeFileSync(kubeconfig, kubeconfigYaml(cp.url, cp.caPem, { token: operatorToken }), { mode: 0o600 });
    const port = await freeLoopbackPort();
    const user = `system:serviceaccount:${NAMESPACE}:${operatorAccount}`;
    cp.audit.mark();
    // As the chart's Deployment runs it (args, POD_NAMESPACE), on loopback here.
    const child: ChildProcess = spawn(process.execPath, [join(ROOT, 'src', 'cli.ts'), 'operator', '--kubeconfig', kubeconfig,
      '--leader-elect', '--identity', 'chart-test', '--metrics-host', '127.0.0.1', '--metrics-port', String(port), '--log-level', 'warn'],
    { env: { ...process.env, POD_NAMESPACE: NAMESPACE }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => { output += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { output += d.toString(); });
    const exited = once(child, 'exit');
    const refused = (): string[] => cp.audit.events({ user }).filter((e) => e.code === 403)
      .map((e) => `${e.verb} ${e.resource}${e.subresource ? `/${e.subresource}` : ''}`);
    try {
      await until('the operator holding the Lease fulcrum-operator', async () => {
        assert.equal(child.exitCode, null, `the operator exited:\n${output}`);
        const res = await request('admin', 'GET', `/apis/coordination.k8s.io/v1/namespaces/${NAMESPACE}/leases/fulcrum-operator`);
        return res.status === 200 && JSON.parse(res.body).spec.holderIdentity === 'chart-test' ? true : undefined;
      }, 90_000);
      const probe = async (path: string): Promise<number | undefined> => new Promise((resolve) => {
        http.get(`http://127.0.0.1:${port}${path}`, (res) => { res.resume(); resolve(res.statusCode); }).on('error', () => resolve(undefined));
      });
      assert.equal(await probe('/healthz'), 200);
      await until('/readyz 200 (informers synced)', async () => ((await probe('/readyz')) === 200 ? true : undefined), 60_000);
      // It writes one BalancerNode per node that needs one (the registered Nodes).
      await until('BalancerNodes written by the operator', async () => {
        const list = await getJson('/apis/fulcrum.dev/v1alpha1/balancernodes');
        return list.items.length > 0 ? true : undefined;
      }, 60_000);
      // A Service of class fulcrum.dev/xdp takes the whole path: an owned LoadBalancerVip
      // created, its finalizer and status, the pool's status, the Service's status, Events.
      const pool = await request('admin', 'POST', '/apis/fulcrum.dev/v1alpha1/vippools', {
        apiVersion: 'fulcrum.dev/v1alpha1', kind: 'VipPool', metadata: { name: 'chart-test' }, spec: { addresses: ['203.0.113.16/28'] },
      });
      assert.equal(pool.status, 201, pool.body);
      const svc = await request('admin', 'POST', '/api/v1/namespaces/default/services', {
        apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', annotations: { 'fulcrum.dev/pool': 'chart-test' } },
        spec: { type: 'LoadBalancer', loadBalancerClass: 'fulcrum.dev/xdp', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, protocol: 'TCP' }] },
      });
      assert.equal(svc.status, 201, svc.body);
      const ingress = await until('the Service\'s status.loadBalancer.ingress from the operator', async () => {
        const s = await getJson('/api/v1/namespaces/default/services/web');
        return s.status?.loadBalancer?.ingress?.[0]?.ip as string | undefined;
      }, 60_000);
      assert.match(ingress, /^203\.0\.113\.(1[6-9]|2\d|3[01])$/);
      const vip = await getJson('/apis/fulcrum.dev/v1alpha1/namespaces/default/loadbalancervips/web');
      assert.equal(vip.metadata.ownerReferences?.[0]?.kind, 'Service');
      // Deleting the Service: the garbage collector deletes the VIP, the operator lets its finalizer go.
      assert.equal((await request('admin', 'DELETE', '/api/v1/namespaces/default/services/web')).status, 200);
      await until('the Service\'s LoadBalancerVip gone', async () => {
        const res = await request('admin', 'GET', '/apis/fulcrum.dev/v1alpha1/namespaces/default/loadbalancervips/web');
        return res.status === 404 ? true : undefined;
      }, 90_000);
      for (const write of [
        { verb: 'create', resource: 'loadbalancervips' }, { verb: 'patch', resource: 'services', subresource: 'status' },
        { verb: 'create', resource: 'events' }, { verb: 'create', resource: 'balancernodes' },
      ]) assert.ok(cp.audit.count({ ...write, user }) > 0, `the operator did ${JSON.stringify(write)}`);
      assert.deepEqual(refused(), [], `refused requests:\n${output}`);
    } catch (err) {
      // A wait that ran out says little by itself: what RBAC refused the operator usually says why.
      throw new Error(`${(err as Error).message}\nrefused to ${user}: ${refused().join(', ') || 'nothing'}\noperator output:\n${output}`, { cause: err });
    } finally {
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    assert.equal(child.exitCode, 0, `the operator stops cleanly on SIGTERM:\n${output}`);
    const lease = await getJson(`/apis/coordination.k8s.io/v1/namespaces/${NAMESPACE}/leases/fulcrum-operator`);
    assert.equal(lease.spec.holderIdentity ?? '', '', 'the Lease is released on stop');
  });

  it('helm upgrade with changed values changes those objects and rolls only what must roll', async () => {
    const before = await releaseManifest();
    const generation = async (kind: string, name: string): Promise<number> =>
      (await getJson(pathOf({ apiVersion: 'apps/v1', kind, metadata: { name, namespace: NAMESPACE } }))).metadata.generation as number;
    const balancerGen = await generation('DaemonSet', 'fulcrum-agent-balancer');
    const backendGen = await generation('DaemonSet', 'fulcrum-agent');
    const { stderr } = await helmOk(['upgrade', RELEASE, CHART, '-n', NAMESPACE, '--reuse-values', '--wait=hookOnly',
      ...sets({ 'operator.replicas': 1, 'agent.balancer.settings.mtu': 9000 })]);
    assert.doesNotMatch(stderr, /warn/i, stderr);
    assert.equal((await getJson(`/apis/apps/v1/namespaces/${NAMESPACE}/deployments/fulcrum-operator`)).spec.replicas, 1);
    const cm = await getJson(`/api/v1/namespaces/${NAMESPACE}/configmaps/fulcrum-agent`);
    assert.equal((parse(cm.data['balancer.yaml']) as { balancer: { mtu: number } }).balancer.mtu, 9000);
    assert.equal(cm.data['backend.yaml'], before.get('ConfigMap', 'fulcrum-agent').data['backend.yaml'], 'backend.yaml unchanged');
    // The balancer agents' configuration changed, so their pod template (its checksum) did; the backend agents' did not.
    assert.equal(await generation('DaemonSet', 'fulcrum-agent-balancer'), balancerGen + 1);
    assert.equal(await generation('DaemonSet', 'fulcrum-agent'), backendGen);
    await until('the operator Deployment down to one pod', async () => {
      const pods = await getJson(`/api/v1/namespaces/${NAMESPACE}/pods?labelSelector=app.kubernetes.io/component=operator`);
      return pods.items.filter((p: { metadata: { deletionTimestamp?: string } }) => p.metadata.deletionTimestamp === undefined).length === 1 ? true : undefined;
    });
    const history = (await helmOk(['history', RELEASE, '-n', NAMESPACE, '-o', 'json'])).stdout;
    assert.deepEqual((JSON.parse(history) as { revision: number; status: string }[]).map((h) => [h.revision, h.status]), [[1, 'superseded'], [2, 'deployed']]);
  });

  it('helm upgrade flips the agents to privileged and back: fields the chart no longer renders leave the stored objects', async () => {
    const securityContext = async (ds: string): Promise<Record<string, unknown>> =>
      (await getJson(`/apis/apps/v1/namespaces/${NAMESPACE}/daemonsets/${ds}`)).spec.template.spec.containers[0].securityContext;
    await helmOk(['upgrade', RELEASE, CHART, '-n', NAMESPACE, '--reuse-values', '--wait=hookOnly', ...sets({ 'agent.privileged': true })]);
    // The server refuses privileged with allowPrivilegeEscalation false: the upgrade must drop it, and the capabilities.
    for (const ds of ['fulcrum-agent-balancer', 'fulcrum-agent']) {
      const sc = await securityContext(ds);
      assert.equal(sc['privileged'], true, ds);
      assert.equal(sc['allowPrivilegeEscalation'], undefined, ds);
      assert.equal(sc['capabilities'], undefined, ds);
    }
    await helmOk(['upgrade', RELEASE, CHART, '-n', NAMESPACE, '--reuse-values', '--wait=hookOnly', ...sets({ 'agent.privileged': false })]);
    const sc = await securityContext('fulcrum-agent');
    assert.equal(sc['privileged'], false);
    assert.deepEqual((sc['capabilities'] as { add: string[] }).add, ['BPF', 'NET_ADMIN', 'PERFMON', 'SYS_ADMIN', 'SYS_PTRACE']);
  });

  it('helm upgrade --set agent.uninstall=true (docs/install.md#uninstall): the DaemonSets replace each agent pod with an uninstall pod', async () => {
    await helmOk(['upgrade', RELEASE, CHART, '-n', NAMESPACE, '--reuse-values', '--wait=hookOnly', ...sets({ 'agent.uninstall': true })]);
    // No kubelet runs the old pods, so they count as unavailable and the rollout replaces them at once.
    for (const role of ['balancer', 'backend']) {
      await until(`the ${role} agent pod replaced by an uninstall pod`, async () => {
        const pods = await getJson(`/api/v1/namespaces/${NAMESPACE}/pods?labelSelector=fulcrum.dev/agent-role=${role}`);
        const live = pods.items.filter((p: { metadata: { deletionTimestamp?: string } }) => p.metadata.deletionTimestamp === undefined);
        const shapes = live.map((p: { spec: { initContainers?: { name: string }[]; containers: { name: string }[] } }) =>
          [...(p.spec.initContainers ?? []).map((c) => c.name), ...p.spec.containers.map((c) => c.name)].join(','));
        return shapes.length === 1 && shapes[0] === 'mount-bpffs,uninstall,idle' ? true : undefined;
      }, 90_000);
    }
  });

  it('helm uninstall removes the release\'s objects and keeps the CRDs; installing again adopts them', async () => {
    const objects = await releaseManifest();
    const { stdout } = await helmOk(['uninstall', RELEASE, '-n', NAMESPACE]);
    assert.match(stdout, /kept due to the resource policy/);
    for (const o of objects.objects) {
      const status = (await request('admin', 'GET', pathOf(o))).status;
      if (o.kind === 'CustomResourceDefinition') assert.equal(status, 200, `${o.metadata.name} stays`);
      else assert.equal(status, 404, `${o.kind}/${o.metadata.name} is gone`);
    }
    // The garbage collector removes what the workloads made.
    await until('no pods left in the release namespace', async () => {
      const pods = await getJson(`/api/v1/namespaces/${NAMESPACE}/pods`);
      return pods.items.length === 0 ? true : undefined;
    }, 90_000);
    const install = readFileSync(join(ROOT, 'docs', 'install.md'), 'utf8');
    assert.match(install, /helm\.sh\/resource-policy: keep`, so `helm uninstall` leaves them/, 'docs/install.md says the CRDs stay');

    await helmOk(['install', RELEASE, CHART, '-n', NAMESPACE, '--wait=hookOnly', ...sets(VALUES)]);
    assert.equal((await releaseManifest()).ofKind('CustomResourceDefinition').length, CRDS.length);
    await helmOk(['uninstall', RELEASE, '-n', NAMESPACE]);
  });
});
