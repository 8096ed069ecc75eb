// Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it:
//
// - acquire: take the Lease when it is free, ours, or not renewed for leaseDuration;
// - renew every retryPeriod; no successful renewal within renewDeadline → leadership is
//   lost, and the caller must stop writing at once;
// - release on shutdown: clear holderIdentity so a successor need not wait the lease out.
//
// Expiry is judged by the local clock from the moment this process last saw the Lease
// change (its resourceVersion), never from the timestamps in it: the holder's clock may
// be skewed from ours.
//
// Holding is judged the same way: the lease counts as ours until renewDeadline after the
// start of the last attempt that renewed it (holdsLease). Others wait leaseDuration from
// when they saw that renewal, which is later, and leaseDuration > renewDeadline. The
// operator refuses its own writes outside that window (kube.ts writeGate), so a process
// that was stopped (SIGSTOP, a long GC pause, a frozen VM) and resumes after a successor
// took over writes nothing before its renew loop notices: no two writers.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../shared/logging.ts';
import { RESOURCES } from './kinds.ts';
import type { Lease } from './kinds.ts';
import { resourcePath } from '../shared/kube/client.ts';
import { isApiError } from '../shared/kube/errors.ts';
import type { KubeClient } from '../shared/kube/client.ts';
import { microTimeNow } from './status.ts';

export interface LeaderElectionOptions {
  client: KubeClient;
  log: Logger;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
}

export type LeadershipEnd =
  | { kind: 'lost'; reason: 'RenewDeadlineExceeded' }
  | { kind: 'stopped' };

type Attempt = { kind: 'acquired' } | { kind: 'renewed' } | { kind: 'heldByOther'; holder: string } | { kind: 'failed'; error: string };

export class LeaderElection {
  readonly identity: string;
  private readonly options: Required<Omit<LeaderElectionOptions, 'log' | 'client'>> & Pick<LeaderElectionOptions, 'log' | 'client'>;
  private observedRv: string | undefined;
  private observedAt = 0;
  private leader = false;
  /** Local time until which this process may act as leader (0: not leading). */
  private validUntil = 0;

