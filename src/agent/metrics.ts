// The agent's Prometheus metrics. Data-plane counters live in per-CPU BPF maps; they
// are read when Prometheus scrapes (each metric's collect()), summed over CPUs, and
// published as counters. Nothing polls the maps in between, so an idle agent costs
// nothing and a scrape costs one map lookup per VIP, per backend and per reason.
//
// Label values follow the programmed state at scrape time. A VIP or backend id that
// is handed to another VIP or backend starts its counters from zero (the agent resets
// them), which Prometheus sees as a new series.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { REASONS, reasonAction, type Reason } from '../shared/reasons.ts';
import type { ErrorCode } from '../shared/errors.ts';
import type { BalancerProgram } from './dataplane/balancer.ts';
import type { ProgrammedState } from './dataplane/state.ts';
import type { DecapPodStatus } from './decap-duties.ts';

export const METRIC_PREFIX = 'fulcrum_agent_';

/** The reasons the balancer program counts (the decap program's reasons are the decap side's). */
export const BALANCER_REASONS: readonly Reason[] = REASONS.filter((r) => !r.startsWith('decap_'));

/** What the metrics read at scrape time; undefined while the data plane is not loaded. */
export type MetricsSource = {
  balancer(): BalancerProgram | undefined;
  state(): ProgrammedState | undefined;
  /** The backend role's pods with their decap counters. */
  decap(): readonly DecapPodStatus[];
};

export type BuildInfo = { readonly version: string; readonly node: string };

const toNumber = (v: bigint): number => Number(v);

export class AgentMetrics {
  readonly registry = new Registry();
  readonly programmingDuration: Histogram<'outcome'>;
  readonly programmingErrors: Counter<'code'>;
  readonly ringSlotsWritten: Counter;
  readonly reconciles: Counter<'outcome'>;

