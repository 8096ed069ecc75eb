// The node agent: owns the node's data plane for the life of the process.
//
//   start(config)      validate → load the balancer, adopting pinned maps → attach →
//                      read the maps back (adopt) → serve /metrics, /healthz, /readyz
//   reconcile(state)   plan against what is programmed → apply in the planner's order
//                      → report (generation, per-VIP ring digests, duration, errors)
//   stop()             close our fds and the HTTP server; links and maps stay pinned,
//                      so forwarding and the connection table go on without us
//
// Reconciles are level-triggered and serialized: one runs at a time, and a desired
// state that arrives while one runs replaces any state still waiting (the waiting
// caller gets 'superseded'), because only the newest state matters.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { vipKey, type NodeDesiredState } from '../shared/desired-state.ts';
import { FulcrumError, isFulcrumError, type ErrorCode } from '../shared/errors.ts';
import { child, errorFields, type Logger } from '../shared/logging.ts';
import { FULCRUM_VERSION } from '../shared/version.ts';
import { linkInfo } from './bpf/attach.ts';
import { ensureBpffs } from './bpf/bpffs.ts';
import { AgentConfig, decapGuePort } from './config.ts';
import { DecapDuties, type DecapResult } from './decap-duties.ts';
import { adoptBalancer, reconcileAdopted, type AdoptResult } from './dataplane/adopt.ts';
import { applyPlan, zeroCounts, type ApplyCounts, type ApplyStep } from './dataplane/apply.ts';
import type { BalancerProgram } from './dataplane/balancer.ts';
import { isEmptyPlan, plan } from './dataplane/plan.ts';
import type { ProgrammedState } from './dataplane/state.ts';
import { AgentHttpServer, type ReadinessCheck } from './http.ts';
import {
  defaultObjectDir, loadDataplane, uninstallDataplane, type InterfaceAttachment, type LoadedDataplane, type UninstallResult,
} from './loader.ts';
import { AgentMetrics } from './metrics.ts';
import { parseOrThrow } from './validate.ts';

/**
 * The backend role (DecapDuties, src/agent/decap-duties.ts): decap program, VIPs on
 * loopback and sysctls in local backend pods. The agent hands it the desired duties
 * on every reconcile (an empty list undoes leftovers), and reads its status for metrics.
 */
export type DecapHandler = Pick<DecapDuties, 'apply' | 'close' | 'status'>;

export type AgentOptions = {
  readonly log?: Logger;
  /** Unpin the balancer maps before loading (fulcrum agent --reset-maps). */
  readonly resetMaps?: boolean;
  /** Attach in this network namespace instead of the agent's own (tests, lab). */
  readonly netns?: string;
  /** Serve /metrics, /healthz, /readyz (default true). */
  readonly http?: boolean;
  /** The backend role's handler; default: DecapDuties with decap.bpf.o from bpfObjectDir. */
  readonly decap?: DecapHandler;
};

/** What one VIP looks like once programmed, for BalancerNode status. */
export type VipProgrammed = {
  readonly name: string;
  readonly key: string;
  /** ringKeyDigest: equal on every node that programmed the same backends. */
  readonly ringDigest: string;
  readonly backends: number;
};

export type ReconcileError = {
  readonly code: ErrorCode;
  readonly message: string;
  /** balancer: planning or map writes; decap: backend duties. */
  readonly scope: 'balancer' | 'decap';
  /** The apply step that failed, when the failure was a map write. */
  readonly step?: ApplyStep;
  /** The pod, for a decap failure. */
  readonly pod?: string;
};