  constructor(options: LeaderElectionOptions) {
    this.options = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, ...options };
    if (!(this.options.leaseDurationMs > this.options.renewDeadlineMs && this.options.renewDeadlineMs > this.options.retryPeriodMs)) {
      throw new Error('leader election needs leaseDuration > renewDeadline > retryPeriod');
    }
    this.identity = options.identity;
  }

  get isLeader(): boolean {
    return this.leader;
  }

  /** Whether the lease is ours now: leading, and the last renewal is recent enough. */
  holdsLease(now = Date.now()): boolean {
    return this.leader && now < this.validUntil;
  }

  /** Tries every retryPeriod until the Lease is ours; false when `signal` aborts first. */
  async acquire(signal: AbortSignal): Promise<boolean> {
    for (;;) {
      if (signal.aborted) return false;
      const startedAt = Date.now();
      const attempt = await this.tryAcquireOrRenew(AbortSignal.any([signal, AbortSignal.timeout(this.options.renewDeadlineMs)]));
      if (attempt.kind === 'acquired' || attempt.kind === 'renewed') {
        this.validUntil = startedAt + this.options.renewDeadlineMs;
        this.leader = true;
        this.options.log.info({ lease: this.leaseName(), identity: this.identity }, 'became leader');
        return true;
      }
      if (attempt.kind === 'failed') this.options.log.warn({ lease: this.leaseName(), err: attempt.error }, 'could not acquire the lease');
      if (!(await this.pause(this.jittered(this.options.retryPeriodMs), signal))) return false;
    }
  }

  /** Renews until renewal fails for renewDeadline (lost) or `signal` aborts (stopped). */
  async hold(signal: AbortSignal): Promise<LeadershipEnd> {
    const lost = (): LeadershipEnd => {
      this.leader = false;
      this.validUntil = 0;
      this.options.log.error({ lease: this.leaseName(), reason: 'RenewDeadlineExceeded' }, 'leadership lost');
      return { kind: 'lost', reason: 'RenewDeadlineExceeded' };
    };
    for (;;) {
      if (!(await this.pause(this.options.retryPeriodMs, signal))) return { kind: 'stopped' };
      // Resuming past the deadline (the process was stopped): lost, whatever the Lease says now.
      if (!this.holdsLease()) return lost();
      const startedAt = Date.now();
      // The attempt gives up when the lease stops being ours: a hung API server must not
      // keep this process leading past the renew deadline.
      const attempt = await this.tryAcquireOrRenew(AbortSignal.any([signal, AbortSignal.timeout(Math.max(1, this.validUntil - startedAt))]));
      if (attempt.kind === 'renewed' || attempt.kind === 'acquired') {
        this.validUntil = startedAt + this.options.renewDeadlineMs;
        continue;
      }
      this.options.log.warn({ lease: this.leaseName(), attempt }, 'lease renewal failed');
      if (!this.holdsLease()) return lost();
    }
  }

  /** Gives the Lease up, if still ours, so that a successor takes over at once. */
  async release(): Promise<void> {
    if (!this.leader) return;
    this.leader = false;
    this.validUntil = 0;
    try {
      const lease = await this.options.client.get<Lease>(RESOURCES.leases, this.options.name, this.options.namespace);
      if (lease.spec?.holderIdentity !== this.identity) return;
      lease.spec = { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTimeNow() };
      await this.options.client.replace(RESOURCES.leases, lease);
      this.options.log.info({ lease: this.leaseName() }, 'released the lease');
    } catch (err) {
      this.options.log.warn({ lease: this.leaseName(), err: err instanceof Error ? err.message : String(err) }, 'could not release the lease');
    }
  }

  /** One attempt; `signal` bounds its requests (an aborted attempt has failed). */
  private async tryAcquireOrRenew(signal: AbortSignal): Promise<Attempt> {
    const { client, namespace, name } = this.options;
    const durationSeconds = Math.max(1, Math.ceil(this.options.leaseDurationMs / 1000));
    const now = Date.now();
    let lease: Lease;
    try {
      lease = await client.request<Lease>('GET', resourcePath(RESOURCES.leases, namespace, name), { signal });
    } catch (err) {
      if (!isApiError(err, 404)) return { kind: 'failed', error: message(err) };
      try {
        const created = await client.request<Lease>('POST', resourcePath(RESOURCES.leases, namespace), {
          signal,
          body: {
            apiVersion: 'coordination.k8s.io/v1', kind: 'Lease',
            metadata: { name, namespace },
            spec: { holderIdentity: this.identity, leaseDurationSeconds: durationSeconds, acquireTime: microTimeNow(), renewTime: microTimeNow(), leaseTransitions: 0 },
          },
        });
        this.observe(created, now);
        return { kind: 'acquired' };
      } catch (createErr) {
        return isApiError(createErr, 409) ? { kind: 'heldByOther', holder: '?' } : { kind: 'failed', error: message(createErr) };
      }
    }
    if (lease.metadata.resourceVersion !== this.observedRv) this.observe(lease, now);
    const holder = lease.spec?.holderIdentity ?? '';
    const ours = holder === this.identity;
    const leaseMs = (lease.spec?.leaseDurationSeconds ?? durationSeconds) * 1000;
    if (!ours && holder !== '' && this.observedAt + leaseMs > now) return { kind: 'heldByOther', holder };
    lease.spec = {
      ...lease.spec,
      holderIdentity: this.identity,
      leaseDurationSeconds: durationSeconds,
      renewTime: microTimeNow(),
      acquireTime: ours ? lease.spec?.acquireTime ?? microTimeNow() : microTimeNow(),
      leaseTransitions: ours ? lease.spec?.leaseTransitions ?? 0 : (lease.spec?.leaseTransitions ?? 0) + 1,
    };
    try {
      const updated = await client.request<Lease>('PUT', resourcePath(RESOURCES.leases, namespace, name), { body: lease, signal });
      this.observe(updated, now);
      return ours ? { kind: 'renewed' } : { kind: 'acquired' };
    } catch (err) {
      return isApiError(err, 409) ? { kind: 'heldByOther', holder } : { kind: 'failed', error: message(err) };
    }
  }

  private observe(lease: Lease, at: number): void {
    this.observedRv = lease.metadata.resourceVersion;
    this.observedAt = at;
  }

  private leaseName(): string {
    return `${this.options.namespace}/${this.options.name}`;
  }

  private jittered(ms: number): number {
    return Math.round(ms * (1 + Math.random() * 0.2));
  }

  private async pause(ms: number, signal: AbortSignal): Promise<boolean> {
    try {
      await sleep(ms, undefined, { signal });
      return true;
    } catch {
      return false;
    }
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
