// Operator test harness: one real control plane (etcd + kube-apiserver, optionally
// kube-controller-manager) per test file, with Fulcrum installed as a user installs it
// (CRDs, namespace, RBAC: src/lab/install.ts); operators run as the operator's
// ServiceAccount and a fake agent reports BalancerNode status as the agents'
// ServiceAccount, so RBAC is enforced on both exactly as on a cluster. The test itself
// acts as the cluster admin. Object builders and polling helpers below.
//
// kube-controller-manager is off by default: the tests write EndpointSlices themselves
// (the real EndpointSlice controller would add its own, empty, slices for every Service
// with a selector and no Pods that match), and the operator — not the garbage collector —
// must delete a removed Node's BalancerNode. Without it no ServiceAccount "default"
// appears in new namespaces, so ensureNamespace() makes one for Pods to be admitted.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import type { Level } from 'pino';
import { ControlPlane } from '../../src/lab/control-plane.ts';
import { FULCRUM_NAMESPACE, installFulcrum } from '../../src/lab/install.ts';
import type { FulcrumIdentities } from '../../src/lab/install.ts';
import type { BalancerNode, LoadBalancerVip, VipPool } from '../../src/operator/api.ts';
import { vipKey } from '../../src/shared/desired-state.ts';
import { RESOURCES } from '../../src/operator/kinds.ts';
import type { Condition, EndpointSlice, KubeObject, Node, Pod, Service } from '../../src/operator/kinds.ts';
import { KubeClient } from '../../src/shared/kube/client.ts';
import { isApiError } from '../../src/shared/kube/errors.ts';
import { Operator } from '../../src/operator/operator.ts';
import type { OperatorOptions } from '../../src/operator/operator.ts';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Time limits for a file's before/after hooks: a control plane starts in seconds, slower on a busy machine. */
export const START_TIMEOUT_MS = 180_000;
export const STOP_TIMEOUT_MS = 60_000;
/** Default time limit of one test against the real server. */
export const TEST_TIMEOUT_MS = 120_000;

export function testLogger(name: string): pino.Logger {
  const level = (process.env['FULCRUM_TEST_LOG_LEVEL'] as Level | undefined) ?? 'silent';
  return pino({ name, level });
}

export function kubeConfigFrom(path: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  return kc;
}

export interface Env {
  cp: ControlPlane;
  ids: FulcrumIdentities;
  /** The cluster admin (what the test does as a user). */
  client: KubeClient;
  /** The agents' ServiceAccount (the fake agent's status reports). */
  agent: KubeClient;
  operators: Operator[];
  /** Starts an operator as the operator's ServiceAccount. */
  startOperator(options?: Partial<OperatorOptions>): Promise<Operator>;
  /** Makes a namespace (and its ServiceAccount "default", which Pods need) unless it exists. */
  ensureNamespace(name: string, labels?: Record<string, string>): Promise<void>;
  stop(): Promise<void>;
}

const SERVICE_ACCOUNTS = { group: '', version: 'v1', plural: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true } as const;

export const FAST_BACKOFF = { initialMs: 50, maxMs: 1000 };

/**
 * A real control plane with Fulcrum installed; kube-controller-manager only when asked
 * for (see the header).
 */
