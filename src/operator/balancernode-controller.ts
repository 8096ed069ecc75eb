// BalancerNode controller: keeps one BalancerNode per Node equal to what placement
// computes from the LoadBalancerVips, their Services' EndpointSlices, Pods and Nodes.
//
// Two queues, so that work is proportional to what changed:
//   vip queue  (key namespace/name): recompute one VIP's contribution (its entries, its
//              balancer nodes, its decap duties); when it differs from the last one,
//              queue every node the old or new contribution touches;
//   node queue (key node name): gather the contributions touching the node, write the
//              BalancerNode if its content changed; delete it when the Node is gone.
import type { Logger } from '../shared/logging.ts';
import type { BalancerNode, LoadBalancerVip } from './api.ts';
import type { Cluster } from './cluster.ts';
import { serviceKeyOfSlice } from './cluster.ts';
import { placeNode, touchedNodes, vipContribution } from './compute/nodes.ts';
import type { VipContribution } from './compute/nodes.ts';
import { nodeView } from './compute/programmed.ts';
import { placement } from './compute/vip.ts';
import type { InformerEvent } from '../shared/kube/informer.ts';
import { objectKey } from './kinds.ts';
import type { EndpointSlice, Node, Pod } from './kinds.ts';
import type { OperatorMetrics } from './metrics.ts';
import { DONE, WorkQueue, requeue } from './queue.ts';
import type { ReconcileResult } from './queue.ts';
import type { BackoffOptions } from '../shared/kube/informer.ts';
import { stableStringify } from './status.ts';
import type { BalancerNodeWriter } from './writer.ts';

export interface BalancerNodeControllerOptions {
  cluster: Cluster;
  writer: BalancerNodeWriter;
  log: Logger;
  metrics?: OperatorMetrics;
  concurrency?: number;
  backoff?: BackoffOptions;
  /** Called after each node reconcile that wrote (tests, the benchmark). */
  onNodeWritten?: (node: string, outcome: string) => void;
}

const STARTUP_GRACE_MS = 30_000;

function contributionJson(c: VipContribution | undefined): string {
  if (c === undefined) return '';
  return JSON.stringify({ e: c.fragments, b: c.balancerNodes, d: [...c.decap.entries()].sort(([a], [b]) => (a < b ? -1 : 1)) });
}

function podFingerprint(pod: Pod | undefined): string {
  if (pod === undefined) return '';
  return JSON.stringify([pod.metadata.uid, pod.metadata.annotations?.['fulcrum.dev/weight'], pod.spec?.nodeName, pod.status?.podIPs]);
}

export class BalancerNodeController {
  readonly vipQueue: WorkQueue;
  readonly nodeQueue: WorkQueue;
  private readonly options: BalancerNodeControllerOptions;
  private readonly cluster: Cluster;
  private readonly log: Logger;
  private readonly contributions = new Map<string, { c: VipContribution; json: string }>();
  /** node → VIP keys whose contribution touches it. */
  private readonly byNode = new Map<string, Set<string>>();
  /** node → a counter bumped whenever a contribution touching it changes. */
  private readonly nodeVersion = new Map<string, number>();
  /** node → what its last reconcile settled: contributions version, Node uid, BalancerNode uid and generation. */
  private readonly settled = new Map<string, { version: number; nodeUid: string | undefined; uid: string | undefined; generation: number | undefined }>();
  private readonly unsubscribe: (() => void)[] = [];
  private stopping = false;
  private startedAt = 0;

  constructor(options: BalancerNodeControllerOptions) {
    this.options = options;
    this.cluster = options.cluster;
    this.log = options.log.child({ controller: 'balancernode' });
    const common = { log: this.log, concurrency: options.concurrency ?? 4, ...(options.backoff !== undefined ? { backoff: options.backoff } : {}) };
    this.vipQueue = new WorkQueue({ ...common, name: 'balancernode-vips', handler: (k) => this.reconcileVip(k), ...(options.metrics ? { observer: options.metrics.queueObserver('balancernode-vips') } : {}) });
    this.nodeQueue = new WorkQueue({ ...common, name: 'balancernode', handler: (k) => this.reconcileNode(k), ...(options.metrics ? { observer: options.metrics.queueObserver('balancernode') } : {}) });
  }

