// Service controller: a Service of type LoadBalancer with loadBalancerClass fulcrum.dev/xdp
// gets a LoadBalancerVip of the same name that it owns (controller reference, so the
// garbage collector removes it with the Service), and status.loadBalancer.ingress once
// the VIP holds an address.
//
// A Service that stops being ours (type changed, class cleared) loses its ingress entry
// and its VIP. Services of any other class — and Services that never were ours — are
// never written to.
import type { Logger } from '../shared/logging.ts';
import { VipPoolSpec } from './api.ts';
import type { LoadBalancerVip, VipPool } from './api.ts';
import type { Cluster } from './cluster.ts';
import { poolUsage, resolveClaims } from './compute/allocate.ts';
import type { Claim } from './compute/allocate.ts';
import { isOurService, serviceVip } from './compute/service.ts';
import type { PoolCandidate } from './compute/service.ts';
import { claimOf } from './compute/vip.ts';
import type { EventRecorder } from './events.ts';
import type { BackoffOptions, InformerEvent } from '../shared/kube/informer.ts';
import { ANNOTATIONS, API_VERSION, MANAGED_BY, RESOURCES, objectKey, splitKey } from './kinds.ts';
import type { Namespace, Service } from './kinds.ts';
import { isApiError } from '../shared/kube/errors.ts';
import { mergePatchTo, withResourceVersion } from './merge-patch.ts';
import type { KubeClient } from '../shared/kube/client.ts';
import type { OperatorMetrics } from './metrics.ts';
import { DONE, WorkQueue } from './queue.ts';
import type { ReconcileResult } from './queue.ts';
import type { ServiceReason } from './reasons.ts';
import { isConditionTrue, stableStringify } from './status.ts';

export interface ServiceControllerOptions {
  cluster: Cluster;
  client: KubeClient;
  events: EventRecorder;
  log: Logger;
  metrics?: OperatorMetrics;
  concurrency?: number;
  backoff?: BackoffOptions;
}

/** Annotations the operator manages on owned VIPs (others are left as they are). */
const MANAGED_ANNOTATIONS = [ANNOTATIONS.allowSharedIp, ANNOTATIONS.ipFamily] as const;
const SERVICE_LABEL = 'fulcrum.dev/service';

/**
 * Whether the stored spec already says what we would write: every field we set is
 * equal, and the fields we leave out on purpose are absent. Fields the server defaults
 * (or a newer schema adds) do not count as a difference.
 */
function specMatches(current: unknown, desired: Record<string, unknown>): boolean {
  const have = (current ?? {}) as Record<string, unknown>;
  for (const [k, v] of Object.entries(desired)) if (stableStringify(have[k]) !== stableStringify(v)) return false;
  for (const k of ['address', 'pool', 'allPorts', 'nodeSelector']) if (!(k in desired) && have[k] !== undefined) return false;
  return true;
}

function controllerOf(vip: LoadBalancerVip): { name: string; uid: string } | undefined {
  const ref = vip.metadata.ownerReferences?.find((r) => r.controller === true);
  return ref !== undefined && ref.kind === 'Service' && ref.apiVersion === 'v1' ? { name: ref.name, uid: ref.uid } : undefined;
}

export class ServiceController {
  readonly queue: WorkQueue;
  private readonly options: ServiceControllerOptions;
  private readonly cluster: Cluster;
  private readonly log: Logger;
  private readonly unsubscribe: (() => void)[] = [];

  constructor(options: ServiceControllerOptions) {
    this.options = options;
    this.cluster = options.cluster;
    this.log = options.log.child({ controller: 'service' });
    this.queue = new WorkQueue({
      name: 'service', log: this.log, concurrency: options.concurrency ?? 4, handler: (k) => this.reconcile(k),
      ...(options.backoff !== undefined ? { backoff: options.backoff } : {}),
      ...(options.metrics ? { observer: options.metrics.queueObserver('service') } : {}),
    });
  }

  start(): void {
    const c = this.cluster;
    this.unsubscribe.push(
      c.services.on((e: InformerEvent<Service>) => this.queue.add(objectKey(e.object))),
      c.lbvips.on((e: InformerEvent<LoadBalancerVip>) => {
        const owner = controllerOf(e.object);
        if (owner !== undefined) this.queue.add(`${e.object.metadata.namespace ?? ''}/${owner.name}`);
      }),
      c.pools.on((_e: InformerEvent<VipPool>) => this.addOurs(undefined)),
      c.namespaces.on((e: InformerEvent<Namespace>) => {
        if (e.type === 'updated' && stableStringify(e.old?.metadata.labels ?? {}) === stableStringify(e.object.metadata.labels ?? {})) return;
        this.addOurs(e.object.metadata.name);
      }),
    );
    this.queue.start();
    for (const s of c.services.values()) this.queue.add(objectKey(s));
  }

