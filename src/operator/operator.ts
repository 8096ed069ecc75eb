// The operator process: informers → work queues → controllers, under a leader lease.
//
//   start: informers (all the time, leader or not) and the HTTP endpoints;
//   leading: controllers run — each starts level-triggered, with every key queued;
//   lost leadership: controllers stop at once (no write after the lease is gone),
//                    per-process memory is dropped, and the process campaigns again;
//   stop: controllers drain, the lease is released, informers stop, Events flush.
//
// /metrics (prom-client), /healthz (the process runs), /readyz (caches synced).
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import type { KubeConfig } from '@kubernetes/client-node';
import { child } from '../shared/logging.ts';
import type { Logger } from '../shared/logging.ts';
import { BalancerNodeController } from './balancernode-controller.ts';
import { Cluster } from './cluster.ts';
import { EventRecorder } from './events.ts';
import type { BackoffOptions } from '../shared/kube/informer.ts';
import { KubeClient } from '../shared/kube/client.ts';
import { LeaderElection } from './leader.ts';
import { LbVipController } from './lbvip-controller.ts';
import { OperatorMetrics } from './metrics.ts';
import { PoolController } from './pool-controller.ts';
import { ServiceController } from './service-controller.ts';
import { BalancerNodeWriter } from './writer.ts';

export interface OperatorOptions {
  kubeConfig: KubeConfig;
  /** Where the Lease lives (the operator's own namespace). */
  namespace: string;
  leaderElect: boolean;
  /** Lease holder identity; default hostname + pid. */
  identity?: string;
  leaseName?: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  log?: Logger;
  /** Serve /metrics, /healthz, /readyz on this port (0 = any free port); absent = no server. */
  httpPort?: number;
  httpHost?: string;
  /** Backoff of list/watch restarts and of failed reconciles. */
  backoff?: BackoffOptions;
  watchTimeoutSeconds?: number;
  concurrency?: number;
  /** Dedupe window of identical Events (tests shorten it). */
  eventDedupeMs?: number;
  defaultMetrics?: boolean;
}

interface Controllers {
  lbvip: LbVipController;
  service: ServiceController;
  balancerNode: BalancerNodeController;
  pool: PoolController;
}

export class Operator {
  readonly cluster: Cluster;
  readonly client: KubeClient;
  readonly metrics: OperatorMetrics;
  readonly events: EventRecorder;
  readonly writer: BalancerNodeWriter;
  readonly controllers: Controllers;
  readonly election: LeaderElection | undefined;
  private readonly leaseClient: KubeClient | undefined;
  private readonly eventClient: KubeClient;
  private readonly options: OperatorOptions;
  private readonly log: Logger;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private server: Server | undefined;
  private leading = false;
  private leadershipChanges = 0;
  private stopping: Promise<void> | undefined;

