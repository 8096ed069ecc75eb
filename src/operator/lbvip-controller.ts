// LoadBalancerVip controller: validate, assign the address, report status.
//
//   get (gone → forget) → deleting? hold the finalizer until no BalancerNode carries the
//   VIP, then release it → ensure the finalizer → validate the spec → check the Service
//   → assign or verify the address (conflicts are conditions, never crashes) → count
//   backends and programmed nodes → write status only when it changed.
//
// Conditions:
//   Accepted         spec valid, Service exists, backends of the VIP's family exist when
//                    the Service has endpoints at all;
//   AddressAssigned  the address is held (explicit, or allocated from the pool);
//   Programmed       every selected balancer node's agent reports the VIP at a
//                    generation that contains its current entries.
// The BalancerNode controller places a VIP only once this controller has validated its
// generation (status.observedGeneration) with Accepted and AddressAssigned True.
import { addressFamily } from '../shared/addresses.ts';
import { vipKey as entryKey } from '../shared/desired-state.ts';
import type { Logger } from '../shared/logging.ts';
import { VipPoolSpec } from './api.ts';
import type { BalancerNode, LoadBalancerVip, LoadBalancerVipSpec, LoadBalancerVipStatus, VipPool } from './api.ts';
import type { Cluster } from './cluster.ts';
import { serviceKeyOfSlice } from './cluster.ts';
import { allocate, poolContains, resolveClaims } from './compute/allocate.ts';
import type { Claim } from './compute/allocate.ts';
import { countBackends } from './compute/backends.ts';
import type { ServiceBackends } from './compute/backends.ts';
import { balancerNodesFor } from './compute/nodes.ts';
import { changedVips, nodeView, programmedOn } from './compute/programmed.ts';
import type { NodeView } from './compute/programmed.ts';
import { matchesSelector } from './compute/selectors.ts';
import { claimOf, familyOf, parseVip, shareKeyOf, vipKeyOf, vipPorts } from './compute/vip.ts';
import type { EventRecorder } from './events.ts';
import type { BackoffOptions, InformerEvent } from '../shared/kube/informer.ts';
import { ANNOTATIONS, FINALIZER, RESOURCES, objectKey } from './kinds.ts';
import type { EndpointSlice, KubeObject, Namespace, Node, Service } from './kinds.ts';
import type { KubeClient } from '../shared/kube/client.ts';
import { finalizerPatch, mergePatchTo, withResourceVersion } from './merge-patch.ts';
import type { OperatorMetrics } from './metrics.ts';
import { DONE, WorkQueue, requeue } from './queue.ts';
import type { ReconcileResult } from './queue.ts';
import type { BackendReason, LbVipReason } from './reasons.ts';
import { findCondition, isConditionTrue, setConditions, stableStringify } from './status.ts';
import type { ConditionInput } from './status.ts';
import type { BalancerNodeWriter } from './writer.ts';

export interface LbVipControllerOptions {
  cluster: Cluster;
  client: KubeClient;
  writer: BalancerNodeWriter;
  events: EventRecorder;
  log: Logger;
  metrics?: OperatorMetrics;
  concurrency?: number;
  backoff?: BackoffOptions;
}

type AddressOutcome =
  | { kind: 'assigned'; address: string }
  | { kind: 'failed'; reason: LbVipReason; message: string };

type Cond = ConditionInput<'Accepted' | 'AddressAssigned' | 'Programmed', LbVipReason>;

const WARNING_REASONS: ReadonlySet<LbVipReason> = new Set<LbVipReason>([
  'InvalidSpec', 'ServiceNotFound', 'NoBackendsOfFamily', 'AddressConflict', 'PortsCollide',
  'PoolNotFound', 'PoolExhausted', 'PoolInvalid', 'PoolSelectorMismatch', 'AddressFamilyUnavailable',
]);

