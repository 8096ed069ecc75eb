// The operator's view of the cluster: one informer per resource, and the indexes the
// controllers use to go from a changed object to the keys it affects (an EndpointSlice
// to its Service's VIPs, a Pod to the Services whose slices list it).
//
// Informers run whether or not this process leads: a standby has warm caches, and
// failover costs no relist.
import type { Logger } from '../shared/logging.ts';
import type { BalancerNode, LoadBalancerVip, VipPool } from './api.ts';
import { decodeBalancerNodeEvent, forgetSpec, slimBalancerNode } from './balancernode-cache.ts';
import { serviceBackends } from './compute/backends.ts';
import type { ServiceBackends } from './compute/backends.ts';
import type { NodeInfo } from './compute/nodes.ts';
import { Informer } from '../shared/kube/informer.ts';
import type { BackoffOptions, InformerEvent } from '../shared/kube/informer.ts';
import { ANNOTATIONS, RESOURCES, SERVICE_NAME_LABEL, objectKey } from './kinds.ts';
import type { EndpointSlice, KubeObject, Namespace, Node, Pod, ResourceType, Service } from './kinds.ts';
import type { KubeClient } from '../shared/kube/client.ts';

/** owner → targets, and target → owners (e.g. slice → service, service → slices). */
export class Index {
  private readonly forward = new Map<string, Set<string>>();
  private readonly reverse = new Map<string, Set<string>>();

  set(owner: string, targets: Iterable<string>): void {
    this.delete(owner);
    const set = new Set(targets);
    if (set.size === 0) return;
    this.forward.set(owner, set);
    for (const t of set) {
      const owners = this.reverse.get(t);
      if (owners === undefined) this.reverse.set(t, new Set([owner]));
      else owners.add(owner);
    }
  }

  delete(owner: string): void {
    const old = this.forward.get(owner);
    if (old === undefined) return;
    this.forward.delete(owner);
    for (const t of old) {
      const owners = this.reverse.get(t);
      owners?.delete(owner);
      if (owners?.size === 0) this.reverse.delete(t);
    }
  }

  /** Owners pointing at `target`. */
  owners(target: string): ReadonlySet<string> {
    return this.reverse.get(target) ?? EMPTY;
  }

  targets(owner: string): ReadonlySet<string> {
    return this.forward.get(owner) ?? EMPTY;
  }
}

const EMPTY: ReadonlySet<string> = new Set();

export interface ClusterOptions {
  client: KubeClient;
  log: Logger;
  backoff?: BackoffOptions;
  watchTimeoutSeconds?: number;
}

export function serviceKeyOfSlice(slice: EndpointSlice): string | undefined {
  const name = slice.metadata.labels?.[SERVICE_NAME_LABEL];
  return name === undefined ? undefined : `${slice.metadata.namespace ?? ''}/${name}`;
}

function podKeysOfSlice(slice: EndpointSlice): string[] {
  const keys: string[] = [];
  for (const ep of slice.endpoints ?? []) {
    const ref = ep.targetRef;
    if (ref?.kind === 'Pod' && ref.name !== undefined) keys.push(`${ref.namespace ?? slice.metadata.namespace ?? ''}/${ref.name}`);
  }
  return keys;
}

function vipServiceKey(vip: LoadBalancerVip): string | undefined {
  const spec = vip.spec as { backends?: { service?: unknown } } | undefined;
  const name = spec?.backends?.service;
  return typeof name === 'string' ? `${vip.metadata.namespace ?? ''}/${name}` : undefined;
}

function vipPoolName(vip: LoadBalancerVip): string | undefined {
  const pool = (vip.spec as { pool?: unknown } | undefined)?.pool;
  return typeof pool === 'string' ? pool : undefined;
}

/**
 * Cached Pods keep only what placement reads (a real Pod is kilobytes of containers,
 * volumes and conditions; a cluster has tens of thousands).
 */
export function slimPod(pod: Pod): Pod {
  const weight = pod.metadata.annotations?.[ANNOTATIONS.weight];
  return {
    metadata: {
      name: pod.metadata.name,
      ...(pod.metadata.namespace !== undefined ? { namespace: pod.metadata.namespace } : {}),
      ...(pod.metadata.uid !== undefined ? { uid: pod.metadata.uid } : {}),
      ...(pod.metadata.resourceVersion !== undefined ? { resourceVersion: pod.metadata.resourceVersion } : {}),
      ...(weight !== undefined ? { annotations: { [ANNOTATIONS.weight]: weight } } : {}),
    },
    ...(pod.spec?.nodeName !== undefined ? { spec: { nodeName: pod.spec.nodeName } } : {}),
    status: {
      ...(pod.status?.podIP !== undefined ? { podIP: pod.status.podIP } : {}),
      ...(pod.status?.podIPs !== undefined ? { podIPs: pod.status.podIPs.map((p) => ({ ip: p.ip })) } : {}),
    },
  };
}

/** Nodes and Namespaces are read for their labels only (a Node's status is large and busy). */
export function slimMeta<T extends KubeObject>(obj: T): T {
  const m = obj.metadata;
  return {
    metadata: {
      name: m.name,
      ...(m.uid !== undefined ? { uid: m.uid } : {}),
      ...(m.resourceVersion !== undefined ? { resourceVersion: m.resourceVersion } : {}),
      ...(m.labels !== undefined ? { labels: m.labels } : {}),
      ...(m.deletionTimestamp !== undefined ? { deletionTimestamp: m.deletionTimestamp } : {}),
    },
  } as T;
}

