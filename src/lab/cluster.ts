// The lab's Kubernetes: the in-process API server, the real operator, and the lab
// itself playing the parts of a cluster that cannot run here — the kubelet (Node and
// Pod objects for the lab's namespaces) and the EndpointSlice controller (slices that
// follow the pods' readiness). Users and tests drive it as they would a cluster:
// kubectl (the printed kubeconfig) or the API, never a back door.
//
//   host network namespace            lab namespaces (unconnected to the host)
//   ─────────────────────            ───────────────────────────────────────────
//   kubectl ──▶ 127.0.0.1:<port> ─┐   lb1:  agent ──▶ 127.0.0.1:6443 relay ─┐
//   this process: API server  ◀───┤   lb2:  agent ──▶ 127.0.0.1:6443 relay ─┤
//                  unix socket ◀──┴── node: agent, operator ──▶ relay ──────┘
//
// The relays (api-relay.ts) bridge a namespace's loopback to a unix socket in this
// run's directory: a file, not a link, so no lab namespace is connected to the host's
// network and nothing is sent to a non-loopback address from the host.
//
// The operator runs inside the lab's `node` namespace, so the sweep that removes a
// crashed run's namespaces (and every process in them) removes it too.
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { startApiServer, type ApiServer } from '../apiserver/index.ts';
import { kubeconfigYaml } from '../apiserver/kubeconfig.ts';
import type { BalancerNode, LoadBalancerVip } from '../operator/api.ts';
import { ANNOTATIONS, RESOURCES, type EndpointSlice, type KubeObject, type Pod, type ResourceType } from '../operator/kinds.ts';
import { KubeClient, isApiError } from '../operator/kube.ts';
import { FulcrumError } from '../shared/errors.ts';
import { nsSpawn } from './netns.ts';
import { BALANCER_ROLES, POD_ROLES, type PodRole, type Topology } from './topology.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const RELAY = fileURLToPath(new URL('./api-relay.ts', import.meta.url));
export const CRD_DIR = join(REPO, 'crds');
export const EXAMPLES_DIR = join(REPO, 'examples');

/** Where the operator and the agents find the API server inside their namespaces. */
export const RELAY_PORT = 6443;
/** The operator's /metrics, /healthz and /readyz, on 127.0.0.1 of the `node` namespace. */
export const OPERATOR_METRICS_PORT = 8080;
/** The namespace of the example application (examples/service.yaml). */
export const APP_NAMESPACE = 'demo';
/** The Service whose pods are the lab's pods, and their `app` label. */
export const APP_SERVICE = 'web';
/** The Node that runs the pods (its agent holds their decap duties). */
export const POD_NODE = 'node';

const CRD_RESOURCE: ResourceType = { group: 'apiextensions.k8s.io', version: 'v1', plural: 'customresourcedefinitions', kind: 'CustomResourceDefinition', namespaced: false };

/** What an apply of a manifest may create: the kinds examples/ uses. */
const APPLY_KINDS: Readonly<Record<string, ResourceType>> = {
  Namespace: RESOURCES.namespaces,
  Service: RESOURCES.services,
  LoadBalancerVip: RESOURCES.loadBalancerVips,
  VipPool: RESOURCES.vipPools,
};

/** The project's CustomResourceDefinitions, from crds/*.yaml. */
export function readProjectCrds(dir = CRD_DIR): KubeObject[] {
  const crds: KubeObject[] = [];
  for (const file of readdirSync(dir).filter((n) => n.endsWith('.yaml')).sort()) {
    for (const doc of parseAllDocuments(readFileSync(join(dir, file), 'utf8'))) {
      const obj = doc.toJS() as KubeObject | null;
      if (obj?.kind === 'CustomResourceDefinition') crds.push(obj);
    }
  }
  return crds;
}

/**
 * Creates CustomResourceDefinitions and waits until the server serves the fulcrum.dev
 * kinds (a CRD is accepted before its resource is; a client must not race it).
 */
export async function installCrds(client: KubeClient, crds: readonly KubeObject[], timeoutMs = 10_000): Promise<void> {
  for (const crd of crds) await client.create(CRD_RESOURCE, crd);
  const deadline = Date.now() + timeoutMs;
  for (const rt of [RESOURCES.loadBalancerVips, RESOURCES.vipPools, RESOURCES.balancerNodes]) {
    for (;;) {
      try {
        await client.list(rt, { limit: 1 });
        break;
      } catch (err) {
        if (!isApiError(err, 404)) throw err;
      }
      if (Date.now() > deadline) throw new FulcrumError('ERR_INTERNAL', `timed out waiting for ${rt.plural} to be served`);
      await sleep(50);
    }
  }
}

