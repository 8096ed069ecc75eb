// charts/fulcrum: helm lint, then assertions on what `helm template` renders — RBAC verb by
// verb (and rule by rule against deploy/rbac/), the agent's privileges, host namespaces,
// mounts, probes, images, V8 flags, leader election, the ServiceMonitor switch, the CRDs
// against crds/, the agent's configuration through the agent's own zod schema, and the
// values schema refusing bad values.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { AgentConfig, BalancerSettings, decapGuePort } from '../../src/agent/config.ts';
import { DEFAULT_NETNS_STRATEGIES, formatNetnsStrategy } from '../../src/agent/netns-resolver.ts';
import { AGENT_NODE_OPTIONS } from '../../src/agent/runtime.ts';
import { BALANCER_NODE_LABEL } from '../../src/shared/api/common.ts';
import { LOG_LEVELS } from '../../src/shared/logging.ts';
import {
  CHART, NAMESPACE, ROOT, container, grants, render, runHelm, sets, uncommentedRules,
  type K8sObject, type Rendered, type Rule,
} from './support.ts';

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
const chartYaml = parse(readFileSync(join(CHART, 'Chart.yaml'), 'utf8')) as { apiVersion: string; appVersion: string };
const template = (file: string): string => readFileSync(join(CHART, 'templates', file), 'utf8');