export type ReconcileResult =
  | {
      readonly outcome: 'programmed';
      readonly generation: number;
      readonly durationMs: number;
      /** Map operations carried out (all zero when the state was already programmed). */
      readonly counts: ApplyCounts;
      readonly vips: readonly VipProgrammed[];
      /** One outcome per decap duty (and per leftover duty undone). */
      readonly decap: DecapResult;
    }
  | {
      readonly outcome: 'failed';
      readonly generation: number;
      readonly durationMs: number;
      readonly errors: readonly ReconcileError[];
      /** The last generation programmed successfully, if any. */
      readonly programmedGeneration: number | undefined;
      /** What the decap duties did, when they ran (they do even when the balancer failed). */
      readonly decap?: DecapResult;
    }
  | {
      /** A newer desired state arrived before this one was started; that one is programmed instead. */
      readonly outcome: 'superseded';
      readonly generation: number;
      readonly supersededBy: number;
    };

export type AgentStatus = {
  readonly node: string;
  readonly version: string;
  readonly attachments: readonly InterfaceAttachment[];
  readonly programmedGeneration: number | undefined;
  readonly lastResult: ReconcileResult | undefined;
};

export const DECAP_OBJECT = 'decap.bpf.o';

type Waiting = { desired: NodeDesiredState; resolve: (result: ReconcileResult) => void };

export class Agent {
  readonly config: AgentConfig;
  readonly metrics: AgentMetrics;
  readonly #log: Logger;
  readonly #dataplane: LoadedDataplane | undefined;
  readonly #decap: DecapHandler;
  #http: AgentHttpServer | undefined;
  #state: ProgrammedState | undefined;
  /** The state came from the maps (start, or a failed apply): names and signatures are not known yet. */
  #adopted = false;
  #programmedGeneration: number | undefined;
  #lastResult: ReconcileResult | undefined;
  #waiting: Waiting | undefined;
  #draining: Promise<void> | undefined;
  #stopped = false;
  readonly #digests = new WeakMap<Uint32Array, string>();

  private constructor(config: AgentConfig, log: Logger, dataplane: LoadedDataplane | undefined, decap: DecapHandler) {
    this.config = config;
    this.#log = log;
    this.#dataplane = dataplane;
    this.#decap = decap;
    this.metrics = new AgentMetrics(
      { balancer: () => this.#dataplane?.balancer, state: () => this.#state, decap: () => (this.#stopped ? [] : this.#decap.status()) },
      { version: FULCRUM_VERSION, node: config.nodeName },
    );
  }

  /**
   * Validates the configuration (an AgentConfig, or input for one: ERR_CONFIG lists
   * every problem), loads and attaches the data plane, adopts what is programmed,
   * serves HTTP.
   */
  static async start(input: unknown, options: AgentOptions = {}): Promise<Agent> {
    const config = parseOrThrow(AgentConfig, input, 'the agent configuration');
    const guePort = decapGuePort(config);
    const log = child({ component: 'agent', node: config.nodeName }, options.log);
    let dataplane: LoadedDataplane | undefined;
    let agent: Agent | undefined;
    // Both roles pin under pinRoot: check (or mount) the BPF filesystem before either.
    ensureBpffs(config.pinRoot, { mount: config.mountBpffs, log });
    try {
      if (config.balancer !== undefined) {
        dataplane = await loadDataplane({
          config: { ...config, balancer: config.balancer },
          log,
          ...(options.resetMaps !== undefined ? { resetMaps: options.resetMaps } : {}),
          ...(options.netns !== undefined ? { netns: options.netns } : {}),
        });
      } else {
        log.info('no balancer section: this node only hosts backends');
      }
      const decap = options.decap ?? new DecapDuties({
        objectPath: join(config.bpfObjectDir ?? defaultObjectDir(), DECAP_OBJECT),
        guePort,
        pinRoot: config.pinRoot,
        sysctlRoot: config.sysctlRoot,
        logger: log,
      });
      const started = new Agent(config, log, dataplane, decap);
      agent = started;
      if (dataplane !== undefined) started.#adopt();
      if (options.http !== false) {
        started.#http = await AgentHttpServer.listen(
          {
            metrics: async () => ({ contentType: started.metrics.contentType, body: await started.metrics.text() }),
            readiness: () => started.readiness(),
          },
          { host: config.metrics.host, port: config.metrics.port, log },
        );
      }
      log.info({ version: FULCRUM_VERSION, interfaces: dataplane?.attachments.map((a) => `${a.interface}:${a.mode}:${a.action}`) ?? [] }, 'agent started');
      return started;
    } catch (err) {
      if (agent !== undefined) await agent.stop();
      else dataplane?.balancer.close();
      throw err;
    }
  }