export class LbVipController {
  readonly queue: WorkQueue;
  private readonly options: LbVipControllerOptions;
  private readonly cluster: Cluster;
  private readonly log: Logger;
  /** Addresses this process assigned whose status write the cache has not shown yet. */
  private readonly reservations = new Map<string, string>();
  /** The settled claims of every VIP, until a claim or a reservation changes. */
  private settledCache: { claims: Claim[]; outcome: ReturnType<typeof resolveClaims> } | undefined;
  /** Our last status write per VIP: the resourceVersion it replaced and produced. */
  private readonly lastStatus = new Map<string, { fromRv: string | undefined; toRv: string | undefined; json: string }>();
  private readonly unsubscribe: (() => void)[] = [];

  constructor(options: LbVipControllerOptions) {
    this.options = options;
    this.cluster = options.cluster;
    this.log = options.log.child({ controller: 'lbvip' });
    this.queue = new WorkQueue({
      name: 'lbvip', log: this.log, concurrency: options.concurrency ?? 4, handler: (k) => this.reconcile(k),
      ...(options.backoff !== undefined ? { backoff: options.backoff } : {}),
      ...(options.metrics ? { observer: options.metrics.queueObserver('lbvip') } : {}),
    });
  }

  start(): void {
    const c = this.cluster;
    const addVipsOfService = (svc: string | undefined): void => {
      if (svc !== undefined) for (const k of c.vipsOfService(svc)) this.queue.add(k);
    };
    this.unsubscribe.push(
      c.lbvips.on((e: InformerEvent<LoadBalancerVip>) => {
        const key = objectKey(e.object);
        if (e.type === 'deleted' || claimText(e.old) !== claimText(e.object)) this.settledCache = undefined;
        this.queue.add(key);
        const reserved = this.reservations.get(key);
        if (e.type === 'deleted' || (reserved !== undefined && e.object.status?.address === reserved)) this.deleteReservation(key);
        // An address released (deleted VIP, changed address) may settle someone's conflict.
        if (e.type === 'deleted' || e.old?.status?.address !== e.object.status?.address || e.old?.metadata.generation !== e.object.metadata.generation) this.addWaiting(key);
      }),
      c.services.on((e: InformerEvent<Service>) => {
        // Existence (Accepted) and labels (pool serviceSelectors) matter; the rest does not.
        if (e.type !== 'updated' || !sameLabels(e.old, e.object)) addVipsOfService(objectKey(e.object));
      }),
      c.namespaces.on((e: InformerEvent<Namespace>) => {
        if (e.type === 'updated' && sameLabels(e.old, e.object)) return;
        for (const v of c.lbvips.values()) if (v.metadata.namespace === e.object.metadata.name) this.queue.add(objectKey(v));
      }),
      c.endpointSlices.on((e: InformerEvent<EndpointSlice>) => {
        addVipsOfService(serviceKeyOfSlice(e.object));
        if (e.old !== undefined) {
          const before = serviceKeyOfSlice(e.old);
          if (before !== serviceKeyOfSlice(e.object)) addVipsOfService(before);
        }
      }),
      c.nodes.on((e: InformerEvent<Node>) => {
        if (e.type === 'updated' && sameLabels(e.old, e.object)) return;
        for (const v of c.lbvips.values()) this.queue.add(objectKey(v));
      }),
      c.balancerNodes.on((e: InformerEvent<BalancerNode>) => {
        // Only VIPs whose entries changed or whose programmed-ness flipped on this node.
        const writer = this.options.writer;
        const name = e.object.metadata.name;
        const required = (vip: string, view: NodeView): number => writer.vipGeneration(name, vip) ?? view.generation;
        const before = e.old !== undefined ? nodeView(e.old) : undefined;
        const after = e.type === 'deleted' ? undefined : nodeView(e.object);
        for (const vip of changedVips(before, after, required)) this.queue.add(vip);
      }),
      c.pools.on((e: InformerEvent<VipPool>) => {
        for (const k of c.vipsOfPool(e.object.metadata.name)) this.queue.add(k);
        this.addWaiting(undefined);
      }),
    );
    this.queue.start();
    for (const v of c.lbvips.values()) this.queue.add(objectKey(v));
  }

