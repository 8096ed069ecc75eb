// The lab's network: two clients, a router, two balancer nodes and three backend
// pods, each in its own network namespace, plus an empty namespace for the agent
// that holds the pods' decap duties. Every host hangs off the router by one veth pair
// created directly inside the two namespaces, so nothing is ever connected to the
// host namespace (see netns.ts).
//
//   client1 ─┐                 ┌─ lb1   (XDP balancer on eth0)
//   client2 ─┤                 ├─ lb2
//            └──── router ─────┼─ pod1  (decap at tc ingress, VIP on lo)
//                              ├─ pod2
//                              └─ pod3
//
// The router announces the VIP as an ECMP route via both balancer nodes (hashing on
// L4, so flows spread); the balancer encapsulates towards a pod through the router;
// the pod answers the client directly from the VIP (direct server return), again
// through the router, which therefore must not drop "martian" sources (rp_filter 0).
//
// Addresses come from private and documentation ranges and live only inside the lab
// namespaces:
//   link i of a role  10.<role>.<i>.0/24 and fd00:<role>:<i>::/64; the router is .1 / ::1
//                     and the host .2 / ::2 (role: 100 clients, 110 balancers, 120 pods)
//   VIPs              203.0.113.0/24 (TEST-NET-3) and 2001:db8:100::/64 (documentation),
//                     routed to the balancers; the standalone lab uses .10 and ::10
import { fileURLToPath } from 'node:url';
import { inNetns } from '../agent/bpf/attach.ts';
import { BpfObject } from '../agent/bpf/object.ts';
import { FulcrumError } from '../shared/errors.ts';
import { Registry, linkMac, netnsPath, nsExec, nsSysctl, sweepStale } from './netns.ts';

export type ClientRole = 'client1' | 'client2';
export type BalancerRole = 'lb1' | 'lb2';
export type PodRole = 'pod1' | 'pod2' | 'pod3';
export type HostRole = ClientRole | BalancerRole | PodRole;

export const CLIENT_ROLES: readonly ClientRole[] = ['client1', 'client2'];
export const BALANCER_ROLES: readonly BalancerRole[] = ['lb1', 'lb2'];
export const POD_ROLES: readonly PodRole[] = ['pod1', 'pod2', 'pod3'];

export const VIP4 = '203.0.113.10';
export const VIP6 = '2001:db8:100::10';
/** The router sends all of these to the balancers: VIPs the lab or a VipPool picks from them. */
export const VIP_PREFIX4 = '203.0.113.0/24';
export const VIP_PREFIX6 = '2001:db8:100::/64';

/** The one interface every host has towards the router. */
export const HOST_IFACE = 'eth0';

/**
 * Link MTUs. The client links keep the Internet's 1500; the links that carry tunnelled
 * packets (router ↔ balancers, router ↔ pods) are larger so a full-size client packet
 * still fits once a 20-byte (IPIP) or 40-byte (IP6IP6) outer header is added, as a
 * production fabric would be configured. Native XDP on veth caps the MTU at about a
 * page, so this stays well below that.
 */
export const CLIENT_MTU = 1500;
export const FABRIC_MTU = 1600;

/** One side of a host's link to the router. */
export type LinkEnd = {
  readonly ns: string;
  readonly iface: string;
  readonly mac: string;
  readonly ipv4: string;
  readonly ipv6: string;
};

export type Host = {
  readonly role: HostRole;
  /** The namespace name (under /run/netns). */
  readonly ns: string;
  readonly nsPath: string;
  /** The host's own end (eth0). */
  readonly local: LinkEnd;
  /** The router's end of the same link: the host's gateway and, for a balancer, its next hop. */
  readonly router: LinkEnd;
};

export type Topology = {
  /** Unique per run: prefixes every namespace and the BPF pin directory. */
  readonly prefix: string;
  readonly routerNs: string;
  /** An unconnected namespace for the agent that applies the pods' decap duties. */
  readonly backendNodeNs: string;
  readonly clients: Readonly<Record<ClientRole, Host>>;
  readonly balancers: Readonly<Record<BalancerRole, Host>>;
  readonly pods: Readonly<Record<PodRole, Host>>;
  readonly vip4: string;
  readonly vip6: string;
  /** This run's directory on the BPF filesystem; removed by cleanup(). */
  readonly pinRoot: string;
  host(role: HostRole): Host;
  /**
   * Route the VIPs via these balancer nodes: both = ECMP (the default), one = every
   * flow through that node (to compare what each node does with the same 5-tuple).
   */
  routeVipsVia(balancers: readonly BalancerRole[]): Promise<void>;
  /** Forgets every neighbour (ARP / NDP) a host has learned, as after a reboot. */
  flushNeighbours(role: HostRole): Promise<void>;
  /** Removes every namespace (and the processes in it) and the pin directory. */
  cleanup(): Promise<void>;
  /** The same, synchronously, for a process 'exit' handler. */
  cleanupSync(): void;
};

const ROLE_NET: Record<'client' | 'lb' | 'pod', number> = { client: 100, lb: 110, pod: 120 };