  constructor(options: OperatorOptions) {
    this.options = options;
    this.log = options.log ?? child({ component: 'operator' });
    const identity = options.identity ?? `${hostname()}_${process.pid}`;
    // Every write of the controllers passes the lease's gate: none leaves a process that
    // does not hold the lease right now (leader.ts holdsLease), not even in the moment
    // before its renew loop notices a loss.
    this.client = new KubeClient(options.kubeConfig, {
      userAgent: `fulcrum-operator/${identity}`,
      ...(options.leaderElect ? { writeGate: () => (this.election?.holdsLease() === true ? undefined : 'this process does not hold the leader lease') } : {}),
    });
    this.metrics = new OperatorMetrics({ defaultMetrics: options.defaultMetrics ?? false });
    this.cluster = new Cluster({
      client: this.client, log: this.log,
      ...(options.backoff !== undefined ? { backoff: options.backoff } : {}),
      ...(options.watchTimeoutSeconds !== undefined ? { watchTimeoutSeconds: options.watchTimeoutSeconds } : {}),
    });
    this.metrics.trackInformers(this.cluster.informers());
    // Events are reports, not state: the last ones of a leader that stops still go out.
    this.eventClient = options.leaderElect ? new KubeClient(options.kubeConfig, { userAgent: `fulcrum-operator/${identity}` }) : this.client;
    this.events = new EventRecorder({
      client: this.eventClient, log: this.log, instance: identity,
      ...(options.eventDedupeMs !== undefined ? { dedupeWindowMs: options.eventDedupeMs } : {}),
    });
    this.writer = new BalancerNodeWriter({ client: this.client, cache: this.cluster.balancerNodes, log: this.log, onWrite: this.metrics.onWrite });
    const common = {
      cluster: this.cluster, client: this.client, events: this.events, log: this.log, metrics: this.metrics,
      ...(options.backoff !== undefined ? { backoff: options.backoff } : {}),
      ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}),
    };
    this.controllers = {
      lbvip: new LbVipController({ ...common, writer: this.writer }),
      service: new ServiceController(common),
      balancerNode: new BalancerNodeController({ ...common, writer: this.writer }),
      pool: new PoolController(common),
    };
    // The lease has a client of its own, whose requests give up well within the renew
    // deadline: a hung renewal must not keep a process believing it still leads.
    this.leaseClient = options.leaderElect
      ? new KubeClient(options.kubeConfig, { userAgent: `fulcrum-operator/${identity}`, timeoutMs: Math.max(500, Math.floor((options.renewDeadlineMs ?? 10_000) / 2)) })
      : undefined;
    this.election = this.leaseClient !== undefined
      ? new LeaderElection({
        client: this.leaseClient, log: this.log, namespace: options.namespace, name: options.leaseName ?? 'fulcrum-operator', identity,
        ...(options.leaseDurationMs !== undefined ? { leaseDurationMs: options.leaseDurationMs } : {}),
        ...(options.renewDeadlineMs !== undefined ? { renewDeadlineMs: options.renewDeadlineMs } : {}),
        ...(options.retryPeriodMs !== undefined ? { retryPeriodMs: options.retryPeriodMs } : {}),
      })
      : undefined;
  }

  get isLeading(): boolean {
    return this.leading;
  }

  /** Times controllers started or stopped (tests watch leadership changes). */
  get leadershipTransitions(): number {
    return this.leadershipChanges;
  }

  get httpUrl(): string | undefined {
    const addr = this.server?.address() as AddressInfo | null | undefined;
    return addr ? `http://127.0.0.1:${addr.port}` : undefined;
  }

  async start(): Promise<void> {
    if (this.options.httpPort !== undefined) await this.listen(this.options.httpPort, this.options.httpHost ?? '0.0.0.0');
    this.cluster.start();
    this.loop = this.run(this.abort.signal).catch((err: unknown) => {
      this.log.fatal({ err }, 'operator loop failed');
      throw err;
    });
  }

  /** Resolves once the controllers run (this process leads and caches are synced). */
  async leadingAndSynced(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.leading) {
      if (Date.now() > deadline) throw new Error('operator did not start leading in time');
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Waits until every queue is empty and idle (tests, the benchmark). */
  async idle(): Promise<void> {
    const queues = [this.controllers.lbvip.queue, this.controllers.service.queue, this.controllers.balancerNode.vipQueue, this.controllers.balancerNode.nodeQueue, this.controllers.pool.queue];
    for (let round = 0; round < 3; round++) await Promise.all(queues.map((q) => q.idle()));
  }

  async stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    this.log.info('shutting down');
    this.abort.abort();
    await this.loop?.catch(() => undefined);
    await this.cluster.stop();
    await this.events.flush();
    if (this.server !== undefined) await new Promise<void>((resolve) => this.server!.close(() => resolve()));
    this.client.close();
    if (this.eventClient !== this.client) this.eventClient.close();
    this.leaseClient?.close();
    this.log.info('stopped');
  }

  private async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      if (this.election !== undefined && !(await this.election.acquire(signal))) break;
      this.metrics.leader.set(1);
      try {
        await abortable(this.cluster.synced(), signal);
      } catch {
        break;
      }
      await this.startControllers();
      if (this.election === undefined) {
        await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
        await this.stopControllers();
        break;
      }
      const end = await this.election.hold(signal);
      await this.stopControllers();
      this.metrics.leader.set(0);
      if (end.kind === 'stopped') {
        await this.election.release();
        break;
      }
      this.log.warn({ reason: end.reason }, 'leadership lost; controllers stopped; campaigning again');
    }
    this.metrics.leader.set(0);
    if (this.leading) await this.stopControllers();
  }

  private async startControllers(): Promise<void> {
    const c = this.controllers;
    c.balancerNode.start();
    c.lbvip.start();
    c.service.start();
    c.pool.start();
    this.leading = true;
    this.leadershipChanges++;
    this.log.info('controllers started');
  }

  private async stopControllers(): Promise<void> {
    if (!this.leading) return;
    this.leading = false;
    this.leadershipChanges++;
    const c = this.controllers;
    await Promise.all([c.lbvip.stop(), c.service.stop(), c.balancerNode.stop(), c.pool.stop()]);
    // Another leader may write meanwhile: what this process remembers is no longer true.
    this.writer.reset();
    this.log.info('controllers stopped');
  }

  private async listen(port: number, host: string): Promise<void> {
    this.server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?', 1)[0];
      if (path === '/metrics') {
        this.metrics.registry.metrics().then((text) => {
          res.writeHead(200, { 'Content-Type': this.metrics.registry.contentType });
          res.end(text);
        }, (err: unknown) => {
          res.writeHead(500);
          res.end(String(err));
        });
        return;
      }
      if (path === '/healthz') {
        const ok = !this.abort.signal.aborted;
        res.writeHead(ok ? 200 : 503, { 'Content-Type': 'text/plain' });
        res.end(ok ? 'ok\n' : 'stopping\n');
        return;
      }
      if (path === '/readyz') {
        const ok = this.cluster.hasSynced && !this.abort.signal.aborted;
        res.writeHead(ok ? 200 : 503, { 'Content-Type': 'text/plain' });
        res.end(ok ? `ok${this.leading ? ' (leader)' : ' (standby)'}\n` : 'caches not synced\n');
        return;
      }
      res.writeHead(404);
      res.end();
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, host, () => resolve());
    });
  }
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) {
      reject(new Error('aborted'));
      return;
    }
    const onAbort = (): void => reject(new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then((v) => {
      signal.removeEventListener('abort', onAbort);
      resolve(v);
    }, reject);
  });
}
