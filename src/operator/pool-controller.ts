// VipPool controller: status only — how many addresses are assigned and available,
// Ready (addresses valid, no overlap with an older pool) and Exhausted. Allocation itself
// happens in the lbvip controller, from the same claims.
import type { Logger } from '../shared/logging.ts';
import { VipPoolSpec } from './api.ts';
import type { LoadBalancerVip, VipPool, VipPoolStatus } from './api.ts';
import type { Cluster } from './cluster.ts';
import { overlappingPools, parseRanges, poolUsage, resolveClaims } from './compute/allocate.ts';
import type { Claim, PoolInput } from './compute/allocate.ts';
import { claimOf } from './compute/vip.ts';
import type { EventRecorder } from './events.ts';
import type { BackoffOptions, InformerEvent } from '../shared/kube/informer.ts';
import { RESOURCES } from './kinds.ts';
import { mergePatchTo, withResourceVersion } from './merge-patch.ts';
import type { KubeClient } from '../shared/kube/client.ts';
import type { OperatorMetrics } from './metrics.ts';
import { DONE, WorkQueue } from './queue.ts';
import type { ReconcileResult } from './queue.ts';
import type { PoolReason } from './reasons.ts';
import { setConditions, stableStringify } from './status.ts';
import type { ConditionInput } from './status.ts';

export interface PoolControllerOptions {
  cluster: Cluster;
  client: KubeClient;
  events: EventRecorder;
  log: Logger;
  metrics?: OperatorMetrics;
  backoff?: BackoffOptions;
}

type Cond = ConditionInput<'Ready' | 'Exhausted', PoolReason>;

export class PoolController {
  readonly queue: WorkQueue;
  private readonly options: PoolControllerOptions;
  private readonly cluster: Cluster;
  private readonly unsubscribe: (() => void)[] = [];

  constructor(options: PoolControllerOptions) {
    this.options = options;
    this.cluster = options.cluster;
    const log = options.log.child({ controller: 'pool' });
    this.queue = new WorkQueue({
      name: 'pool', log, concurrency: 2, handler: (k) => this.reconcile(k),
      ...(options.backoff !== undefined ? { backoff: options.backoff } : {}),
      ...(options.metrics ? { observer: options.metrics.queueObserver('pool') } : {}),
    });
  }

  start(): void {
    const c = this.cluster;
    const all = (): void => {
      for (const p of c.pools.values()) this.queue.add(p.metadata.name);
    };
    this.unsubscribe.push(
      // Overlap is between pools: any pool change may change another's Ready.
      c.pools.on((e: InformerEvent<VipPool>) => (e.type === 'updated' && e.old?.metadata.generation === e.object.metadata.generation ? this.queue.add(e.object.metadata.name) : all())),
      c.lbvips.on((e: InformerEvent<LoadBalancerVip>) => {
        const before = e.old !== undefined ? claimOf(e.old) : undefined;
        const after = e.type === 'deleted' ? undefined : claimOf(e.object);
        if (before?.address !== after?.address) all();
      }),
    );
    this.queue.start();
    all();
  }

  async stop(): Promise<void> {
    for (const u of this.unsubscribe.splice(0)) u();
    await this.queue.stop();
  }

  private async reconcile(name: string): Promise<ReconcileResult> {
    const pool = this.cluster.pools.get(name);
    if (pool === undefined) return DONE;
    const generation = pool.metadata.generation;
    const parsed = VipPoolSpec.safeParse(pool.spec ?? {});
    const conds: Cond[] = [];
    let usage = { assigned: 0, available: 0 };
    const ranges = parsed.success ? parseRanges(parsed.data.addresses) : undefined;
    if (!parsed.success || ranges?.kind !== 'ok') {
      const message = !parsed.success
        ? parsed.error.issues.map((i) => `spec.${i.path.join('.')}: ${i.message}`).join('; ')
        : ranges?.kind === 'invalid' ? ranges.message : 'invalid';
      conds.push({ type: 'Ready', status: false, reason: 'InvalidAddresses', message });
      conds.push({ type: 'Exhausted', status: 'Unknown', reason: 'InvalidAddresses', message: 'the addresses are invalid' });
      this.options.events.record({ type: RESOURCES.vipPools, object: pool }, 'Warning', 'InvalidAddresses', message);
    } else {
      const self: PoolInput = { name, created: pool.metadata.creationTimestamp ?? '', spec: parsed.data };
      const others: PoolInput[] = [];
      for (const p of this.cluster.pools.values()) {
        const s = VipPoolSpec.safeParse(p.spec ?? {});
        if (s.success) others.push({ name: p.metadata.name, created: p.metadata.creationTimestamp ?? '', spec: s.data });
      }
      const overlaps = overlappingPools(others).get(name);
      usage = poolUsage(self, this.heldClaims()) ?? usage;
      if (overlaps !== undefined) {
        const message = overlaps === name ? 'two entries of addresses overlap' : `addresses overlap VipPool ${overlaps}, which is older`;
        conds.push({ type: 'Ready', status: false, reason: 'Overlap', message });
        this.options.events.record({ type: RESOURCES.vipPools, object: pool }, 'Warning', 'Overlap', message);
      } else {
        conds.push({ type: 'Ready', status: true, reason: 'Ready', message: `${usage.available} addresses available` });
      }
      conds.push(usage.available === 0
        ? { type: 'Exhausted', status: true, reason: 'Exhausted', message: `all ${usage.assigned} addresses are assigned` }
        : { type: 'Exhausted', status: false, reason: 'AddressesAvailable', message: `${usage.available} addresses available` });
    }
    const status: VipPoolStatus = {
      assigned: usage.assigned,
      available: usage.available,
      conditions: setConditions(pool.status?.conditions, conds, generation),
      ...(generation !== undefined ? { observedGeneration: generation } : {}),
    };
    if (stableStringify(status) !== stableStringify(pool.status ?? {})) {
      await this.options.client.patch(RESOURCES.vipPools, name, undefined,
        withResourceVersion(pool.metadata.resourceVersion, { status: mergePatchTo(pool.status ?? {}, status) }), { type: 'merge', subresource: 'status' });
    }
    return DONE;
  }

  private heldClaims(): Claim[] {
    const claims: Claim[] = [];
    for (const v of this.cluster.lbvips.values()) {
      const c = claimOf(v);
      if (c !== undefined) claims.push(c);
    }
    const settled = resolveClaims(claims);
    return claims.filter((c) => settled.get(c.key)?.kind === 'held');
  }
}
