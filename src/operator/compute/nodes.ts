// Placement: accepted VIPs with their backends + the cluster's Nodes → the spec of every
// BalancerNode. Pure and deterministic (sorted everywhere), so equal inputs give equal
// JSON and the writer can skip what did not change.
//
// Two roles per node:
// - balancer: the node's labels match the VIP's nodeSelector (default
//   fulcrum.dev/balancer=true) → one entry per (address, port, protocol) with the
//   VIP's same-family backends;
// - backend: a ready or draining endpoint of a VIP runs on the node → a decap duty for
//   its Pod, naming the VIP addresses it must accept.
// Computed per VIP (a contribution) and then gathered per node, so that a change to one
// VIP recomputes one contribution and rewrites only the nodes it touches.
import { addressFamily } from '../../shared/addresses.ts';
import { vipKey } from '../../shared/desired-state.ts';
import type { BalancerNodeDecap, BalancerNodeSpec, BalancerNodeVip } from '../api.ts';
import { DEFAULT_BALANCER_LABEL } from '../kinds.ts';
import type { LabelSelector } from '../kinds.ts';
import type { PortClaim } from './allocate.ts';
import type { ServiceBackends } from './backends.ts';
import { matchesSelector } from './selectors.ts';

export const DEFAULT_DECAP_INTERFACE = 'eth0';

/** An accepted LoadBalancerVip with its assigned address: what placement needs of it. */
export interface VipModel {
  /** namespace/name: the entries' name on every node. */
  key: string;
  address: string;
  /** port 0 = every port of the protocol. */
  ports: readonly PortClaim[];
  encapsulation: 'ipip' | 'gue';
  sourceIpOnly: boolean;
  lruBypass: boolean;
  nodeSelector?: LabelSelector | undefined;
}

export interface NodeInfo {
  name: string;
  labels?: Readonly<Record<string, string>> | undefined;
}

export interface VipContribution {
  key: string;
  /** The VIP's entries, as every balancer node gets them. */
  entries: BalancerNodeVip[];
  /** JSON of each entry (canonical form), computed once and reused for every node. */
  fragments: string[];
  /** The same as UTF-8 bytes: a node's spec is composed from them without one big string. */
  fragmentBytes: Buffer[];
  /** Nodes that balance it (sorted). */
  balancerNodes: string[];
  /** Decap duties per node, one per pod. */
  decap: Map<string, BalancerNodeDecap[]>;
}

export const DEFAULT_NODE_SELECTOR: LabelSelector = { matchLabels: { [DEFAULT_BALANCER_LABEL.key]: DEFAULT_BALANCER_LABEL.value } };

export function balancerNodesFor(selector: LabelSelector | undefined, nodes: Iterable<NodeInfo>): string[] {
  const s = selector ?? DEFAULT_NODE_SELECTOR;
  const names: string[] = [];
  for (const n of nodes) if (matchesSelector(s, n.labels)) names.push(n.name);
  return names.sort();
}

function byText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function vipContribution(vip: VipModel, backends: ServiceBackends, nodes: readonly NodeInfo[]): VipContribution {
  const family = addressFamily(vip.address);
  const sameFamily = backends[family];
  const ring = sameFamily.map((b) => ({ address: b.address, weight: b.weight }));
  const ports = [...vip.ports].sort((a, b) => byText(a.protocol, b.protocol) || a.port - b.port);
  const entries: BalancerNodeVip[] = ports.map((p) => canonicalVip({
    name: vip.key,
    address: vip.address,
    port: p.port,
    protocol: p.protocol,
    encapsulation: vip.encapsulation,
    sourceIpOnly: vip.sourceIpOnly,
    lruBypass: vip.lruBypass,
    backends: ring,
  }));
  const existing = new Set(nodes.map((n) => n.name));
  const decap = new Map<string, BalancerNodeDecap[]>();
  for (const b of sameFamily) {
    if (b.pod === undefined || b.nodeName === undefined || !existing.has(b.nodeName)) continue;
    const list = decap.get(b.nodeName) ?? [];
    list.push({
      pod: `${b.pod.namespace}/${b.pod.name}`,
      podUID: b.pod.uid,
      addresses: b.pod.addresses,
      vips: [vip.address],
      interface: DEFAULT_DECAP_INTERFACE,
    });
    decap.set(b.nodeName, list);
  }
  const fragments = entries.map((e) => JSON.stringify(e));
  return { key: vip.key, entries, fragments, fragmentBytes: fragments.map((f) => Buffer.from(f)), balancerNodes: balancerNodesFor(vip.nodeSelector, nodes), decap };
}

/** Nodes a contribution writes to: its balancers and the nodes of its backend pods. */
export function touchedNodes(c: VipContribution): Set<string> {
  const out = new Set(c.balancerNodes);
  for (const n of c.decap.keys()) out.add(n);
  return out;
}

// ------------------------------------------------------------------ canonical form

/**
 * The fields the operator owns, in a fixed key order: JSON.stringify of canonical forms is
 * how specs are compared (the writer's "did it change"), and what is written.
 */
