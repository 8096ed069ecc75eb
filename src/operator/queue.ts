// A keyed work queue on p-queue (client-go's rate-limited workqueue, in miniature):
//
// - a key waiting to run is queued once, however often it is added (duplicates collapse);
// - a key is never processed twice at once: added while running, it runs again after;
// - a failure retries the key after a per-key exponential backoff with jitter; success
//   forgets the failures;
// - a handler may ask to run again later (requeue after N ms) without it counting as a
//   failure.
//
// Handlers are level-triggered: they get only the key and read the current state, so
// collapsing ten events into one run loses nothing.
import PQueue from 'p-queue';
import type { Logger } from '../shared/logging.ts';
import { backoffDelay } from '../shared/kube/informer.ts';
import type { BackoffOptions } from '../shared/kube/informer.ts';
import type { ReconcileOutcome } from './reasons.ts';
import { isApiError } from '../shared/kube/errors.ts';

/** Conflicts in a row on one key that are logged at debug before they become a warning. */
const CONFLICTS_BEFORE_WARNING = 3;

/** What a reconcile asks of the queue. */
export type ReconcileResult = { kind: 'done' } | { kind: 'requeue'; afterMs: number; reason: string };

export const DONE: ReconcileResult = { kind: 'done' };
export const requeue = (afterMs: number, reason: string): ReconcileResult => ({ kind: 'requeue', afterMs, reason });

export interface QueueObserver {
  /** One finished run of a key. */
  onResult(outcome: ReconcileOutcome, durationMs: number, error?: unknown): void;
  /** Keys waiting (queued, not running, not in backoff). */
  onDepth(depth: number): void;
}

export interface WorkQueueOptions {
  name: string;
  concurrency: number;
  handler: (key: string) => Promise<ReconcileResult>;
  log: Logger;
  backoff?: BackoffOptions;
  observer?: QueueObserver;
}

export class WorkQueue {
  readonly name: string;
  private readonly options: WorkQueueOptions;
  private readonly pq: PQueue;
  private readonly queued = new Set<string>();
  private readonly running = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { timer: NodeJS.Timeout; at: number }>();
  // Adds before start() wait for it; adds after stop() are dropped.
  private stopped = false;

  constructor(options: WorkQueueOptions) {
    this.name = options.name;
    this.options = options;
    this.pq = new PQueue({ concurrency: options.concurrency, autoStart: false });
  }

  /** Keys queued or running. */
  get depth(): number {
    return this.queued.size;
  }

  get busy(): number {
    return this.running.size;
  }

  /** Takes adds again (after stop()) without running them yet. */
  accept(): void {
    this.stopped = false;
  }

  start(): void {
    this.stopped = false;
    this.pq.start();
  }

  /** Stops taking work: drops what is queued and pending retries, waits for running keys. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.pq.pause();
    this.pq.clear();
    this.queued.clear();
    this.dirty.clear();
    for (const t of this.timers.values()) clearTimeout(t.timer);
    this.timers.clear();
    this.failures.clear();
    await this.pq.onPendingZero();
    this.observe();
  }

  add(key: string): void {
    if (this.stopped) return;
    const pending = this.timers.get(key);
    if (pending !== undefined) {
      // New information beats waiting out the backoff; the failure count stays.
      clearTimeout(pending.timer);
      this.timers.delete(key);
    }
    if (this.running.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.observe();
    void this.pq.add(() => this.run(key));
  }

  /** Adds the key after `ms`, unless it is added sooner (an earlier deadline already set stands). */
  addAfter(key: string, ms: number): void {
    if (this.stopped) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + ms;
    const existing = this.timers.get(key);
    if (existing !== undefined) {
      if (existing.at <= at) return;
      clearTimeout(existing.timer);
    }
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms);
    timer.unref();
    this.timers.set(key, { timer, at });
  }

  /** Resolves once nothing is queued, running or waiting to retry. */
  async idle(): Promise<void> {
    while (this.queued.size > 0 || this.running.size > 0 || this.timers.size > 0) {
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  private async run(key: string): Promise<void> {
    this.queued.delete(key);
    if (this.stopped) return;
    this.running.add(key);
    this.observe();
    const started = performance.now();
    let retryIn: number | undefined;
    try {
      const result = await this.options.handler(key);
      this.failures.delete(key);
      this.options.observer?.onResult(result.kind === 'done' ? 'done' : 'requeue', performance.now() - started);
      if (result.kind === 'requeue') retryIn = result.afterMs;
    } catch (err) {
      const attempt = this.failures.get(key) ?? 0;
      this.failures.set(key, attempt + 1);
      retryIn = backoffDelay(attempt, this.options.backoff ?? { initialMs: 100, maxMs: 60_000 });
      this.options.observer?.onResult('error', performance.now() - started, err);
      const fields = { key, attempt: attempt + 1, retryInMs: retryIn, err: err instanceof Error ? err.message : String(err) };
      // A 409 is optimistic concurrency at work (writes carry the resourceVersion they were
      // computed from; the informer may not have delivered our own last write yet): the
      // retry starts from the fresh copy. Only a conflict that keeps coming is news.
      if (isApiError(err, 409) && attempt < CONFLICTS_BEFORE_WARNING) this.options.log.debug(fields, 'reconcile met a conflict (409); retrying from the fresh copy');
      else this.options.log.warn(fields, 'reconcile failed; retrying');
    } finally {
      this.running.delete(key);
    }
    if (this.stopped) return;
    if (this.dirty.delete(key)) this.add(key);
    else if (retryIn !== undefined) this.addAfter(key, retryIn);
    this.observe();
  }

  private observe(): void {
    this.options.observer?.onDepth(this.queued.size);
  }
}
