// The whole lab: the topology, a server in every pod, a traffic driver in every
// client, and the real agent (src/cli.ts) running inside the lab — one per balancer
// node (XDP on lb1/lb2 eth0) and one holding the pods' decap duties. Two modes:
//
//   standalone   the lab talks to the agents the way a host without Kubernetes would:
//                it writes their YAML file (agent settings + desired state).
//   kubernetes   the whole product on a real control plane (etcd, kube-apiserver,
//                kube-controller-manager, started by cluster.ts on loopback), the real
//                operator and the agents in Kubernetes mode as their ServiceAccounts;
//                the lab applies examples/ with kubectl and plays only the kubelet
//                (Nodes, the app's Pods and their readiness); the EndpointSlices are the
//                real controller's. Pod weights are the pods' annotation. The VIPs are
//                what the operator assigned.
//
// Either way the lab reads the agents' /metrics and /readyz and their pinned maps. Everything it makes is removed by teardown(),
// which also runs on SIGINT/SIGTERM and, synchronously, on process exit; a SIGKILL is
// covered by the guardian process and the sweep every start does (sweep.ts).
//
// Reaching an agent's HTTP server: the agent binds it to 127.0.0.1 of its own
// namespace, and the lab fetches from a short-lived process inside that namespace.
// Nothing is ever sent from the host namespace to a lab address.
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import type { z } from 'zod';
import { ensureBpffs } from '../agent/bpf/bpffs.ts';
import { linkInfo } from '../agent/bpf/attach.ts';
import type { StandaloneFile } from '../agent/config.ts';
import type { Encapsulation, Protocol } from '../shared/desired-state.ts';
import { FulcrumError } from '../shared/errors.ts';
import { connTable, ringShares, type ConnEntry, type VipRef } from '../agent/inspect/pinned.ts';
import { BPFFS_ROOT, linkStats, nsExec, nsSpawn, sh } from './netns.ts';
import { RUN_DIR_PREFIX, startGuardian, sweepStaleLabs } from './sweep.ts';
import {
  BALANCER_ROLES, CLIENT_ROLES, POD_ROLES, buildTopology,
  type BalancerRole, type ClientRole, type PodRole, type Topology,
} from './topology.ts';
import { LabCluster } from './cluster.ts';
import { ClientDriver, HTTP_PORT, HTTP_PORT_GUE, UDP_PORT, UDP_PORT_GUE, failedFlows, startPodServers, type PodServers } from './traffic.ts';

export { sweepStaleLabs } from './sweep.ts';

/** The product's CLI; `fulcrum agent --config <file>` is the standalone agent. */
const CLI = fileURLToPath(new URL('../cli.ts', import.meta.url));
const BPF_DIR = fileURLToPath(new URL('../../bpf/', import.meta.url));
const BPF_BUILD_DIR = join(BPF_DIR, 'build');

/** The agent that holds the pods' decap duties runs in the topology's `node` namespace. */
export type AgentRole = BalancerRole | 'node';
export const AGENT_ROLES: readonly AgentRole[] = [...BALANCER_ROLES, 'node'];

/** Each agent serves /metrics, /healthz and /readyz here, inside its own namespace. */
export const AGENT_METRICS_PORT = 9464;

/** Prime and large enough that Maglev's shares follow the weights to a fraction of a percent. */
export const LAB_RING_SIZE = 65537;

const READY_TIMEOUT_MS = 30_000;
const PROGRAMMED_TIMEOUT_MS = 15_000;
/** The operator's first reconcile, the EndpointSlice controller and the agents, on a shared 2-core machine. */
const KUBERNETES_PROGRAMMED_TIMEOUT_MS = 60_000;
const POLL_MS = 100;

export type LabVipName = 'web4' | 'web6' | 'dns4' | 'dns6' | 'web4-gue' | 'web6-gue' | 'dns4-gue' | 'dns6-gue';

export type LabMode = 'standalone' | 'kubernetes';

export type LabOptions = {
  /** standalone (default): agents from YAML files; kubernetes: API server, operator, agents in Kubernetes mode. */
  readonly mode?: LabMode;
  /** How the balancers find the next hop: the router's MAC from config, or the kernel FIB. */
  readonly nextHop?: 'mac' | 'fib';
  /** Initial backend weights (default 1 each). */
  readonly weights?: Partial<Record<PodRole, number>>;
  /** Send a few flows on every path before returning (default true). */
  readonly warmUp?: boolean;
  /** Another build of the CLI to run the agents from (default: this checkout's src/cli.ts). */
  readonly agentCli?: string;
  /** How the balancers attach XDP (default native; generic runs after GRO, see src/agent/bpf/ethtool.ts). */
  readonly attachMode?: 'native' | 'generic';
};

