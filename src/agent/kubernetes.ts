// Kubernetes mode: the agent driven by its node's BalancerNode.
//
//   watch BalancerNode/<node> ──▶ validate spec (zod) ──▶ resolve pod netns ──▶
//   toNodeDesiredState ──▶ Agent.reconcile ──▶ status (only when it changed)
//
// - Only this node's object is read: list + watch with fieldSelector
//   metadata.name=<node>. A 410 relists; any other failure restarts the watch with
//   jittered exponential backoff, resuming from the last resourceVersion seen.
// - Every spec change (a new metadata.generation, or a recreated object) is programmed;
//   a periodic resync programs the current spec again, which repairs drift the agent
//   can see (decap filters, VIPs on lo). A status-only change is only compared with the
//   status the agent wants: nothing is reprogrammed for it.
// - An invalid spec changes nothing in the data plane: the status says InvalidSpec.
// - No BalancerNode (not created yet, or deleted): the data plane keeps what it has and
//   the agent reports nothing; it logs that once.
// - Status is the agent's alone: it is written whole and alone (PUT on the status
//   subresource of {name, uid, resourceVersion, status}: no spec, no managedFields; 409
//   re-reads and retries), and only when it differs from the object's current status.
// - managedFields are dropped from every object as it comes in: the agent never reads them.
// - Stopping leaves the data plane running (Agent.stop detaches nothing).
//
// Reading and writing go through the shared Kubernetes layer (src/shared/kube/): the
// watch is its Informer (list, watch, 410 relist, jittered backoff, an idle limit and
// TCP keepalive for dead connections), the reads and the status write its KubeClient.
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { KubeConfig } from '@kubernetes/client-node';
import { Counter, Gauge } from 'prom-client';
import { z } from 'zod';
import {
  BALANCER_NODE, BalancerNodeSpec, BalancerNodeStatus, toNodeDesiredState,
  type BalancerNodeDecapStatus, type BalancerNodeReason, type BalancerNodeVipStatus,
} from '../shared/api/balancer-node.ts';
import { GROUP, VERSION, type Condition } from '../shared/api/common.ts';
import { vipKey, type NodeDesiredState } from '../shared/desired-state.ts';
import { FulcrumError, isFulcrumError } from '../shared/errors.ts';
import { KubeClient } from '../shared/kube/client.ts';
import { isApiError } from '../shared/kube/errors.ts';
import { Informer, backoffDelay, type BackoffOptions } from '../shared/kube/informer.ts';
import type { KubeObject, ResourceType } from '../shared/kube/objects.ts';
import { child, errorFields, rootLogger, type Logger } from '../shared/logging.ts';
import { FULCRUM_VERSION } from '../shared/version.ts';
import { Agent, type AgentOptions, type ReconcileResult } from './agent.ts';
import { AgentConfig } from './config.ts';
import { METRIC_PREFIX } from './metrics.ts';
import { PodNetnsResolver, type NetnsStrategy, type PodIdentity } from './netns-resolver.ts';
import { formatPath, parseOrThrow, problemsOf } from './validate.ts';

// ── kubeconfig ─────────────────────────────────────────────────────────────────

export { loadKubeConfig } from '../shared/kubeconfig.ts';

/** Watch restarts and failed syncs back off like this unless the options say otherwise. */
const AGENT_BACKOFF: BackoffOptions = { initialMs: 500, maxMs: 30_000 };

// ── status (pure) ──────────────────────────────────────────────────────────────

/** A condition as the agent decides it; lastTransitionTime is filled in by statusFromFacts. */
export type ConditionFact = {
  readonly status: 'True' | 'False';
  readonly reason: BalancerNodeReason;
  readonly message: string;
  readonly observedGeneration?: number;
};

/** Everything status is made of, as the agent knows it. */
export type StatusFacts = {
  /** The generation whose VIP entries the data plane holds, if known. */
  readonly observedGeneration: number | undefined;
  readonly attachments: readonly { readonly interface: string; readonly mode: 'native' | 'generic'; readonly progId: number }[];
  readonly vips: readonly BalancerNodeVipStatus[];
  readonly decap: readonly BalancerNodeDecapStatus[];
  readonly ready: ConditionFact;
  /** Undefined until the agent has looked at a spec. */
  readonly programmed: ConditionFact | undefined;
  readonly errors: readonly string[];
  readonly agentVersion: string;
};

const MAX_ERRORS = 32;
const MAX_ERROR_LENGTH = 1024;
const MAX_CONDITION_MESSAGE = 32768;

/** At most `max` code points (the CRD's maxLength counts code points), marked when cut. */
export function clip(text: string, max: number): string {
  const points = [...text];
  return points.length <= max ? text : `${points.slice(0, max - 1).join('')}…`;
}

/**
 * The status to write. A condition keeps its lastTransitionTime while its status stays
 * the same (metav1.Condition's rule), so an unchanged situation gives an identical status.
 */