/** The operator's V8 flags: the ones bench/operator.ts measures the operator with by default. */
const OPERATOR_NODE_OPTIONS = /FULCRUM_BENCH_OPERATOR_FLAGS'\] \?\? '([^']+)'/.exec(readFileSync(join(ROOT, 'bench', 'operator.ts'), 'utf8'))?.[1];
/** Kubernetes mode's file: AgentConfig without nodeName (src/cli/agent.ts reads NODE_NAME). */
const KubernetesAgentFile = AgentConfig.extend({ nodeName: AgentConfig.shape.nodeName.optional() });

const OPERATOR = 'fulcrum-operator';
const AGENT = 'fulcrum-agent';
const AGENT_BALANCER = 'fulcrum-agent-balancer';

let defaults: Rendered;
let privileged: Rendered;
let monitored: Rendered;
let noBalancer: Rendered;

before(async () => {
  [defaults, privileged, monitored, noBalancer] = await Promise.all([
    render(),
    render(sets({ 'agent.privileged': true })),
    render(sets({ 'serviceMonitor.enabled': true })),
    render(sets({ 'agent.balancer.enabled': false })),
  ]);
});

describe('chart metadata and lint', () => {
  it('is an apiVersion v2 chart whose appVersion is package.json\'s version', () => {
    assert.equal(chartYaml.apiVersion, 'v2');
    assert.equal(chartYaml.appVersion, pkg.version);
  });

  it('passes helm lint --strict, with the defaults and with every switch flipped', async () => {
    const results = await Promise.all([
      runHelm(['lint', '--strict', CHART]),
      runHelm(['lint', '--strict', CHART, ...sets({ 'agent.privileged': true, 'agent.mountBpffs': false, 'serviceMonitor.enabled': true, 'crds.install': false })]),
      runHelm(['lint', '--strict', CHART, ...sets({ 'agent.balancer.enabled': false, 'agent.uninstall': true, 'operator.replicas': 1, 'operator.leaderElection': false })]),
    ]);
    for (const r of results) assert.ok(r.ok, `helm lint failed:\n${r.stdout}\n${r.stderr}`);
  });

  it('renders every namespaced object into the release namespace', () => {
    const clusterScoped = new Set(['CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding']);
    for (const o of monitored.objects) {
      if (clusterScoped.has(o.kind)) assert.equal(o.metadata.namespace, undefined, `${o.kind}/${o.metadata.name}`);
      else assert.equal(o.metadata.namespace, NAMESPACE, `${o.kind}/${o.metadata.name}`);
      assert.equal(o.metadata.labels?.['app.kubernetes.io/name'], 'fulcrum', `${o.kind}/${o.metadata.name} labels`);
    }
  });
});

describe('RBAC', () => {
  const deployed = (file: string): K8sObject[] =>
    parseAllDocuments(readFileSync(join(ROOT, 'deploy', 'rbac', file), 'utf8')).map((d) => d.toJS() as K8sObject);
  const rulesOf = (objects: readonly K8sObject[], kind: string, name: string): Rule[] => {
    const role = objects.find((o) => o.kind === kind && o.metadata.name === name);
    assert.ok(role, `${kind} ${name}`);
    return role.rules as Rule[];
  };

  it('grants the agent exactly what src/agent/kubernetes.ts does: read BalancerNodes, PUT their status', () => {
    assert.deepEqual(Object.fromEntries(grants(rulesOf(defaults.objects, 'ClusterRole', AGENT))), {
      'fulcrum.dev/balancernodes': ['get', 'list', 'watch'],
      'fulcrum.dev/balancernodes/status': ['update'],
    });
    assert.ok(!defaults.ofKind('Role').some((r) => r.metadata.name.startsWith(AGENT)), 'the agent has no namespaced role');
  });

  it('grants the operator its verbs, resource by resource', () => {
    assert.deepEqual(Object.fromEntries(grants(rulesOf(defaults.objects, 'ClusterRole', OPERATOR))), {
      'fulcrum.dev/loadbalancervips': ['create', 'delete', 'get', 'list', 'patch', 'watch'],
      'fulcrum.dev/loadbalancervips/status': ['patch'],
      'fulcrum.dev/vippools': ['get', 'list', 'watch'],
      'fulcrum.dev/vippools/status': ['patch'],
      'fulcrum.dev/balancernodes': ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
      'core/services': ['get', 'list', 'watch'],
      'core/services/status': ['patch'],
      'core/services/finalizers': ['update'],
      'discovery.k8s.io/endpointslices': ['get', 'list', 'watch'],
      'core/nodes': ['get', 'list', 'watch'],
      'core/pods': ['get', 'list', 'watch'],
      'core/namespaces': ['get', 'list', 'watch'],
      'events.k8s.io/events': ['create', 'patch'],
      'core/events': ['create', 'patch'],
    });
    // The Lease: created by name-less create, then read and renewed by name only.
    assert.deepEqual(Object.fromEntries(grants(rulesOf(defaults.objects, 'Role', `${OPERATOR}-leader-election`))), {
      'coordination.k8s.io/leases': ['create'],
      'coordination.k8s.io/leases#fulcrum-operator': ['get', 'update'],
    });
  });

  it('names the Lease the operator really uses (its default leaseName)', () => {
    const source = readFileSync(join(ROOT, 'src', 'operator', 'operator.ts'), 'utf8');
    const match = /leaseName \?\? '([^']+)'/.exec(source);
    assert.ok(match, 'src/operator/operator.ts defaults leaseName');
    const role = defaults.get('Role', `${OPERATOR}-leader-election`);
    assert.deepEqual((role.rules as Rule[]).flatMap((r) => r.resourceNames ?? []), [match[1]]);
  });

  it('has the same rules as deploy/rbac/, rule by rule', () => {
    for (const [file, kind, name] of [
      ['agent.yaml', 'ClusterRole', AGENT],
      ['operator.yaml', 'ClusterRole', OPERATOR],
      ['operator.yaml', 'Role', `${OPERATOR}-leader-election`],
    ] as const) {
      assert.deepEqual(rulesOf(defaults.objects, kind, name), rulesOf(deployed(file), kind, name), `${kind} ${name} against deploy/rbac/${file}`);
    }
    // deploy/rbac holds nothing the chart lacks (and the reverse): the same kinds and names.
    const names = (objects: readonly K8sObject[]) => objects
      .filter((o) => ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'].includes(o.kind))
      .map((o) => `${o.kind}/${o.metadata.name}`).sort();
    assert.deepEqual(names(defaults.objects), names([...deployed('agent.yaml'), ...deployed('operator.yaml')]));
  });

  it('binds each role to its component\'s ServiceAccount in the release namespace', () => {
    for (const binding of [...defaults.ofKind('ClusterRoleBinding'), ...defaults.ofKind('RoleBinding')]) {
      const sa = binding.metadata.name.startsWith(AGENT) ? AGENT : OPERATOR;
      assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: sa, namespace: NAMESPACE }], binding.metadata.name);
      assert.equal(binding.roleRef.kind, binding.kind === 'RoleBinding' ? 'Role' : 'ClusterRole');
      defaults.get(binding.roleRef.kind, binding.roleRef.name);
      defaults.get('ServiceAccount', sa);
    }
    assert.equal(defaults.get('Deployment', OPERATOR).spec.template.spec.serviceAccountName, OPERATOR);
    for (const ds of defaults.ofKind('DaemonSet')) assert.equal(ds.spec.template.spec.serviceAccountName, AGENT);
  });

  it('says why for every rule in the templates', () => {
    for (const file of ['agent-clusterrole.yaml', 'operator-clusterrole.yaml', 'operator-role.yaml']) {
      assert.deepEqual(uncommentedRules(template(file)), [], `${file}: lines with a rule but no comment`);
    }
  });

  it('drops the Lease Role only with leader election off', async () => {
    const single = await render(sets({ 'operator.replicas': 1, 'operator.leaderElection': false }));
    assert.equal(single.ofKind('Role').length, 0);
    assert.ok(!container(single.get('Deployment', OPERATOR), 'operator').args.includes('--leader-elect'));
  });
});