  async stop(): Promise<void> {
    for (const u of this.unsubscribe.splice(0)) u();
    await this.queue.stop();
  }

  private addOurs(namespace: string | undefined): void {
    for (const s of this.cluster.services.values()) {
      if (isOurService(s) && (namespace === undefined || s.metadata.namespace === namespace)) this.queue.add(objectKey(s));
    }
  }

  private event(svc: Service, type: 'Normal' | 'Warning', reason: ServiceReason, note: string): void {
    this.options.events.record({ type: RESOURCES.services, object: svc }, type, reason, note);
  }

  private async reconcile(key: string): Promise<ReconcileResult> {
    const { namespace, name } = splitKey(key);
    const svc = this.cluster.services.getByKey(key);
    const existing = this.cluster.lbvips.get(name, namespace);
    const owner = existing !== undefined ? controllerOf(existing) : undefined;
    const owned = existing !== undefined && owner !== undefined && owner.name === name && (svc === undefined || owner.uid === svc.metadata.uid) ? existing : undefined;

    if (!isOurService(svc)) {
      if (owned === undefined) return DONE; // never ours: never touched
      if (svc !== undefined) await this.clearIngress(svc, owned.status?.address);
      await this.deleteVip(owned, svc);
      return DONE;
    }
    const service = svc!;
    const desired = serviceVip({
      service,
      namespaceLabels: this.cluster.namespaces.get(namespace ?? '')?.metadata.labels,
      pools: this.poolCandidates(),
      currentPool: (owned?.spec as { pool?: string } | undefined)?.pool,
    });
    switch (desired.kind) {
      case 'noSupportedPorts':
        this.event(service, 'Warning', 'UnsupportedProtocol', `no TCP or UDP port: ${desired.unsupportedPorts.map((p) => `${p.port}/${p.protocol}`).join(', ')}`);
        if (owned !== undefined) {
          await this.clearIngress(service, owned.status?.address);
          await this.deleteVip(owned, service);
        }
        return DONE;
      case 'invalidAnnotation':
        // A typo must not take an address away: keep what exists, say why nothing changes.
        this.event(service, 'Warning', 'InvalidAnnotation', `${desired.annotation}: "${desired.value}" is ${desired.message}`);
        return this.syncIngress(service, owned);
      case 'noMatchingPool':
        this.event(service, 'Warning', 'NoMatchingPool', 'no auto-assign VipPool matches this Service; set fulcrum.dev/pool or fulcrum.dev/address');
        return this.syncIngress(service, owned);
      case 'vip':
        break;
    }
    if (desired.unsupportedPorts.length > 0) {
      this.event(service, 'Warning', 'UnsupportedProtocol', `ports not balanced: ${desired.unsupportedPorts.map((p) => `${p.port}/${p.protocol}`).join(', ')}`);
    }
    if (existing !== undefined && owned === undefined) {
      this.event(service, 'Warning', 'LoadBalancerVipConflict', `LoadBalancerVip ${name} exists and is not owned by this Service`);
      return DONE;
    }
    let vip = owned;
    if (vip === undefined) {
      const body: LoadBalancerVip = {
        apiVersion: API_VERSION, kind: 'LoadBalancerVip',
        metadata: {
          name: service.metadata.name, namespace: service.metadata.namespace,
          labels: { ...MANAGED_BY, [SERVICE_LABEL]: service.metadata.name },
          ...(Object.keys(desired.annotations).length > 0 ? { annotations: desired.annotations } : {}),
          ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: service.metadata.name, uid: service.metadata.uid!, controller: true, blockOwnerDeletion: true }],
        },
        spec: desired.spec,
      };
      try {
        vip = await this.options.client.create<LoadBalancerVip>(RESOURCES.loadBalancerVips, body);
      } catch (err) {
        if (isApiError(err, 409)) throw new Error(`LoadBalancerVip ${key} appeared meanwhile; retrying`, { cause: err });
        throw err;
      }
      this.event(service, 'Normal', 'LoadBalancerVipCreated', `LoadBalancerVip ${name} created`);
    } else {
      const annotations = { ...(vip.metadata.annotations ?? {}) };
      for (const a of MANAGED_ANNOTATIONS) delete annotations[a];
      Object.assign(annotations, desired.annotations);
      const specChanged = !specMatches(vip.spec, desired.spec);
      const annChanged = stableStringify(annotations) !== stableStringify(vip.metadata.annotations ?? {});
      if (specChanged || annChanged) {
        // A patch of what changed onto the version read, not a PUT of the cached copy
        // (merge-patch.ts): annotations and fields others set stay as they are.
        vip = await this.options.client.patch<LoadBalancerVip>(RESOURCES.loadBalancerVips, vip.metadata.name, vip.metadata.namespace, withResourceVersion(vip.metadata.resourceVersion, {
          ...(annChanged ? { metadata: { annotations: mergePatchTo(vip.metadata.annotations ?? {}, annotations) } } : {}),
          ...(specChanged ? { spec: mergePatchTo(vip.spec ?? {}, desired.spec) } : {}),
        }));
        this.event(service, 'Normal', 'LoadBalancerVipUpdated', `LoadBalancerVip ${name} updated`);
      }
    }
    return this.syncIngress(service, vip);
  }

  /** status.loadBalancer.ingress follows the VIP's assigned address. */
  private async syncIngress(svc: Service, vip: LoadBalancerVip | undefined): Promise<ReconcileResult> {
    const address = vip !== undefined && isConditionTrue(vip.status?.conditions, 'AddressAssigned') ? vip.status?.address : undefined;
    const desired = address !== undefined ? [{ ip: address, ipMode: 'VIP' as const }] : [];
    const current = svc.status?.loadBalancer?.ingress ?? [];
    if (stableStringify(current) === stableStringify(desired)) return DONE;
    await this.options.client.patch(RESOURCES.services, svc.metadata.name, svc.metadata.namespace, withResourceVersion(svc.metadata.resourceVersion, {
      status: { loadBalancer: { ingress: desired.length > 0 ? desired : null } },
    }), { type: 'merge', subresource: 'status' });
    if (address !== undefined) this.event(svc, 'Normal', 'AddressAssigned', `assigned ${address}`);
    else if (vip !== undefined) this.event(svc, 'Warning', 'AddressPending', 'the LoadBalancerVip has no address yet; see its conditions');
    return DONE;
  }

  private async clearIngress(svc: Service, address: string | undefined): Promise<void> {
    const current = svc.status?.loadBalancer?.ingress ?? [];
    const kept = current.filter((i) => i.ip === undefined || i.ip !== address);
    if (kept.length === current.length) return;
    await this.options.client.patch(RESOURCES.services, svc.metadata.name, svc.metadata.namespace, withResourceVersion(svc.metadata.resourceVersion, {
      status: { loadBalancer: { ingress: kept.length > 0 ? kept : null } },
    }), { type: 'merge', subresource: 'status' });
  }

  private async deleteVip(vip: LoadBalancerVip, svc: Service | undefined): Promise<void> {
    try {
      await this.options.client.delete(RESOURCES.loadBalancerVips, vip.metadata.name, vip.metadata.namespace, { uid: vip.metadata.uid! });
    } catch (err) {
      if (!isApiError(err, 404) && !isApiError(err, 409)) throw err;
    }
    if (svc !== undefined) this.event(svc, 'Normal', 'LoadBalancerVipDeleted', `LoadBalancerVip ${vip.metadata.name} deleted: the Service is no longer of class fulcrum.dev/xdp`);
    this.log.info({ service: objectKey(vip), reason: 'LoadBalancerVipDeleted' }, 'released the Service\'s VIP');
  }

  private poolCandidates(): PoolCandidate[] {
    const claims: Claim[] = [];
    for (const v of this.cluster.lbvips.values()) {
      const c = claimOf(v);
      if (c !== undefined) claims.push(c);
    }
    const settled = resolveClaims(claims);
    const held = claims.filter((c) => settled.get(c.key)?.kind === 'held');
    const out: PoolCandidate[] = [];
    for (const p of this.cluster.pools.values()) {
      const spec = VipPoolSpec.safeParse(p.spec ?? {});
      if (!spec.success) continue;
      const pool = { name: p.metadata.name, created: p.metadata.creationTimestamp ?? '', spec: spec.data };
      out.push({ ...pool, available: poolUsage(pool, held)?.available });
    }
    return out;
  }
}
