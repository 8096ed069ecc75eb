// Operator test harness: one in-process API server per test file with the fulcrum.dev
// CRDs installed, an operator (or several) against it, object builders, a fake agent
// that writes BalancerNode status as the real one would, and polling helpers.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import type { Level } from 'pino';
import { parseAllDocuments } from 'yaml';
import { startApiServer } from '../../src/apiserver/index.ts';
import { CRD_DIR, installCrds, readProjectCrds } from '../../src/lab/cluster.ts';
import type { ApiServer, ApiServerOptions } from '../../src/apiserver/index.ts';
import type { BalancerNode, LoadBalancerVip, VipPool } from '../../src/operator/api.ts';
import { vipKey } from '../../src/shared/desired-state.ts';
import { RESOURCES } from '../../src/operator/kinds.ts';
import type { Condition, EndpointSlice, KubeObject, Node, Pod, Service } from '../../src/operator/kinds.ts';
import { KubeClient, isApiError } from '../../src/operator/kube.ts';
import { Operator } from '../../src/operator/operator.ts';
import type { OperatorOptions } from '../../src/operator/operator.ts';
import { REPO_ROOT } from '../apiserver/helpers.ts';

export { REPO_ROOT };

const CRD_NAMES = ['loadbalancervips.fulcrum.dev', 'vippools.fulcrum.dev', 'balancernodes.fulcrum.dev'];

/** The project's CRDs when crds/ holds all three kinds; the test stand-ins otherwise. */
export function loadCrds(source: 'repo' | 'fixtures' = 'repo'): KubeObject[] {
  const fromRepo = source === 'repo' && existsSync(CRD_DIR) ? readProjectCrds(CRD_DIR) : [];
  if (CRD_NAMES.every((n) => fromRepo.some((c) => c.metadata.name === n))) return fromRepo.filter((c) => CRD_NAMES.includes(c.metadata.name));
  const fixture = readFileSync(join(REPO_ROOT, 'test', 'operator', 'fixtures', 'crds.yaml'), 'utf8');
  return parseAllDocuments(fixture).map((d) => d.toJS() as KubeObject);
}

export function testLogger(name: string): pino.Logger {
  const level = (process.env['FULCRUM_TEST_LOG_LEVEL'] as Level | undefined) ?? 'silent';
  return pino({ name, level });
}

export interface Env {
  server: ApiServer;
  client: KubeClient;
  operators: Operator[];
  startOperator(options?: Partial<OperatorOptions>): Promise<Operator>;
  stop(): Promise<void>;
}

export const FAST_BACKOFF = { initialMs: 20, maxMs: 400 };

/**
 * A server with the CRDs installed: the project's (crds/), or with `crds: 'fixtures'` the
 * permissive stand-ins — an older or hand-edited CRD — to reach the operator's own
 * validation of what the API server let through.
 */
export async function startEnv(options: ApiServerOptions & { crds?: 'repo' | 'fixtures' } = {}): Promise<Env> {
  const { crds, ...serverOptions } = options;
  const server = await startApiServer(serverOptions);
  const client = new KubeClient(server.kubeConfig(), { userAgent: 'fulcrum-test' });
  await installCrds(client, loadCrds(crds));
  const operators: Operator[] = [];
  let n = 0;
  return {
    server, client, operators,
    async startOperator(extra: Partial<OperatorOptions> = {}) {
      const op = new Operator({
        kubeConfig: server.kubeConfig(),
        namespace: 'kube-system',
        leaderElect: false,
        identity: `operator-${++n}`,
        log: testLogger(`operator-${n}`),
        backoff: FAST_BACKOFF,
        eventDedupeMs: 60_000,
        ...extra,
      });
      operators.push(op);
      await op.start();
      if (!(extra.leaderElect ?? false)) await op.leadingAndSynced(10_000);
      return op;
    },
    async stop() {
      await Promise.all(operators.map((o) => o.stop()));
      client.close();
      await server.stop();
    },
  };
}

export async function waitFor<T>(probe: () => T | undefined | false | Promise<T | undefined | false>, what: string | (() => string), timeoutMs = 5000): Promise<T> {
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
      throw new Error(`timed out waiting for ${text}${lastError !== undefined ? ` (last error: ${(lastError as Error).message})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 15));
  }
}

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
export async function waitForVipCondition(client: KubeClient, namespace: string, name: string, type: string, status: 'True' | 'False', reason?: string, timeoutMs = 5000): Promise<LoadBalancerVip> {
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

/** A fake agent: reports the BalancerNode's current spec as programmed. */
export async function agentReport(client: KubeClient, name: string, options: { generation?: number; omit?: string[] } = {}): Promise<BalancerNode> {
  const bn = await client.get<BalancerNode>(RESOURCES.balancerNodes, name);
  const vips = (bn.spec?.vips ?? []).filter((v) => !(options.omit ?? []).includes(v.name)).map((v) => ({ name: v.name, key: vipKey(v), ringDigest: 'abcdef0123456789', backends: v.backends.length }));
  return client.patch<BalancerNode>(RESOURCES.balancerNodes, name, undefined, {
    status: { observedGeneration: options.generation ?? bn.metadata.generation, attachMode: 'native', vipCount: vips.length, vips },
  }, { type: 'merge', subresource: 'status' });
}