export async function startEnv(options: { controllerManager?: boolean } = {}): Promise<Env> {
  const cp = await ControlPlane.start({ controllerManager: options.controllerManager ?? false });
  const onExit = (): void => cp.stopSync();
  process.once('exit', onExit);
  try {
    const ids = await installFulcrum(cp);
    const client = new KubeClient(kubeConfigFrom(cp.adminKubeconfigPath), { userAgent: 'fulcrum-test' });
    const agent = new KubeClient(kubeConfigFrom(ids.agentKubeconfig), { userAgent: 'fulcrum-test-agent' });
    const operators: Operator[] = [];
    let n = 0;
    const env: Env = {
      cp, ids, client, agent, operators,
      async startOperator(extra: Partial<OperatorOptions> = {}) {
        const op = new Operator({
          kubeConfig: kubeConfigFrom(ids.operatorKubeconfig),
          namespace: FULCRUM_NAMESPACE,
          leaderElect: false,
          identity: `operator-${++n}`,
          log: testLogger(`operator-${n}`),
          backoff: FAST_BACKOFF,
          eventDedupeMs: 60_000,
          ...extra,
        });
        operators.push(op);
        await op.start();
        if (!(extra.leaderElect ?? false)) await op.leadingAndSynced(60_000);
        return op;
      },
      async ensureNamespace(name: string, labels: Record<string, string> = {}) {
        for (const [rt, body] of [
          [RESOURCES.namespaces, { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } }],
          [SERVICE_ACCOUNTS, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace: name } }],
        ] as const) {
          try {
            await client.create(rt, body as KubeObject);
          } catch (err) {
            if (!isApiError(err, 409)) throw err;
          }
        }
      },
      async stop() {
        await Promise.all(operators.map((o) => o.stop()));
        client.close();
        agent.close();
        process.removeListener('exit', onExit);
        await cp.stop();
      },
    };
    await env.ensureNamespace('default');
    return env;
  } catch (err) {
    process.removeListener('exit', onExit);
    await cp.stop();
    throw err;
  }
}