export class Cluster {
  readonly lbvips: Informer<LoadBalancerVip>;
  readonly pools: Informer<VipPool>;
  readonly balancerNodes: Informer<BalancerNode>;
  readonly services: Informer<Service>;
  readonly endpointSlices: Informer<EndpointSlice>;
  readonly pods: Informer<Pod>;
  readonly nodes: Informer<Node>;
  readonly namespaces: Informer<Namespace>;

  /** slice key → its Service key. */
  readonly sliceService = new Index();
  /** slice key → the Pods it lists. */
  readonly slicePods = new Index();
  /** LBVip key → its backend Service key. */
  readonly vipService = new Index();
  /** LBVip key → the pool it allocates from. */
  readonly vipPool = new Index();

  private readonly all: Informer<KubeObject>[];

  constructor(options: ClusterOptions) {
    const make = <T extends KubeObject>(type: ResourceType, transform?: (obj: T) => T, decode?: (line: Buffer) => { type: string; object: T }): Informer<T> => new Informer<T>({
      client: options.client, type, log: options.log,
      ...(transform !== undefined ? { transform } : {}),
      ...(decode !== undefined ? { decode } : {}),
      ...(options.backoff !== undefined ? { backoff: options.backoff } : {}),
      ...(options.watchTimeoutSeconds !== undefined ? { watchTimeoutSeconds: options.watchTimeoutSeconds } : {}),
    });
    this.lbvips = make(RESOURCES.loadBalancerVips);
    this.pools = make(RESOURCES.vipPools);
    this.balancerNodes = make<BalancerNode>(RESOURCES.balancerNodes, slimBalancerNode, decodeBalancerNodeEvent);
    this.services = make(RESOURCES.services);
    this.endpointSlices = make(RESOURCES.endpointSlices);
    this.pods = make(RESOURCES.pods, slimPod);
    this.nodes = make(RESOURCES.nodes, slimMeta);
    this.namespaces = make(RESOURCES.namespaces, slimMeta);
    this.all = [this.lbvips, this.pools, this.balancerNodes, this.services, this.endpointSlices, this.pods, this.nodes, this.namespaces] as unknown as Informer<KubeObject>[];

    // Indexes first: handlers run in registration order, so controllers see them updated.
    this.endpointSlices.on((e: InformerEvent<EndpointSlice>) => {
      const key = objectKey(e.object);
      if (e.type === 'deleted') {
        this.sliceService.delete(key);
        this.slicePods.delete(key);
        return;
      }
      const svc = serviceKeyOfSlice(e.object);
      this.sliceService.set(key, svc === undefined ? [] : [svc]);
      this.slicePods.set(key, podKeysOfSlice(e.object));
    });
    this.balancerNodes.on((e: InformerEvent<BalancerNode>) => {
      if (e.type === 'deleted') forgetSpec(e.object.metadata.uid);
    });
    this.lbvips.on((e: InformerEvent<LoadBalancerVip>) => {
      const key = objectKey(e.object);
      if (e.type === 'deleted') {
        this.vipService.delete(key);
        this.vipPool.delete(key);
        return;
      }
      const svc = vipServiceKey(e.object);
      this.vipService.set(key, svc === undefined ? [] : [svc]);
      const pool = vipPoolName(e.object);
      this.vipPool.set(key, pool === undefined ? [] : [pool]);
    });
  }

  start(): void {
    for (const i of this.all) i.start();
  }

  async stop(): Promise<void> {
    await Promise.all(this.all.map((i) => i.stop()));
  }

  async synced(): Promise<void> {
    await Promise.all(this.all.map((i) => i.synced));
  }

  get hasSynced(): boolean {
    return this.all.every((i) => i.hasSynced);
  }

  informers(): readonly Informer<KubeObject>[] {
    return this.all;
  }

  slicesOf(serviceKey: string): EndpointSlice[] {
    const out: EndpointSlice[] = [];
    for (const k of this.sliceService.owners(serviceKey)) {
      const s = this.endpointSlices.getByKey(k);
      if (s !== undefined) out.push(s);
    }
    return out;
  }

  backendsOf(serviceKey: string): ServiceBackends {
    return serviceBackends(this.slicesOf(serviceKey), (ns, name) => this.pods.get(name, ns));
  }

  /** Services whose slices list the Pod `namespace/name`. */
  servicesOfPod(podKey: string): Set<string> {
    const out = new Set<string>();
    for (const slice of this.slicePods.owners(podKey)) for (const svc of this.sliceService.targets(slice)) out.add(svc);
    return out;
  }

  vipsOfService(serviceKey: string): ReadonlySet<string> {
    return this.vipService.owners(serviceKey);
  }

  vipsOfPool(pool: string): ReadonlySet<string> {
    return this.vipPool.owners(pool);
  }

  nodeInfos(): NodeInfo[] {
    const out: NodeInfo[] = [];
    for (const n of this.nodes.values()) out.push({ name: n.metadata.name, labels: n.metadata.labels });
    return out;
  }
}
