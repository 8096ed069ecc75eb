// Traffic for the lab, always generated and served inside lab namespaces: a server
// per pod that answers with the pod's name (HTTP and UDP), and a driver per client
// namespace for many short flows, long transfers and held connections, each on
// source ports the caller can name. Results say which pod served each flow, which is
// all the tests need to judge placement, spread and stickiness.
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { FulcrumError } from '../shared/errors.ts';
import { nsSpawn, nsSysctl } from './netns.ts';
import type { Host, PodRole, Topology } from './topology.ts';
import type {
  FlowResult, HoldOpenParams, TransferDirection, TransferParams, TransferResult, WorkerMessage, WorkerRequest,
} from './traffic-protocol.ts';

export type { FlowError, FlowResult, TransferResult } from './traffic-protocol.ts';

const POD_SERVER = fileURLToPath(new URL('./pod-server.ts', import.meta.url));
const CLIENT_WORKER = fileURLToPath(new URL('./client-worker.ts', import.meta.url));

/** The pods serve HTTP and UDP on two ports each: one per encapsulation the lab's VIPs use. */
export const HTTP_PORT = 80;
export const HTTP_PORT_GUE = 8080;
export const UDP_PORT = 5353;
export const UDP_PORT_GUE = 5354;
const READY_TIMEOUT_MS = 10_000;

/** Waits for the first stdout line of `child` that parses as JSON and satisfies `isReady`. */
async function waitReady(child: ChildProcess, what: string, isReady: (msg: Record<string, unknown>) => boolean): Promise<void> {
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const lines = createInterface({ input: child.stdout! });
  const exited = once(child, 'exit').then(([code, signal]) => {
    throw new FulcrumError('ERR_NETNS', `${what} exited (${signal ?? code}) before it was ready: ${stderr.trim()}`);
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new FulcrumError('ERR_NETNS', `${what} not ready after ${READY_TIMEOUT_MS} ms: ${stderr.trim()}`)), READY_TIMEOUT_MS);
  });
  const ready = (async () => {
    for await (const line of lines) {
      try {
        if (isReady(JSON.parse(line) as Record<string, unknown>)) return;
      } catch {
        // not a JSON line: ignore
      }
    }
    await exited;
  })();
  try {
    await Promise.race([ready, exited, timeout]);
  } finally {
    clearTimeout(timer);
    exited.catch(() => undefined);
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
  await exited;
  clearTimeout(timer);
}

// ── pods ──────────────────────────────────────────────────────────────────────

export type PodServers = {
  stop(): Promise<void>;
};

/**
 * Starts the HTTP and UDP servers in every pod. The UDP sockets are bound to the VIPs
 * (`udpAddresses`, the standalone lab's two by default; see pod-server.ts), which needs
 * ip_nonlocal_bind until the agent has put the VIPs on the pod's loopback.
 */
export async function startPodServers(topology: Topology, udpAddresses: readonly string[] = [topology.vip4, topology.vip6]): Promise<PodServers> {
  const children: ChildProcess[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(children.map(stopChild));
  };
  try {
    await Promise.all((Object.entries(topology.pods) as [PodRole, Host][]).map(async ([role, host]) => {
      await nsSysctl(host.ns, { 'net.ipv4.ip_nonlocal_bind': 1, 'net.ipv6.ip_nonlocal_bind': 1 });
      const child = nsSpawn(host.ns, [
        process.execPath, POD_SERVER, '--name', role,
        ...[HTTP_PORT, HTTP_PORT_GUE].flatMap((port) => ['--http-port', String(port)]),
        ...[UDP_PORT, UDP_PORT_GUE].flatMap((port) => ['--udp-port', String(port)]),
        ...udpAddresses.flatMap((address) => ['--udp-bind', address]),
      ]);
      children.push(child);
      await waitReady(child, `pod server ${role}`, (msg) => msg.ready === true);
    }));
  } catch (err) {
    await stop();
    throw err;
  }
  return { stop };
}

// ── clients ───────────────────────────────────────────────────────────────────

/**
 * Source ports the lab hands out: below the kernel's ephemeral range (32768+), so they
 * never collide with ports the kernel picks, and never reused within a driver unless
 * the caller passes them again on purpose (to repeat a flow).
 */
const FIRST_SOURCE_PORT = 10_000;
const LAST_SOURCE_PORT = 32_000;

export type FlowOptions = {
  /** Exactly these source ports (to repeat earlier flows), or `count` fresh ones. */
  readonly sourcePorts?: readonly number[];
  readonly count?: number;
  readonly port?: number;
  readonly concurrency?: number;
  readonly timeoutMs?: number;
};

