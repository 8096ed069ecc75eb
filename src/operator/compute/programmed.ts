// Whether a node's agent has programmed a VIP, read from its BalancerNode: the spec
// carries the VIP's entries, status.observedGeneration has reached the generation that
// first carried those entries, and status.vips reports every one of them. One index per
// BalancerNode object (objects are replaced on change, never mutated), so a question
// about one VIP costs a few map lookups even on a node with a thousand.
import type { BalancerNode } from '../api.ts';
import { specKnowledge } from '../balancernode-cache.ts';

export interface NodeView {
  generation: number;
  observedGeneration: number;
  /** VIP name → its entry keys (sorted, joined). */
  keys: ReadonlyMap<string, string>;
  /** VIP name → the JSON of its entries (to tell which VIPs a new spec changed). */
  entries: ReadonlyMap<string, string>;
  /** VIP name → keys the agent reports programmed. */
  reported: Map<string, Set<string>>;
}

const views = new WeakMap<BalancerNode, NodeView>();

/** The index of one BalancerNode object: spec knowledge (balancernode-cache.ts) + status. */
export function nodeView(bn: BalancerNode): NodeView {
  const cached = views.get(bn);
  if (cached !== undefined) return cached;
  const spec = specKnowledge(bn);
  const reported = new Map<string, Set<string>>();
  for (const v of bn.status?.vips ?? []) {
    const set = reported.get(v.name) ?? new Set<string>();
    set.add(v.key);
    reported.set(v.name, set);
  }
  const view: NodeView = {
    generation: bn.metadata.generation ?? 0,
    observedGeneration: bn.status?.observedGeneration ?? 0,
    keys: spec.keys,
    entries: spec.entries,
    reported,
  };
  views.set(bn, view);
  return view;
}

/**
 * `spec` says what the node should carry (the freshest copy: our own last write when the
 * watch has not delivered it yet); `status` what the agent reports (the watched copy).
 * `required` is the generation that first carried the VIP's current entries.
 */
export function programmedOn(spec: NodeView, status: NodeView, vip: string, wantedKeys: string, required: number): boolean {
  if (spec.keys.get(vip) !== wantedKeys) return false;
  if (status.observedGeneration < required) return false;
  const reported = status.reported.get(vip);
  if (reported === undefined) return false;
  for (const k of wantedKeys.split(',')) if (!reported.has(k)) return false;
  return true;
}

/**
 * VIPs whose standing on a node may differ between two versions of its BalancerNode:
 * entries changed, or programmed-ness flipped. `required` gives the generation a VIP
 * needs (the writer's ledger, else the node's generation).
 */
export function changedVips(before: NodeView | undefined, after: NodeView | undefined, required: (vip: string, view: NodeView) => number): Set<string> {
  const out = new Set<string>();
  const names = new Set<string>([...(before?.keys.keys() ?? []), ...(after?.keys.keys() ?? []), ...(before?.reported.keys() ?? []), ...(after?.reported.keys() ?? [])]);
  for (const name of names) {
    if (before?.entries.get(name) !== after?.entries.get(name)) {
      out.add(name);
      continue;
    }
    const p = (v: NodeView | undefined): boolean => {
      if (v === undefined) return false;
      const keys = v.keys.get(name);
      return keys !== undefined && programmedOn(v, v, name, keys, required(name, v));
    };
    if (p(before) !== p(after)) out.add(name);
  }
  return out;
}