function linkAddresses(kind: keyof typeof ROLE_NET, index: number): { router4: string; host4: string; router6: string; host6: string } {
  const net = ROLE_NET[kind];
  return {
    router4: `10.${net}.${index}.1`,
    host4: `10.${net}.${index}.2`,
    router6: `fd00:${net}:${index}::1`,
    host6: `fd00:${net}:${index}::2`,
  };
}

/** The router's interface towards a host is named after the host's role ("lb1", "pod2"). */
function routerIface(role: HostRole): string {
  return role;
}

let labCount = 0;

/** A run tag of letters only, so the pid in a lab name stays unambiguous (netns.ts). */
function nextTag(): string {
  let n = labCount++;
  let tag = '';
  do {
    tag = String.fromCharCode(97 + (n % 26)) + tag;
    n = Math.floor(n / 26) - 1;
  } while (n >= 0);
  return tag;
}

/**
 * Builds the lab network. On any failure everything made so far is removed before the
 * error is rethrown, so a half-built lab never outlives the call.
 */
export async function buildTopology(): Promise<Topology> {
  await sweepStale();
  const registry = new Registry(nextTag());
  try {
    return await build(registry);
  } catch (err) {
    await registry.cleanup();
    throw err;
  }
}

async function build(registry: Registry): Promise<Topology> {
  const routerNs = await registry.addNamespace('router');
  await nsSysctl(routerNs, {
    'net.ipv4.ip_forward': 1,
    'net.ipv6.conf.all.forwarding': 1,
    // Replies come from the VIP through the pods' links and tunnelled packets carry
    // outer sources (172.16.x.y) the router has no route back to: neither is a spoof.
    'net.ipv4.conf.all.rp_filter': 0,
    'net.ipv4.conf.default.rp_filter': 0,
    // Hash ECMP on the 5-tuple, so different client ports reach different balancers.
    'net.ipv4.fib_multipath_hash_policy': 1,
    'net.ipv6.fib_multipath_hash_policy': 1,
  });

  const attach = async (role: HostRole, kind: keyof typeof ROLE_NET, index: number, mtu: number): Promise<Host> => {
    const ns = await registry.addNamespace(role);
    const iface = routerIface(role);
    await registry.addVeth({ ns, name: HOST_IFACE }, { ns: routerNs, name: iface });
    const a = linkAddresses(kind, index);
    await configureEnd(ns, HOST_IFACE, mtu, `${a.host4}/24`, `${a.host6}/64`);
    await configureEnd(routerNs, iface, mtu, `${a.router4}/24`, `${a.router6}/64`);
    await nsSysctl(routerNs, { [`net.ipv4.conf.${iface}.rp_filter`]: 0 });
    // Every host reaches everything else through the router.
    await nsExec(ns, ['ip', 'route', 'add', 'default', 'via', a.router4, 'dev', HOST_IFACE]);
    await nsExec(ns, ['ip', '-6', 'route', 'add', 'default', 'via', a.router6, 'dev', HOST_IFACE]);
    return {
      role,
      ns,
      nsPath: netnsPath(ns),
      local: { ns, iface: HOST_IFACE, mac: await linkMac(ns, HOST_IFACE), ipv4: a.host4, ipv6: a.host6 },
      router: { ns: routerNs, iface, mac: await linkMac(routerNs, iface), ipv4: a.router4, ipv6: a.router6 },
    };
  };

  const clients = {} as Record<ClientRole, Host>;
  for (const [i, role] of CLIENT_ROLES.entries()) {
    clients[role] = await attach(role, 'client', i + 1, CLIENT_MTU);
    // A veth hands its peer packets whose TCP/UDP checksum is still to be filled in
    // (CHECKSUM_PARTIAL) and segments up to 64 KB (TSO). A frame on a real wire has
    // neither: the client's NIC finished both. An XDP program sees raw frames and
    // cannot finish them, so once encapsulated such a packet reaches the pod with a
    // bad checksum (TcpInCsumErrors). Checksumming in software on the clients (which
    // also turns TSO off) makes the lab's client traffic look like the wire's.
    await nsExec(clients[role].ns, ['ethtool', '-K', HOST_IFACE, 'tx', 'off']);
  }

  const balancers = {} as Record<BalancerRole, Host>;
  for (const [i, role] of BALANCER_ROLES.entries()) {
    const host = await attach(role, 'lb', i + 1, FABRIC_MTU);
    balancers[role] = host;
    await acceptXdpFrames(routerNs, host.router.iface);
    // As on a real balancer node's NIC, GRO is on (the default of every driver): in
    // native mode XDP sees frames before GRO; in generic mode the agent must turn it off
    // (src/agent/bpf/ethtool.ts), which the generic-mode lab test checks.
    await nsExec(host.ns, ['ethtool', '-K', HOST_IFACE, 'gro', 'on']);
    // A real node has long since resolved its gateway (its own traffic goes there all
    // the time); in a fresh namespace nothing has, and the IPv6 entry would only ever
    // be learned for the router's link-local address. Enter both as a resolution
    // would, REACHABLE (not permanent: the kernel re-confirms them like any other), so
    // a FIB-mode balancer finds its next hop from the first packet. The unresolved
    // case is a test of its own (flushNeighbours).
    await nsExec(host.ns, ['ip', 'neigh', 'replace', host.router.ipv4, 'lladdr', host.router.mac, 'dev', HOST_IFACE, 'nud', 'reachable']);
    await nsExec(host.ns, ['ip', '-6', 'neigh', 'replace', host.router.ipv6, 'lladdr', host.router.mac, 'dev', HOST_IFACE, 'nud', 'reachable']);
    await nsSysctl(host.ns, {
      // In FIB mode a next hop the kernel has not resolved yet is passed to the stack
      // (pass_fib_miss), which must then forward the encapsulated packet itself.
      'net.ipv4.ip_forward': 1,
      'net.ipv6.conf.all.forwarding': 1,
    });
  }

  const pods = {} as Record<PodRole, Host>;
  for (const [i, role] of POD_ROLES.entries()) pods[role] = await attach(role, 'pod', i + 1, FABRIC_MTU);

  // The agent with the pods' decap duties reaches them by namespace path: it needs no link.
  const backendNodeNs = await registry.addNamespace('node');

  const topology: Topology = {
    prefix: registry.prefix,
    routerNs,
    backendNodeNs,
    clients,
    balancers,
    pods,
    vip4: VIP4,
    vip6: VIP6,
    pinRoot: registry.pinDir(),
    host(role: HostRole): Host {
      const host = (clients as Record<string, Host>)[role] ?? (balancers as Record<string, Host>)[role] ?? (pods as Record<string, Host>)[role];
      if (!host) throw new FulcrumError('ERR_NETNS', `no lab host ${role}`);
      return host;
    },
    async routeVipsVia(via: readonly BalancerRole[]): Promise<void> {
      if (via.length === 0) throw new FulcrumError('ERR_NETNS', 'the VIPs need at least one balancer node to route via');
      const hops = via.map((role) => balancers[role]);
      const v4 = hops.flatMap((h) => ['nexthop', 'via', h.local.ipv4, 'dev', h.router.iface, 'weight', '1']);
      const v6 = hops.flatMap((h) => ['nexthop', 'via', h.local.ipv6, 'dev', h.router.iface, 'weight', '1']);
      await nsExec(routerNs, ['ip', 'route', 'replace', VIP_PREFIX4, ...v4]);
      await nsExec(routerNs, ['ip', '-6', 'route', 'replace', VIP_PREFIX6, ...v6]);
      // Cached routing decisions of established sockets live on the pods and clients,
      // not here: the router looks the route up per packet, so the change is immediate.
    },
    async flushNeighbours(role: HostRole): Promise<void> {
      const ns = topology.host(role).ns;
      await nsExec(ns, ['ip', 'neigh', 'flush', 'dev', HOST_IFACE]);
      await nsExec(ns, ['ip', '-6', 'neigh', 'flush', 'dev', HOST_IFACE]);
    },
    cleanup: () => registry.cleanup(),
    cleanupSync: () => registry.cleanupSync(),
  };
  await topology.routeVipsVia(BALANCER_ROLES);
  return topology;
}