export function statusFromFacts(facts: StatusFacts, previous: BalancerNodeStatus | undefined, now: string): BalancerNodeStatus {
  const condition = (type: 'Ready' | 'Programmed', fact: ConditionFact): Condition => {
    const before = previous?.conditions?.find((c) => c.type === type);
    return {
      type,
      status: fact.status,
      ...(fact.observedGeneration !== undefined ? { observedGeneration: fact.observedGeneration } : {}),
      lastTransitionTime: before !== undefined && before.status === fact.status ? before.lastTransitionTime : now,
      reason: fact.reason,
      message: clip(fact.message, MAX_CONDITION_MESSAGE),
    };
  };
  const modes = facts.attachments.map((a) => a.mode);
  return {
    ...(facts.observedGeneration !== undefined ? { observedGeneration: facts.observedGeneration } : {}),
    attachMode: modes.length === 0 ? 'none' : modes.every((m) => m === 'native') ? 'native' : 'generic',
    interfaces: facts.attachments.map((a) => ({ name: a.interface, mode: a.mode, programId: a.progId })),
    vipCount: facts.vips.length,
    vips: facts.vips.map((v) => ({ name: v.name, key: v.key, ringDigest: v.ringDigest, backends: v.backends })),
    decap: facts.decap.map((d) => ({ pod: d.pod, outcome: d.outcome, ...(d.message !== undefined ? { message: clip(d.message, MAX_ERROR_LENGTH) } : {}) })),
    conditions: [condition('Ready', facts.ready), ...(facts.programmed !== undefined ? [condition('Programmed', facts.programmed)] : [])],
    errors: facts.errors.slice(0, MAX_ERRORS).map((e) => clip(e, MAX_ERROR_LENGTH)),
    agentVersion: facts.agentVersion,
  };
}

/** JSON with object keys sorted: equal for equal content whatever the key order. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v);
}

/** Whether the object's status already says what `wanted` says (defaults and empty lists as the server stores them). */
export function sameStatus(current: unknown, wanted: BalancerNodeStatus): boolean {
  const parsed = BalancerNodeStatus.safeParse(current ?? {});
  return parsed.success && canonicalJson(parsed.data) === canonicalJson(wanted);
}

export type ProgrammingFacts = Pick<StatusFacts, 'observedGeneration' | 'vips' | 'decap' | 'programmed' | 'errors'>;

/**
 * What a reconcile result means for status. `previous` is what status said before
 * (the data plane keeps it when the balancer part failed). The VIP entries count as
 * programmed — observedGeneration advances — when the balancer part succeeded, even if
 * a decap duty failed (DecapFailed): that is what the operator reads observedGeneration
 * for. `currentVips` gives the VIP entries as programmed for that case, where the
 * result carries no VIP list.
 */
export function programmingFacts(input: {
  readonly result: Exclude<ReconcileResult, { outcome: 'superseded' }>;
  readonly desired: NodeDesiredState;
  /** Every duty of the spec, in spec order. */
  readonly duties: readonly PodIdentity[];
  /** Duties without a network namespace here, with the message to show. */
  readonly pending: ReadonlyMap<string, string>;
  readonly previous: ProgrammingFacts;
  readonly currentVips: () => BalancerNodeVipStatus[];
}): ProgrammingFacts {
  const { result, desired, duties, pending, previous } = input;
  const generation = result.generation;
  const podOutcomes = new Map<string, BalancerNodeDecapStatus>();
  for (const pod of result.decap?.pods ?? []) {
    if (pod.outcome === 'programmed') podOutcomes.set(pod.pod, { pod: pod.pod, outcome: 'programmed' });
    else if (pod.outcome === 'failed' && pod.action === 'program') podOutcomes.set(pod.pod, { pod: pod.pod, outcome: 'failed', message: `${pod.error.code}: ${pod.error.message}` });
  }
  const wholeDecapError = result.outcome === 'failed' ? result.errors.find((e) => e.scope === 'decap' && e.pod === undefined) : undefined;
  const decap: BalancerNodeDecapStatus[] = duties.map((duty) => {
    const waiting = pending.get(duty.pod);
    if (waiting !== undefined) return { pod: duty.pod, outcome: 'pending', message: waiting };
    return podOutcomes.get(duty.pod)
      ?? { pod: duty.pod, outcome: 'failed', message: wholeDecapError !== undefined ? `${wholeDecapError.code}: ${wholeDecapError.message}` : 'the decap duties did not run' };
  });
  const pendingNote = pending.size > 0 ? `; ${pending.size} decap duties pending (no network namespace on this node yet)` : '';

  if (result.outcome === 'programmed') {
    return {
      observedGeneration: generation,
      vips: result.vips.map((v) => ({ name: v.name, key: v.key, ringDigest: v.ringDigest, backends: v.backends })),
      decap,
      programmed: {
        status: 'True', reason: 'Programmed', observedGeneration: generation,
        message: `generation ${generation}: ${result.vips.length} VIP entries and ${desired.decap.length} decap duties programmed${pendingNote}`,
      },
      errors: [],
    };
  }
  const errors = result.errors.map((e) => `${e.code}${e.step !== undefined ? ` (${e.step})` : ''}${e.pod !== undefined ? ` pod ${e.pod}` : ''}: ${e.message}`);
  const balancerFailed = result.errors.some((e) => e.scope === 'balancer');
  if (!balancerFailed) {
    const failedPods = decap.filter((d) => d.outcome === 'failed').map((d) => d.pod);
    return {
      observedGeneration: generation,
      vips: input.currentVips(),
      decap,
      programmed: {
        status: 'False', reason: 'DecapFailed', observedGeneration: generation,
        message: `generation ${generation}: the VIP entries are programmed; decap failed for ${failedPods.length > 0 ? failedPods.join(', ') : 'the node'}${pendingNote}`,
      },
      errors,
    };
  }
  return {
    observedGeneration: previous.observedGeneration,
    vips: previous.vips,
    decap,
    programmed: {
      status: 'False', reason: 'ApplyFailed', observedGeneration: generation,
      message: `generation ${generation} could not be programmed; the data plane keeps ${previous.observedGeneration !== undefined ? `generation ${previous.observedGeneration}` : 'what it had'}: ${errors.join('; ')}`,
    },
    errors,
  };
}

