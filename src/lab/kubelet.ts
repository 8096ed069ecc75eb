// The lab's kubelet: the one part of a cluster the lab plays itself, because its "pods"
// are network namespaces with servers in them, not containers. Everything else —
// EndpointSlices, garbage collection, namespaces, node lifecycle — is the real
// kube-controller-manager's.
//
// As each node's kubelet, under that node's own identity (O=system:nodes,
// CN=system:node:<name>; the Node authorizer and NodeRestriction hold it to what a
// kubelet may do):
//   - registers its Node (labels, addresses, a Ready condition, capacity);
//   - renews its Lease in kube-node-lease every 10 s and re-posts its status every
//     5 minutes (the kubelet's defaults) — without them the node-lifecycle controller
//     marks the node NotReady and taints it within a minute;
//   - reports the status of the Pods bound to it (phase, podIP/podIPs of both families,
//     conditions) through pods/status, and finishes the deletion of a terminating Pod
//     (DELETE with grace period 0) once its "containers" have stopped.
// A kubelet cannot create Pods other than mirror pods; the lab's Pods are created by
// the cluster admin with spec.nodeName set, as a Deployment and the scheduler would.
import { KubeConfig } from '@kubernetes/client-node';
import type { ControlPlane } from './control-plane.ts';
import { RESOURCES, type KubeObject, type Pod } from '../operator/kinds.ts';
import { KubeClient, resourcePath } from '../shared/kube/client.ts';
import { isApiError } from '../shared/kube/errors.ts';
import { FulcrumError } from '../shared/errors.ts';

/** The kubelet's defaults: --node-lease-duration-seconds, the lease renew interval, nodeStatusReportFrequency. */
const LEASE_DURATION_SECONDS = 40;
const LEASE_RENEW_MS = 10_000;
const STATUS_REPORT_MS = 5 * 60_000;
const SERVICE_ACCOUNT_TIMEOUT_MS = 90_000;
const POLL_MS = 200;

const LEASE_NAMESPACE = 'kube-node-lease';

export type LabNode = {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  /** InternalIP addresses (a node without a link of its own has none). */
  readonly internalIPs: readonly string[];
};

export type LabPodSpec = {
  readonly name: string;
  readonly namespace: string;
  readonly node: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
  /** IPv4 first, then IPv6: the pod's addresses (its namespace's eth0). */
  readonly ips: readonly string[];
  /** TCP and UDP ports its server listens on (informational, as a container's ports). */
  readonly ports: readonly { name: string; port: number; protocol: 'TCP' | 'UDP' }[];
};

type Lease = KubeObject & { spec: { holderIdentity?: string; leaseDurationSeconds?: number; renewTime?: string } };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** metav1.MicroTime, as a Lease's renewTime wants it. */
function microTime(date = new Date()): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

function clientFor(yaml: string, userAgent: string): KubeClient {
  const kc = new KubeConfig();
  kc.loadFromString(yaml);
  return new KubeClient(kc, { userAgent, timeoutMs: 15_000 });
}

export class LabKubelet {
  readonly #admin: KubeClient;
  readonly #nodes: Map<string, { node: LabNode; client: KubeClient; lease: Lease | undefined; uid: string | undefined }>;
  readonly #started = new Date().toISOString();
  #leaseTimer: NodeJS.Timeout | undefined;
  #statusTimer: NodeJS.Timeout | undefined;
  /** The last heartbeat failure, for a test that wants to know why a node went NotReady. */
  lastHeartbeatError: string | undefined;

  private constructor(admin: KubeClient, nodes: Map<string, { node: LabNode; client: KubeClient; lease: Lease | undefined; uid: string | undefined }>) {
    this.#admin = admin;
    this.#nodes = nodes;
  }