/** An XDP program that passes every packet: bpf/floor.bpf.c, built with the balancer. */
const PASS_OBJECT = fileURLToPath(new URL('../../bpf/build/floor.bpf.o', import.meta.url));
const PASS_PROGRAM = 'floor';

/**
 * Makes a veth end accept the frames its peer's XDP program sends with XDP_TX. Those
 * arrive as xdp_frames, which a veth only takes in through its NAPI ring. DESIGN.md
 * names two ways to have that ring: GRO on, or an XDP program of its own. On the
 * 6.18 kernels of the lab machines GRO alone does not do it (every frame is lost
 * without a counter moving; checked with a two-namespace XDP_TX experiment), while
 * a native XDP program that passes everything does, every time. Both are set: GRO
 * for the kernels where it suffices, the program for the ones where it does not.
 *
 * The program is attached through netlink from a worker thread inside the namespace
 * (the product's own attach path), not with `ip link ... obj`, which would leave
 * directories of its own under /sys/fs/bpf. A netlink attachment holds the program,
 * so the object is closed at once; the program goes with the interface.
 */
async function acceptXdpFrames(ns: string, iface: string): Promise<void> {
  await nsExec(ns, ['ethtool', '-K', iface, 'gro', 'on']);
  const object = BpfObject.open(PASS_OBJECT);
  try {
    object.load();
    await inNetns(netnsPath(ns), 'attachXdp', iface, object.programFd(PASS_PROGRAM), { mode: 'native' });
  } finally {
    object.close();
  }
}

async function configureEnd(ns: string, iface: string, mtu: number, cidr4: string, cidr6: string): Promise<void> {
  await nsExec(ns, ['ip', 'link', 'set', iface, 'mtu', String(mtu)]);
  await nsExec(ns, ['ip', 'address', 'add', cidr4, 'dev', iface]);
  // nodad: the address is usable at once instead of after duplicate address detection.
  await nsExec(ns, ['ip', '-6', 'address', 'add', cidr6, 'dev', iface, 'nodad']);
}