/** The objects of a YAML file (several documents), empty documents left out. */
export function readManifests(path: string): KubeObject[] {
  return parseAllDocuments(readFileSync(path, 'utf8'))
    .map((doc) => {
      if (doc.errors.length > 0) throw new FulcrumError('ERR_CONFIG', `${path}: ${doc.errors[0]!.message}`);
      return doc.toJS() as KubeObject | null;
    })
    .filter((o): o is KubeObject => o !== null);
}

/** A backend pod as the endpoint controller sees it. */
export type EndpointState = 'ready' | 'terminating' | 'gone';

type LabPod = { uid: string; state: EndpointState };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export type ClusterOptions = {
  readonly topology: Topology;
  /** This run's directory (kubeconfigs, the socket, the netns links, logs). */
  readonly dir: string;
  /** The product's CLI (`fulcrum operator`). */
  readonly cli: string;
};

export class LabCluster {
  readonly client: KubeClient;
  /** For kubectl on this machine: http://127.0.0.1:<port>. */
  readonly kubeconfigPath: string;
  /** For the operator and agents inside lab namespaces: the relay at 127.0.0.1:6443. */
  readonly relayKubeconfigPath: string;
  /** Named links to the pods' network namespaces, as the agents' `dir=` strategy reads them. */
  readonly netnsDir: string;
  readonly operatorLogPath: string;
  private readonly server: ApiServer;
  private readonly topology: Topology;
  private readonly dir: string;
  private readonly cli: string;
  private readonly bridge: Server;
  /** Connections through the bridge, destroyed on stop (watches never end by themselves). */
  private readonly bridged: Set<Socket>;
  private readonly relays: ChildProcess[] = [];
  private operator: ChildProcess | undefined;
  private readonly pods = new Map<PodRole, LabPod>();

  private constructor(server: ApiServer, bridge: Server, bridged: Set<Socket>, options: ClusterOptions) {
    this.server = server;
    this.bridge = bridge;
    this.bridged = bridged;
    this.topology = options.topology;
    this.dir = options.dir;
    this.cli = options.cli;
    this.client = new KubeClient(server.kubeConfig(), { userAgent: 'fulcrum-lab' });
    this.kubeconfigPath = join(this.dir, 'kubeconfig');
    this.relayKubeconfigPath = join(this.dir, 'kubeconfig.in-lab');
    this.netnsDir = join(this.dir, 'netns');
    this.operatorLogPath = join(this.dir, 'operator.log');
  }

  /**
   * Starts the API server with the project's CRDs, the bridge and a relay in every
   * namespace that runs a component, and writes the Nodes and the example app's Pods.
   * The operator is started separately (startOperator), after the caller's agents.
   */
  static async start(options: ClusterOptions): Promise<LabCluster> {
    const server = await startApiServer({ defaultNamespace: APP_NAMESPACE });
    const socketPath = join(options.dir, 'api.sock');
    const bridged = new Set<Socket>();
    // Each connection from a relay becomes a loopback connection to the API server.
    const bridge = createServer((inbound) => {
      const outbound = createConnection({ host: '127.0.0.1', port: server.port });
      bridged.add(inbound);
      inbound.once('close', () => bridged.delete(inbound));
      inbound.on('error', () => outbound.destroy());
      outbound.on('error', () => inbound.destroy());
      inbound.pipe(outbound).pipe(inbound);
    });
    bridge.listen(socketPath);
    await once(bridge, 'listening');
    const cluster = new LabCluster(server, bridge, bridged, options);
    try {
      writeFileSync(cluster.kubeconfigPath, kubeconfigYaml(server.url, APP_NAMESPACE));
      writeFileSync(cluster.relayKubeconfigPath, kubeconfigYaml(`http://127.0.0.1:${RELAY_PORT}`, APP_NAMESPACE));
      await installCrds(cluster.client, readProjectCrds());
      await Promise.all([options.topology.backendNodeNs, ...BALANCER_ROLES.map((r) => options.topology.balancers[r].ns)]
        .map((ns) => cluster.startRelay(ns, socketPath)));
      await cluster.createNodesAndPods();
      return cluster;
    } catch (err) {
      await cluster.stop();
      throw err;
    }
  }

