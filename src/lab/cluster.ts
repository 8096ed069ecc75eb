// The lab's Kubernetes: a real control plane (etcd, kube-apiserver and
// kube-controller-manager from control-plane.ts, on 127.0.0.1), Fulcrum installed on it
// as a user installs it (install.ts: CRDs, RBAC, the operator's and the agents'
// ServiceAccounts), the real operator, and the lab itself playing only the kubelet
// (kubelet.ts: Nodes, their heartbeats, the example app's Pods and their status). The
// EndpointSlices, garbage collection and namespaces are the real controllers'. Users and
// tests drive it as they would a cluster: kubectl with the printed (admin) kubeconfig.
//
//   host network namespace                 lab namespaces (unconnected to the host)
//   ──────────────────────                 ───────────────────────────────────────────
//   kubectl, the lab's kubelet ─┐          lb1:  agent ──▶ 127.0.0.1:6443 relay ─┐
//   ▼                           │          lb2:  agent ──▶ 127.0.0.1:6443 relay ─┤
//   kube-apiserver 127.0.0.1:<port> ◀── bridge ◀── unix socket ◀──────────────────┤
//                                          node: agent, operator ──▶ relay ───────┘
//
// The relays (api-relay.ts) bridge a namespace's 127.0.0.1:6443 to a unix socket in this
// run's directory: a file, not a link, so no lab namespace is connected to the host's
// network and nothing is sent to a non-loopback address from the host. The bridge on the
// host side pipes each connection on to kube-apiserver's loopback port; TLS passes
// through end to end (the serving certificate names 127.0.0.1, so
// https://127.0.0.1:6443 verifies inside a namespace as it does on the host).
//
// The operator runs inside the lab's `node` namespace, so the sweep that removes a
// crashed run's namespaces (and every process in them) removes it too; the control
// plane dies with the lab's process (PDEATHSIG) and the sweep kills what still runs
// from a dead run's directory (sweep.ts).
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdirSync, openSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import type { BalancerNode, LoadBalancerVip } from '../operator/api.ts';
import { ANNOTATIONS, RESOURCES, type Pod } from '../operator/kinds.ts';
import { KubeClient } from '../shared/kube/client.ts';
import { isApiError } from '../shared/kube/errors.ts';
import { FulcrumError } from '../shared/errors.ts';
import { ControlPlane } from './control-plane.ts';
import { FULCRUM_NAMESPACE, installFulcrum, type FulcrumIdentities } from './install.ts';
import { LabKubelet, type LabPodSpec } from './kubelet.ts';
import { nsSpawn } from './netns.ts';
import { BALANCER_ROLES, POD_ROLES, type PodRole, type Topology } from './topology.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const RELAY = fileURLToPath(new URL('./api-relay.ts', import.meta.url));
export const EXAMPLES_DIR = join(REPO, 'examples');

/** Where the operator and the agents find the API server inside their namespaces. */
export const RELAY_PORT = 6443;
export const RELAY_SERVER = `https://127.0.0.1:${RELAY_PORT}`;
/** The operator's /metrics, /healthz and /readyz, on 127.0.0.1 of the `node` namespace. */
export const OPERATOR_METRICS_PORT = 8080;
/** The namespace of the example application (examples/00-namespace.yaml). */
export const APP_NAMESPACE = 'demo';
/** The Service whose pods are the lab's pods, and their `app` label. */
export const APP_SERVICE = 'web';
/** The Node that runs the pods (its agent holds their decap duties). */
export const POD_NODE = 'node';
/** The ports the pods' servers listen on, as the Service of examples/ names them. */
const POD_PORTS = [{ name: 'http', port: 80, protocol: 'TCP' }, { name: 'dns', port: 5353, protocol: 'UDP' }] as const;

/** A backend pod as the EndpointSlice controller will see it: ready, terminating (still serving), or not ready. */
export type EndpointState = 'ready' | 'terminating' | 'gone';

export type ClusterOptions = {
  readonly topology: Topology;
  /** This run's directory (the control plane's, kubeconfigs, the socket, the netns links, logs). */
  readonly dir: string;
  /** The product's CLI (`fulcrum operator`). */
  readonly cli: string;
};