export function canonicalVip(v: BalancerNodeVip): BalancerNodeVip {
  return {
    name: v.name, address: v.address, port: v.port, protocol: v.protocol, encapsulation: v.encapsulation,
    sourceIpOnly: v.sourceIpOnly, lruBypass: v.lruBypass,
    backends: (v.backends ?? []).map((b) => ({ address: b.address, weight: b.weight })),
  };
}

export function canonicalDecap(d: BalancerNodeDecap): BalancerNodeDecap {
  return { pod: d.pod, podUID: d.podUID, addresses: [...(d.addresses ?? [])], vips: [...(d.vips ?? [])], interface: d.interface };
}

export function canonicalSpec(spec: Partial<BalancerNodeSpec> | undefined): BalancerNodeSpec {
  return { vips: (spec?.vips ?? []).map(canonicalVip), decap: (spec?.decap ?? []).map(canonicalDecap) };
}

/** A node's spec as objects and as canonical JSON, with its VIPs' entries indexed by name. */
export interface PlacedNode {
  spec: BalancerNodeSpec;
  /** JSON.stringify(canonicalSpec(spec)) as UTF-8, composed from the contributions' fragments. */
  json: Buffer;
  /** VIP name → JSON of its entries (an array). */
  entries: Map<string, string>;
  /** VIP name → its entries' keys, sorted and joined. */
  keys: Map<string, string>;
}

/** The BalancerNode spec of `node`, gathered from the contributions that touch it. */
export function placeNode(node: string, contributions: Iterable<VipContribution>): PlacedNode {
  const items: { entry: BalancerNodeVip; fragment: string; bytes: Buffer; key: string }[] = [];
  const pods = new Map<string, BalancerNodeDecap>();
  for (const c of contributions) {
    if (c.balancerNodes.includes(node)) {
      for (let i = 0; i < c.entries.length; i++) items.push({ entry: c.entries[i]!, fragment: c.fragments[i]!, bytes: c.fragmentBytes[i]!, key: vipKey(c.entries[i]!) });
    }
    for (const duty of c.decap.get(node) ?? []) {
      const seen = pods.get(duty.pod);
      if (seen === undefined) pods.set(duty.pod, { ...duty, addresses: [...duty.addresses], vips: [...duty.vips] });
      else {
        seen.addresses = [...new Set([...seen.addresses, ...duty.addresses])];
        seen.vips = [...new Set([...seen.vips, ...duty.vips])];
      }
    }
  }
  items.sort((x, y) => {
    const a = x.entry;
    const b = y.entry;
    return byText(a.name, b.name) || byText(a.protocol, b.protocol) || a.port - b.port || byText(a.address, b.address);
  });
  // Allocation keeps (address, port, protocol) unique; should two entries still meet, the
  // first by name keeps it, so the agent never gets a state its schema rejects.
  const seenKeys = new Set<string>();
  const unique = items.filter((it) => {
    if (seenKeys.has(it.key)) return false;
    seenKeys.add(it.key);
    return true;
  });
  const decap = [...pods.values()].sort((a, b) => byText(a.pod, b.pod)).map((d) => canonicalDecap({ ...d, addresses: d.addresses.sort(byText), vips: d.vips.sort(byText) }));
  const byName = new Map<string, { fragments: string[]; keys: string[] }>();
  for (const it of unique) {
    const g = byName.get(it.entry.name) ?? { fragments: [], keys: [] };
    g.fragments.push(it.fragment);
    g.keys.push(it.key);
    byName.set(it.entry.name, g);
  }
  return {
    spec: { vips: unique.map((it) => it.entry), decap },
    json: composeSpec(unique.map((it) => it.bytes), Buffer.from(JSON.stringify(decap))),
    entries: new Map([...byName].map(([k, g]) => [k, `[${g.fragments.join(',')}]`])),
    keys: new Map([...byName].map(([k, g]) => [k, g.keys.sort().join(',')])),
  };
}

const VIPS_OPEN = Buffer.from('{"vips":[');
const COMMA = Buffer.from(',');
const DECAP = Buffer.from('],"decap":');
const CLOSE = Buffer.from('}');

/** `{"vips":[<fragment>,…],"decap":<decap>}` as bytes. */
export function composeSpec(fragments: readonly Buffer[], decap: Buffer): Buffer {
  const parts: Buffer[] = [VIPS_OPEN];
  fragments.forEach((f, i) => {
    if (i > 0) parts.push(COMMA);
    parts.push(f);
  });
  parts.push(DECAP, decap, CLOSE);
  return Buffer.concat(parts);
}

export function nodeSpec(node: string, contributions: Iterable<VipContribution>): BalancerNodeSpec {
  return placeNode(node, contributions).spec;
}

/** Every node's spec at once (tests, the benchmark's check); controllers go per VIP and node. */
export function computeNodeSpecs(vips: readonly { vip: VipModel; backends: ServiceBackends }[], nodes: readonly NodeInfo[]): Map<string, BalancerNodeSpec> {
  const contributions = vips.map(({ vip, backends }) => vipContribution(vip, backends, nodes));
  const out = new Map<string, BalancerNodeSpec>();
  for (const n of [...nodes].sort((a, b) => byText(a.name, b.name))) out.set(n.name, nodeSpec(n.name, contributions));
  return out;
}