/** What the lab writes into an agent's --config file (the schema's input: defaults may be left out). */
type AgentFile = z.input<typeof StandaloneFile>;

/** One metric sample of the text exposition format. */
export type MetricSample = { readonly name: string; readonly labels: Readonly<Record<string, string>>; readonly value: number };

/** A lab VIP: every pod is a backend of each. Kubernetes mode names them <LoadBalancerVip>/<protocol>/<port>. */
export type LabVip = VipRef & { readonly name: string; readonly encapsulation: Encapsulation };

/**
 * HTTP and UDP on both families, once per encapsulation: IPIP (IPIP / IP6IP6) on the
 * usual ports, GUE on the next ones, so both tunnel formats meet the decap program.
 */
function labVips(topology: Topology): LabVip[] {
  const vips: LabVip[] = [];
  for (const [suffix, encapsulation, http, udp] of [['', 'ipip', HTTP_PORT, UDP_PORT], ['-gue', 'gue', HTTP_PORT_GUE, UDP_PORT_GUE]] as const) {
    vips.push(
      { name: `web4${suffix}`, address: topology.vip4, port: http, protocol: 'TCP', encapsulation },
      { name: `web6${suffix}`, address: topology.vip6, port: http, protocol: 'TCP', encapsulation },
      { name: `dns4${suffix}`, address: topology.vip4, port: udp, protocol: 'UDP', encapsulation },
      { name: `dns6${suffix}`, address: topology.vip6, port: udp, protocol: 'UDP', encapsulation },
    );
  }
  return vips;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ── agents ────────────────────────────────────────────────────────────────────

/** One agent process: its config file, its log, and the process when it runs. */
class AgentProcess {
  readonly role: AgentRole;
  readonly ns: string;
  readonly configPath: string;
  readonly logPath: string;
  private readonly argv: readonly string[];
  private child: ChildProcess | undefined;
  private exited: Promise<unknown> | undefined;

  /** `extraArgs` follow `fulcrum agent --config <file>` (Kubernetes mode's flags). */
  constructor(role: AgentRole, ns: string, dir: string, cli: string, extraArgs: readonly string[] = []) {
    this.role = role;
    this.ns = ns;
    this.configPath = join(dir, `${role}.yaml`);
    this.logPath = join(dir, `${role}.log`);
    this.argv = [process.execPath, cli, 'agent', '--config', this.configPath, ...extraArgs];
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  /** Starts `fulcrum agent --config ...` inside the namespace (nsenter execs node, so the
   * process we hold is the agent itself and a signal reaches it directly). */
  start(): void {
    if (this.running) throw new FulcrumError('ERR_INTERNAL', `agent ${this.role} is already running`);
    // The log is appended to across restarts, so one file tells the whole story.
    const log = openSync(this.logPath, 'a');
    try {
      this.child = nsSpawn(this.ns, this.argv, { stdio: ['ignore', log, log] });
    } finally {
      closeSync(log);
    }
    this.exited = once(this.child, 'exit');
  }

  /** Sends `signal` and waits for the process to end. */
  async stop(signal: NodeJS.Signals): Promise<void> {
    if (!this.running) return;
    this.child!.kill(signal);
    await this.exited;
  }

  logTail(lines = 40): string {
    try {
      return readFileSync(this.logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }
}

/** Fetches a URL from inside a namespace with a one-shot node process (no curl needed). */
async function fetchInNetns(ns: string, url: string, timeoutMs = 2000): Promise<{ status: number; body: string }> {
  const script = `fetch(process.argv[1], { signal: AbortSignal.timeout(${timeoutMs}) })
    .then(async (r) => process.stdout.write(JSON.stringify({ status: r.status, body: await r.text() })))
    .catch((e) => process.stdout.write(JSON.stringify({ status: 0, body: String(e && e.cause || e) })));`;
  const out = await nsExec(ns, [process.execPath, '-e', script, url]);
  return JSON.parse(out) as { status: number; body: string };
}

/** Parses the Prometheus text exposition format (enough of it for the agent's metrics). */
export function parseMetrics(text: string): MetricSample[] {
  const samples: MetricSample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const lm of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[lm[1]!] = lm[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

/** Writes via a temporary file and a rename, so a watcher never reads half a file. */
function writeFileAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

// ── the lab ───────────────────────────────────────────────────────────────────

const liveLabs = new Set<Lab>();
let handlersInstalled = false;

/** Ctrl-C or a kill must not leave namespaces, processes or pins behind. */
function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.once(signal, () => {
      void Promise.allSettled([...liveLabs].map((lab) => lab.teardown())).finally(() => process.exit(code));
    });
  }
  process.once('exit', () => {
    for (const lab of liveLabs) lab.teardownSync();
  });
}

export class Lab {
  readonly topology: Topology;
  /** Agent config files and logs for this run; removed by teardown(). */
  readonly dir: string;
  readonly options: Required<Pick<LabOptions, 'nextHop' | 'mode' | 'attachMode'>>;
  /** Standalone: the lab's own eight VIPs. Kubernetes: the ports of every LoadBalancerVip the operator assigned. */
  vips: readonly LabVip[];
  /** Kubernetes mode: the API server, the operator and the lab's kubelet part. */
  cluster: LabCluster | undefined;
  private readonly agents = new Map<AgentRole, AgentProcess>();
  private readonly clientDrivers = new Map<ClientRole, ClientDriver>();
  private servers: PodServers | undefined;
  /** The backends of every VIP: pod → weight; a pod missing here is not a backend. */
  private readonly weights = new Map<PodRole, number>();
  private generation = 1;
  /** The BPF object directory each balancer agent loads from (upgradeBalancer changes it). */
  private readonly objectDirs: Record<BalancerRole, string> = { lb1: BPF_BUILD_DIR, lb2: BPF_BUILD_DIR };
  private upgrades = 0;
  private tearingDown: Promise<void> | undefined;

  private constructor(topology: Topology, dir: string, options: LabOptions) {
    this.topology = topology;
    this.dir = dir;
    this.options = { nextHop: options.nextHop ?? 'mac', mode: options.mode ?? 'standalone', attachMode: options.attachMode ?? 'native' };
    for (const pod of POD_ROLES) this.weights.set(pod, options.weights?.[pod] ?? 1);
    this.vips = this.options.mode === 'standalone' ? labVips(topology) : [];
  }

  /**
   * Builds the network, starts the pod servers, the client drivers and the three
   * agents, waits until every agent is ready and both balancers have programmed the
   * VIPs, and warms up every path (ARP/NDP) so the first measured flow is not slowed
   * by neighbour resolution. On any failure everything made so far is removed.
   */
  static async start(options: LabOptions = {}): Promise<Lab> {
    // Every lab agent pins below BPFFS_ROOT: make sure a BPF filesystem is there first
    // (the lab runs as root, as scripts/setup.sh does; mounting is what setup would do).
    ensureBpffs(BPFFS_ROOT, { mount: true });
    installExitHandlers();
    await sweepStaleLabs();
    startGuardian();
    const topology = await buildTopology();
    const dir = mkdtempSync(join(tmpdir(), `${RUN_DIR_PREFIX}${topology.prefix}-`));
    const lab = new Lab(topology, dir, options);
    liveLabs.add(lab);
    try {
      const kubernetes = lab.options.mode === 'kubernetes';
      const [servers, drivers] = await Promise.all([
        // Kubernetes mode: UDP servers bind to the VIPs, which the operator has yet to assign.
        kubernetes ? undefined : startPodServers(topology),
        Promise.all(CLIENT_ROLES.map((role) => ClientDriver.start(topology.clients[role]))),
      ]);
      lab.servers = servers;
      for (const driver of drivers) lab.clientDrivers.set(driver.host.role as ClientRole, driver);
      const cli = options.agentCli ?? CLI;
      if (lab.options.mode === 'kubernetes') {
        lab.cluster = await LabCluster.start({ topology, dir, cli: CLI });
        for (const role of AGENT_ROLES) {
          const ns = role === 'node' ? topology.backendNodeNs : topology.balancers[role].ns;
          lab.agents.set(role, new AgentProcess(role, ns, dir, cli, [
            '--kubernetes', '--kubeconfig', lab.cluster.agentKubeconfigPath, '--node-name', role,
            '--pod-netns', `dir=${lab.cluster.netnsDir}`,
          ]));
        }
        lab.writeConfigs();
        // An agent in Kubernetes mode is ready once its BalancerNode is programmed, which
        // needs the operator: start them all, then the operator, then apply examples/ as
        // a user would, then run the app's pods in the namespace examples/ made.
        await Promise.all(AGENT_ROLES.map((role) => lab.startAgent(role, 'serving')));
        await lab.cluster.startOperator();
        await lab.cluster.applyExamples();
        await lab.cluster.runPods(lab.weights);
        await lab.waitVipsAssigned();
        lab.servers = await startPodServers(topology, [...new Set(lab.vips.map((v) => v.address))]);
      } else {
        lab.agents.set('node', new AgentProcess('node', topology.backendNodeNs, dir, cli));
        for (const role of BALANCER_ROLES) lab.agents.set(role, new AgentProcess(role, topology.balancers[role].ns, dir, cli));
        lab.writeConfigs();
        // All at once: no traffic flows before warm-up, which waits for all of them.
        await Promise.all(AGENT_ROLES.map((role) => lab.startAgent(role)));
      }
      await lab.waitProgrammed();
      if (options.warmUp !== false) await lab.warmUp();
      return lab;
    } catch (err) {
      const logs = [...lab.agents.values()].map((a) => `--- agent ${a.role} (${a.logPath}):\n${a.logTail(20)}`).join('\n') +
        (lab.cluster !== undefined ? `\n--- operator (${lab.cluster.operatorLogPath}):\n${lab.cluster.operatorLog(20)}` : '');
      await lab.teardown();
      if (err instanceof Error) err.message += `\n${logs}`;
      throw err;
    }
  }

  client(role: ClientRole = 'client1'): ClientDriver {
    const driver = this.clientDrivers.get(role);
    if (!driver) throw new FulcrumError('ERR_INTERNAL', `no client ${role}`);
    return driver;
  }

  vip(name: string): LabVip {
    const vip = this.vips.find((v) => v.name === name);
    if (vip === undefined) throw new FulcrumError('ERR_INTERNAL', `no lab VIP ${name} (have ${this.vips.map((v) => v.name).join(', ')})`);
    return vip;
  }

  /** The pod a backend address belongs to (either family). */
  podOf(address: string): PodRole | undefined {
    return POD_ROLES.find((pod) => this.topology.pods[pod].local.ipv4 === address || this.topology.pods[pod].local.ipv6 === address);
  }

  pinRoot(role: AgentRole): string {
    return join(this.topology.pinRoot, role);
  }

  // ── desired state ─────────────────────────────────────────────────────────────

  /** The pods that are backends now, with their weights. */
  backends(): ReadonlyMap<PodRole, number> {
    return new Map(this.weights);
  }

  /**
   * Sets the weights of some pods (0 = drain: no new flows) and waits until both
   * balancers run it. Kubernetes mode: the pods' fulcrum.dev/weight annotation.
   */
  async setWeights(weights: Partial<Record<PodRole, number>>): Promise<void> {
    for (const [pod, weight] of Object.entries(weights) as [PodRole, number][]) {
      this.weights.set(pod, weight);
      await this.cluster?.setPodWeight(pod, weight === 1 ? undefined : weight);
    }
    await this.reprogram();
  }

  /** Takes a pod out of every VIP and waits until both balancers run it. Kubernetes
   * mode: the pod leaves its Service's EndpointSlices. */
  async removeBackend(pod: PodRole): Promise<void> {
    this.weights.delete(pod);
    await this.cluster?.setEndpoint(pod, 'gone');
    await this.reprogram();
  }

  /** Puts a pod (back) into every VIP. */
  async addBackend(pod: PodRole, weight = 1): Promise<void> {
    this.weights.set(pod, weight);
    // Ready first: a pod that was terminating comes back as a new Pod, without the old one's annotations.
    await this.cluster?.setEndpoint(pod, 'ready');
    await this.cluster?.setPodWeight(pod, weight === 1 ? undefined : weight);
    await this.reprogram();
  }

  /**
   * Kubernetes mode: what the pod's EndpointSlice entries say — ready (weight 1 again),
   * terminating but serving (weight 0: draining), or gone (out of every ring) — and
   * waits until both balancers run it.
   */
  async setEndpoint(pod: PodRole, state: 'ready' | 'terminating' | 'gone'): Promise<void> {
    if (this.cluster === undefined) throw new FulcrumError('ERR_INTERNAL', 'endpoints exist only in a Kubernetes-mode lab');
    if (state === 'gone') this.weights.delete(pod);
    else this.weights.set(pod, state === 'ready' ? 1 : 0);
    await this.cluster.setEndpoint(pod, state);
    if (state === 'ready') await this.cluster.setPodWeight(pod, undefined);
    await this.reprogram();
  }

  private async reprogram(): Promise<void> {
    this.generation++;
    this.writeConfigs();
    await this.waitProgrammed();
  }

  /**
   * Kubernetes mode: waits until the operator has given every LoadBalancerVip of
   * examples/ an address, and takes the lab's VIPs from them (one per port).
   */
  private async waitVipsAssigned(timeoutMs = 60_000): Promise<void> {
    const cluster = this.cluster!;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const lbvips = await cluster.loadBalancerVips();
      // The API server has validated and defaulted these specs against the CRD.
      type Spec = { ports?: { port: number; protocol?: Protocol }[]; encapsulation?: Encapsulation };
      const assigned = lbvips.filter((v) => v.status?.address !== undefined && ((v.spec as Spec).ports?.length ?? 0) > 0);
      if (lbvips.length > 0 && assigned.length === lbvips.length) {
        this.vips = assigned.flatMap((v) => {
          const spec = v.spec as Spec;
          return spec.ports!.map((p) => ({
            name: `${v.metadata.name}/${p.protocol ?? 'TCP'}/${p.port}`,
            address: v.status!.address!,
            port: p.port,
            protocol: p.protocol ?? 'TCP',
            encapsulation: spec.encapsulation ?? 'ipip',
          }));
        });
        return;
      }
      if (!cluster.operatorRunning()) throw new FulcrumError('ERR_INTERNAL', `the operator exited:\n${cluster.operatorLog()}`);
      if (Date.now() > deadline) {
        throw new FulcrumError('ERR_INTERNAL', `the operator has not assigned addresses to ${lbvips.filter((v) => !assigned.includes(v)).map((v) => v.metadata.name).join(', ') || 'any LoadBalancerVip'} (is examples/ applied?):\n${cluster.operatorLog()}`);
      }
      await sleep(POLL_MS);
    }
  }

  /**
   * Waits until an agent reports the lab's current generation as programmed (its
   * /readyz `reconciled` check names the generation of the last good reconcile).
   */
  private async waitGeneration(role: AgentRole, deadline: number): Promise<void> {
    const wanted = `generation ${this.generation}`;
    let last = '';
    for (;;) {
      const agent = this.agent(role);
      if (!agent.running) throw new FulcrumError('ERR_INTERNAL', `agent ${role} is not running:\n${agent.logTail()}`);
      const r = await this.agentHttp(role, '/readyz');
      let checks: { name: string; ok: boolean; detail?: string }[] = [];
      try {
        checks = (JSON.parse(r.body) as { checks?: typeof checks }).checks ?? [];
      } catch {
        checks = [];
      }
      const reconciled = checks.find((c) => c.name === 'reconciled');
      if (r.status === 200 && reconciled?.detail === wanted) return;
      last = `${r.status} ${checks.filter((c) => !c.ok || c.name === 'reconciled').map((c) => `${c.name}: ${c.detail ?? c.ok}`).join('; ') || r.body.slice(0, 200)}`;
      if (Date.now() > deadline) {
        throw new FulcrumError('ERR_INTERNAL', `agent ${role} has not programmed ${wanted} (last /readyz: ${last}):\n${agent.logTail()}`);
      }
      await sleep(POLL_MS);
    }
  }

  private backendList(family: 4 | 6): { address: string; weight: number }[] {
    return [...this.weights].map(([pod, weight]) => {
      const host = this.topology.pods[pod];
      return { address: family === 4 ? host.local.ipv4 : host.local.ipv6, weight };
    });
  }

  private balancerFile(role: BalancerRole): AgentFile {
    const host = this.topology.balancers[role];
    return {
      agent: {
        nodeName: role,
        pinRoot: this.pinRoot(role),
        bpfObjectDir: this.objectDirs[role],
        balancer: {
          interfaces: [{ name: host.local.iface, attachMode: this.options.attachMode }],
          nextHop: this.options.nextHop === 'mac' ? { mac: host.router.mac } : { fib: true },
          ringSize: LAB_RING_SIZE,
          maxVips: 16,
          maxBackends: 64,
          connTableSize: 65536,
          // The fabric links are larger than the clients' (topology.ts): a full-size
          // client packet plus the outer header fits.
          mtu: 1600,
          udpTimeoutSeconds: 30,
          tunnelTtl: 64,
          tunnelSource4: '172.16.0.0',
          tunnelSource6: 'fd00:7::',
          nodeAddress4: host.local.ipv4,
          nodeAddress6: host.local.ipv6,
          guePort: 6080,
        },
        metrics: { host: '127.0.0.1', port: AGENT_METRICS_PORT },
      },
      state: {
        generation: this.generation,
        vips: this.vips.map((vip) => ({
          name: vip.name,
          address: vip.address,
          port: vip.port,
          protocol: vip.protocol,
          encapsulation: vip.encapsulation,
          backends: this.backendList(vip.address.includes(':') ? 6 : 4),
        })),
      },
    };
  }

  private nodeFile(): AgentFile {
    return {
      agent: {
        nodeName: 'node',
        pinRoot: this.pinRoot('node'),
        bpfObjectDir: BPF_BUILD_DIR,
        metrics: { host: '127.0.0.1', port: AGENT_METRICS_PORT },
      },
      state: {
        generation: this.generation,
        // Every pod keeps its decap duty even while it is not a backend: a drained or
        // removed pod must still finish the flows a balancer's table sends it.
        decap: POD_ROLES.map((pod) => {
          const host = this.topology.pods[pod];
          return {
            pod: `lab/${pod}`,
            netns: host.nsPath,
            interface: host.local.iface,
            addresses: [host.local.ipv4, host.local.ipv6],
            vips: [this.topology.vip4, this.topology.vip6],
          };
        }),
      },
    };
  }

  /** Standalone: settings and desired state. Kubernetes mode: the settings alone (the
   * desired state is the node's BalancerNode). */
  private writeConfigs(): void {
    const files: [AgentRole, AgentFile][] = [['node', this.nodeFile()], ...BALANCER_ROLES.map((role) => [role, this.balancerFile(role)] as [AgentRole, AgentFile])];
    for (const [role, file] of files) {
      writeFileAtomic(this.agent(role).configPath, stringify(this.options.mode === 'kubernetes' ? file.agent : file));
    }
  }

  /**
   * Waits until every agent reports the current generation programmed, then checks
   * the balancers' pinned maps agree: each VIP's ring holds exactly the pods of
   * weight > 0, in proportion to their weights (within 1 % of the ring).
   */
  async waitProgrammed(timeoutMs?: number): Promise<void> {
    const deadline = Date.now() + (timeoutMs ?? (this.options.mode === 'kubernetes' ? KUBERNETES_PROGRAMMED_TIMEOUT_MS : PROGRAMMED_TIMEOUT_MS));
    if (this.options.mode === 'kubernetes') {
      await this.waitClusterProgrammed(deadline);
      return;
    }
    await Promise.all(AGENT_ROLES.map((role) => this.waitGeneration(role, deadline)));
    const problems = this.ringProblems();
    if (problems.length > 0) throw new FulcrumError('ERR_INTERNAL', `programmed, but the maps disagree:\n  ${problems.join('\n  ')}`);
  }

  /**
   * Kubernetes mode: the operator writes BalancerNodes when it gets to them, so "the
   * change is programmed" is a state to wait for, not an event: every agent ready, every
   * BalancerNode's status at its spec's generation and Programmed, every
   * LoadBalancerVip Programmed on both balancer nodes, and the rings in the pinned maps
   * as the weights say.
   */
  private async waitClusterProgrammed(deadline: number): Promise<void> {
    const cluster = this.cluster!;
    let problems: string[] = [];
    for (;;) {
      problems = [];
      for (const role of AGENT_ROLES) {
        const agent = this.agent(role);
        if (!agent.running) throw new FulcrumError('ERR_INTERNAL', `agent ${role} is not running:\n${agent.logTail()}`);
      }
      if (!cluster.operatorRunning()) throw new FulcrumError('ERR_INTERNAL', `the operator exited:\n${cluster.operatorLog()}`);
      const nodes = await cluster.balancerNodes();
      const missing = AGENT_ROLES.filter((role) => !nodes.some((n) => n.metadata.name === role));
      if (missing.length > 0) problems.push(`no BalancerNode yet for ${missing.join(', ')}`);
      for (const node of nodes) {
        const programmed = node.status?.conditions?.find((c) => c.type === 'Programmed');
        if (node.status?.observedGeneration !== node.metadata.generation || programmed?.status !== 'True') {
          problems.push(`BalancerNode ${node.metadata.name}: generation ${node.metadata.generation}, status at ${node.status?.observedGeneration ?? 'none'}, Programmed ${programmed?.status ?? '?'} ${programmed?.reason ?? ''} ${programmed?.message ?? ''}`);
        }
      }
      for (const vip of await cluster.loadBalancerVips()) {
        const programmed = vip.status?.conditions?.find((c) => c.type === 'Programmed');
        if (programmed?.status !== 'True' || vip.status?.balancerNodes?.programmed !== BALANCER_ROLES.length) {
          problems.push(`LoadBalancerVip ${vip.metadata.name}: Programmed ${programmed?.status ?? '?'} (${programmed?.reason ?? ''}: ${programmed?.message ?? ''}), on ${vip.status?.balancerNodes?.programmed ?? 0} nodes`);
        }
      }
      if (problems.length === 0) problems = this.ringProblems();
      if (problems.length === 0) return;
      if (Date.now() > deadline) {
        throw new FulcrumError('ERR_INTERNAL', `the cluster has not programmed the lab's state:\n  ${problems.join('\n  ')}\n--- operator:\n${cluster.operatorLog(15)}`);
      }
      await sleep(POLL_MS);
    }
  }

  /** Each VIP's ring on each balancer holds exactly the pods of weight > 0, in proportion
   * to their weights (within 1 % of the ring). */
  private ringProblems(): string[] {
    const problems: string[] = [];
    for (const role of BALANCER_ROLES) {
      for (const vip of this.vips) {
        const shares = ringShares(this.pinRoot(role), LAB_RING_SIZE, vip);
        const wanted = this.backendList(vip.address.includes(':') ? 6 : 4).filter((b) => b.weight > 0);
        const weightSum = wanted.reduce((sum, b) => sum + b.weight, 0);
        const have = [...shares.keys()].filter((a) => a !== '').sort();
        if (have.join() !== wanted.map((b) => b.address).sort().join()) {
          problems.push(`${role} ${vip.name}: the ring has [${have.join(' ')}], want [${wanted.map((b) => b.address).join(' ')}]`);
          continue;
        }
        for (const b of wanted) {
          const share = (shares.get(b.address) ?? 0) / LAB_RING_SIZE;
          if (Math.abs(share - b.weight / weightSum) > 0.01) {
            problems.push(`${role} ${vip.name}: ${b.address} owns ${(share * 100).toFixed(2)} % of the ring, weight says ${((100 * b.weight) / weightSum).toFixed(2)} %`);
          }
        }
      }
    }
    return problems;
  }

  /** A few flows from every client to every VIP: resolves every neighbour on the way,
   * and proves each VIP answers before a test measures anything. */
  private async warmUp(): Promise<void> {
    await Promise.all(CLIENT_ROLES.map(async (role) => {
      const driver = this.client(role);
      for (const vip of this.vips) {
        const options = { count: 4, port: vip.port };
        const results = vip.protocol === 'TCP' ? await driver.http(vip.address, options) : await driver.udp(vip.address, options);
        const failed = failedFlows(results);
        if (failed.length > 0) {
          throw new FulcrumError('ERR_INTERNAL', `warm-up from ${role} to VIP ${vip.name}: ${failed.length} of ${results.length} flows failed (${failed.map((f) => f.error).join(', ')})`);
        }
      }
    }));
  }

  // ── agents ────────────────────────────────────────────────────────────────────

  private agent(role: AgentRole): AgentProcess {
    const agent = this.agents.get(role);
    if (!agent) throw new FulcrumError('ERR_INTERNAL', `no agent ${role}`);
    return agent;
  }

  agentPid(role: AgentRole): number | undefined {
    return this.agent(role).pid;
  }

  agentLog(role: AgentRole, lines?: number): string {
    return this.agent(role).logTail(lines);
  }

  /** Starts an agent and waits for its /readyz (or, `serving`, its /healthz: an agent in
   * Kubernetes mode is ready only once it has programmed a BalancerNode). */
  async startAgent(role: AgentRole, until: 'ready' | 'serving' = 'ready'): Promise<void> {
    const agent = this.agent(role);
    agent.start();
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let last = '';
    for (;;) {
      if (!agent.running) throw new FulcrumError('ERR_INTERNAL', `agent ${role} exited during start-up:\n${agent.logTail()}`);
      const r = await this.agentHttp(role, until === 'ready' ? '/readyz' : '/healthz');
      if (r.status === 200) return;
      last = `${r.status} ${r.body.trim().slice(0, 200)}`;
      if (Date.now() > deadline) throw new FulcrumError('ERR_INTERNAL', `agent ${role} not ready after ${READY_TIMEOUT_MS} ms (last /readyz: ${last}):\n${agent.logTail()}`);
      await sleep(POLL_MS * 2);
    }
  }

  /** Stops an agent (SIGTERM: the orderly stop, or SIGKILL: a crash) and starts it again. */
  async restartAgent(role: AgentRole, signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    await this.agent(role).stop(signal);
    await this.startAgent(role);
  }

  /** SIGKILL: the agent gets no chance to clean up (a crash, an OOM kill). */
  async killAgent(role: AgentRole): Promise<void> {
    await this.agent(role).stop('SIGKILL');
  }

  /** SIGTERM: the agent's orderly stop (which leaves the data plane running). */
  async stopAgent(role: AgentRole): Promise<void> {
    await this.agent(role).stop('SIGTERM');
  }

  async agentHttp(role: AgentRole, path: string): Promise<{ status: number; body: string }> {
    return fetchInNetns(this.agent(role).ns, `http://127.0.0.1:${AGENT_METRICS_PORT}${path}`);
  }

  async metrics(role: AgentRole): Promise<MetricSample[]> {
    const r = await this.agentHttp(role, '/metrics');
    if (r.status !== 200) throw new FulcrumError('ERR_INTERNAL', `agent ${role} /metrics: ${r.status} ${r.body.slice(0, 200)}`);
    return parseMetrics(r.body);
  }

  /** The sum of a metric's samples whose labels include `labels`. */
  async metric(role: AgentRole, name: string, labels: Readonly<Record<string, string>> = {}): Promise<number> {
    return (await this.metrics(role))
      .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
      .reduce((sum, s) => sum + s.value, 0);
  }

  /** Ring slots per pod for a VIP on one balancer (read from its pinned maps). */
  ringShares(role: BalancerRole, vip: string): Partial<Record<PodRole, number>> {
    const out: Partial<Record<PodRole, number>> = {};
    for (const [address, slots] of ringShares(this.pinRoot(role), LAB_RING_SIZE, this.vip(vip))) {
      const pod = this.podOf(address);
      if (pod) out[pod] = slots;
    }
    return out;
  }

  /** The flows one balancer's connection table remembers (read from its pinned maps). */
  connTable(role: BalancerRole): (ConnEntry & { pod: PodRole | undefined })[] {
    return connTable(this.pinRoot(role)).map((e) => ({ ...e, pod: this.podOf(e.backend) }));
  }

  /** The connection-table entry of one client flow to a VIP, if the balancer has one. */
  connEntry(role: BalancerRole, flow: { client: string; sourcePort: number; port: number; protocol: Protocol }): (ConnEntry & { pod: PodRole | undefined }) | undefined {
    const proto = flow.protocol === 'TCP' ? 6 : 17;
    return this.connTable(role).find((e) => e.client === flow.client && e.sourcePort === flow.sourcePort && e.port === flow.port && e.protocol === proto);
  }

  /** The XDP program a balancer's pinned link runs now (<pinRoot>/links/eth0). */
  attachedProgramId(role: BalancerRole): number {
    return linkInfo(join(this.pinRoot(role), 'links', this.topology.balancers[role].local.iface)).progId;
  }

  /** Interface counters of a host's eth0 (bytes and packets each way). */
  linkStats(role: BalancerRole | PodRole | ClientRole): Promise<{ rxPackets: number; rxBytes: number; txPackets: number; txBytes: number }> {
    const host = this.topology.host(role);
    return linkStats(host.ns, host.local.iface);
  }

  /** Routes the VIPs via these balancer nodes (both: ECMP). */
  routeVipsVia(balancers: readonly BalancerRole[]): Promise<void> {
    return this.topology.routeVipsVia(balancers);
  }

  // ── upgrades ──────────────────────────────────────────────────────────────────

  /**
   * Rebuilds the BPF objects from bpf/ into a fresh directory of this run (a real
   * compile with the project's Makefile: new files, loaded as a new program) and
   * returns the directory.
   */
  async buildBpfObjects(): Promise<string> {
    const out = join(this.dir, `bpf-build-${++this.upgrades}`);
    await sh('make', ['-s', '-C', BPF_DIR, `BUILD=${out}`]);
    return out;
  }

  /** The object directory a balancer agent is configured with now. */
  balancerObjectDir(role: BalancerRole): string {
    return this.objectDirs[role];
  }

  /**
   * The agent's upgrade path (docs/agent.md, "Restarts and upgrades"): point the
   * balancer's configuration at another balancer.bpf.o and restart the agent, which
   * loads it with the pinned maps and swaps it into the pinned link atomically.
   * Returns the program ids the link ran before and after.
   */
  async upgradeBalancer(role: BalancerRole, objectDir: string): Promise<{ before: number; after: number }> {
    const before = this.attachedProgramId(role);
    this.objectDirs[role] = objectDir;
    this.generation++;
    this.writeConfigs();
    await this.restartAgent(role, 'SIGTERM');
    await this.waitProgrammed();
    return { before, after: this.attachedProgramId(role) };
  }

  // ── teardown ──────────────────────────────────────────────────────────────────

  /**
   * Stops everything and removes every namespace, pin and file of this run.
   * Idempotent: a second call (a signal during a test's own teardown) waits for the first.
   */
  teardown(): Promise<void> {
    this.tearingDown ??= this.teardownOnce();
    return this.tearingDown;
  }

  private async teardownOnce(): Promise<void> {
    try {
      await Promise.allSettled([...this.clientDrivers.values()].map((c) => c.close()));
      await this.servers?.stop().catch(() => undefined);
      // Agents get SIGKILL: their orderly stop keeps the data plane pinned on purpose,
      // and the namespaces and pins go next anyway.
      await Promise.allSettled([...this.agents.values()].map((a) => a.stop('SIGKILL')));
      await this.cluster?.stop().catch(() => undefined);
    } finally {
      await this.topology.cleanup();
      rmSync(this.dir, { recursive: true, force: true });
      liveLabs.delete(this);
    }
  }

  /** What teardown() removes, synchronously, for a process 'exit' handler: also when an
   * asynchronous teardown was cut short by the exit. */
  teardownSync(): void {
    this.cluster?.stopSync();
    this.topology.cleanupSync();
    rmSync(this.dir, { recursive: true, force: true });
    liveLabs.delete(this);
  }
}