// ── the object and the watch ───────────────────────────────────────────────────

/** A BalancerNode as read from the API: only metadata is trusted before validation. */
export type BalancerNodeObject = {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; uid?: string; generation?: number; resourceVersion?: string; [field: string]: unknown };
  spec?: unknown;
  status?: unknown;
  [field: string]: unknown;
};

const ObjectMeta = z.looseObject({
  metadata: z.looseObject({ name: z.string(), uid: z.string().optional(), generation: z.number().optional(), resourceVersion: z.string().optional() }),
});

/**
 * The object as the agent keeps it: without metadata.managedFields, which every answer
 * carries (list, watch, get, the status write's) and which the agent never reads. They
 * grow with each writer of the object; kept, they would be most of what the agent holds.
 */
export function asBalancerNode(value: unknown): BalancerNodeObject | undefined {
  if (!ObjectMeta.safeParse(value).success) return undefined;
  const obj = value as BalancerNodeObject;
  if (!('managedFields' in obj.metadata)) return obj;
  const { managedFields: _dropped, ...metadata } = obj.metadata;
  return { ...obj, metadata: metadata as BalancerNodeObject['metadata'] };
}

/** The field manager the agent's status writes are recorded under (metadata.managedFields). */
export const FIELD_MANAGER = 'fulcrum-agent';

/**
 * The body of a status write: the status alone, with the object's name, uid and
 * resourceVersion as preconditions. PUT on the status subresource takes everything but
 * status from the stored object (the CRD status strategy), and a PUT without
 * managedFields keeps the stored ones, so nothing else needs sending: not the spec (which
 * can be large, and the agent must never appear to write it), not managedFields. A
 * resourceVersion other than the stored one is a 409, a uid other than the stored one
 * (the object was deleted and created again) too: the status is then computed again
 * from a fresh read instead of landing on an object it was not made for.
 */
export function statusWriteBody(obj: BalancerNodeObject, status: BalancerNodeStatus): KubeObject & { status: BalancerNodeStatus } {
  const { name, uid, resourceVersion } = obj.metadata;
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: BALANCER_NODE.kind,
    metadata: { name, ...(uid !== undefined ? { uid } : {}), ...(resourceVersion !== undefined ? { resourceVersion } : {}) },
    status,
  };
}

/** What identifies one spec: the object (a recreated one starts again at generation 1) and its generation. */
function specKey(obj: BalancerNodeObject): string {
  return `${obj.metadata.uid ?? ''}/${obj.metadata.generation ?? 0}`;
}

const BALANCER_NODES: ResourceType = { group: GROUP, version: VERSION, plural: BALANCER_NODE.plural, kind: BALANCER_NODE.kind, namespaced: false };

/** One line per problem, with the field's path in the object: "spec.vips[1]: TCP/[2001:db8::1]:80 is also VIP shop/v6". */
function problemLines(error: z.ZodError): string[] {
  return problemsOf(error, ['spec']).map((p) => `${formatPath(p.path)}: ${p.message}`);
}

export type WatchStats = {
  lists: number;
  watches: number;
  events: number;
  relistsAfterExpired: number;
  restartsAfterError: number;
};

// ── the agent in Kubernetes mode ───────────────────────────────────────────────

export type KubernetesAgentOptions = {
  readonly kubeConfig: KubeConfig;
  /** The node this agent runs on: its BalancerNode has this name. */
  readonly nodeName: string;
  /**
   * The agent's configuration (AgentConfig, or input for one). nodeName may be left
   * out; when given it must equal `nodeName`.
   */
  readonly agentConfig: unknown;
  /** Agent.start options: resetMaps, http, netns (tests, lab), decap. */
  readonly agentOptions?: Omit<AgentOptions, 'log'>;
  readonly log?: Logger;
  /** How pods' network namespaces are found (default: /run/netns, then /proc). */
  readonly netns?: readonly NetnsStrategy[] | PodNetnsResolver;
  /** Programs the current spec again this often, repairing drift. Default 60 s. */
  readonly resyncMs?: number;
  /** First re-check of pending decap duties; doubles up to resyncMs while nothing appears. Default 2 s. */
  readonly pendingRetryMs?: number;
  /** Watch restarts and failed syncs back off like this. Default 500 ms doubling up to 30 s. */
  readonly backoff?: BackoffOptions;
  /** Replace a watch that delivered nothing for this long. Default 150 s (bookmarks come every minute). */
  readonly watchIdleMs?: number;
  /** Server-side watch timeout; default random in [300, 600) s per watch. */
  readonly watchTimeoutSeconds?: number;
  /** Status writes that meet 409 are re-read and tried again this many times per sync. Default 5. */
  readonly statusConflictRetries?: number;
};