export class LabCluster {
  readonly cp: ControlPlane;
  /** The cluster admin (system:masters): what the lab does as a user, a Deployment or the scheduler. */
  readonly client: KubeClient;
  /** The admin kubeconfig for kubectl on this machine: https://127.0.0.1:<kube-apiserver's port>. */
  readonly kubeconfigPath: string;
  /** The operator's and the agents' ServiceAccount kubeconfigs, for the relay at https://127.0.0.1:6443 inside their namespaces. */
  readonly identities: FulcrumIdentities;
  /** Named links to the pods' network namespaces, as the agents' `dir=` strategy reads them. */
  readonly netnsDir: string;
  readonly operatorLogPath: string;
  private readonly topology: Topology;
  private readonly cli: string;
  private readonly bridge: Server;
  /** Connections through the bridge, destroyed on stop (watches never end by themselves). */
  private readonly bridged: Set<Socket>;
  private readonly relays: ChildProcess[] = [];
  private kubelet: LabKubelet | undefined;
  private operator: ChildProcess | undefined;
  /** What each pod's kubelet last reported. */
  private readonly pods = new Map<PodRole, EndpointState>();

  private constructor(cp: ControlPlane, identities: FulcrumIdentities, bridge: Server, bridged: Set<Socket>, options: ClusterOptions) {
    this.cp = cp;
    this.identities = identities;
    this.bridge = bridge;
    this.bridged = bridged;
    this.topology = options.topology;
    this.cli = options.cli;
    const kc = new KubeConfig();
    kc.loadFromString(cp.adminKubeconfig());
    this.client = new KubeClient(kc, { userAgent: 'fulcrum-lab' });
    this.kubeconfigPath = join(options.dir, 'kubeconfig');
    this.netnsDir = join(options.dir, 'netns');
    this.operatorLogPath = join(options.dir, 'operator.log');
  }