export type TransferOptions = {
  readonly direction: TransferDirection;
  readonly bytes: number;
  /** Pace the payload over about this long (0: as fast as the path allows). */
  readonly durationMs: number;
  readonly sourcePort?: number;
  readonly port?: number;
  /** Fail as 'stalled' after this long without progress (default 10 s). */
  readonly stallTimeoutMs?: number;
  /** Fail as 'timeout' when not done after this long (default 60 s). */
  readonly timeoutMs?: number;
};

export type Transfer = {
  readonly id: string;
  readonly sourcePort: number;
  readonly direction: TransferDirection;
  /** Payload bytes moved so far (updated every 200 ms). */
  bytes(): number;
  /** The pod serving it, once known (a download names it in its first line). */
  pod(): string | undefined;
  /** Resolves once at least `n` payload bytes have moved (rejects if the transfer ends first). */
  waitForBytes(n: number, timeoutMs?: number): Promise<void>;
  result(): Promise<TransferResult>;
};

export type HeldFlows = {
  /** Which pod answered on each connection when it was opened. */
  readonly opened: readonly FlowResult[];
  /** Asks every connection again: the same pod, or how the connection failed. */
  again(): Promise<FlowResult[]>;
  close(): Promise<void>;
};

export class ClientDriver {
  readonly host: Host;
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly progress = new Map<string, { bytes: number; pod: string | undefined }>();
  private readonly progressWaiters = new Set<() => void>();
  private nextId = 1;
  private nextPort = FIRST_SOURCE_PORT;
  private nextName = 1;
  private exitError: Error | undefined;

  private constructor(host: Host, child: ChildProcess) {
    this.host = host;
    this.child = child;
  }

  /** Starts the traffic worker inside the client's namespace. */
  static async start(host: Host): Promise<ClientDriver> {
    const child = nsSpawn(host.ns, [process.execPath, CLIENT_WORKER], { stdio: ['pipe', 'pipe', 'pipe'] });
    try {
      await waitReady(child, `client worker ${host.role}`, (msg) => msg.event === 'ready');
    } catch (err) {
      await stopChild(child);
      throw err;
    }
    const driver = new ClientDriver(host, child);
    driver.listen();
    return driver;
  }

  /** Fresh source ports, unique within this driver. */
  takePorts(count: number): number[] {
    if (this.nextPort + count > LAST_SOURCE_PORT) {
      throw new FulcrumError('ERR_INTERNAL', `client ${this.host.role}: out of lab source ports (${count} more wanted)`);
    }
    const ports = Array.from({ length: count }, (_, i) => this.nextPort + i);
    this.nextPort += count;
    return ports;
  }

  /** Short-lived HTTP/1.0 connections to target:80 (or options.port), one per source port. */
  async http(target: string, options: FlowOptions = {}): Promise<FlowResult[]> {
    return (await this.call('http', this.flowParams(target, HTTP_PORT, options))) as FlowResult[];
  }

  /** One request datagram (retried on silence) per source port to target:5353 (or options.port). */
  async udp(target: string, options: FlowOptions & { attempts?: number } = {}): Promise<FlowResult[]> {
    const params = { ...this.flowParams(target, UDP_PORT, { timeoutMs: 500, ...options }), attempts: options.attempts ?? 4 };
    return (await this.call('udp', params)) as FlowResult[];
  }

  /** A long-lived HTTP transfer; returns once the connection is being set up. */
  async startTransfer(target: string, options: TransferOptions): Promise<Transfer> {
    const params: TransferParams = {
      id: `t${this.nextName++}`,
      target,
      port: options.port ?? HTTP_PORT,
      sourcePort: options.sourcePort ?? this.takePorts(1)[0]!,
      direction: options.direction,
      bytes: options.bytes,
      durationMs: options.durationMs,
      stallTimeoutMs: options.stallTimeoutMs ?? 10_000,
      timeoutMs: options.timeoutMs ?? 60_000,
    };
    await this.call('transferStart', params);
    let finished: TransferResult | undefined;
    const resultPromise = (this.call('transferResult', { id: params.id }) as Promise<TransferResult>).then((r) => {
      finished = r;
      this.progress.set(params.id, { bytes: r.bytes, pod: r.pod });
      for (const wake of this.progressWaiters) wake();
      return r;
    });
    return {
      id: params.id,
      sourcePort: params.sourcePort,
      direction: params.direction,
      bytes: () => this.progress.get(params.id)?.bytes ?? 0,
      pod: () => this.progress.get(params.id)?.pod,
      result: () => resultPromise,
      waitForBytes: (n, timeoutMs = 10_000) => this.waitForProgress(params.id, n, timeoutMs, () => finished),
    };
  }