  async stop(): Promise<void> {
    for (const u of this.unsubscribe.splice(0)) u();
    await this.queue.stop();
    this.reservations.clear();
    this.settledCache = undefined;
    this.lastStatus.clear();
  }

  /** Queues VIPs waiting for an address: a release elsewhere may be their turn. */
  private addWaiting(except: string | undefined): void {
    for (const v of this.cluster.lbvips.values()) {
      const key = objectKey(v);
      if (key === except) continue;
      const cond = findCondition(v.status?.conditions, 'AddressAssigned');
      if (cond !== undefined && cond.status !== 'True') this.queue.add(key);
    }
  }

  // ---------------------------------------------------------------- reconcile

  private async reconcile(key: string): Promise<ReconcileResult> {
    let vip = this.cluster.lbvips.getByKey(key);
    if (vip === undefined) {
      this.deleteReservation(key);
      this.lastStatus.delete(key);
      return DONE;
    }
    if (vip.metadata.deletionTimestamp !== undefined) return this.finalize(vip);
    const addFinalizer = finalizerPatch(vip.metadata, FINALIZER, true);
    if (addFinalizer !== undefined) {
      // A patch, not a PUT of the cached copy (merge-patch.ts says why).
      vip = await this.options.client.patch<LoadBalancerVip>(RESOURCES.loadBalancerVips, vip.metadata.name, vip.metadata.namespace, addFinalizer);
    }
    const { status, events } = this.evaluate(vip);
    const desired = stableStringify(normalizeStatus(status));
    // Compare with what the server holds: our own last write when the cache has not
    // caught up with it yet (a quick second reconcile must not write the same status).
    const mine = this.lastStatus.get(key);
    const rv = vip.metadata.resourceVersion;
    const current = mine !== undefined && (rv === mine.fromRv || rv === mine.toRv) ? mine.json : stableStringify(normalizeStatus(vip.status ?? {}));
    if (current !== desired) {
      // Only the status, only what changed, and only onto the version it was computed
      // from (409 otherwise, and the queue retries from the fresh copy).
      const written = await this.options.client.patch<LoadBalancerVip>(RESOURCES.loadBalancerVips, vip.metadata.name, vip.metadata.namespace,
        withResourceVersion(rv, { status: mergePatchTo(vip.status ?? {}, status) }), { type: 'merge', subresource: 'status' });
      this.lastStatus.set(key, { fromRv: rv, toRv: written.metadata.resourceVersion, json: desired });
    }
    for (const e of events) this.options.events.record({ type: RESOURCES.loadBalancerVips, object: vip }, e.type, e.reason, e.note);
    return DONE;
  }

  private async finalize(vip: LoadBalancerVip): Promise<ReconcileResult> {
    const key = vipKeyOf(vip);
    if (!(vip.metadata.finalizers ?? []).includes(FINALIZER)) return DONE;
    // The address stays held until no node balances it any more: it must not be handed
    // to another VIP while an agent still forwards it.
    const carriers: string[] = [];
    for (const bn of this.cluster.balancerNodes.values()) {
      const latest = this.options.writer.latest(bn.metadata.name) ?? bn;
      if (nodeView(latest).keys.has(key)) carriers.push(bn.metadata.name);
    }
    if (carriers.length > 0) {
      const message = `being deleted: still on ${carriers.length} node(s)`;
      const programmed = findCondition(vip.status?.conditions, 'Programmed');
      if (programmed?.reason !== 'Deleting' || programmed.message !== message) {
        const conditions = setConditions(vip.status?.conditions, [{ type: 'Programmed', status: false, reason: 'Deleting', message }], vip.metadata.generation);
        await this.options.client.patch(RESOURCES.loadBalancerVips, vip.metadata.name, vip.metadata.namespace,
          withResourceVersion(vip.metadata.resourceVersion, { status: { conditions } }), { type: 'merge', subresource: 'status' });
      }
      return requeue(1000, 'WaitingForNodes');
    }
    const release = finalizerPatch(vip.metadata, FINALIZER, false);
    if (release !== undefined) await this.options.client.patch(RESOURCES.loadBalancerVips, vip.metadata.name, vip.metadata.namespace, release);
    this.deleteReservation(key);
    this.log.info({ vip: key }, 'removed from every node; finalizer released');
    return DONE;
  }

