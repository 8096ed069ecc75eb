// events.k8s.io/v1 Events about the objects the operator manages. The reason of an Event
// is one of the literals in reasons.ts — the same word as the condition it explains.
//
// Recording never fails a reconcile and never blocks it: writes run in the background,
// and a repeat of the same (object, type, reason, note) within `dedupeWindowMs` is
// dropped, since a level-triggered reconcile would otherwise say the same thing on
// every pass.
import { randomBytes } from 'node:crypto';
import type { Logger } from '../shared/logging.ts';
import { RESOURCES, apiVersionOf } from './kinds.ts';
import type { KubeObject, ResourceType } from './kinds.ts';
import type { KubeClient } from '../shared/kube/client.ts';
import type { Reason } from './reasons.ts';
import { microTimeNow } from './status.ts';

export type EventType = 'Normal' | 'Warning';

export interface EventRecorderOptions {
  client: KubeClient;
  log: Logger;
  /** reportingController, e.g. fulcrum.dev/operator. */
  controller?: string;
  /** reportingInstance: this process (pod name). */
  instance?: string;
  dedupeWindowMs?: number;
}

export interface EventTarget {
  type: ResourceType;
  object: KubeObject;
}

export class EventRecorder {
  private readonly options: EventRecorderOptions;
  private readonly recent = new Map<string, number>();
  private readonly inflight = new Set<Promise<void>>();
  private emitted = 0;

  constructor(options: EventRecorderOptions) {
    this.options = options;
  }

  get count(): number {
    return this.emitted;
  }

  record(target: EventTarget, type: EventType, reason: Reason, note: string, action = 'Reconcile'): void {
    const meta = target.object.metadata;
    const dedupeKey = `${target.type.plural}|${meta.namespace ?? ''}|${meta.name}|${meta.uid ?? ''}|${type}|${reason}|${note}`;
    const now = Date.now();
    const windowMs = this.options.dedupeWindowMs ?? 10 * 60_000;
    const last = this.recent.get(dedupeKey);
    if (last !== undefined && now - last < windowMs) return;
    this.recent.set(dedupeKey, now);
    if (this.recent.size > 10_000) this.prune(now, windowMs);
    this.emitted++;
    // Cluster-scoped objects get their Events in "default", as Kubernetes components do.
    const namespace = meta.namespace ?? 'default';
    const body = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: `${meta.name}.${randomBytes(8).toString('hex')}`, namespace },
      eventTime: microTimeNow(),
      reportingController: this.options.controller ?? 'fulcrum.dev/operator',
      reportingInstance: this.options.instance ?? 'fulcrum-operator',
      action,
      reason,
      note: note.slice(0, 1024),
      type,
      regarding: {
        apiVersion: apiVersionOf(target.type),
        kind: target.type.kind,
        name: meta.name,
        ...(meta.namespace !== undefined ? { namespace: meta.namespace } : {}),
        ...(meta.uid !== undefined ? { uid: meta.uid } : {}),
        ...(meta.resourceVersion !== undefined ? { resourceVersion: meta.resourceVersion } : {}),
      },
    };
    const log = this.options.log;
    log.info({ event: type, reason, object: `${target.type.kind}/${meta.namespace ? `${meta.namespace}/` : ''}${meta.name}`, note }, 'event');
    const write = this.options.client.create(RESOURCES.events, body as unknown as KubeObject, namespace).then(
      () => undefined,
      (err: unknown) => {
        log.warn({ reason, err: err instanceof Error ? err.message : String(err) }, 'could not write Event');
      },
    );
    this.inflight.add(write);
    void write.finally(() => this.inflight.delete(write));
  }

  /** Waits for Events being written (graceful shutdown). */
  async flush(): Promise<void> {
    await Promise.allSettled([...this.inflight]);
  }

  private prune(now: number, windowMs: number): void {
    for (const [k, t] of this.recent) if (now - t >= windowMs) this.recent.delete(k);
  }
}
