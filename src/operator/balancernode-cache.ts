// What the operator knows of BalancerNode specs, so that it holds and parses each one
// once. A balancer node's spec is large (every VIP with every backend: half a megabyte
// at 500 VIPs × 20 endpoints) and changes only when the operator writes it, while its
// object changes far more often (the agent's status, our own writes coming back through
// the watch).
//
// - Knowledge of a spec — its canonical JSON, and per VIP the entries' JSON and keys — is
//   kept per object version (uid + generation): the writer records it from what it sent,
//   and it is derived once from any object that arrives with a spec nobody knows.
// - Cached BalancerNodes hold no spec: the informer's transform derives the knowledge
//   and drops it (slimBalancerNode).
// - The watch decoder parses only metadata and status of an event whose spec version is
//   known (an agent's status update, our own write); the rest of the line is skipped.
// Everything that needs a spec reads it through specKnowledge().
import type { BalancerNode } from './api.ts';
import { canonicalDecap, canonicalVip, composeSpec } from './compute/nodes.ts';
import { vipKey } from '../shared/desired-state.ts';
import { parseRange, slice, topLevelRanges } from './json-scan.ts';

export interface SpecKnowledge {
  /** Canonical JSON of the operator-owned spec (compute/nodes.ts canonicalSpec), UTF-8. */
  json: Buffer;
  /** VIP name → JSON of its entries (an array, canonical). */
  entries: ReadonlyMap<string, string>;
  /** VIP name → its entries' keys, sorted and joined. */
  keys: ReadonlyMap<string, string>;
}

const byObject = new WeakMap<BalancerNode, SpecKnowledge>();
/** Latest known spec version per object uid. */
const byUid = new Map<string, { generation: number; knowledge: SpecKnowledge }>();

const UNKNOWN: SpecKnowledge = { json: Buffer.alloc(0), entries: new Map(), keys: new Map() };

/** Derives the knowledge of a spec from the spec itself. */
export function deriveKnowledge(spec: BalancerNode['spec']): SpecKnowledge {
  const fragmentsByName = new Map<string, { fragments: string[]; keys: string[] }>();
  const fragments: Buffer[] = [];
  for (const v of spec?.vips ?? []) {
    const fragment = JSON.stringify(canonicalVip(v));
    fragments.push(Buffer.from(fragment));
    const g = fragmentsByName.get(v.name) ?? { fragments: [], keys: [] };
    g.fragments.push(fragment);
    g.keys.push(vipKey(v));
    fragmentsByName.set(v.name, g);
  }
  return {
    json: composeSpec(fragments, Buffer.from(JSON.stringify((spec?.decap ?? []).map(canonicalDecap)))),
    entries: new Map([...fragmentsByName].map(([k, g]) => [k, `[${g.fragments.join(',')}]`])),
    keys: new Map([...fragmentsByName].map(([k, g]) => [k, g.keys.sort().join(',')])),
  };
}

/** Records that `bn` (which may carry no spec) has the spec `knowledge` describes. */
export function rememberSpec(bn: BalancerNode, knowledge: SpecKnowledge): void {
  byObject.set(bn, knowledge);
  const uid = bn.metadata.uid;
  if (uid !== undefined) byUid.set(uid, { generation: bn.metadata.generation ?? 0, knowledge });
}

/**
 * What is known of the spec of `bn`. An object whose spec is neither present nor known
 * reads as unknown: an empty index and a JSON no desired spec equals, so the writer
 * rewrites it and no VIP counts as programmed on it — the safe side of both.
 */
export function specKnowledge(bn: BalancerNode): SpecKnowledge {
  const known = byObject.get(bn);
  if (known !== undefined) return known;
  let knowledge: SpecKnowledge | undefined;
  if (bn.spec !== undefined) knowledge = deriveKnowledge(bn.spec);
  else {
    const v = bn.metadata.uid !== undefined ? byUid.get(bn.metadata.uid) : undefined;
    if (v !== undefined && v.generation === (bn.metadata.generation ?? 0)) knowledge = v.knowledge;
  }
  if (knowledge === undefined) return UNKNOWN;
  rememberSpec(bn, knowledge);
  return knowledge;
}

/** Forgets a deleted object's versions. */
export function forgetSpec(uid: string | undefined): void {
  if (uid !== undefined) byUid.delete(uid);
}

/** The informer's transform: know the spec, keep the rest. */
export function slimBalancerNode(bn: BalancerNode): BalancerNode {
  if (bn.spec === undefined) return bn;
  const knowledge = specKnowledge(bn);
  const slim: BalancerNode = {
    apiVersion: bn.apiVersion ?? 'fulcrum.dev/v1alpha1', kind: 'BalancerNode', metadata: bn.metadata,
    ...(bn.status !== undefined ? { status: bn.status } : {}),
  };
  rememberSpec(slim, knowledge);
  return slim;
}

/**
 * A watch line → event, parsing the spec only when its version is not known. Falls
 * back to a full parse for anything unusual.
 */
export function decodeBalancerNodeEvent(line: Buffer): { type: string; object: BalancerNode } {
  const full = (): { type: string; object: BalancerNode } => JSON.parse(line.toString('utf8')) as { type: string; object: BalancerNode };
  const outer = topLevelRanges(line);
  const typeRange = outer.get('type');
  const objectRange = outer.get('object');
  if (typeRange === undefined || objectRange === undefined) return full();
  const type = parseRange<string>(line, typeRange);
  const objectBytes = slice(line, objectRange);
  if (type !== 'ADDED' && type !== 'MODIFIED') return full();
  const inner = topLevelRanges(objectBytes);
  const metaRange = inner.get('metadata');
  if (metaRange === undefined) return full();
  const metadata = parseRange<BalancerNode['metadata']>(objectBytes, metaRange);
  const v = metadata.uid !== undefined ? byUid.get(metadata.uid) : undefined;
  if (v === undefined || v.generation !== (metadata.generation ?? 0)) return full();
  const statusRange = inner.get('status');
  const object: BalancerNode = {
    apiVersion: 'fulcrum.dev/v1alpha1', kind: 'BalancerNode', metadata,
    ...(statusRange !== undefined ? { status: parseRange<BalancerNode['status']>(objectBytes, statusRange) } : {}),
  };
  rememberSpec(object, v.knowledge);
  return { type, object };
}