  private evaluate(vip: LoadBalancerVip): { status: LoadBalancerVipStatus; events: { type: 'Normal' | 'Warning'; reason: LbVipReason | BackendReason; note: string }[] } {
    const generation = vip.metadata.generation;
    const key = vipKeyOf(vip);
    const previous = vip.status ?? {};
    const events: { type: 'Normal' | 'Warning'; reason: LbVipReason | BackendReason; note: string }[] = [];
    const conds: Cond[] = [];
    const parsed = parseVip(vip);

    let address: string | undefined;
    let backends = { ready: 0, draining: 0 };
    let selected: string[] = [];
    let programmed = 0;

    if (parsed.kind === 'invalid') {
      conds.push(
        { type: 'Accepted', status: false, reason: 'InvalidSpec', message: parsed.message },
        { type: 'AddressAssigned', status: false, reason: 'NotAccepted', message: 'the spec is invalid' },
        { type: 'Programmed', status: false, reason: 'NotAccepted', message: 'the spec is invalid' },
      );
    } else {
      const spec = parsed.spec;
      const svcKey = `${vip.metadata.namespace ?? ''}/${spec.backends.service}`;
      const service = this.cluster.services.getByKey(svcKey);
      const all = this.cluster.backendsOf(svcKey);
      const assigned = this.assignAddress(vip, spec);
      if (assigned.kind === 'assigned') {
        address = assigned.address;
        // The message must not depend on how this pass got the address (allocated now or
        // kept from before), or every second pass would rewrite the status.
        const from = spec.address !== undefined ? 'spec.address' : `VipPool ${spec.pool ?? ''}`;
        const share = shareKeyOf(vip);
        conds.push({ type: 'AddressAssigned', status: true, reason: 'AddressAssigned', message: `${assigned.address} from ${from}${share !== undefined ? ` (shareable with key ${share})` : ''}` });
      } else {
        conds.push({ type: 'AddressAssigned', status: false, reason: assigned.reason, message: assigned.message });
      }
      for (const issue of all.issues) {
        events.push({ type: 'Warning', reason: 'InvalidWeight', note: `Pod ${issue.pod}: ${ANNOTATIONS.weight} "${issue.value}" is not a whole number from 0 to 10000; using 1` });
      }
      const accepted = this.acceptance(service, spec.backends.service, address, all);
      conds.push(accepted);
      const family = address !== undefined ? addressFamily(address) : undefined;
      backends = family !== undefined ? countBackends(all[family]) : sum(countBackends(all[4]), countBackends(all[6]));
      selected = balancerNodesFor(spec.nodeSelector, this.cluster.nodeInfos());
      if (!accepted.status) {
        conds.push({ type: 'Programmed', status: false, reason: 'NotAccepted', message: accepted.message });
      } else if (address === undefined) {
        conds.push({ type: 'Programmed', status: false, reason: 'AddressNotAssigned', message: 'no address assigned' });
      } else {
        const keys = vipPorts(spec).map((p) => entryKey({ address: address!, port: p.port, protocol: p.protocol }));
        programmed = this.programmedCount(key, keys, selected);
        if (selected.length === 0) {
          conds.push({ type: 'Programmed', status: false, reason: 'NoBalancerNodes', message: 'no node matches the nodeSelector' });
        } else if (programmed < selected.length) {
          conds.push({ type: 'Programmed', status: false, reason: 'Pending', message: `programmed on ${programmed} of ${selected.length} balancer nodes` });
        } else {
          conds.push({ type: 'Programmed', status: true, reason: 'Programmed', message: `programmed on ${programmed} balancer nodes` });
        }
      }
    }

    const conditions = setConditions(previous.conditions, conds, generation);
    for (const c of conds) {
      const before = findCondition(previous.conditions, c.type);
      const changed = before === undefined || before.status !== (c.status === true ? 'True' : 'False') || before.reason !== c.reason;
      if (WARNING_REASONS.has(c.reason)) events.push({ type: 'Warning', reason: c.reason, note: c.message });
      else if (changed && c.status === true && (c.reason === 'AddressAssigned' || c.reason === 'Programmed')) events.push({ type: 'Normal', reason: c.reason, note: c.message });
    }
    const status: LoadBalancerVipStatus = {
      conditions,
      balancerNodes: { selected: selected.length, programmed },
      readyBackends: backends.ready,
      drainingBackends: backends.draining,
      ...(generation !== undefined ? { observedGeneration: generation } : {}),
      ...(address !== undefined ? { address } : {}),
    };
    return { status, events };
  }