  /** Keep-alive connections, one per source port, each asked which pod it reached. */
  async hold(target: string, options: FlowOptions = {}): Promise<HeldFlows> {
    const flow = this.flowParams(target, HTTP_PORT, options);
    const params: HoldOpenParams = { id: `h${this.nextName++}`, ...flow };
    const opened = (await this.call('holdOpen', params)) as FlowResult[];
    return {
      opened,
      again: async () => (await this.call('holdRequest', { id: params.id })) as FlowResult[],
      close: async () => {
        await this.call('holdClose', { id: params.id });
      },
    };
  }

  async close(): Promise<void> {
    this.child.stdin?.end();
    await stopChild(this.child);
  }

  private flowParams(target: string, defaultPort: number, options: FlowOptions) {
    const sourcePorts = options.sourcePorts ?? this.takePorts(options.count ?? 1);
    return {
      target,
      port: options.port ?? defaultPort,
      sourcePorts,
      concurrency: options.concurrency ?? 32,
      timeoutMs: options.timeoutMs ?? 5000,
    };
  }

  private waitForProgress(id: string, n: number, timeoutMs: number, finished: () => TransferResult | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        if ((this.progress.get(id)?.bytes ?? 0) >= n) {
          done();
          resolve();
          return true;
        }
        const result = finished();
        if (result) {
          done();
          reject(new FulcrumError('ERR_INTERNAL', `transfer ${id} ended after ${result.bytes} bytes (${result.error ?? 'completed'}), before ${n}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        reject(new FulcrumError('ERR_INTERNAL', `transfer ${id}: ${this.progress.get(id)?.bytes ?? 0} of ${n} bytes after ${timeoutMs} ms`));
      }, timeoutMs);
      const wake = (): void => { check(); };
      const done = (): void => {
        clearTimeout(timer);
        this.progressWaiters.delete(wake);
      };
      if (!check()) this.progressWaiters.add(wake);
    });
  }

  private listen(): void {
    const lines = createInterface({ input: this.child.stdout! });
    lines.on('line', (line) => {
      let msg: WorkerMessage;
      try {
        msg = JSON.parse(line) as WorkerMessage;
      } catch {
        return;
      }
      if ('event' in msg) {
        if (msg.event === 'progress') {
          this.progress.set(msg.transfer, { bytes: msg.bytes, pod: msg.pod });
          for (const wake of this.progressWaiters) wake();
        }
        return;
      }
      if (msg.id === null) return;
      const waiter = this.pending.get(msg.id);
      if (!waiter) return;
      this.pending.delete(msg.id);
      if ('error' in msg) waiter.reject(new FulcrumError('ERR_INTERNAL', `client ${this.host.role}: ${msg.error}`));
      else waiter.resolve(msg.result);
    });
    let stderr = '';
    this.child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    this.child.once('exit', (code, signal) => {
      this.exitError = new FulcrumError('ERR_INTERNAL', `client worker ${this.host.role} exited (${signal ?? code}): ${stderr.trim()}`);
      for (const waiter of this.pending.values()) waiter.reject(this.exitError);
      this.pending.clear();
    });
  }

  private call(method: WorkerRequest['method'], params: unknown): Promise<unknown> {
    if (this.exitError) return Promise.reject(this.exitError);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.stdin!.write(`${JSON.stringify({ id, method, params })}\n`);
    });
  }
}

// ── reading results ───────────────────────────────────────────────────────────

/** Flows per pod (failed flows under their error). */
export function countByPod(results: readonly FlowResult[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of results) {
    const key = r.pod ?? `error:${r.error}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

/** Source port → pod, for the flows that got an answer. */
export function podBySourcePort(results: readonly FlowResult[]): Map<number, string> {
  return new Map(results.filter((r) => r.pod !== undefined).map((r) => [r.sourcePort, r.pod!]));
}

export function failedFlows(results: readonly FlowResult[]): FlowResult[] {
  return results.filter((r) => r.pod === undefined);
}

/**
 * How far each pod's share is from its fair share, relative to the fair share
 * (0.1 = 10 % more than fair, -0.1 = 10 % less). Weights default to equal.
 */
export function shareDeviation(counts: Readonly<Record<string, number>>, weights: Readonly<Record<string, number>>): Record<string, number> {
  const total = Object.entries(counts).filter(([pod]) => pod in weights).reduce((s, [, n]) => s + n, 0);
  const weightSum = Object.values(weights).reduce((s, w) => s + w, 0);
  const out: Record<string, number> = {};
  for (const [pod, weight] of Object.entries(weights)) {
    const fair = (total * weight) / weightSum;
    out[pod] = fair === 0 ? (counts[pod] ?? 0) : ((counts[pod] ?? 0) - fair) / fair;
  }
  return out;
}