  get httpAddress(): { host: string; port: number } | undefined {
    return this.#http?.address();
  }

  /** The loaded balancer (undefined on backend-only nodes). */
  get balancer(): BalancerProgram | undefined {
    return this.#dataplane?.balancer;
  }

  /** What the agent believes is programmed (read back from the maps at start). */
  get programmed(): ProgrammedState | undefined {
    return this.#state;
  }

  status(): AgentStatus {
    return {
      node: this.config.nodeName,
      version: FULCRUM_VERSION,
      attachments: this.#dataplane?.attachments ?? [],
      programmedGeneration: this.#programmedGeneration,
      lastResult: this.#lastResult,
    };
  }

  /**
   * Programs `desired`. Serialized: while a reconcile runs, the newest waiting state
   * replaces older waiting ones, whose callers get 'superseded'.
   */
  reconcile(desired: NodeDesiredState): Promise<ReconcileResult> {
    if (this.#stopped) {
      return Promise.reject(new FulcrumError('ERR_INTERNAL', 'the agent is stopped; it cannot reconcile'));
    }
    return new Promise((resolve) => {
      const previous = this.#waiting;
      if (previous !== undefined) {
        const result: ReconcileResult = { outcome: 'superseded', generation: previous.desired.generation, supersededBy: desired.generation };
        this.metrics.reconciles.inc({ outcome: 'superseded' });
        previous.resolve(result);
      }
      this.#waiting = { desired, resolve };
      this.#draining ??= this.#drain();
    });
  }