  start(): void {
    const c = this.cluster;
    this.unsubscribe.push(
      c.lbvips.on((e: InformerEvent<LoadBalancerVip>) => this.vipQueue.add(objectKey(e.object))),
      c.endpointSlices.on((e: InformerEvent<EndpointSlice>) => {
        for (const svc of new Set([serviceKeyOfSlice(e.object), e.old !== undefined ? serviceKeyOfSlice(e.old) : undefined])) {
          if (svc !== undefined) for (const vip of c.vipsOfService(svc)) this.vipQueue.add(vip);
        }
      }),
      c.pods.on((e: InformerEvent<Pod>) => {
        // Pods change often (status); only what placement reads matters.
        if (e.type === 'updated' && podFingerprint(e.old) === podFingerprint(e.object)) return;
        for (const svc of c.servicesOfPod(objectKey(e.object))) for (const vip of c.vipsOfService(svc)) this.vipQueue.add(vip);
      }),
      c.nodes.on((e: InformerEvent<Node>) => {
        // Heartbeats do not move VIPs: labels (selectors), existence and UID (ownership) do.
        if (e.type === 'updated' && e.old !== undefined && e.old.metadata.uid === e.object.metadata.uid
          && stableStringify(e.old.metadata.labels ?? {}) === stableStringify(e.object.metadata.labels ?? {})) return;
        this.nodeQueue.add(e.object.metadata.name);
        for (const vip of c.lbvips.values()) this.vipQueue.add(objectKey(vip));
      }),
      c.balancerNodes.on((e: InformerEvent<BalancerNode>) => {
        // Repair what others change or delete; ignore our own writes and agent status.
        if (e.type === 'updated' && e.old?.metadata.generation === e.object.metadata.generation) return;
        if (e.type !== 'deleted' && this.options.writer.isOwnWrite(e.object)) return;
        this.nodeQueue.add(e.object.metadata.name);
      }),
    );
    // Level-triggered start: every VIP, then every node (and every stray BalancerNode).
    // Nodes wait until every VIP's contribution is known: a node written from half of
    // them would drop the other half from the data plane until the next pass.
    this.stopping = false;
    this.startedAt = Date.now();
    this.vipQueue.start();
    this.nodeQueue.accept();
    for (const vip of c.lbvips.values()) this.vipQueue.add(objectKey(vip));
    for (const n of c.nodes.values()) this.nodeQueue.add(n.metadata.name);
    for (const bn of c.balancerNodes.values()) this.nodeQueue.add(bn.metadata.name);
    void this.vipQueue.idle().then(() => {
      if (!this.stopping) this.nodeQueue.start();
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const u of this.unsubscribe.splice(0)) u();
    await Promise.all([this.vipQueue.stop(), this.nodeQueue.stop()]);
    this.contributions.clear();
    this.byNode.clear();
    this.nodeVersion.clear();
    this.settled.clear();
  }

  /** The current contribution of a VIP (tests, lbvip status). */
  contribution(key: string): VipContribution | undefined {
    return this.contributions.get(key)?.c;
  }

  private async reconcileVip(key: string): Promise<ReconcileResult> {
    const vip = this.cluster.lbvips.getByKey(key);
    const place = placement(vip);
    if (place.kind === 'stale') return DONE;
    const next = place.kind === 'place'
      ? vipContribution(place.model, this.cluster.backendsOf(place.service), this.cluster.nodeInfos())
      : undefined;
    const json = contributionJson(next);
    const prev = this.contributions.get(key);
    if ((prev?.json ?? '') === json) return DONE;
    const touched = new Set<string>([...(prev !== undefined ? touchedNodes(prev.c) : []), ...(next !== undefined ? touchedNodes(next) : [])]);
    if (prev !== undefined) for (const n of touchedNodes(prev.c)) this.byNode.get(n)?.delete(key);
    if (next === undefined) this.contributions.delete(key);
    else {
      this.contributions.set(key, { c: next, json });
      for (const n of touchedNodes(next)) {
        const set = this.byNode.get(n) ?? new Set<string>();
        set.add(key);
        this.byNode.set(n, set);
      }
    }
    for (const n of touched) {
      this.nodeVersion.set(n, (this.nodeVersion.get(n) ?? 0) + 1);
      // Bursts collapse in the queue: a node being written is written once more after,
      // however many changes came meanwhile.
      this.nodeQueue.add(n);
    }
    return DONE;
  }

  private async reconcileNode(name: string): Promise<ReconcileResult> {
    const node = this.cluster.nodes.get(name);
    if (node === undefined) {
      this.settled.delete(name);
      const outcome = await this.options.writer.remove(name);
      if (outcome === 'deleted') {
        this.log.info({ node: name, outcome }, 'BalancerNode of a removed Node deleted');
        this.options.onNodeWritten?.(name, outcome);
      }
      return DONE;
    }
    // Nothing changed on either side since the last reconcile settled this node: same
    // contributions, same Node, and a BalancerNode whose spec is still that generation.
    const version = this.nodeVersion.get(name) ?? 0;
    const last = this.settled.get(name);
    const current = this.options.writer.latest(name);
    if (last !== undefined && current !== undefined && last.version === version && last.nodeUid === node.metadata.uid
      && last.uid === current.metadata.uid && last.generation === current.metadata.generation) return DONE;
    // A VIP the node carries whose new generation is not validated yet, and of which this
    // process has no earlier contribution (it just started): writing now would drop it.
    // Bounded, so that a VIP that cannot be validated does not hold the node for ever.
    if (current !== undefined && Date.now() - this.startedAt < STARTUP_GRACE_MS) {
      for (const vip of nodeView(current).keys.keys()) {
        if (!this.contributions.has(vip) && placement(this.cluster.lbvips.getByKey(vip)).kind === 'stale') return requeue(500, 'WaitingForValidation');
      }
    }
    const keys = this.byNode.get(name) ?? new Set<string>();
    const contributions: VipContribution[] = [];
    for (const k of keys) {
      const c = this.contributions.get(k);
      if (c !== undefined) contributions.push(c.c);
    }
    const result = await this.options.writer.apply({ name, uid: node.metadata.uid }, placeNode(name, contributions));
    this.settled.set(name, { version, nodeUid: node.metadata.uid, uid: result.object.metadata.uid, generation: result.object.metadata.generation });
    if (result.outcome !== 'unchanged') {
      this.log.debug({ node: name, outcome: result.outcome, generation: result.generation }, 'BalancerNode written');
      this.options.onNodeWritten?.(name, result.outcome);
    }
    return DONE;
  }
}