/** What one pass of programming did. */
export type ProgrammingOutcome =
  | { readonly outcome: 'absent' }
  | { readonly outcome: 'invalid'; readonly generation: number; readonly message: string }
  | { readonly outcome: 'programmed'; readonly generation: number; readonly pending: number }
  | { readonly outcome: 'failed'; readonly generation: number; readonly reason: 'ApplyFailed' | 'DecapFailed' };

export type StatusWriteOutcome =
  | { readonly outcome: 'written'; readonly attempts: number }
  | { readonly outcome: 'unchanged' }
  | { readonly outcome: 'absent' }
  | { readonly outcome: 'failed'; readonly error: string };

export type SyncTrigger = 'spec' | 'resync' | 'pending' | 'status' | 'retry';

export type SyncReport = {
  readonly triggers: readonly SyncTrigger[];
  /** Undefined when only status was compared. */
  readonly programming: ProgrammingOutcome | undefined;
  readonly status: StatusWriteOutcome;
};

export type KubernetesAgentStats = WatchStats & { statusWrites: number; statusConflicts: number; syncs: number };

const PROGRAM_TRIGGERS: ReadonlySet<SyncTrigger> = new Set(['spec', 'resync', 'pending', 'retry']);
/** Events of one object between a write and its answer: a handful at most. */
const RECENT_EVENTS = 64;

/**
 * The agent driven by BalancerNode/<nodeName>. Emits 'sync' (SyncReport) after every
 * pass. Start with runKubernetesAgent().
 */
export class KubernetesAgent extends EventEmitter<{ sync: [SyncReport] }> {
  readonly agent: Agent;
  readonly nodeName: string;
  readonly resolver: PodNetnsResolver;
  readonly #log: Logger;
  readonly #client: KubeClient;
  readonly #watch: Informer<BalancerNodeObject>;
  readonly #resyncMs: number;
  readonly #pendingRetryMs: number;
  readonly #backoff: BackoffOptions;
  readonly #conflictRetries: number;
  readonly #statusWrites: Counter<'outcome'>;
  readonly #pendingGauge: Gauge;
  #statusWriteCount = 0;
  #statusConflictCount = 0;
  #syncCount = 0;

  /** The newest object known: from the watch, or the answer to our own write. */
  #latest: BalancerNodeObject | undefined;
  /**
   * resourceVersion of our last status write until the watch delivers it. Events
   * before it are older than #latest (a watch delivers in order), so they are skipped.
   */
  #awaitingEcho: string | undefined;
  /** resourceVersions the watch delivered lately: the echo of a write can beat the write's own answer. */
  readonly #recentEvents: string[] = [];
  /** The spec last handed to programming (specKey), so status-only events do not reprogram. */
  #handledSpec: string | undefined;
  #absentLogged = false;
  /** uid whose status #facts describe; another uid (object recreated) starts afresh. */
  #factsUid: string | undefined;
  #facts: ProgrammingFacts = { observedGeneration: undefined, vips: [], decap: [], programmed: undefined, errors: [] };
  /** Pending duties of the last programming, re-checked on a timer. */
  #pending: PodIdentity[] = [];
  #pendingAttempt = 0;

  #triggers = new Set<SyncTrigger>();
  #draining: Promise<void> | undefined;
  #failures = 0;
  #resyncTimer: NodeJS.Timeout | undefined;
  #pendingTimer: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #stopped = false;