/** Polls `probe` until it returns something; fails naming what it waited for. */
export async function waitFor<T>(probe: () => T | undefined | false | Promise<T | undefined | false>, what: string | (() => string), timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const text = typeof what === 'function' ? what() : what;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${text}${lastError !== undefined ? ` (last error: ${(lastError as Error).message})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Resolves after `ms`: only to let something that must NOT happen have its chance. */
export const settle = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ builders

export function node(name: string, labels: Record<string, string> = {}): Node {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name, labels } };
}

export const BALANCER = { 'fulcrum.dev/balancer': 'true' };

export function service(namespace: string, name: string, options: {
  ports?: { port: number; protocol?: 'TCP' | 'UDP' | 'SCTP'; name?: string }[];
  type?: string;
  loadBalancerClass?: string | undefined;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  ipFamilies?: ('IPv4' | 'IPv6')[];
  loadBalancerIP?: string;
  sessionAffinity?: string;
} = {}): Service {
  const type = options.type ?? 'ClusterIP';
  return {
    apiVersion: 'v1', kind: 'Service',
    metadata: { name, namespace, ...(options.annotations ? { annotations: options.annotations } : {}), ...(options.labels ? { labels: options.labels } : {}) },
    spec: {
      type,
      ports: (options.ports ?? [{ port: 80 }]).map((p, i) => ({ name: p.name ?? `p${i}`, port: p.port, protocol: p.protocol ?? 'TCP' })),
      selector: { app: name },
      ...(options.loadBalancerClass !== undefined ? { loadBalancerClass: options.loadBalancerClass } : {}),
      ...(options.ipFamilies ? { ipFamilies: options.ipFamilies } : {}),
      ...(options.loadBalancerIP ? { loadBalancerIP: options.loadBalancerIP } : {}),
      ...(options.sessionAffinity ? { sessionAffinity: options.sessionAffinity } : {}),
    },
  };
}

export function lbService(namespace: string, name: string, options: Parameters<typeof service>[2] = {}): Service {
  return service(namespace, name, { type: 'LoadBalancer', loadBalancerClass: 'fulcrum.dev/xdp', ...options });
}

export function pod(namespace: string, name: string, nodeName: string, ips: string[], annotations: Record<string, string> = {}): Pod {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, namespace, labels: { app: 'x' }, annotations },
    spec: { nodeName, containers: [{ name: 'c', image: 'busybox' }] } as Pod['spec'],
    status: { podIP: ips[0]!, podIPs: ips.map((ip) => ({ ip })) },
  };
}

/** Creates a Pod and writes its status (a create drops status, as in Kubernetes). */
export async function createPod(client: KubeClient, p: Pod): Promise<Pod> {
  await client.create(RESOURCES.pods, p);
  return client.patch<Pod>(RESOURCES.pods, p.metadata.name, p.metadata.namespace, { status: p.status }, { type: 'merge', subresource: 'status' });
}

export interface EndpointInput {
  ip: string;
  node?: string;
  pod?: { name: string; uid: string };
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
}

export function slice(namespace: string, svc: string, name: string, family: 'IPv4' | 'IPv6', endpoints: EndpointInput[], port = 80): EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name, namespace, labels: { 'kubernetes.io/service-name': svc, 'endpointslice.kubernetes.io/managed-by': 'test' } },
    addressType: family,
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: e.ready ?? true, serving: e.serving ?? e.ready ?? true, terminating: e.terminating ?? false },
      ...(e.node !== undefined ? { nodeName: e.node } : {}),
      ...(e.pod !== undefined ? { targetRef: { kind: 'Pod', name: e.pod.name, namespace, uid: e.pod.uid } } : {}),
    })),
    ports: [{ name: 'p0', port, protocol: 'TCP' }],
  };
}

export function lbvip(namespace: string, name: string, spec: Record<string, unknown>, annotations: Record<string, string> = {}): LoadBalancerVip {
  return { apiVersion: 'fulcrum.dev/v1alpha1', kind: 'LoadBalancerVip', metadata: { name, namespace, annotations }, spec };
}

export function pool(name: string, spec: Record<string, unknown>): VipPool {
  return { apiVersion: 'fulcrum.dev/v1alpha1', kind: 'VipPool', metadata: { name }, spec };
}

// ------------------------------------------------------------------ reads

export async function getOrUndefined<T extends KubeObject>(client: KubeClient, rt: Parameters<KubeClient['get']>[0], name: string, namespace?: string): Promise<T | undefined> {
  try {
    return await client.get<T>(rt, name, namespace);
  } catch (err) {
    if (isApiError(err, 404)) return undefined;
    throw err;
  }
}

export function condition(obj: { status?: { conditions?: Condition[] } } | undefined, type: string): Condition | undefined {
  return obj?.status?.conditions?.find((c) => c.type === type);
}

/** Waits for a condition of an LBVip to have this status (and reason, when given). */
export async function waitForVipCondition(client: KubeClient, namespace: string, name: string, type: string, status: 'True' | 'False', reason?: string, timeoutMs = 30_000): Promise<LoadBalancerVip> {
  let last: LoadBalancerVip | undefined;
  return waitFor(async () => {
    last = await getOrUndefined<LoadBalancerVip>(client, RESOURCES.loadBalancerVips, name, namespace);
    const c = condition(last, type);
    return c?.status === status && (reason === undefined || c.reason === reason) ? last : undefined;
  }, () => `${namespace}/${name} ${type}=${status}${reason ? `/${reason}` : ''}; last conditions: ${JSON.stringify(last?.status?.conditions?.map((c) => [c.type, c.status, c.reason, c.message]))}`, timeoutMs);
}

export async function events(client: KubeClient, namespace: string, reason?: string): Promise<{ reason: string; note: string; type: string; regarding: { name: string; kind: string } }[]> {
  const list = await client.list<KubeObject & { reason: string; note: string; type: string; regarding: { name: string; kind: string } }>(RESOURCES.events, { namespace });
  return list.items.filter((e) => reason === undefined || e.reason === reason);
}

/**
 * A fake agent: reports the BalancerNode's current spec as programmed, as the agents'
 * ServiceAccount and the way the agent writes (PUT of the status subresource with the
 * resourceVersion it read; a 409 re-reads).
 */
export async function agentReport(env: Env, name: string, options: { generation?: number; omit?: string[] } = {}): Promise<BalancerNode> {
  return waitFor(async () => {
    const bn = await env.agent.get<BalancerNode>(RESOURCES.balancerNodes, name);
    const vips = (bn.spec?.vips ?? []).filter((v) => !(options.omit ?? []).includes(v.name)).map((v) => ({ name: v.name, key: vipKey(v), ringDigest: 'abcdef0123456789', backends: v.backends.length }));
    try {
      return await env.agent.replace<BalancerNode>(RESOURCES.balancerNodes, {
        ...bn, status: { observedGeneration: options.generation ?? bn.metadata.generation, attachMode: 'native', vipCount: vips.length, vips },
      }, 'status');
    } catch (err) {
      if (isApiError(err, 409)) return undefined;
      throw err;
    }
  }, `the agent's status report on ${name}`);
}

// ------------------------------------------------------------------ real faults

/**
 * Writes (create, update, patch, delete) the operator's ServiceAccount made since the
 * audit log's mark, as kube-apiserver logged them; dry runs (the harness's own probes)
 * left out. `code` counts only answers with that HTTP status.
 */
export function operatorWrites(env: Env, filter: { resource?: string | readonly string[]; name?: string; verb?: string | readonly string[]; subresource?: string | null; code?: number } = {}): number {
  return env.cp.audit.events({ verb: filter.verb ?? ['create', 'update', 'patch', 'delete'], user: env.ids.operatorUser, ...filter })
    .filter((e) => !e.requestURI.includes('dryRun=')).length;
}

/**
 * A ValidatingAdmissionPolicy (applied as the admin) that refuses every write of the
 * operator's ServiceAccount to the BalancerNode `name` — the real server failing the
 * operator's writes. Resolves once the API server enforces it (a dry-run write as the
 * operator is refused); the returned function removes it and waits until writes pass.
 */
export async function refuseOperatorWrites(env: Env, name: string): Promise<() => Promise<void>> {
  const policy = `fulcrum-test-refuse-${name}`;
  await env.cp.kubectl(['apply', '-f', '-'], {
    input: JSON.stringify({
      apiVersion: 'v1', kind: 'List', items: [
        {
          apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingAdmissionPolicy', metadata: { name: policy },
          spec: {
            failurePolicy: 'Fail',
            matchConstraints: { resourceRules: [{ apiGroups: ['fulcrum.dev'], apiVersions: ['*'], operations: ['CREATE', 'UPDATE', 'DELETE'], resources: ['balancernodes'] }] },
            matchConditions: [{ name: 'operator', expression: `request.userInfo.username == '${env.ids.operatorUser}'` }],
            validations: [{ expression: `request.name != '${name}'`, message: `test: the operator's writes to BalancerNode ${name} are refused` }],
          },
        },
        {
          apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingAdmissionPolicyBinding', metadata: { name: policy },
          spec: { policyName: policy, validationActions: ['Deny'] },
        },
      ],
    }),
  });
  const probe = new KubeClient(kubeConfigFrom(env.ids.operatorKubeconfig), { userAgent: 'fulcrum-test-probe' });
  // A dry-run label patch as the operator: admission runs, nothing is stored.
  const refused = async (): Promise<boolean> => {
    try {
      await probe.request('PATCH', `/apis/fulcrum.dev/v1alpha1/balancernodes/${name}`, {
        query: { dryRun: 'All' }, body: { metadata: { labels: { 'fulcrum.dev/probe': 'x' } } }, contentType: 'application/merge-patch+json',
      });
      return false;
    } catch (err) {
      if (isApiError(err, 422) || isApiError(err, 403)) return true;
      throw err;
    }
  };
  try {
    await waitFor(refused, `the admission policy ${policy} to refuse the operator's writes`);
  } catch (err) {
    probe.close();
    throw err;
  }
  return async () => {
    await env.cp.kubectl(['delete', 'validatingadmissionpolicybinding,validatingadmissionpolicy', policy]);
    try {
      await waitFor(async () => !(await refused()), `the operator's writes to ${name} to pass again`);
    } finally {
      probe.close();
    }
  };
}