  /** Readiness: loaded, attached (checked live on the pinned links), last reconcile programmed. */
  readiness(): ReadinessCheck[] {
    const checks: ReadinessCheck[] = [];
    const dp = this.#dataplane;
    if (dp === undefined) {
      checks.push({ name: 'dataplane', ok: true, detail: 'no balancer on this node' });
    } else {
      checks.push({ name: 'dataplane', ok: !this.#stopped, detail: this.#stopped ? 'agent stopped' : 'balancer loaded' });
      const progId = dp.balancer.object.program('balancer').id;
      for (const a of dp.attachments) {
        checks.push(this.#attachmentCheck(a, progId));
      }
    }
    const last = this.#lastResult;
    checks.push(
      last === undefined
        ? { name: 'reconciled', ok: false, detail: 'no desired state programmed yet' }
        : last.outcome === 'programmed'
          ? { name: 'reconciled', ok: true, detail: `generation ${last.generation}` }
          : { name: 'reconciled', ok: false, detail: last.outcome === 'failed' ? last.errors.map((e) => `${e.code}: ${e.message}`).join('; ') : 'superseded' },
    );
    return checks;
  }

  /**
   * Stops serving and closes the agent's fds. The data plane keeps running: links and
   * maps stay pinned, and the next agent adopts them.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.#draining;
    await this.#http?.close();
    this.#http = undefined;
    try {
      await this.#decap.close();
    } catch (err) {
      this.#log.warn(errorFields(err), 'closing the decap duties failed');
    }
    this.#dataplane?.balancer.close();
    this.#log.info('agent stopped; the data plane keeps running (links and maps stay pinned)');
  }

  // ── internals ─────────────────────────────────────────────────────────────────

  #attachmentCheck(a: InterfaceAttachment, progId: number): ReadinessCheck {
    const name = `attached:${a.interface}`;
    if (!existsSync(a.pinPath)) return { name, ok: false, detail: `the link pin ${a.pinPath} is gone` };
    try {
      const link = linkInfo(a.pinPath);
      if (link.ifindex === 0) return { name, ok: false, detail: `${a.interface} is gone (the link is defunct)` };
      if (link.progId !== progId) return { name, ok: false, detail: `the link runs program ${link.progId}, not this agent's ${progId}` };
      return { name, ok: true, detail: `${a.mode} mode, link ${link.id}` };
    } catch (err) {
      return { name, ok: false, detail: (err as Error).message };
    }
  }

  #adopt(): AdoptResult {
    const balancer = this.#dataplane!.balancer;
    const result = adoptBalancer(balancer);
    for (const f of result.findings) this.#log.warn({ problem: f.problem, repaired: f.repaired }, f.message);
    this.#state = result.state;
    this.#adopted = true;
    this.#log.info({ vips: result.state.vips.size, backends: result.state.backends.size, findings: result.findings.length },
      result.foundPrevious ? 'adopted the programmed state from the pinned maps' : 'maps are empty: nothing to adopt');
    return result;
  }

  async #drain(): Promise<void> {
    try {
      while (this.#waiting !== undefined) {
        const job = this.#waiting;
        this.#waiting = undefined;
        let result: ReconcileResult;
        try {
          result = await this.#reconcileNow(job.desired);
        } catch (err) {
          // #reconcileNow reports failures as results; anything thrown is a bug.
          const error = isFulcrumError(err) ? err : new FulcrumError('ERR_INTERNAL', String(err), { cause: err });
          result = { outcome: 'failed', generation: job.desired.generation, durationMs: 0, errors: [{ code: error.code, message: error.message, scope: 'balancer' }], programmedGeneration: this.#programmedGeneration };
        }
        this.#lastResult = result;
        this.metrics.reconciles.inc({ outcome: result.outcome });
        job.resolve(result);
      }
    } finally {
      this.#draining = undefined;
    }
  }

  async #reconcileNow(desired: NodeDesiredState): Promise<ReconcileResult> {
    const started = performance.now();
    const generation = desired.generation;
    const errors: ReconcileError[] = [];
    let counts = zeroCounts();
    let vips: VipProgrammed[] = [];

    const balancerOutcome = this.#programBalancer(desired);
    if (balancerOutcome.ok) {
      counts = balancerOutcome.counts;
      vips = balancerOutcome.vips;
    } else {
      errors.push(balancerOutcome.error);
    }

    // The backend role runs whatever happened to the balancer: the two are independent.
    let decap: DecapResult | undefined;
    try {
      decap = await this.#decap.apply(desired.decap);
      for (const pod of decap.pods) {
        if (pod.outcome === 'failed') errors.push({ code: pod.error.code, message: pod.error.message, scope: 'decap', pod: pod.pod });
      }
    } catch (err) {
      errors.push({ ...codeAndMessage(err), scope: 'decap' });
    }

    const durationMs = performance.now() - started;
    if (errors.length > 0 || decap === undefined) {
      this.metrics.observeProgramming('failed', durationMs, 0, errors.map((e) => e.code));
      this.#log.error({ generation, errors, durationMs: round(durationMs) }, 'reconcile failed');
      return { outcome: 'failed', generation, durationMs, errors, programmedGeneration: this.#programmedGeneration, ...(decap !== undefined ? { decap } : {}) };
    }
    this.#programmedGeneration = generation;
    this.metrics.observeProgramming('programmed', durationMs, counts.ringSlotsWritten);
    this.#log.info({ generation, vips: vips.length, counts: nonZero(counts), durationMs: round(durationMs) }, 'programmed');
    return { outcome: 'programmed', generation, durationMs, counts, vips, decap };
  }

  #programBalancer(desired: NodeDesiredState):
    | { ok: true; counts: ApplyCounts; vips: VipProgrammed[] }
    | { ok: false; error: ReconcileError } {
    const dp = this.#dataplane;
    if (dp === undefined) {
      if (desired.vips.length === 0) return { ok: true, counts: zeroCounts(), vips: [] };
      return {
        ok: false,
        error: { code: 'ERR_DESIRED_STATE', message: `the desired state lists ${desired.vips.length} VIPs, but this node's configuration has no balancer section`, scope: 'balancer' },
      };
    }
    const ringSize = dp.balancer.ringSize;
    let current = this.#state!;
    let next: ProgrammedState;
    try {
      if (this.#adopted) {
        const matched = reconcileAdopted(current, desired, ringSize, (vipId) => dp.balancer.readRing(vipId));
        current = matched.state;
        this.#state = current;
        this.#adopted = false;
        this.#log.info({ identical: matched.identical.length, differing: matched.differing, unwanted: matched.unwanted }, 'matched the adopted VIPs against the desired state');
      }
      const p = plan(current, desired, ringSize);
      if (!isEmptyPlan(p)) {
        const applied = applyPlan(dp.balancer, p);
        if (applied.outcome === 'failed') {
          this.#log.error({ step: applied.step, done: nonZero(applied.counts), ...errorFields(applied.error) }, 'writing the maps failed; re-reading them');
          // The maps hold a prefix of the plan: they, not the plan, are the truth now.
          this.#adopt();
          return { ok: false, error: { code: applied.error.code, message: applied.error.message, scope: 'balancer', step: applied.step } };
        }
        next = p.next;
        this.#state = next;
        return { ok: true, counts: applied.counts, vips: this.#vipStatus(desired, next) };
      }
      next = p.next;
      this.#state = next;
      return { ok: true, counts: zeroCounts(), vips: this.#vipStatus(desired, next) };
    } catch (err) {
      // Planning failed (e.g. no free id): nothing was written.
      return { ok: false, error: { ...codeAndMessage(err), scope: 'balancer' } };
    }
  }

  #vipStatus(desired: NodeDesiredState, state: ProgrammedState): VipProgrammed[] {
    return desired.vips.map((vip) => {
      const key = vipKey(vip);
      const programmed = state.vips.get(key)!;
      return { name: vip.name, key, ringDigest: programmed.ringDigest, backends: vip.backends.length };
    });
  }
}

export type NodeUninstallResult = UninstallResult & {
  /** Backend pods whose decap was undone (tc filter, VIPs on lo, pins). */
  readonly decap: DecapResult;
};

/**
 * Removes everything the agent put on this node: the balancer (links detached, maps
 * unpinned) and every backend pod's decap. Traffic to VIPs then goes to the stack.
 */
export async function uninstallNode(input: unknown, log?: Logger): Promise<NodeUninstallResult> {
  const config = parseOrThrow(AgentConfig, input, 'the agent configuration');
  const decap = new DecapDuties({
    objectPath: join(config.bpfObjectDir ?? defaultObjectDir(), DECAP_OBJECT),
    guePort: decapGuePort(config),
    pinRoot: config.pinRoot,
    sysctlRoot: config.sysctlRoot,
    ...(log !== undefined ? { logger: log } : {}),
  });
  let decapResult: DecapResult;
  try {
    decapResult = await decap.apply([]);
  } finally {
    await decap.close();
  }
  // After decap: uninstallDataplane removes the pin root only once it is empty.
  return { ...uninstallDataplane(config.pinRoot), decap: decapResult };
}

function codeAndMessage(err: unknown): { code: ErrorCode; message: string } {
  if (isFulcrumError(err)) return { code: err.code, message: err.message };
  return { code: 'ERR_INTERNAL', message: err instanceof Error ? err.message : String(err) };
}

function nonZero(counts: ApplyCounts): Partial<ApplyCounts> {
  return Object.fromEntries(Object.entries(counts).filter(([, v]) => v !== 0));
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
