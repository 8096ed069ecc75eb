// The operator's Prometheus metrics, on a registry of its own (several operators can run
// in one test process). Label values are the literals of reasons.ts.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Informer } from '../shared/kube/informer.ts';
import type { KubeObject } from './kinds.ts';
import type { QueueObserver } from './queue.ts';
import type { ReconcileOutcome, WriteOutcome } from './reasons.ts';

export class OperatorMetrics {
  readonly registry: Registry;
  readonly reconciles: Counter<'controller' | 'outcome'>;
  readonly reconcileErrors: Counter<'controller'>;
  readonly reconcileDuration: Histogram<'controller'>;
  readonly queueDepth: Gauge<'controller'>;
  readonly writes: Counter<'outcome'>;
  readonly leader: Gauge;
  readonly watchEvents: Gauge<'resource'>;
  readonly watchRestarts: Gauge<'resource' | 'kind'>;
  private informers: readonly Informer<KubeObject>[] = [];

  constructor(options: { defaultMetrics?: boolean } = {}) {
    this.registry = new Registry();
    if (options.defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'fulcrum_operator_' });
    const registers = [this.registry];
    this.reconciles = new Counter({ name: 'fulcrum_operator_reconcile_total', help: 'Reconciles by controller and outcome (done, requeue, error).', labelNames: ['controller', 'outcome'], registers });
    this.reconcileErrors = new Counter({ name: 'fulcrum_operator_reconcile_errors_total', help: 'Reconciles that failed and were retried with backoff.', labelNames: ['controller'], registers });
    this.reconcileDuration = new Histogram({
      name: 'fulcrum_operator_reconcile_duration_seconds', help: 'Time per reconcile.', labelNames: ['controller'], registers,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    });
    this.queueDepth = new Gauge({ name: 'fulcrum_operator_queue_depth', help: 'Keys waiting in each work queue.', labelNames: ['controller'], registers });
    this.writes = new Counter({ name: 'fulcrum_operator_balancernode_writes_total', help: 'BalancerNode writes by outcome (created, updated, unchanged, deleted, absent).', labelNames: ['outcome'], registers });
    this.leader = new Gauge({ name: 'fulcrum_operator_leader', help: '1 while this process holds the leader lease.', registers });
    const informers = (): readonly Informer<KubeObject>[] => this.informers;
    this.watchEvents = new Gauge({
      name: 'fulcrum_operator_watch_events', help: 'Watch events received per resource since start.', labelNames: ['resource'], registers,
      collect() {
        for (const i of informers()) this.set({ resource: i.type.plural }, i.stats.events);
      },
    });
    this.watchRestarts = new Gauge({
      name: 'fulcrum_operator_watch_restarts', help: 'List/watch restarts per resource since start: kind=gone (relist after 410) or error (after backoff).', labelNames: ['resource', 'kind'], registers,
      collect() {
        for (const i of informers()) {
          this.set({ resource: i.type.plural, kind: 'gone' }, i.stats.relistsAfterGone);
          this.set({ resource: i.type.plural, kind: 'error' }, i.stats.restartsAfterError);
        }
      },
    });
  }

  trackInformers(informers: readonly Informer<KubeObject>[]): void {
    this.informers = informers;
  }

  queueObserver(controller: string): QueueObserver {
    return {
      onResult: (outcome: ReconcileOutcome, durationMs: number) => {
        this.reconciles.inc({ controller, outcome });
        if (outcome === 'error') this.reconcileErrors.inc({ controller });
        this.reconcileDuration.observe({ controller }, durationMs / 1000);
      },
      onDepth: (depth: number) => this.queueDepth.set({ controller }, depth),
    };
  }

  onWrite = (outcome: WriteOutcome): void => {
    this.writes.inc({ outcome });
  };
}