describe('agent DaemonSets', () => {
  const daemonSets = (r: Rendered) => r.ofKind('DaemonSet');

  it('runs two DaemonSets whose node affinities exclude each other: balancer nodes and the rest', () => {
    const balancer = defaults.get('DaemonSet', AGENT_BALANCER).spec.template.spec;
    const backend = defaults.get('DaemonSet', AGENT).spec.template.spec;
    assert.equal(balancer.nodeSelector[BALANCER_NODE_LABEL], 'true', 'the label the operator places VIPs on by default');
    assert.deepEqual(backend.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms, [
      { matchExpressions: [{ key: BALANCER_NODE_LABEL, operator: 'NotIn', values: ['true'] }] },
    ]);
    assert.equal(backend.nodeSelector[BALANCER_NODE_LABEL], undefined);
    // Distinct selectors: neither DaemonSet claims the other's pods.
    const selectors = daemonSets(defaults).map((d) => JSON.stringify(d.spec.selector.matchLabels));
    assert.equal(new Set(selectors).size, 2);
    for (const ds of daemonSets(defaults)) {
      for (const [k, v] of Object.entries(ds.spec.selector.matchLabels as Record<string, string>)) assert.equal(ds.spec.template.metadata.labels[k], v);
    }
  });

  it('runs only the balancer DaemonSet, on every node, when its nodeSelector is cleared', async () => {
    const r = await render(['--set', `agent.balancer.nodeSelector.${BALANCER_NODE_LABEL.replace('.', '\\.')}=null`]);
    const [only, ...rest] = daemonSets(r);
    assert.equal(rest.length, 0);
    assert.equal(only!.metadata.name, AGENT_BALANCER);
    assert.deepEqual(only!.spec.template.spec.nodeSelector, { 'kubernetes.io/os': 'linux' });
    assert.equal(only!.spec.template.spec.affinity, undefined);
  });

  it('runs one DaemonSet everywhere, without a balancer section, when no node balances', () => {
    const [only, ...rest] = daemonSets(noBalancer);
    assert.equal(rest.length, 0);
    assert.equal(only!.metadata.name, AGENT);
    assert.equal(only!.spec.template.spec.affinity, undefined);
    assert.ok(!('balancer.yaml' in noBalancer.get('ConfigMap', AGENT).data));
  });

  it('uses the node\'s network and pid namespaces and cluster DNS', () => {
    for (const ds of daemonSets(defaults)) {
      const spec = ds.spec.template.spec;
      assert.equal(spec.hostNetwork, true, ds.metadata.name);
      assert.equal(spec.hostPID, true, ds.metadata.name);
      assert.equal(spec.dnsPolicy, 'ClusterFirstWithHostNet', ds.metadata.name);
    }
  });

  it('runs `agent --kubernetes` on its role\'s file, with the node name from the downward API', () => {
    const config = defaults.get('ConfigMap', AGENT);
    for (const [name, file] of [[AGENT_BALANCER, 'balancer.yaml'], [AGENT, 'backend.yaml']] as const) {
      const ds = defaults.get('DaemonSet', name);
      const agent = container(ds, 'agent');
      assert.equal(agent.command, undefined, 'the image\'s entrypoint runs the CLI');
      assert.deepEqual(agent.args, [
        'agent', '--kubernetes', '--config', `/etc/fulcrum/${file}`,
        '--pod-netns', DEFAULT_NETNS_STRATEGIES.map(formatNetnsStrategy).join(','),
        '--resync-seconds', '60', '--log-level', 'info',
      ]);
      assert.ok(file in config.data, `the ConfigMap has ${file}`);
      assert.deepEqual(agent.env.find((e: K8sObject) => e.name === 'NODE_NAME'), { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } });
      const mount = agent.volumeMounts.find((m: K8sObject) => m.mountPath === '/etc/fulcrum');
      const volume = ds.spec.template.spec.volumes.find((v: K8sObject) => v.name === mount.name);
      assert.deepEqual(volume.configMap, { name: AGENT });
      assert.match(ds.spec.template.metadata.annotations['checksum/config'], /^[0-9a-f]{64}$/);
    }
  });

  it('sets NODE_OPTIONS to the agent\'s V8 flags (src/agent/runtime.ts)', () => {
    for (const ds of daemonSets(defaults)) {
      const env = container(ds, 'agent').env.find((e: K8sObject) => e.name === 'NODE_OPTIONS');
      assert.equal(env.value, AGENT_NODE_OPTIONS.join(' '), ds.metadata.name);
    }
  });

  it('mounts the node\'s bpffs (pins outlive the pod) and /run/netns, with the right propagation', () => {
    for (const ds of daemonSets(defaults)) {
      const spec = ds.spec.template.spec;
      const hostPath = (name: string) => spec.volumes.find((v: K8sObject) => v.name === name)?.hostPath;
      const mounts = Object.fromEntries(container(ds, 'agent').volumeMounts.map((m: K8sObject) => [m.mountPath, m]));
      assert.deepEqual(hostPath(mounts['/sys/fs/bpf'].name), { path: '/sys/fs/bpf', type: 'Directory' });
      assert.equal(mounts['/sys/fs/bpf'].mountPropagation, 'HostToContainer');
      assert.deepEqual(hostPath(mounts['/run/netns'].name), { path: '/run/netns', type: 'DirectoryOrCreate' });
      assert.equal(mounts['/run/netns'].mountPropagation, 'HostToContainer');
      assert.equal(mounts['/run/netns'].readOnly, true);
      // The init container mounts bpffs on the node if missing: Bidirectional, so the mount is the node's.
      const init = container(ds, 'mount-bpffs', true);
      assert.deepEqual(init.volumeMounts, [{ name: mounts['/sys/fs/bpf'].name, mountPath: '/sys/fs/bpf', mountPropagation: 'Bidirectional' }]);
      assert.equal(init.securityContext.privileged, true, 'Kubernetes allows Bidirectional only in privileged containers');
      assert.match(init.args.join(' '), /mount -t bpf bpf \/sys\/fs\/bpf/);
    }
  });

  it('runs unprivileged, as root, with exactly BPF, NET_ADMIN, PERFMON, SYS_ADMIN, SYS_PTRACE', () => {
    assert.equal(daemonSets(defaults).length, 2);
    for (const ds of daemonSets(defaults)) {
      const sc = container(ds, 'agent').securityContext;
      assert.equal(sc.privileged, false, ds.metadata.name);
      assert.equal(sc.allowPrivilegeEscalation, false);
      assert.equal(sc.runAsUser, 0);
      assert.deepEqual(sc.capabilities.drop, ['ALL']);
      assert.deepEqual([...sc.capabilities.add].sort(), ['BPF', 'NET_ADMIN', 'PERFMON', 'SYS_ADMIN', 'SYS_PTRACE']);
    }
  });

  it('writes pods\' sysctls through the host\'s /proc, mounted writable at /host/proc (the container\'s /proc/sys is read-only)', () => {
    for (const ds of daemonSets(defaults)) {
      const agent = container(ds, 'agent');
      const mount = (agent.volumeMounts as K8sObject[]).find((m) => m.mountPath === '/host/proc');
      assert.ok(mount, `${ds.metadata.name} mounts /host/proc`);
      assert.notEqual(mount.readOnly, true);
      const volume = (ds.spec.template.spec.volumes as K8sObject[]).find((v) => v.name === mount.name);
      assert.deepEqual(volume?.hostPath, { path: '/proc', type: 'Directory' });
      const file = (agent.args as string[])[3]!.replace('/etc/fulcrum/', '');
      const config = parse(defaults.get('ConfigMap', AGENT).data[file]) as { sysctlRoot?: string };
      assert.equal(config.sysctlRoot, '/host/proc/sys');
    }
  });

  it('agent.privileged=true runs both DaemonSets\' agents privileged (an escape hatch)', () => {
    for (const ds of daemonSets(privileged)) {
      assert.equal(container(ds, 'agent').securityContext.privileged, true, ds.metadata.name);
    }
  });

  it('gives every capability a one-line reason in the template', () => {
    const lines = template('_agent.tpl').split('\n');
    const start = lines.findIndex((l) => /^\s+add:\s*$/.test(l));
    assert.ok(start > 0, 'a capabilities.add list');
    let seen = 0;
    for (let i = start + 1; i < lines.length && /^\s+(#|- )/.test(lines[i]!); i++) {
      if (!lines[i]!.trim().startsWith('- ')) continue;
      seen++;
      assert.match(lines[i - 1]!, /^\s+# \S/, `capability ${lines[i]!.trim()} has no reason above it`);
      assert.doesNotMatch(lines[i - 2]!, /^\s+#/, `the reason for ${lines[i]!.trim()} is one line`);
    }
    assert.equal(seen, 5);
  });

  it('probes /healthz and /readyz on the port the agent\'s configuration serves', () => {
    for (const ds of daemonSets(defaults)) {
      const agent = container(ds, 'agent');
      const port = agent.ports.find((p: K8sObject) => p.name === 'metrics');
      const file = (agent.args as string[])[3]!.replace('/etc/fulcrum/', '');
      const config = parse(defaults.get('ConfigMap', AGENT).data[file]) as { metrics: { port: number } };
      assert.equal(port.containerPort, config.metrics.port);
      assert.deepEqual(agent.livenessProbe.httpGet, { path: '/healthz', port: 'metrics' });
      assert.deepEqual(agent.readinessProbe.httpGet, { path: '/readyz', port: 'metrics' });
    }
  });

  it('rolls one node at a time, tolerates every taint, and has a grace period', () => {
    for (const ds of daemonSets(defaults)) {
      assert.deepEqual(ds.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
      assert.deepEqual(ds.spec.template.spec.tolerations, [{ operator: 'Exists' }]);
      assert.equal(ds.spec.template.spec.terminationGracePeriodSeconds, 30);
      assert.equal(ds.spec.template.spec.nodeSelector['kubernetes.io/os'], 'linux');
    }
  });

  it('with agent.uninstall=true removes each node\'s data plane in an init container, then idles', async () => {
    const r = await render(sets({ 'agent.uninstall': true }));
    const roles = daemonSets(r);
    assert.equal(roles.length, 2);
    for (const ds of roles) {
      const spec = ds.spec.template.spec;
      const file = ds.metadata.name === AGENT_BALANCER ? 'balancer.yaml' : 'backend.yaml';
      const uninstall = container(ds, 'uninstall', true);
      assert.deepEqual(uninstall.args, ['agent', '--kubernetes', '--config', `/etc/fulcrum/${file}`, '--uninstall', '--log-level', 'info']);
      // The same privileges and paths as the agent that made the data plane.
      const agent = container(defaults.get('DaemonSet', ds.metadata.name), 'agent');
      assert.deepEqual(uninstall.securityContext, agent.securityContext);
      assert.deepEqual(uninstall.volumeMounts, agent.volumeMounts);
      assert.deepEqual(uninstall.env, agent.env.filter((e: K8sObject) => e.name === 'NODE_NAME'));
      assert.equal(spec.hostPID, true, 'duty records name /proc/<pid>/ns/net paths');
      // No agent container is left to put the data plane back.
      assert.deepEqual(spec.containers.map((c: K8sObject) => c.name), ['idle']);
      const idle = container(ds, 'idle');
      assert.equal(idle.securityContext.runAsNonRoot, true);
      assert.deepEqual(idle.securityContext.capabilities, { drop: ['ALL'] });
      assert.equal(ds.spec.template.metadata.annotations['kubectl.kubernetes.io/default-container'], 'idle');
    }
  });

  it('drops the init container and the netns mount when they are switched off', async () => {
    const r = await render(sets({ 'agent.mountBpffs': false, 'agent.podNetns.dir': '' }));
    for (const ds of daemonSets(r)) {
      assert.equal(ds.spec.template.spec.initContainers, undefined);
      const agent = container(ds, 'agent');
      assert.ok(!agent.volumeMounts.some((m: K8sObject) => m.mountPath === '/run/netns'));
      assert.equal(agent.args[agent.args.indexOf('--pod-netns') + 1], 'proc');
    }
  });
});

describe('agent configuration', () => {
  const files = (r: Rendered) => r.get('ConfigMap', AGENT).data as Record<string, string>;

  it('parses with the agent\'s own schema: balancer.yaml with a balancer section, backend.yaml without', () => {
    const { 'balancer.yaml': balancer, 'backend.yaml': backend } = files(defaults);
    const b = KubernetesAgentFile.parse(parse(balancer!));
    const n = KubernetesAgentFile.parse(parse(backend!));
    assert.ok(b.balancer, 'balancer.yaml has a balancer section');
    assert.equal(n.balancer, undefined, 'backend.yaml has none');
    assert.deepEqual(b.balancer.nextHop, { fib: true });
    assert.equal(b.bpfObjectDir, undefined, 'the objects are found at bpf/build of the installation');
    for (const c of [b, n]) {
      assert.equal(c.nodeName, undefined, 'the node name comes from NODE_NAME');
      assert.equal(c.pinRoot, '/sys/fs/bpf/fulcrum');
      assert.deepEqual(c.metrics, { host: '0.0.0.0', port: 9464 });
      // With the node name, it is a complete AgentConfig.
      AgentConfig.parse({ ...c, nodeName: 'worker-1' });
    }
    // The rendered defaults are the agent's defaults: the file only spells them out.
    assert.deepEqual(b.balancer, BalancerSettings.parse({ interfaces: [{ name: 'eth0' }], nextHop: { fib: true } }));
  });

  it('gives every node the balancers\' GUE port, so backend-only nodes accept what they send', async () => {
    const r = await render(sets({ 'agent.balancer.settings.guePort': 7000 }));
    const data = r.get('ConfigMap', AGENT).data as Record<string, string>;
    const b = AgentConfig.parse({ ...parse(data['balancer.yaml']!), nodeName: 'lb-1' });
    const n = AgentConfig.parse({ ...parse(data['backend.yaml']!), nodeName: 'worker-1' });
    assert.equal(b.balancer?.guePort, 7000);
    assert.equal(decapGuePort(b), 7000);
    assert.equal(decapGuePort(n), 7000, 'a node without a balancer section decapsulates on the balancers\' port');
  });

  it('renders a MAC next hop and node addresses, and the agent accepts them', async () => {
    const r = await render(sets({
      'agent.balancer.settings.nextHop.mode': 'mac',
      'agent.balancer.settings.nextHop.mac': '02:42:ac:11:00:01',
      'agent.balancer.settings.nodeAddress4': '192.0.2.11',
      'agent.balancer.settings.interfaces[0].name': 'bond0',
      'agent.balancer.settings.interfaces[0].attachMode': 'native',
    }));
    const b = KubernetesAgentFile.parse(parse(files(r)['balancer.yaml']!));
    assert.deepEqual(b.balancer?.nextHop, { mac: '02:42:ac:11:00:01' });
    assert.equal(b.balancer?.nodeAddress4, '192.0.2.11');
    assert.equal(b.balancer?.nodeAddress6, undefined);
    assert.deepEqual(b.balancer?.interfaces, [{ name: 'bond0', attachMode: 'native' }]);
  });

  it('a value the agent would refuse fails here too (the test can fail)', () => {
    const text = files(defaults)['balancer.yaml']!.replace('ringSize: 65537', 'ringSize: 65536');
    assert.notEqual(text, files(defaults)['balancer.yaml']);
    assert.throws(() => KubernetesAgentFile.parse(parse(text)), /prime/);
  });

  it('bounds the balancer settings in values.schema.json as BalancerSettings does', () => {
    const schema = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8'));
    const chart = schema.properties.agent.properties.balancer.properties.settings.properties as Record<string, Record<string, unknown>>;
    const zod = (z.toJSONSchema(BalancerSettings, { io: 'input', unrepresentable: 'any' }) as { properties: Record<string, Record<string, unknown>> }).properties;
    // nextHop is {mode, mac} in values (friendlier to --set); the template turns it into the union.
    assert.deepEqual(Object.keys(chart).sort(), Object.keys(zod).sort());
    // The chart's node for a field, $refs followed; an anyOf counts by its branches' types.
    const resolve = (node: Record<string, unknown>): Record<string, unknown> => {
      const ref = node.$ref as string | undefined;
      const resolved = ref === undefined ? node : resolve(schema.definitions[ref.replace('#/definitions/', '')]);
      const anyOf = resolved.anyOf as Record<string, unknown>[] | undefined;
      if (anyOf === undefined) return resolved;
      const types = new Set(anyOf.map((b) => resolve(b)).map((b) => b.type ?? typeof b.const));
      return { ...resolved, type: types.size === 1 ? [...types][0] : [...types] };
    };
    for (const [field, z7] of Object.entries(zod)) {
      const mine = resolve(chart[field]!);
      for (const key of ['type', 'minimum', 'maximum', 'exclusiveMinimum']) {
        if (key in z7) assert.deepEqual(mine[key], z7[key], `settings.${field}.${key}`);
      }
    }
    assert.deepEqual(chart.interfaces!.minItems, zod.interfaces!.minItems);
    const itemsOf = (s: Record<string, unknown>) => (s.items as { properties: Record<string, Record<string, unknown>> }).properties;
    assert.deepEqual(itemsOf(chart.interfaces!).attachMode!.enum, itemsOf(zod.interfaces!).attachMode!.enum);
    assert.deepEqual(itemsOf(chart.interfaces!).name!.maxLength, itemsOf(zod.interfaces!).name!.maxLength);
    assert.deepEqual(schema.definitions.logLevel.enum, [...LOG_LEVELS]);
  });
});

describe('operator Deployment', () => {
  it('runs 2 leader-elected replicas serving metrics and probes on one port', () => {
    const d = defaults.get('Deployment', OPERATOR);
    assert.equal(d.spec.replicas, 2);
    const op = container(d, 'operator');
    assert.equal(op.command, undefined, 'the image\'s entrypoint runs the CLI');
    assert.deepEqual(op.args, ['operator', '--leader-elect', '--metrics-port', '8080', '--log-level', 'info']);
    const env = Object.fromEntries(op.env.map((e: K8sObject) => [e.name, e]));
    assert.deepEqual(env.POD_NAME.valueFrom, { fieldRef: { fieldPath: 'metadata.name' } });
    assert.deepEqual(env.POD_NAMESPACE.valueFrom, { fieldRef: { fieldPath: 'metadata.namespace' } });
    assert.ok(OPERATOR_NODE_OPTIONS, 'bench/operator.ts names the operator\'s default V8 flags');
    assert.equal(env.NODE_OPTIONS.value, OPERATOR_NODE_OPTIONS);
    assert.deepEqual(op.ports, [{ name: 'metrics', containerPort: 8080, protocol: 'TCP' }]);
    assert.deepEqual(op.livenessProbe.httpGet, { path: '/healthz', port: 'metrics' });
    assert.deepEqual(op.readinessProbe.httpGet, { path: '/readyz', port: 'metrics' });
    assert.ok(op.resources.requests.cpu && op.resources.requests.memory && op.resources.limits.memory);
  });

  it('runs as a non-root user with a read-only root and no capabilities', () => {
    const d = defaults.get('Deployment', OPERATOR);
    const pod = d.spec.template.spec.securityContext;
    assert.equal(pod.runAsNonRoot, true);
    assert.equal(pod.runAsUser, 65532);
    assert.deepEqual(container(d, 'operator').securityContext, {
      allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, privileged: false, capabilities: { drop: ['ALL'] },
    });
  });

  it('keeps the probes on the metrics port when it moves', async () => {
    const r = await render(sets({ 'operator.metrics.port': 9090 }));
    const op = container(r.get('Deployment', OPERATOR), 'operator');
    assert.equal(op.args[op.args.indexOf('--metrics-port') + 1], '9090');
    assert.equal(op.ports[0].containerPort, 9090);
  });
});

describe('images', () => {
  const images = (r: Rendered) => [...r.ofKind('Deployment'), ...r.ofKind('DaemonSet')].flatMap((w) =>
    [...w.spec.template.spec.containers, ...(w.spec.template.spec.initContainers ?? [])].map((c: K8sObject) => [c.image, c.imagePullPolicy]));

  it('runs one image, tagged with the appVersion, in every container', () => {
    const all = images(defaults);
    assert.ok(all.length >= 5);
    for (const [image, policy] of all) {
      assert.equal(image, `fulcrum:${chartYaml.appVersion}`);
      assert.equal(policy, 'IfNotPresent');
    }
  });

  it('takes a tag, a digest and a pull policy from values', async () => {
    const digest = `sha256:${'ab'.repeat(32)}`;
    const [tagged, pinned] = await Promise.all([
      render(sets({ 'image.repository': 'registry.example/fulcrum', 'image.tag': '0.2.0-rc.1', 'image.pullPolicy': 'Always' })),
      render(sets({ 'image.digest': digest })),
    ]);
    for (const [image, policy] of images(tagged)) {
      assert.equal(image, 'registry.example/fulcrum:0.2.0-rc.1');
      assert.equal(policy, 'Always');
    }
    for (const [image] of images(pinned)) assert.equal(image, `fulcrum@${digest}`);
  });
});

describe('ServiceMonitor', () => {
  it('is absent unless enabled, with its Services', () => {
    assert.equal(defaults.objects.filter((o) => o.apiVersion.startsWith('monitoring.coreos.com/')).length, 0);
    assert.equal(defaults.ofKind('Service').length, 0);
  });

  it('when enabled, scrapes both components through Services that select their pods', () => {
    const monitors = monitored.ofKind('ServiceMonitor');
    assert.deepEqual(monitors.map((m) => m.metadata.name).sort(), [AGENT, OPERATOR]);
    const workloads = [...monitored.ofKind('Deployment'), ...monitored.ofKind('DaemonSet')];
    for (const monitor of monitors) {
      assert.equal(monitor.apiVersion, 'monitoring.coreos.com/v1');
      const matches = (labels: Record<string, string> | undefined, selector: Record<string, string>) =>
        Object.entries(selector).every(([k, v]) => labels?.[k] === v);
      const services = monitored.ofKind('Service').filter((s) => matches(s.metadata.labels, monitor.spec.selector.matchLabels));
      assert.equal(services.length, 1, `${monitor.metadata.name} selects one Service`);
      const service = services[0]!;
      assert.deepEqual(monitor.spec.endpoints.map((e: K8sObject) => [e.port, e.path]), [['metrics', '/metrics']]);
      assert.ok(service.spec.ports.some((p: K8sObject) => p.name === 'metrics' && p.targetPort === 'metrics'));
      const selected = workloads.filter((w) => matches(w.spec.template.metadata.labels, service.spec.selector));
      assert.ok(selected.length > 0, `${service.metadata.name} selects pods`);
      for (const w of selected) {
        assert.ok([...w.spec.template.spec.containers].some((c: K8sObject) => c.ports?.some((p: K8sObject) => p.name === 'metrics')), w.metadata.name);
      }
    }
  });
});

describe('CRDs', () => {
  const repoCrds = readdirSync(join(ROOT, 'crds')).filter((f) => f.endsWith('.yaml')).sort();

  it('files/crds/ is the repository\'s crds/, byte for byte (both written by npm run gen:crds)', () => {
    assert.deepEqual(readdirSync(join(CHART, 'files', 'crds')).sort(), repoCrds);
    for (const file of repoCrds) {
      assert.ok(readFileSync(join(CHART, 'files', 'crds', file)).equals(readFileSync(join(ROOT, 'crds', file))), `${file} differs from crds/${file}`);
    }
    assert.ok(!existsSync(join(CHART, 'crds')), 'no crds/ directory: Helm would never upgrade it');
  });

  it('renders each CRD as in crds/, plus helm.sh/resource-policy: keep', () => {
    const rendered = defaults.ofKind('CustomResourceDefinition');
    assert.equal(rendered.length, repoCrds.length);
    for (const file of repoCrds) {
      const expected = parse(readFileSync(join(ROOT, 'crds', file), 'utf8')) as K8sObject;
      const got = structuredClone(rendered.find((c) => c.metadata.name === expected.metadata.name));
      assert.ok(got, expected.metadata.name);
      assert.deepEqual(got.metadata.annotations, { ...expected.metadata.annotations, 'helm.sh/resource-policy': 'keep' });
      if (expected.metadata.annotations === undefined) delete got.metadata.annotations;
      else got.metadata.annotations = expected.metadata.annotations;
      assert.deepEqual(got, expected, `${file} as rendered`);
    }
  });

  it('leaves them out with crds.install=false', async () => {
    const r = await render(sets({ 'crds.install': false }));
    assert.equal(r.ofKind('CustomResourceDefinition').length, 0);
  });
});

describe('values schema', () => {
  const SCHEMA_ERROR = /values don't meet the specifications of the schema/;

  it('refuses bad values with a schema error naming the field', async () => {
    const cases: [Record<string, string | number | boolean>, RegExp][] = [
      [{ 'operator.replicas': -1 }, /\/operator\/replicas/],
      [{ 'operator.replicas': 'two' }, /\/operator\/replicas/],
      [{ replicas: 2 }, /additional properties 'replicas' not allowed/],
      [{ 'agent.unknownField': true }, /additional properties 'unknownField' not allowed/],
      [{ 'agent.metrics.port': 70000 }, /\/agent\/metrics\/port/],
      [{ 'operator.metrics.port': 0 }, /\/operator\/metrics\/port/],
      [{ 'image.pullPolicy': 'Sometimes' }, /\/image\/pullPolicy/],
      [{ 'agent.logLevel': 'verbose' }, /\/agent\/logLevel/],
      [{ 'operator.leaderElection': false }, /\/operator\/leaderElection/],
      [{ 'agent.balancer.settings.nextHop.mode': 'mac' }, /\/agent\/balancer\/settings\/nextHop\/mac/],
      [{ 'agent.balancer.settings.ringSize': 3 }, /\/agent\/balancer\/settings\/ringSize/],
      [{ 'agent.balancer.settings.interfaces[0].attachMode': 'fast' }, /attachMode/],
      [{ 'agent.pinRoot': '/var/run/fulcrum' }, /\/agent\/pinRoot/],
      [{ 'agent.podNetns.dir': '', 'agent.podNetns.proc': false }, /\/agent\/podNetns/],
      [{ 'crds.install': 'yes' }, /\/crds\/install/],
      // "<prefix>-operator-metrics" must be a Service name: 63 characters at most (install.test.ts).
      [{ fullnameOverride: 'x'.repeat(47) }, /\/fullnameOverride/],
      // Bytes, not millibytes (the server warns; install.test.ts).
      [{ 'agent.resources.requests.memory': '256m' }, /\/agent\/resources\/requests\/memory/],
    ];
    const results = await Promise.all(cases.map(([values]) => runHelm(['template', 'fulcrum', CHART, ...sets(values)])));
    results.forEach((r, i) => {
      const [values, field] = cases[i]!;
      assert.equal(r.ok, false, `${JSON.stringify(values)} was accepted`);
      assert.match(r.stderr, SCHEMA_ERROR, JSON.stringify(values));
      assert.match(r.stderr, field, JSON.stringify(values));
    });
  });

  it('accepts the defaults and good variations (so the refusals above are the schema\'s)', async () => {
    const results = await Promise.all([
      runHelm(['template', 'fulcrum', CHART]),
      runHelm(['template', 'fulcrum', CHART, ...sets({ 'operator.replicas': 3, 'agent.maxUnavailable': '10%' }),
        '--set-json', 'agent.balancer.settings.udpTimeoutSeconds=2.5']),
    ]);
    for (const r of results) assert.ok(r.ok, r.stderr);
  });

  it('has a comment on every field of values.yaml', () => {
    // A field is a key the schema names under `properties` (or a list's `items`), reached
    // without passing through a $ref: the children of free-form maps and of Kubernetes
    // structures (resources, nodeSelector, tolerations) are not the chart's fields.
    const schema = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8')) as Record<string, unknown>;
    type Node = { properties?: Record<string, Node>; items?: Node };
    const lines = readFileSync(join(CHART, 'values.yaml'), 'utf8').split('\n');
    const stack: { indent: number; path: string[] }[] = [];
    const missing: string[] = [];
    let fields = 0;
    for (let i = 0; i < lines.length; i++) {
      const m = /^(\s*)(- )?([A-Za-z0-9_.\/-]+):/.exec(lines[i]!);
      if (m === null || lines[i]!.trim().startsWith('#')) continue;
      const indent = m[1]!.length + (m[2] ? 2 : 0);
      while (stack.length > 0 && stack[stack.length - 1]!.indent >= indent) stack.pop();
      const parent = stack.length > 0 ? stack[stack.length - 1]!.path : [];
      const path = [...parent, ...(m[2] ? ['[]'] : []), m[3]!];
      stack.push({ indent, path });
      let node: Node | undefined = schema as Node;
      for (const segment of path) node = segment === '[]' ? node?.items : node?.properties?.[segment];
      if (node === undefined) continue;
      fields++;
      if (!lines[i - 1]!.trim().startsWith('#')) missing.push(`line ${i + 1}: ${path.join('.')}`);
    }
    assert.ok(fields > 50, `found ${fields} fields`);
    assert.deepEqual(missing, []);
  });
});