  constructor(source: MetricsSource, build: BuildInfo) {
    const registers = [this.registry];
    const p = METRIC_PREFIX;

    // ── data plane (read from the maps at scrape time) ───────────────────────────
    // Pairs of counters come from one map read: the first of a pair (registered first,
    // so the registry collects it first) fills itself and its partner, which has no
    // collect() of its own. Its value is therefore always from the same read.
    const vipLabels = ['vip', 'address', 'port', 'protocol'] as const;
    const pairs = {} as { vipBytes: Counter<(typeof vipLabels)[number]>; backendBytes: Counter<'backend'>; reasonBytes: Counter<'reason' | 'action'>; connMisses: Counter; connExpired: Counter; decapRejected: Counter<'pod' | 'reason' | 'action'> };

    new Counter({
      name: `${p}vip_packets_total`,
      help: 'Packets forwarded to a backend, per VIP',
      labelNames: vipLabels,
      registers,
      collect() {
        this.reset();
        pairs.vipBytes.reset();
        const balancer = source.balancer();
        const state = source.state();
        if (balancer === undefined || state === undefined) return;
        for (const vip of state.vips.values()) {
          const c = balancer.vipCounter(vip.id);
          const labels = { vip: vip.name, address: vip.address, port: String(vip.port), protocol: vip.protocol };
          this.inc(labels, toNumber(c.packets));
          pairs.vipBytes.inc(labels, toNumber(c.bytes));
        }
      },
    });
    pairs.vipBytes = new Counter({
      name: `${p}vip_bytes_total`,
      help: 'Bytes forwarded to a backend per VIP, as the client sent them (before encapsulation)',
      labelNames: vipLabels,
      registers,
    });

    new Counter({
      name: `${p}backend_packets_total`,
      help: 'Packets forwarded to a backend',
      labelNames: ['backend'],
      registers,
      collect() {
        this.reset();
        pairs.backendBytes.reset();
        const balancer = source.balancer();
        const state = source.state();
        if (balancer === undefined || state === undefined) return;
        for (const [address, id] of state.backends) {
          const c = balancer.backendCounter(id);
          this.inc({ backend: address }, toNumber(c.packets));
          pairs.backendBytes.inc({ backend: address }, toNumber(c.bytes));
        }
      },
    });
    pairs.backendBytes = new Counter({
      name: `${p}backend_bytes_total`,
      help: 'Bytes forwarded to a backend, as the client sent them (before encapsulation)',
      labelNames: ['backend'],
      registers,
    });

    new Counter({
      name: `${p}not_forwarded_packets_total`,
      help: 'Packets the balancer did not forward, by reason (action: passed to the stack, dropped, or answered by the balancer itself)',
      labelNames: ['reason', 'action'],
      registers,
      collect() {
        this.reset();
        pairs.reasonBytes.reset();
        const balancer = source.balancer();
        if (balancer === undefined) return;
        const counters = balancer.reasonCounters();
        for (const reason of BALANCER_REASONS) {
          const labels = { reason, action: reasonAction(reason) };
          this.inc(labels, toNumber(counters[reason].packets));
          pairs.reasonBytes.inc(labels, toNumber(counters[reason].bytes));
        }
      },
    });
    pairs.reasonBytes = new Counter({
      name: `${p}not_forwarded_bytes_total`,
      help: 'Bytes the balancer did not forward, by reason',
      labelNames: ['reason', 'action'],
      registers,
    });

    new Counter({
      name: `${p}conn_table_hits_total`,
      help: 'Packets of established flows that found their backend in the connection table',
      registers,
      collect() {
        this.reset();
        pairs.connMisses.reset();
        pairs.connExpired.reset();
        const balancer = source.balancer();
        if (balancer === undefined) return;
        const g = balancer.globalCounters();
        this.inc(toNumber(g.conn_hit.packets));
        pairs.connMisses.inc(toNumber(g.conn_miss.packets));
        pairs.connExpired.inc(toNumber(g.conn_udp_expired.packets));
      },
    });
    pairs.connMisses = new Counter({
      name: `${p}conn_table_misses_total`,
      help: 'Packets for which the Maglev ring was consulted on VIPs that use the connection table (new flows, SYNs, unknown mid-flow packets)',
      registers,
    });
    pairs.connExpired = new Counter({ name: `${p}conn_table_udp_expired_total`, help: 'UDP connection-table entries found expired', registers });

    // ── backend role: one decap program per local backend pod ───────────────────
    new Counter({
      name: `${p}decap_packets_total`,
      help: 'Tunnelled packets decapsulated for a local backend pod',
      labelNames: ['pod'],
      registers,
      collect() {
        this.reset();
        pairs.decapRejected.reset();
        for (const pod of source.decap()) {
          this.inc({ pod: pod.pod }, toNumber(pod.decapped.packets));
          for (const [reason, counter] of Object.entries(pod.reasons)) {
            if (counter !== undefined) pairs.decapRejected.inc({ pod: pod.pod, reason, action: reasonAction(reason as Reason) }, toNumber(counter.packets));
          }
        }
      },
    });
    pairs.decapRejected = new Counter({
      name: `${p}decap_not_decapsulated_packets_total`,
      help: 'Packets a backend pod\'s decap program did not decapsulate, by reason (pass: not a tunnel packet; drop: not for this pod)',
      labelNames: ['pod', 'reason', 'action'],
      registers,
    });

    new Gauge({
      name: `${p}vips`,
      help: 'VIPs programmed on this node',
      registers,
      collect() {
        this.set(source.state()?.vips.size ?? 0);
      },
    });
    new Gauge({
      name: `${p}backends`,
      help: 'Backends programmed on this node (draining ones included)',
      registers,
      collect() {
        this.set(source.state()?.backends.size ?? 0);
      },
    });

    // ── programming (updated by the agent as it reconciles) ─────────────────────
    this.programmingDuration = new Histogram({
      name: `${p}programming_duration_seconds`,
      help: 'Time to plan and write one desired state into the maps',
      labelNames: ['outcome'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.programmingErrors = new Counter({ name: `${p}programming_errors_total`, help: 'Errors of failed reconciles, by error code (one per error)', labelNames: ['code'], registers });
    this.ringSlotsWritten = new Counter({ name: `${p}ring_slots_written_total`, help: 'Maglev ring slots whose value changed in the map', registers });
    this.reconciles = new Counter({ name: `${p}reconciles_total`, help: 'Reconciles by outcome (programmed, failed, superseded)', labelNames: ['outcome'], registers });

    new Gauge({
      name: `${p}build_info`,
      help: 'Build and node information (always 1)',
      labelNames: ['version', 'node', 'nodejs'],
      registers,
    }).set({ version: build.version, node: build.node, nodejs: process.versions.node }, 1);

    collectDefaultMetrics({ register: this.registry, prefix: p });
  }

  /** One reconcile: its duration once, and each of its errors (a failed reconcile may
   * have several: one per failing decap duty). */
  observeProgramming(outcome: 'programmed' | 'failed', durationMs: number, ringSlots: number, errorCodes: readonly ErrorCode[] = []): void {
    this.programmingDuration.observe({ outcome }, durationMs / 1000);
    if (ringSlots > 0) this.ringSlotsWritten.inc(ringSlots);
    for (const code of errorCodes) this.programmingErrors.inc({ code });
  }

  /** The text exposition format. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
