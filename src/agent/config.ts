// The agent's own configuration: what is fixed per node (interfaces, MTU, tunnel
// addresses, table sizes). It comes from flags and a YAML file (standalone mode,
// Helm values in Kubernetes mode) and is validated here, at start-up, so a bad
// value stops the agent with a clear message before it touches the data plane.
import { z } from 'zod';
import { FulcrumError } from '../shared/errors.ts';
import { IpAddress, NodeDesiredState } from '../shared/desired-state.ts';

const isPrime = (n: number): boolean => {
  if (n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
};

export const AttachMode = z.enum(['native', 'generic', 'auto']);
export type AttachMode = z.infer<typeof AttachMode>;

export const BalancerInterface = z.strictObject({
  name: z.string().min(1).max(15),
  /** native: driver XDP (fails if unsupported); generic: skb mode; auto: native, else generic. */
  attachMode: AttachMode.default('auto'),
});

export const NextHop = z.union([
  z.strictObject({ mac: z.mac() }),
  /** Ask the kernel FIB per packet (routes and neighbours of the node). */
  z.strictObject({ fib: z.literal(true) }),
]);

export const BalancerSettings = z
  .strictObject({
    interfaces: z.array(BalancerInterface).min(1),
    nextHop: NextHop,
    /** Maglev slots per VIP: a prime. Larger rings spread weights more finely. */
    ringSize: z.int().min(7).max(1_000_003).refine(isPrime, { message: 'must be a prime' }).default(65537),
    maxVips: z.int().min(1).max(4096).default(512),
    maxBackends: z.int().min(2).max(1 << 20).default(4096),
    /** Connection-table entries per family (LRU; split across CPUs). */
    connTableSize: z.int().min(1024).max(1 << 26).default(1 << 20),
    /** Egress MTU the encapsulated packet must fit; bigger packets get ICMP too-big. */
    mtu: z.int().min(1280 + 48).max(65535).default(1500),
    udpTimeoutSeconds: z.number().positive().max(86400).default(30),
    tunnelTtl: z.int().min(1).max(255).default(64),
    /** IPIP outer source: the upper 16 bits are kept, the lower 16 come from the flow hash. */
    tunnelSource4: IpAddress.default('172.16.0.0'),
    /** IP6IP6 outer source: the first 96 bits are kept, the last 32 come from the flow hash. */
    tunnelSource6: IpAddress.default('100::'),
    /** GUE outer sources: the node's own addresses (entropy is in the UDP source port). */
    nodeAddress4: IpAddress.optional(),
    nodeAddress6: IpAddress.optional(),
    guePort: z.int().min(1).max(65535).default(6080),
  })
  .superRefine((s, ctx) => {
    if (s.tunnelSource4.includes(':')) ctx.addIssue({ code: 'custom', path: ['tunnelSource4'], message: 'must be IPv4' });
    if (!s.tunnelSource6.includes(':')) ctx.addIssue({ code: 'custom', path: ['tunnelSource6'], message: 'must be IPv6' });
    if (s.nodeAddress4?.includes(':')) ctx.addIssue({ code: 'custom', path: ['nodeAddress4'], message: 'must be IPv4' });
    if (s.nodeAddress6 !== undefined && !s.nodeAddress6.includes(':')) ctx.addIssue({ code: 'custom', path: ['nodeAddress6'], message: 'must be IPv6' });
    if (s.maxVips * s.ringSize > 0xffffffff) ctx.addIssue({ code: 'custom', path: ['maxVips'], message: 'maxVips × ringSize exceeds 2^32 ring slots' });
  });
export type BalancerSettings = z.infer<typeof BalancerSettings>;

export const AgentConfig = z.strictObject({
  nodeName: z.string().min(1).max(253),
  /** Where maps, programs and links are pinned; a restarted agent adopts what it finds. */
  pinRoot: z.string().startsWith('/sys/fs/bpf/').default('/sys/fs/bpf/fulcrum'),
  /**
   * Mount the BPF filesystem at /sys/fs/bpf at start when it is not mounted (as Cilium's
   * agent does); false: stop with ERR_BPFFS instead. The chart mounts it on the node from
   * an init container and sets this false: a mount made inside the agent's container
   * would be private to that container, and the pins would not outlive it.
   */
  mountBpffs: z.boolean().default(true),
  /** Directory holding balancer.bpf.o and decap.bpf.o. */
  bpfObjectDir: z.string().min(1).optional(),
  /** Present on balancer nodes; absent on nodes that only host backends. */
  balancer: BalancerSettings.optional(),
  /**
   * The GUE port backend pods on this node accept (the balancers' balancer.guePort).
   * Default: this node's balancer.guePort, else 6080. Set it on backend-only nodes when
   * the balancers use another port; with a balancer section it must equal its guePort.
   */
  guePort: z.int().min(1).max(65535).optional(),
  /**
   * The procfs sys directory through which backend pods' DSR sysctls are written (from
   * a process inside the pod's namespace). In a container the runtime mounts /proc/sys
   * read-only: mount the host's /proc elsewhere (the chart: /host/proc) and point this
   * at its sys directory, instead of running the agent privileged.
   */
  sysctlRoot: z.string().startsWith('/').regex(/^[^\0]*[^/]$/, { message: 'an absolute path without a trailing /' }).default('/proc/sys'),
  metrics: z
    .strictObject({ host: z.string().default('0.0.0.0'), port: z.int().min(0).max(65535).default(9464) })
    .default({ host: '0.0.0.0', port: 9464 }),
});
export type AgentConfig = z.infer<typeof AgentConfig>;

/** BalancerSettings.guePort's default, and the decap port of a node that says nothing. */
export const DEFAULT_GUE_PORT = 6080;

/**
 * The GUE port this node's backend pods decapsulate: guePort, else balancer.guePort,
 * else the default. ERR_CONFIG when the two are set and differ (a node's balancer
 * would send to one port while its pods accept another).
 */
export function decapGuePort(config: Pick<AgentConfig, 'guePort' | 'balancer'>): number {
  if (config.guePort !== undefined && config.balancer !== undefined && config.balancer.guePort !== config.guePort) {
    throw new FulcrumError('ERR_CONFIG',
      `guePort ${config.guePort} differs from balancer.guePort ${config.balancer.guePort}: the balancers send GUE to one port and the pods accept one; set both alike`,
      { details: { path: 'guePort' } });
  }
  return config.guePort ?? config.balancer?.guePort ?? DEFAULT_GUE_PORT;
}

/** Standalone mode: the agent's configuration and the node's desired state in one file. */
export const StandaloneFile = z.strictObject({
  agent: AgentConfig,
  state: NodeDesiredState,
});
export type StandaloneFile = z.infer<typeof StandaloneFile>;