  private acceptance(service: Service | undefined, name: string, address: string | undefined, all: ServiceBackends): Cond {
    if (service === undefined) return { type: 'Accepted', status: false, reason: 'ServiceNotFound', message: `Service ${name} not found` };
    if (address !== undefined) {
      const family = addressFamily(address);
      const other = family === 4 ? 6 : 4;
      if (all[family].length === 0 && all[other].length > 0) {
        return { type: 'Accepted', status: false, reason: 'NoBackendsOfFamily', message: `Service ${name} has only IPv${other} endpoints; an IPv${family} VIP takes IPv${family} backends only` };
      }
    }
    return { type: 'Accepted', status: true, reason: 'Accepted', message: 'spec is valid' };
  }

  /** Every claim in the cluster as this process knows it (cache + own fresh assignments), settled. */
  private settledClaims(): { claims: Claim[]; outcome: ReturnType<typeof resolveClaims> } {
    if (this.settledCache !== undefined) return this.settledCache;
    const claims: Claim[] = [];
    for (const v of this.cluster.lbvips.values()) {
      const key = vipKeyOf(v);
      const reserved = this.reservations.get(key);
      const claim = claimOf(v);
      if (reserved !== undefined && parseVip(v).kind === 'valid') {
        const parsed = parseVip(v) as { kind: 'valid'; spec: LoadBalancerVipSpec };
        if (parsed.spec.address === undefined) {
          claims.push({ key, created: v.metadata.creationTimestamp ?? '', address: reserved, ports: vipPorts(parsed.spec), shareKey: shareKeyOf(v) });
          continue;
        }
      }
      if (claim !== undefined) claims.push(claim);
    }
    this.settledCache = { claims, outcome: resolveClaims(claims) };
    return this.settledCache;
  }

  private setReservation(key: string, address: string): void {
    if (this.reservations.get(key) === address) return;
    this.reservations.set(key, address);
    this.settledCache = undefined;
  }

  private deleteReservation(key: string): void {
    if (this.reservations.delete(key)) this.settledCache = undefined;
  }