  /**
   * Starts the control plane, installs Fulcrum's CRDs and RBAC, starts the bridge and a
   * relay in every namespace that runs a component, and registers the Nodes as their
   * kubelets. The operator (startOperator), examples/ (applyExamples) and the pods
   * (runPods) follow, in the order the caller needs them.
   */
  static async start(options: ClusterOptions): Promise<LabCluster> {
    const cp = await ControlPlane.start({ dir: join(options.dir, 'control-plane') });
    let bridge: Server | undefined;
    const bridged = new Set<Socket>();
    let cluster: LabCluster | undefined;
    try {
      const identities = await installFulcrum(cp, { dir: options.dir, server: RELAY_SERVER });
      // Each connection from a relay becomes a loopback connection to kube-apiserver.
      const socketPath = join(options.dir, 'api.sock');
      const server = createServer((inbound) => {
        const outbound = createConnection({ host: '127.0.0.1', port: cp.port });
        bridged.add(inbound);
        inbound.once('close', () => bridged.delete(inbound));
        inbound.on('error', () => outbound.destroy());
        outbound.on('error', () => inbound.destroy());
        inbound.pipe(outbound).pipe(inbound);
      });
      bridge = server;
      server.listen(socketPath);
      await once(server, 'listening');
      cluster = new LabCluster(cp, identities, server, bridged, options);
      writeFileSync(cluster.kubeconfigPath, cp.adminKubeconfig(), { mode: 0o600 });
      await Promise.all([options.topology.backendNodeNs, ...BALANCER_ROLES.map((r) => options.topology.balancers[r].ns)]
        .map((ns) => cluster!.startRelay(ns, socketPath)));
      cluster.kubelet = await LabKubelet.start(cp, cluster.client, [
        ...BALANCER_ROLES.map((role) => {
          const eth0 = options.topology.balancers[role].local;
          return { name: role, labels: { 'fulcrum.dev/balancer': 'true' }, internalIPs: [eth0.ipv4, eth0.ipv6] };
        }),
        // The pods' node has no link of its own in the lab: its pods have them.
        { name: POD_NODE, labels: {}, internalIPs: [] },
      ]);
      mkdirSync(cluster.netnsDir);
      for (const role of POD_ROLES) {
        // The agent's dir= strategy finds a pod's namespace by <namespace>_<name>.
        symlinkSync(options.topology.pods[role].nsPath, join(cluster.netnsDir, `${APP_NAMESPACE}_${role}`));
      }
      return cluster;
    } catch (err) {
      if (cluster !== undefined) await cluster.stop();
      else {
        for (const s of bridged) s.destroy();
        if (bridge?.listening) await new Promise<void>((resolve) => bridge!.close(() => resolve()));
        await cp.stop();
      }
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

  /** The agents' kubeconfig (the ServiceAccount fulcrum-agent, through the relay). */
  get agentKubeconfigPath(): string {
    return this.identities.agentKubeconfig;
  }

  // ── the operator ──────────────────────────────────────────────────────────────

  /**
   * `fulcrum operator` with leader election, inside the `node` namespace, through the
   * relay, as its ServiceAccount (RBAC of deploy/rbac/operator.yaml enforced).
   */
  async startOperator(): Promise<void> {
    const log = openSync(this.operatorLogPath, 'a');
    try {
      this.operator = nsSpawn(this.topology.backendNodeNs, [
        process.execPath, this.cli, 'operator',
        '--kubeconfig', this.identities.operatorKubeconfig,
        '--namespace', FULCRUM_NAMESPACE,
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

  /** `kubectl apply --server-side -f <path>` as the admin, exactly as a user applies examples/. */
  applyExamples(path = EXAMPLES_DIR): Promise<string> {
    return this.cp.kubectl(['apply', '--server-side', '-f', path]);
  }

  /** kubectl with the admin kubeconfig (the one the lab prints). */
  kubectl(args: readonly string[], input?: string): Promise<string> {
    return this.cp.kubectl(args, input === undefined ? {} : { input });
  }

  async balancerNodes(): Promise<BalancerNode[]> {
    return (await this.client.list<BalancerNode>(RESOURCES.balancerNodes)).items;
  }

  async loadBalancerVips(): Promise<LoadBalancerVip[]> {
    return (await this.client.list<LoadBalancerVip>(RESOURCES.loadBalancerVips, { namespace: APP_NAMESPACE })).items;
  }

  // ── the app's pods: the admin creates them, the lab's kubelet runs them ───────

  private podSpec(role: PodRole, weight?: number): LabPodSpec {
    const eth0 = this.topology.pods[role].local;
    return {
      name: role, namespace: APP_NAMESPACE, node: POD_NODE, labels: { app: APP_SERVICE },
      ...(weight !== undefined && weight !== 1 ? { annotations: { [ANNOTATIONS.weight]: String(weight) } } : {}),
      ips: [eth0.ipv4, eth0.ipv6], ports: POD_PORTS,
    };
  }

  /**
   * The example Service's pods (labelled app=web, on the `node` Node), running and
   * Ready; a weight other than 1 goes in as the pod's fulcrum.dev/weight annotation, as
   * a pod template would carry it. Needs the namespace (examples/ makes it).
   */
  async runPods(weights: ReadonlyMap<PodRole, number> = new Map()): Promise<void> {
    await Promise.all(POD_ROLES.map((role) => this.kubelet!.runPod(this.podSpec(role, weights.get(role)))));
    for (const role of POD_ROLES) this.pods.set(role, 'ready');
  }

  /** A pod's weight (the documented annotation, as `kubectl annotate` sets it); undefined removes it (weight 1). */
  async setPodWeight(pod: PodRole, weight: number | undefined): Promise<void> {
    await this.client.patch(RESOURCES.pods, pod, APP_NAMESPACE, { metadata: { annotations: { [ANNOTATIONS.weight]: weight === undefined ? null : String(weight) } } }, { type: 'merge' });
  }

  /**
   * What the EndpointSlice controller will publish for a pod, made the way a cluster
   * makes it:
   *   ready        the kubelet reports it Ready; a pod that was terminating is finished
   *                by its kubelet and replaced by a new one of the same name (a
   *                StatefulSet's way), Ready;
   *   terminating  the admin deletes it with a grace period; it keeps running and Ready,
   *                so the controller lists it serving and terminating (not ready);
   *   gone         its readiness probe fails: the kubelet reports Ready=False, and the
   *                controller lists it not serving.
   */
  async setEndpoint(pod: PodRole, state: EndpointState): Promise<void> {
    const kubelet = this.kubelet!;
    const was = this.pods.get(pod);
    if (was === undefined) throw new FulcrumError('ERR_INTERNAL', `no lab pod ${pod}`);
    const spec = this.podSpec(pod);
    if (state === 'terminating') {
      if (was !== 'terminating') await kubelet.terminatePod(spec);
    } else if (was === 'terminating') {
      await kubelet.finishTermination(spec);
      await kubelet.runPod(spec);
      if (state === 'gone') await kubelet.setPodReady(spec, false);
    } else {
      await kubelet.setPodReady(spec, state === 'ready');
    }
    this.pods.set(pod, state);
  }

  /** Whether the API server still has a pod (terminating pods included). */
  async podExists(pod: PodRole): Promise<Pod | undefined> {
    try {
      return await this.client.get<Pod>(RESOURCES.pods, pod, APP_NAMESPACE);
    } catch (err) {
      if (isApiError(err, 404)) return undefined;
      throw err;
    }
  }

  // ── teardown ──────────────────────────────────────────────────────────────────

  /** Stops the operator, the relays, the kubelet, the bridge and the control plane. Idempotent. */
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
    this.kubelet?.stop();
    for (const s of this.bridged) s.destroy();
    if (this.bridge.listening) await new Promise<void>((resolve) => this.bridge.close(() => resolve()));
    this.client.close();
    await this.cp.stop();
  }

  /** The control plane's processes, synchronously (a process 'exit' handler). */
  stopSync(): void {
    this.cp.stopSync();
  }
}