  /** Registers every node as its own kubelet would and starts the heartbeats. */
  static async start(cp: ControlPlane, admin: KubeClient, nodes: readonly LabNode[]): Promise<LabKubelet> {
    const entries = new Map(nodes.map((node) => [node.name, { node, client: clientFor(cp.nodeKubeconfig(node.name), `kubelet/fulcrum-lab (${node.name})`), lease: undefined, uid: undefined }] as const));
    const kubelet = new LabKubelet(admin, new Map(entries));
    try {
      await Promise.all(nodes.map((n) => kubelet.#register(n.name)));
      await Promise.all(nodes.map((n) => kubelet.#renewLease(n.name)));
    } catch (err) {
      kubelet.stop();
      throw err;
    }
    kubelet.#leaseTimer = setInterval(() => void kubelet.#heartbeat(() => Promise.all(nodes.map((n) => kubelet.#renewLease(n.name)))), LEASE_RENEW_MS);
    kubelet.#statusTimer = setInterval(() => void kubelet.#heartbeat(() => Promise.all(nodes.map((n) => kubelet.#postNodeStatus(n.name)))), STATUS_REPORT_MS);
    kubelet.#leaseTimer.unref();
    kubelet.#statusTimer.unref();
    return kubelet;
  }

  #entry(name: string): { node: LabNode; client: KubeClient; lease: Lease | undefined; uid: string | undefined } {
    const entry = this.#nodes.get(name);
    if (entry === undefined) throw new FulcrumError('ERR_INTERNAL', `the lab runs no kubelet for node ${name}`);
    return entry;
  }

  async #heartbeat(beat: () => Promise<unknown>): Promise<void> {
    try {
      await beat();
      this.lastHeartbeatError = undefined;
    } catch (err) {
      // The next beat retries; the node-lifecycle controller tolerates a missed one.
      this.lastHeartbeatError = (err as Error).message;
    }
  }

  /** Self-registration: create the Node (or find it from an earlier start), then its status. */
  async #register(name: string): Promise<void> {
    const entry = this.#entry(name);
    const body = { apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', ...entry.node.labels } } };
    let created: KubeObject;
    try {
      created = await entry.client.create(RESOURCES.nodes, body as KubeObject);
    } catch (err) {
      if (!isApiError(err, 409)) throw err;
      created = await entry.client.get(RESOURCES.nodes, name);
    }
    entry.uid = created.metadata.uid;
    await this.#postNodeStatus(name);
  }

  async #postNodeStatus(name: string): Promise<void> {
    const entry = this.#entry(name);
    const now = new Date().toISOString();
    const ready = { type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'the lab plays this node\'s kubelet', lastHeartbeatTime: now, lastTransitionTime: this.#started };
    const pressure = (type: string, reason: string) => ({ type, status: 'False', reason, message: 'the lab does not measure it', lastHeartbeatTime: now, lastTransitionTime: this.#started });
    await entry.client.patch(RESOURCES.nodes, name, undefined, {
      status: {
        addresses: [...entry.node.internalIPs.map((address) => ({ type: 'InternalIP', address })), { type: 'Hostname', address: name }],
        conditions: [
          pressure('MemoryPressure', 'KubeletHasSufficientMemory'), pressure('DiskPressure', 'KubeletHasNoDiskPressure'),
          pressure('PIDPressure', 'KubeletHasSufficientPID'), ready,
        ],
        capacity: { cpu: '2', memory: '4Gi', pods: '110' },
        allocatable: { cpu: '2', memory: '4Gi', pods: '110' },
        nodeInfo: {
          machineID: '', systemUUID: '', bootID: '', kernelVersion: '', osImage: 'fulcrum lab (network namespaces)',
          containerRuntimeVersion: 'fulcrum-lab://netns', kubeletVersion: 'fulcrum-lab', kubeProxyVersion: '', operatingSystem: 'linux', architecture: process.arch === 'x64' ? 'amd64' : process.arch,
        },
      },
    }, { type: 'strategic', subresource: 'status' });
  }

  /** The node's Lease: created once (owned by its Node, as the kubelet does), then renewed. */
  async #renewLease(name: string): Promise<void> {
    const entry = this.#entry(name);
    const spec = { holderIdentity: name, leaseDurationSeconds: LEASE_DURATION_SECONDS, renewTime: microTime() };
    if (entry.lease === undefined) {
      try {
        entry.lease = await entry.client.create<Lease>(RESOURCES.leases, {
          apiVersion: 'coordination.k8s.io/v1', kind: 'Lease',
          metadata: { name, namespace: LEASE_NAMESPACE, ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name, uid: entry.uid! }] },
          spec,
        } as Lease);
        return;
      } catch (err) {
        if (!isApiError(err, 409)) throw err;
        entry.lease = await entry.client.get<Lease>(RESOURCES.leases, name, LEASE_NAMESPACE);
      }
    }
    try {
      entry.lease = await entry.client.replace<Lease>(RESOURCES.leases, { ...entry.lease, spec: { ...entry.lease.spec, ...spec } });
    } catch (err) {
      entry.lease = undefined; // a conflict or a lost Lease: read or create it afresh next time
      throw err;
    }
  }

  // ── pods ────────────────────────────────────────────────────────────────────────

  /**
   * Creates a Pod bound to its node (as the admin: a Deployment's ReplicaSet and the
   * scheduler, which the lab does not run) and reports it running and Ready as its
   * node's kubelet. Waits for the namespace's default ServiceAccount first: the
   * ServiceAccount admission plugin refuses a Pod before it exists.
   */
  async runPod(spec: LabPodSpec): Promise<Pod> {
    await this.#waitServiceAccount(spec.namespace);
    const body = {
      apiVersion: 'v1', kind: 'Pod',
      metadata: { name: spec.name, namespace: spec.namespace, labels: { ...spec.labels }, ...(spec.annotations !== undefined ? { annotations: { ...spec.annotations } } : {}) },
      spec: {
        nodeName: spec.node,
        containers: [{ name: 'server', image: 'fulcrum-lab/pod-server', ports: spec.ports.map((p) => ({ name: p.name, containerPort: p.port, protocol: p.protocol })) }],
        terminationGracePeriodSeconds: 30,
      },
    };
    const created = await this.#admin.create<Pod>(RESOURCES.pods, body as unknown as Pod);
    await this.setPodReady(spec, true);
    return created;
  }

  /** What the kubelet reports once the pod's readiness probe passes (true) or fails (false). */
  async setPodReady(spec: LabPodSpec, ready: boolean): Promise<void> {
    const client = this.#entry(spec.node).client;
    const now = new Date().toISOString();
    const condition = (type: string, status: boolean) => ({ type, status: status ? 'True' : 'False', lastProbeTime: null, lastTransitionTime: now });
    await client.patch(RESOURCES.pods, spec.name, spec.namespace, {
      status: {
        phase: 'Running',
        podIP: spec.ips[0],
        podIPs: spec.ips.map((ip) => ({ ip })),
        startTime: this.#started,
        qosClass: 'BestEffort',
        conditions: [
          condition('PodReadyToStartContainers', true), condition('Initialized', true),
          condition('Ready', ready), condition('ContainersReady', ready), condition('PodScheduled', true),
        ],
        containerStatuses: [{
          name: 'server', image: 'fulcrum-lab/pod-server', imageID: '', ready, started: true, restartCount: 0,
          state: { running: { startedAt: this.#started } },
        }],
      },
    }, { type: 'merge', subresource: 'status' });
  }

  /**
   * Deletes a Pod with a grace period, as a scale-down or a rollout does (the admin's
   * part). The Pod stays, with deletionTimestamp set, until its kubelet finishes it
   * (finishTermination): meanwhile it keeps serving, and the EndpointSlice controller
   * lists it serving and terminating.
   */
  async terminatePod(spec: LabPodSpec, gracePeriodSeconds = 300): Promise<void> {
    await this.#admin.request('DELETE', resourcePath(RESOURCES.pods, spec.namespace, spec.name), {
      body: { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds },
    });
  }

  /**
   * The kubelet's end of a deletion: its "containers" have stopped, so it deletes the
   * Pod for good (grace period 0, only this incarnation: the UID precondition) and
   * waits until the API server no longer has it.
   */
  async finishTermination(spec: LabPodSpec, timeoutMs = 30_000): Promise<void> {
    const client = this.#entry(spec.node).client;
    const current = await this.#boundPod(spec);
    if (current === undefined) return;
    try {
      await client.request('DELETE', resourcePath(RESOURCES.pods, spec.namespace, spec.name), {
        body: { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0, preconditions: { uid: current.metadata.uid } },
      });
    } catch (err) {
      if (!isApiError(err, 404)) throw err;
    }
    const deadline = Date.now() + timeoutMs;
    while ((await this.#boundPod(spec)) !== undefined) {
      if (Date.now() > deadline) throw new FulcrumError('ERR_INTERNAL', `Pod ${spec.namespace}/${spec.name} still exists ${timeoutMs} ms after its kubelet deleted it`);
      await sleep(POLL_MS);
    }
  }

  /**
   * A Pod bound to this node, read as its kubelet reads Pods: a list scoped by
   * spec.nodeName. (A GET by name is no substitute: once the Pod was terminating, the
   * Node authorizer answered the node's GET with 403 "no relationship found".)
   */
  async #boundPod(spec: LabPodSpec): Promise<Pod | undefined> {
    const { items } = await this.#entry(spec.node).client.list<Pod>(RESOURCES.pods, {
      namespace: spec.namespace, fieldSelector: `spec.nodeName=${spec.node},metadata.name=${spec.name}`,
    });
    return items[0];
  }

  async #waitServiceAccount(namespace: string): Promise<void> {
    const deadline = Date.now() + SERVICE_ACCOUNT_TIMEOUT_MS;
    for (;;) {
      try {
        await this.#admin.get({ group: '', version: 'v1', plural: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true }, 'default', namespace);
        return;
      } catch (err) {
        if (!isApiError(err, 404)) throw err;
      }
      if (Date.now() > deadline) {
        throw new FulcrumError('ERR_INTERNAL', `no ServiceAccount default in namespace ${namespace} after ${SERVICE_ACCOUNT_TIMEOUT_MS / 1000} s (kube-controller-manager's serviceaccount controller makes it)`);
      }
      await sleep(POLL_MS);
    }
  }

  /** Stops the heartbeats (the nodes go NotReady in a minute, as when kubelets stop). */
  stop(): void {
    clearInterval(this.#leaseTimer);
    clearInterval(this.#statusTimer);
    for (const { client } of this.#nodes.values()) client.close();
  }
}