  private async startRelay(ns: string, socketPath: string): Promise<void> {
    const relay = nsSpawn(ns, [process.execPath, RELAY, String(RELAY_PORT), socketPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.relays.push(relay);
    let stderr = '';
    relay.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const ready = new Promise<void>((resolve, reject) => {
      relay.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('ready')) resolve(); });
      relay.once('exit', (code) => reject(new FulcrumError('ERR_NETNS', `the API relay in ${ns} exited (${code}): ${stderr.trim()}`)));
    });
    await ready;
  }

  /** The kubelet's part: the lab's Nodes, and its pods as Pods on the `node` Node. */
  private async createNodesAndPods(): Promise<void> {
    const c = this.client;
    for (const role of BALANCER_ROLES) {
      await c.create(RESOURCES.nodes, { apiVersion: 'v1', kind: 'Node', metadata: { name: role, labels: { 'fulcrum.dev/balancer': 'true', 'kubernetes.io/hostname': role } } });
    }
    await c.create(RESOURCES.nodes, { apiVersion: 'v1', kind: 'Node', metadata: { name: POD_NODE, labels: { 'kubernetes.io/hostname': POD_NODE } } });
    await c.create(RESOURCES.namespaces, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: APP_NAMESPACE } });
    mkdirSync(this.netnsDir);
    for (const role of POD_ROLES) {
      const host = this.topology.pods[role];
      const body: Pod = {
        apiVersion: 'v1', kind: 'Pod',
        metadata: { name: role, namespace: APP_NAMESPACE, labels: { app: APP_SERVICE } },
        spec: { nodeName: POD_NODE, containers: [{ name: 'http', image: 'fulcrum-lab/pod-server' }] } as Pod['spec'],
      };
      const created = await c.create<Pod>(RESOURCES.pods, body);
      await c.patch(RESOURCES.pods, role, APP_NAMESPACE, {
        status: {
          phase: 'Running',
          podIP: host.local.ipv4,
          podIPs: [{ ip: host.local.ipv4 }, { ip: host.local.ipv6 }],
          conditions: [{ type: 'Ready', status: 'True' }],
        },
      }, { type: 'merge', subresource: 'status' });
      // The agent's dir= strategy finds a pod's namespace by <namespace>_<name>.
      symlinkSync(host.nsPath, join(this.netnsDir, `${APP_NAMESPACE}_${role}`));
      this.pods.set(role, { uid: created.metadata.uid!, state: 'ready' });
    }
    await this.writeEndpointSlices();
  }

  /** `fulcrum operator` with leader election, inside the `node` namespace, through the relay. */
  async startOperator(): Promise<void> {
    const log = openSync(this.operatorLogPath, 'a');
    try {
      this.operator = nsSpawn(this.topology.backendNodeNs, [
        process.execPath, this.cli, 'operator',
        '--kubeconfig', this.relayKubeconfigPath,
        '--namespace', 'kube-system',
        '--leader-elect', '--identity', 'lab-operator',
        '--metrics-host', '127.0.0.1', '--metrics-port', String(OPERATOR_METRICS_PORT),
      ], { stdio: ['ignore', log, log] });
    } finally {
      closeSync(log);
    }
  }

  /** Kills the operator (SIGKILL: a crash, an OOM kill, a node lost under it). */
  async killOperator(): Promise<void> {
    const child = this.operator;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }

  get operatorPid(): number | undefined {
    return this.operatorRunning() ? this.operator!.pid : undefined;
  }

  operatorRunning(): boolean {
    return this.operator !== undefined && this.operator.exitCode === null && this.operator.signalCode === null;
  }

  operatorLog(lines = 30): string {
    try {
      return readFileSync(this.operatorLogPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  // ── what a user applies ───────────────────────────────────────────────────────

  /**
   * Creates the objects of a manifest file, as `kubectl create -f` would (an object
   * that exists already is replaced). Kinds other than those examples/ uses are refused.
   */
  async apply(path: string): Promise<KubeObject[]> {
    const applied: KubeObject[] = [];
    for (const obj of readManifests(path)) {
      const rt = APPLY_KINDS[obj.kind ?? ''];
      if (rt === undefined) throw new FulcrumError('ERR_CONFIG', `${path}: the lab applies ${Object.keys(APPLY_KINDS).join(', ')}, not ${obj.kind}`);
      const namespace = rt.namespaced ? (obj.metadata.namespace ?? APP_NAMESPACE) : undefined;
      const body = { ...obj, metadata: { ...obj.metadata, ...(namespace !== undefined ? { namespace } : {}) } };
      try {
        applied.push(await this.client.create(rt, body));
      } catch (err) {
        if (!isApiError(err, 409)) throw err;
        const current = await this.client.get(rt, obj.metadata.name, namespace);
        applied.push(await this.client.replace(rt, { ...body, metadata: { ...body.metadata, resourceVersion: current.metadata.resourceVersion } }));
      }
    }
    return applied;
  }

  /** Applies every file of a directory (examples/), in name order. */
  async applyDir(dir = EXAMPLES_DIR): Promise<KubeObject[]> {
    const out: KubeObject[] = [];
    for (const file of readdirSync(dir).filter((n) => n.endsWith('.yaml')).sort()) out.push(...(await this.apply(join(dir, file))));
    return out;
  }

  async delete(kind: keyof typeof APPLY_KINDS, name: string, namespace = APP_NAMESPACE): Promise<void> {
    const rt = APPLY_KINDS[kind]!;
    await this.client.delete(rt, name, rt.namespaced ? namespace : undefined);
  }

  async balancerNodes(): Promise<BalancerNode[]> {
    return (await this.client.list<BalancerNode>(RESOURCES.balancerNodes)).items;
  }

  async loadBalancerVips(): Promise<LoadBalancerVip[]> {
    return (await this.client.list<LoadBalancerVip>(RESOURCES.loadBalancerVips, { namespace: APP_NAMESPACE })).items;
  }

  // ── the kubelet's and the endpoint controller's part ──────────────────────────

  /** A pod's weight (the documented annotation); undefined removes it (weight 1). */
  async setPodWeight(pod: PodRole, weight: number | undefined): Promise<void> {
    await this.client.patch(RESOURCES.pods, pod, APP_NAMESPACE, { metadata: { annotations: { [ANNOTATIONS.weight]: weight === undefined ? null : String(weight) } } }, { type: 'merge' });
  }

  /** What the endpoint controller says of a pod: ready, terminating (still serving), or gone. */
  async setEndpoint(pod: PodRole, state: EndpointState): Promise<void> {
    const entry = this.pods.get(pod);
    if (entry === undefined) throw new FulcrumError('ERR_INTERNAL', `no lab pod ${pod}`);
    entry.state = state;
    await this.writeEndpointSlices();
  }

  /** One slice per family for the example Service, as the EndpointSlice controller writes them. */
  private async writeEndpointSlices(): Promise<void> {
    for (const family of ['IPv4', 'IPv6'] as const) {
      const name = `${APP_SERVICE}-${family.toLowerCase()}`;
      const slice: EndpointSlice = {
        apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
        metadata: { name, namespace: APP_NAMESPACE, labels: { 'kubernetes.io/service-name': APP_SERVICE, 'endpointslice.kubernetes.io/managed-by': 'fulcrum-lab' } },
        addressType: family,
        endpoints: POD_ROLES.flatMap((role) => {
          const pod = this.pods.get(role);
          if (pod === undefined || pod.state === 'gone') return [];
          const host = this.topology.pods[role].local;
          const ready = pod.state === 'ready';
          return [{
            addresses: [family === 'IPv4' ? host.ipv4 : host.ipv6],
            conditions: { ready, serving: true, terminating: !ready },
            nodeName: POD_NODE,
            targetRef: { kind: 'Pod', name: role, namespace: APP_NAMESPACE, uid: pod.uid },
          }];
        }),
        ports: [{ name: 'http', port: 80, protocol: 'TCP' }, { name: 'dns', port: 5353, protocol: 'UDP' }],
      } as EndpointSlice;
      try {
        const current = await this.client.get<EndpointSlice>(RESOURCES.endpointSlices, name, APP_NAMESPACE);
        await this.client.replace(RESOURCES.endpointSlices, { ...slice, metadata: { ...slice.metadata, resourceVersion: current.metadata.resourceVersion } });
      } catch (err) {
        if (!isApiError(err, 404)) throw err;
        await this.client.create(RESOURCES.endpointSlices, slice);
      }
    }
  }

  // ── teardown ──────────────────────────────────────────────────────────────────

  /** Stops the operator and the relays, then the bridge and the API server. Idempotent. */
  async stop(): Promise<void> {
    for (const child of [this.operator, ...this.relays]) {
      if (child !== undefined && child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGKILL');
        await exited;
      }
    }
    this.relays.length = 0;
    this.operator = undefined;
    for (const s of this.bridged) s.destroy();
    if (this.bridge.listening) await new Promise<void>((resolve) => this.bridge.close(() => resolve()));
    this.client.close();
    await this.server.stop();
  }
}