  private constructor(agent: Agent, options: KubernetesAgentOptions, log: Logger, resolver: PodNetnsResolver) {
    super();
    this.agent = agent;
    this.nodeName = options.nodeName;
    this.resolver = resolver;
    this.#log = log;
    this.#client = agentClient(options.kubeConfig);
    this.#resyncMs = options.resyncMs ?? 60_000;
    this.#pendingRetryMs = options.pendingRetryMs ?? 2_000;
    this.#backoff = options.backoff ?? AGENT_BACKOFF;
    this.#conflictRetries = options.statusConflictRetries ?? 5;
    const registers = [agent.metrics.registry];
    const watchRestarts = new Counter({
      name: `${METRIC_PREFIX}balancernode_watch_restarts_total`,
      help: 'Restarts of the BalancerNode watch: expired (410, relisted) or error (backed off)',
      labelNames: ['reason'] as const,
      registers,
    });
    this.#statusWrites = new Counter({
      name: `${METRIC_PREFIX}balancernode_status_writes_total`,
      help: 'BalancerNode status writes: written, conflict (409, re-read and retried), failed',
      labelNames: ['outcome'] as const,
      registers,
    });
    this.#pendingGauge = new Gauge({
      name: `${METRIC_PREFIX}decap_pending_pods`,
      help: 'Decap duties whose pod has no network namespace on this node yet',
      registers,
    });
    // Only this node's object. A list replaces whatever was known (the object, or its
    // absence); the watch's events are the next changes in order.
    this.#watch = new Informer<BalancerNodeObject>({
      client: this.#client,
      type: BALANCER_NODES,
      log,
      fieldSelector: `metadata.name=${options.nodeName}`,
      backoff: this.#backoff,
      idleMs: options.watchIdleMs ?? 150_000,
      ...(options.watchTimeoutSeconds !== undefined ? { watchTimeoutSeconds: options.watchTimeoutSeconds } : {}),
      onListed: () => this.#observed(this.#watch.get(this.nodeName), 'list'),
      onRestart: (reason) => watchRestarts.inc({ reason }),
    });
    this.#watch.on((event) => {
      if (event.source === 'watch') this.#observed(event.type === 'deleted' ? undefined : event.object, 'event');
    });
  }

  get stats(): KubernetesAgentStats {
    const { lists, watches, events, relistsAfterGone, restartsAfterError } = this.#watch.stats;
    return {
      lists, watches, events, relistsAfterExpired: relistsAfterGone, restartsAfterError,
      statusWrites: this.#statusWriteCount, statusConflicts: this.#statusConflictCount, syncs: this.#syncCount,
    };
  }

  /** The BalancerNode as last seen (undefined: none, or not read yet). */
  get balancerNode(): BalancerNodeObject | undefined {
    return this.#latest;
  }

  /**
   * Validates the configuration (ERR_CONFIG), starts the data plane (adopting what is
   * pinned), then watches BalancerNode/<nodeName>. A data plane that cannot start is
   * reported on the BalancerNode (Ready=False) before the error is thrown.
   */
  static async start(options: KubernetesAgentOptions): Promise<KubernetesAgent> {
    const nodeName = options.nodeName;
    if (nodeName === '') throw new FulcrumError('ERR_CONFIG', 'the node name is empty');
    const input = options.agentConfig ?? {};
    if (input === null || typeof input !== 'object' || Array.isArray(input)) {
      throw new FulcrumError('ERR_CONFIG', 'the agent configuration must be a mapping (the fields of docs/agent.md#agent-agentconfig)');
    }
    const given = (input as { nodeName?: unknown }).nodeName;
    if (given !== undefined && given !== nodeName) {
      throw new FulcrumError('ERR_CONFIG',
        `the configuration names node ${JSON.stringify(given)}, but this agent runs for node "${nodeName}" (--node-name / NODE_NAME): remove nodeName from the file, or make them agree`);
    }
    const config = parseOrThrow(AgentConfig, { ...input, nodeName }, 'the agent configuration');
    const log = child({ component: 'kubernetes', node: nodeName }, options.log ?? rootLogger);
    const resolver = options.netns instanceof PodNetnsResolver
      ? options.netns
      : new PodNetnsResolver({ ...(options.netns !== undefined ? { strategies: options.netns } : {}), log });

    let agent: Agent;
    try {
      agent = await Agent.start(config, { ...options.agentOptions, ...(options.log !== undefined ? { log: options.log } : {}) });
    } catch (err) {
      if (!isFulcrumError(err, 'ERR_CONFIG')) await reportStartFailure(options.kubeConfig, nodeName, err, log);
      throw err;
    }
    const running = new KubernetesAgent(agent, options, log, resolver);
    running.#watch.start();
    running.#scheduleResync();
    log.info({ resyncMs: running.#resyncMs, podNetns: resolver.describe() }, 'watching this node\'s BalancerNode');
    return running;
  }

  /** Programs the current spec now (as the periodic resync does); resolves with that pass's report. */
  resync(): Promise<SyncReport> {
    if (this.#stopped) return Promise.reject(new FulcrumError('ERR_INTERNAL', 'the agent is stopped; it cannot resync'));
    const report = new Promise<SyncReport>((resolve) => {
      const onSync = (r: SyncReport): void => {
        if (r.triggers.includes('resync')) {
          this.off('sync', onSync);
          resolve(r);
        }
      };
      this.on('sync', onSync);
    });
    this.#trigger('resync');
    return report;
  }

  /** Stops watching and stops the agent. The data plane keeps running; status is left as it is. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearTimeout(this.#resyncTimer);
    clearTimeout(this.#pendingTimer);
    clearTimeout(this.#retryTimer);
    await this.#watch.stop();
    await this.#draining;
    this.#client.close();
    await this.agent.stop();
  }

  // ── events ──────────────────────────────────────────────────────────────────

  #observed(obj: BalancerNodeObject | undefined, source: 'list' | 'event'): void {
    const rv = obj?.metadata.resourceVersion;
    if (source === 'event' && rv !== undefined) {
      this.#recentEvents.push(rv);
      if (this.#recentEvents.length > RECENT_EVENTS) this.#recentEvents.shift();
    }
    if (source === 'event' && obj !== undefined && this.#awaitingEcho !== undefined) {
      if (rv !== this.#awaitingEcho) return; // older than our write's answer
    }
    // The echo itself, a list or a deletion: whatever we wrote is history now.
    this.#awaitingEcho = undefined;
    this.#latest = obj;
    // A deletion goes through programming too, which keeps the data plane and says so once.
    this.#trigger(obj === undefined || specKey(obj) !== this.#handledSpec ? 'spec' : 'status');
  }

  #trigger(trigger: SyncTrigger): void {
    if (this.#stopped) return;
    this.#triggers.add(trigger);
    this.#draining ??= this.#drain().finally(() => {
      this.#draining = undefined;
      if (this.#triggers.size > 0 && !this.#stopped) this.#trigger([...this.#triggers][0]!);
    });
  }

  async #drain(): Promise<void> {
    while (this.#triggers.size > 0 && !this.#stopped) {
      const triggers = [...this.#triggers];
      this.#triggers.clear();
      const program = triggers.some((t) => PROGRAM_TRIGGERS.has(t));
      let programming: ProgrammingOutcome | undefined;
      let status: StatusWriteOutcome;
      try {
        // The next resync is due a full period after this one, whatever this one meets.
        if (triggers.includes('resync')) this.#scheduleResync();
        if (program) programming = await this.#program();
        status = await this.#writeStatus();
        this.#failures = 0;
      } catch (err) {
        // Programming reports its failures as outcomes and status writes retry their
        // conflicts: what lands here is the API being unreachable, or a bug. Try again
        // later — only the status write when programming got through (an API outage
        // must not rerun every pod's decap check at each retry).
        const delayMs = backoffDelay(this.#failures++, this.#backoff);
        this.#log.error({ ...errorFields(err), delayMs }, 'sync failed; retrying after backoff');
        status = { outcome: 'failed', error: err instanceof Error ? err.message : String(err) };
        const again: SyncTrigger = program && programming === undefined ? 'retry' : 'status';
        clearTimeout(this.#retryTimer);
        this.#retryTimer = setTimeout(() => this.#trigger(again), delayMs);
      }
      this.#syncCount++;
      this.emit('sync', { triggers, programming, status });
    }
  }

  #scheduleResync(): void {
    clearTimeout(this.#resyncTimer);
    if (this.#stopped) return;
    this.#resyncTimer = setTimeout(() => this.#trigger('resync'), this.#resyncMs);
  }

  // ── programming ─────────────────────────────────────────────────────────────

  async #program(): Promise<ProgrammingOutcome> {
    const obj = this.#latest;
    if (obj === undefined) {
      if (!this.#absentLogged) {
        this.#absentLogged = true;
        this.#log.info('there is no BalancerNode for this node (yet): the data plane keeps what it has, and nothing is reported');
      }
      return { outcome: 'absent' };
    }
    this.#absentLogged = false;
    this.#handledSpec = specKey(obj);
    this.#adoptPreviousStatus(obj);
    const generation = obj.metadata.generation ?? 0;

    const spec = BalancerNodeSpec.safeParse(obj.spec);
    if (!spec.success) return this.#invalid(generation, problemLines(spec.error));
    const duties = spec.data.decap.map((d) => ({ pod: d.pod, podUID: d.podUID }));
    const snapshot = await this.resolver.resolve(duties);
    let desired: NodeDesiredState;
    let unresolved: readonly PodIdentity[];
    try {
      const mapped = toNodeDesiredState(spec.data, snapshot.lookup, { generation });
      desired = mapped.state;
      unresolved = mapped.unresolved;
    } catch (err) {
      if (isFulcrumError(err, 'ERR_DESIRED_STATE')) {
        return this.#invalid(generation, err.cause instanceof z.ZodError ? problemLines(err.cause) : [err.message]);
      }
      throw err;
    }

    const result = await this.agent.reconcile(desired);
    if (result.outcome === 'superseded') {
      // Only this loop reconciles, one state at a time: nothing can supersede it.
      this.#log.warn({ generation, supersededBy: result.supersededBy }, 'a reconcile was superseded by another caller');
      return { outcome: 'failed', generation, reason: 'ApplyFailed' };
    }
    const pending = new Map(unresolved.map((p) => [p.pod, snapshot.notFoundMessage(p)]));
    this.#facts = programmingFacts({
      result, desired, duties, pending, previous: this.#facts,
      currentVips: () => this.#programmedVips(desired),
    });
    this.#pendingGauge.set(unresolved.length);
    this.#watchPending(unresolved);
    if (result.outcome === 'programmed') return { outcome: 'programmed', generation, pending: unresolved.length };
    return { outcome: 'failed', generation, reason: result.errors.some((e) => e.scope === 'balancer') ? 'ApplyFailed' : 'DecapFailed' };
  }

  #invalid(generation: number, lines: readonly string[]): ProgrammingOutcome {
    const message = `generation ${generation} is invalid; nothing of it was applied: ${lines.join('; ')}`;
    this.#log.error({ generation, problems: lines }, 'the BalancerNode spec is invalid; the data plane keeps what it has');
    this.#facts = {
      ...this.#facts,
      programmed: { status: 'False', reason: 'InvalidSpec', observedGeneration: generation, message },
      errors: lines.map((l) => `InvalidSpec: ${l}`),
    };
    return { outcome: 'invalid', generation, message };
  }

  /**
   * Before this process has programmed anything, the data plane holds what the previous
   * agent adopted from the pins and reported: start from its observedGeneration and
   * VIPs, so that a first reconcile that fails does not claim less than is there.
   */
  #adoptPreviousStatus(obj: BalancerNodeObject): void {
    const uid = obj.metadata.uid ?? '';
    if (this.#factsUid === uid) return;
    const firstObject = this.#factsUid === undefined;
    this.#factsUid = uid;
    this.#facts = { observedGeneration: undefined, vips: [], decap: [], programmed: undefined, errors: [] };
    if (!firstObject) return; // a recreated object: its generations start again
    const previous = BalancerNodeStatus.safeParse(obj.status ?? {});
    if (previous.success && previous.data.observedGeneration !== undefined) {
      this.#facts = { ...this.#facts, observedGeneration: previous.data.observedGeneration, vips: previous.data.vips ?? [], decap: previous.data.decap ?? [] };
    }
  }

  /** The VIP entries of `desired` as the data plane holds them now (ring digests from the agent's state). */
  #programmedVips(desired: NodeDesiredState): BalancerNodeVipStatus[] {
    const state = this.agent.programmed;
    if (state === undefined) return [];
    return desired.vips.flatMap((v) => {
      const key = vipKey(v);
      const programmed = state.vips.get(key);
      return programmed === undefined || programmed.ringDigest === '' ? [] : [{ name: v.name, key, ringDigest: programmed.ringDigest, backends: v.backends.length }];
    });
  }

  /**
   * Pending duties wait for a pod that is starting. Re-resolve them (cheap: no
   * reprogramming) with a growing interval, and program once one appears.
   */
  #watchPending(unresolved: readonly PodIdentity[]): void {
    clearTimeout(this.#pendingTimer);
    this.#pendingTimer = undefined;
    const changed = unresolved.length !== this.#pending.length || unresolved.some((p, i) => p.podUID !== this.#pending[i]?.podUID);
    if (changed) {
      this.#pendingAttempt = 0;
      if (unresolved.length > 0) this.#log.info({ pods: unresolved.map((p) => p.pod) }, 'decap duties pending: no network namespace on this node yet');
    }
    this.#pending = [...unresolved];
    if (unresolved.length === 0 || this.#stopped) return;
    const delay = Math.min(this.#resyncMs, this.#pendingRetryMs * 2 ** Math.min(this.#pendingAttempt++, 20));
    this.#pendingTimer = setTimeout(() => {
      this.#pendingTimer = undefined;
      void this.resolver.resolve(this.#pending).then((snapshot) => {
        if (snapshot.found.size > 0) {
          this.#log.info({ pods: this.#pending.filter((p) => snapshot.found.has(p.podUID)).map((p) => p.pod) }, 'pending pods have a network namespace now');
          this.#trigger('pending');
        } else {
          this.#watchPending(this.#pending);
        }
      }, (err: unknown) => {
        this.#log.warn(errorFields(err), 're-checking pending decap duties failed');
        this.#watchPending(this.#pending);
      });
    }, delay);
  }

  // ── status ──────────────────────────────────────────────────────────────────

  #statusFacts(): StatusFacts {
    const checks = this.agent.readiness().filter((c) => c.name !== 'reconciled');
    const failing = checks.filter((c) => !c.ok);
    const attachments = this.agent.status().attachments;
    const ready: ConditionFact = failing.length === 0
      ? {
          status: 'True', reason: 'AgentReady',
          message: attachments.length === 0
            ? 'the agent runs; no balancer on this node (backend role only)'
            : `the agent runs; the balancer is attached to ${attachments.map((a) => `${a.interface} (${a.mode})`).join(', ')}`,
        }
      : { status: 'False', reason: 'AttachFailed', message: failing.map((c) => `${c.name}: ${c.detail}`).join('; ') };
    return {
      observedGeneration: this.#facts.observedGeneration,
      attachments,
      vips: this.#facts.vips,
      decap: this.#facts.decap,
      ready,
      programmed: this.#facts.programmed,
      errors: this.#facts.errors,
      agentVersion: FULCRUM_VERSION,
    };
  }

  async #writeStatus(): Promise<StatusWriteOutcome> {
    let obj = this.#latest;
    if (obj === undefined) return { outcome: 'absent' };
    const facts = this.#statusFacts();
    for (let attempt = 1; ; attempt++) {
      const previous = BalancerNodeStatus.safeParse(obj.status ?? {});
      const wanted = statusFromFacts(facts, previous.success ? previous.data : undefined, new Date().toISOString().replace(/\.\d+Z$/, 'Z'));
      if (sameStatus(obj.status, wanted)) return { outcome: 'unchanged' };
      const checked = BalancerNodeStatus.safeParse(wanted);
      if (!checked.success) {
        // Our own status breaking the schema is a bug; writing it would only get a 422.
        throw new FulcrumError('ERR_INTERNAL', `the status the agent made is invalid: ${z.prettifyError(checked.error)}`, { cause: checked.error });
      }
      try {
        const answer = asBalancerNode(await this.#client.replace(BALANCER_NODES, statusWriteBody(obj, wanted), 'status', { fieldManager: FIELD_MANAGER }));
        this.#statusWriteCount++;
        this.#statusWrites.inc({ outcome: 'written' });
        const rv = answer?.metadata.resourceVersion;
        // The watch may have delivered the write (and more) before its answer came: then
        // what it delivered is at least as new. A write the server found to change
        // nothing keeps the resourceVersion and makes no event: nothing to wait for.
        if (answer !== undefined && rv !== undefined && !this.#recentEvents.includes(rv)) {
          this.#latest = answer;
          this.#awaitingEcho = rv !== obj.metadata.resourceVersion ? rv : undefined;
          // The answer may carry a spec newer than the one programmed.
          if (specKey(answer) !== this.#handledSpec) this.#trigger('spec');
        }
        this.#log.debug({ attempt, observedGeneration: wanted.observedGeneration }, 'status written');
        return { outcome: 'written', attempts: attempt };
      } catch (err) {
        if (isApiError(err, 404)) {
          this.#log.info('the BalancerNode is gone; no status written');
          this.#latest = undefined;
          this.#awaitingEcho = undefined;
          return { outcome: 'absent' };
        }
        if (!isApiError(err, 409)) {
          this.#statusWrites.inc({ outcome: 'failed' });
          throw err;
        }
        this.#statusConflictCount++;
        this.#statusWrites.inc({ outcome: 'conflict' });
        if (attempt > this.#conflictRetries) {
          throw new FulcrumError('ERR_INTERNAL', `the status write met ${attempt} conflicts in a row`, { cause: err });
        }
        this.#log.debug({ attempt }, 'status write conflict (409): re-reading the BalancerNode');
        const fresh = await this.#read();
        if (fresh === undefined) return { outcome: 'absent' };
        obj = fresh;
      }
    }
  }

  /** GET the object (after a conflict); it replaces what the watch said, being newer. */
  async #read(): Promise<BalancerNodeObject | undefined> {
    try {
      const fresh = asBalancerNode(await this.#client.get(BALANCER_NODES, this.nodeName));
      this.#latest = fresh;
      this.#awaitingEcho = undefined;
      if (fresh !== undefined && specKey(fresh) !== this.#handledSpec) this.#trigger('spec');
      return fresh;
    } catch (err) {
      if (isApiError(err, 404)) {
        this.#latest = undefined;
        this.#awaitingEcho = undefined;
        return undefined;
      }
      throw err;
    }
  }
}

// ── start-up ───────────────────────────────────────────────────────────────────

/** The reason a start failure is reported with: no BPF filesystem, attaching, or loading. */
export function startFailureReason(err: unknown): 'BpffsUnavailable' | 'AttachFailed' | 'LoadFailed' {
  if (isFulcrumError(err, 'ERR_BPFFS')) return 'BpffsUnavailable';
  return isFulcrumError(err, 'ERR_BPF_ATTACH') || isFulcrumError(err, 'ERR_NETNS') ? 'AttachFailed' : 'LoadFailed';
}

/**
 * Best effort, when the data plane could not start: Ready=False with the reason and the
 * error on the node's BalancerNode, so `kubectl get bnode` shows why. Everything else in
 * status is left as it is (the previous agent's pins may still be forwarding).
 */
async function reportStartFailure(kc: KubeConfig, nodeName: string, err: unknown, log: Logger): Promise<void> {
  const client = agentClient(kc);
  const reason = startFailureReason(err);
  const message = clip(err instanceof Error ? err.message : String(err), MAX_ERROR_LENGTH);
  const attempt = async (): Promise<void> => {
    for (let i = 0; i < 3; i++) {
      const obj = asBalancerNode(await client.get(BALANCER_NODES, nodeName));
      if (obj === undefined) return;
      const parsed = BalancerNodeStatus.safeParse(obj.status ?? {});
      const previous = parsed.success ? parsed.data : {};
      const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
      const before = previous.conditions?.find((c) => c.type === 'Ready');
      const ready: Condition = {
        type: 'Ready', status: 'False', reason, message,
        lastTransitionTime: before?.status === 'False' ? before.lastTransitionTime : now,
      };
      const status: BalancerNodeStatus = {
        ...previous,
        conditions: [...(previous.conditions ?? []).filter((c) => c.type !== 'Ready'), ready],
        errors: [`${reason}: ${message}`],
        agentVersion: FULCRUM_VERSION,
      };
      try {
        await client.replace(BALANCER_NODES, statusWriteBody(obj, status), 'status', { fieldManager: FIELD_MANAGER });
        return;
      } catch (e) {
        if (!isApiError(e, 409)) throw e;
      }
    }
  };
  try {
    await Promise.race([attempt(), sleep(10_000).then(() => { throw new Error('no answer within 10 s'); })]);
  } catch (reportErr) {
    if (isApiError(reportErr, 404)) return;
    log.warn(errorFields(reportErr), 'could not report the start failure on the BalancerNode');
  } finally {
    client.close();
  }
}

function agentClient(kc: KubeConfig): KubeClient {
  return new KubeClient(kc, { userAgent: `fulcrum-agent/${FULCRUM_VERSION}` });
}

/**
 * Starts the agent in Kubernetes mode (KubernetesAgent.start): resolves once the data
 * plane runs and the watch has begun; the returned handle's stop() ends it.
 */
export function runKubernetesAgent(options: KubernetesAgentOptions): Promise<KubernetesAgent> {
  return KubernetesAgent.start(options);
}

/**
 * Runs Kubernetes mode until SIGTERM or SIGINT, then stops without detaching (the data
 * plane keeps forwarding; the next agent adopts it). SIGHUP programs the current spec
 * again at once. Start-up failures reject (the CLI maps them to exit codes).
 */
export async function serveKubernetesAgent(options: KubernetesAgentOptions): Promise<void> {
  const running = await runKubernetesAgent(options);
  const log = options.log ?? rootLogger;
  await new Promise<void>((resolveStopped) => {
    let stopping = false;
    const onHangup = (): void => {
      running.resync().catch((err: unknown) => log.warn(errorFields(err), 'SIGHUP: the resync did not run'));
    };
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      process.off('SIGHUP', onHangup);
      log.info({ signal }, 'stopping; the data plane keeps running');
      void running.stop().then(resolveStopped, (err: unknown) => {
        log.error(errorFields(err), 'stopping failed');
        resolveStopped();
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    process.on('SIGHUP', onHangup);
  });
}