  private assignAddress(vip: LoadBalancerVip, spec: LoadBalancerVipSpec): AddressOutcome {
    const key = vipKeyOf(vip);
    const { claims, outcome } = this.settledClaims();
    const mine = outcome.get(key);
    if (spec.address !== undefined) {
      if (mine?.kind === 'conflict') {
        return { kind: 'failed', reason: mine.reason, message: mine.reason === 'PortsCollide'
          ? `${spec.address} is shared with ${mine.with}, whose ports collide with these`
          : `${spec.address} is held by ${mine.with}` };
      }
      return { kind: 'assigned', address: spec.address };
    }
    const poolName = spec.pool!;
    const poolObj = this.cluster.pools.get(poolName);
    if (poolObj === undefined) {
      this.deleteReservation(key);
      return { kind: 'failed', reason: 'PoolNotFound', message: `VipPool ${poolName} not found` };
    }
    const poolSpec = VipPoolSpec.safeParse(poolObj.spec ?? {});
    if (!poolSpec.success) return { kind: 'failed', reason: 'PoolInvalid', message: `VipPool ${poolName} is invalid` };
    const pool = { name: poolName, created: poolObj.metadata.creationTimestamp ?? '', spec: poolSpec.data };
    // A pool's selectors admit VIPs by namespace and by backend Service, whoever names the pool.
    const nsLabels = this.cluster.namespaces.get(vip.metadata.namespace ?? '')?.metadata.labels;
    const svcLabels = this.cluster.services.get(spec.backends.service, vip.metadata.namespace)?.metadata.labels;
    if ((pool.spec.namespaceSelector !== undefined && !matchesSelector(pool.spec.namespaceSelector, nsLabels))
      || (pool.spec.serviceSelector !== undefined && !matchesSelector(pool.spec.serviceSelector, svcLabels))) {
      this.deleteReservation(key);
      return { kind: 'failed', reason: 'PoolSelectorMismatch', message: `VipPool ${poolName} does not admit this VIP (its namespaceSelector or serviceSelector)` };
    }
    const family = familyOf(vip);
    const current = this.reservations.get(key) ?? (isConditionTrue(vip.status?.conditions, 'AddressAssigned') ? vip.status?.address : undefined);
    if (current !== undefined && mine?.kind === 'held' && poolContains(pool, current) && (family === undefined || addressFamily(current) === family)) {
      return { kind: 'assigned', address: current };
    }
    const held = claims.filter((c) => c.key !== key && outcome.get(c.key)?.kind === 'held');
    const result = allocate({ key, ports: vipPorts(spec), shareKey: shareKeyOf(vip), family }, pool, held);
    switch (result.kind) {
      case 'allocated':
        this.setReservation(key, result.address);
        this.log.info({ vip: key, address: result.address, pool: poolName, shared: result.shared }, 'address allocated');
        return { kind: 'assigned', address: result.address };
      case 'exhausted':
        this.deleteReservation(key);
        return { kind: 'failed', reason: 'PoolExhausted', message: `VipPool ${poolName} has no free address` };
      case 'familyUnavailable':
        this.deleteReservation(key);
        return { kind: 'failed', reason: 'AddressFamilyUnavailable', message: `VipPool ${poolName} has no IPv${result.family} addresses` };
      case 'invalidPool':
        return { kind: 'failed', reason: 'PoolInvalid', message: `VipPool ${poolName}: ${result.message}` };
    }
  }

  /** Selected nodes whose agent reports every entry of the VIP (compute/programmed.ts). */
  private programmedCount(vip: string, keys: readonly string[], selected: readonly string[]): number {
    let count = 0;
    const wanted = [...keys].sort().join(',');
    for (const node of selected) {
      const cached = this.cluster.balancerNodes.get(node);
      const latest = this.options.writer.latest(node) ?? cached;
      if (latest === undefined || cached === undefined) continue;
      const spec = nodeView(latest);
      const required = this.options.writer.vipGeneration(node, vip) ?? spec.generation;
      if (programmedOn(spec, nodeView(cached), vip, wanted, required)) count++;
    }
    return count;
  }
}

/** What a VIP claims, as text: a change of it invalidates the settled claims. */
function claimText(vip: LoadBalancerVip | undefined): string {
  const c = vip !== undefined ? claimOf(vip) : undefined;
  return c === undefined ? '' : JSON.stringify(c);
}

function sameLabels(a: KubeObject | undefined, b: KubeObject): boolean {
  return stableStringify(a?.metadata.labels ?? {}) === stableStringify(b.metadata.labels ?? {});
}

function sum(a: { ready: number; draining: number }, b: { ready: number; draining: number }): { ready: number; draining: number } {
  return { ready: a.ready + b.ready, draining: a.draining + b.draining };
}

/** Status as compared for "did anything change": lastTransitionTime is kept by setConditions. */
function normalizeStatus(s: LoadBalancerVipStatus): unknown {
  return {
    address: s.address,
    conditions: s.conditions ?? [],
    balancerNodes: s.balancerNodes ?? { selected: 0, programmed: 0 },
    readyBackends: s.readyBackends ?? 0,
    drainingBackends: s.drainingBackends ?? 0,
    observedGeneration: s.observedGeneration,
  };
}
