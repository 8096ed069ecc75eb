// A Service's EndpointSlices (and their Pods) → the backends of its VIPs, per address
// family. Pure: the caller passes the slices and a Pod lookup.
//
// - ready (and not terminating)      → in the ring, weight from the Pod's
//                                       fulcrum.dev/weight annotation (default 1);
// - terminating but still serving    → weight 0: draining — no new flows, established
//                                       flows keep their backend through the conn table;
// - not serving                      → out.
// Families stay apart: an IPv4 VIP takes IPv4 endpoints only, even when it has none.
import { addressInfo } from './canonical.ts';
import type { Family } from '../../shared/addresses.ts';
import { ANNOTATIONS } from '../kinds.ts';
import type { EndpointConditions, EndpointSlice, Pod } from '../kinds.ts';

export const DEFAULT_WEIGHT = 1;
export const MAX_WEIGHT = 10_000;

export type EndpointState = 'ready' | 'draining' | 'out';

export interface BackendPod {
  namespace: string;
  name: string;
  uid: string;
  /** The Pod's own addresses (all families): outer destinations its decap accepts. */
  addresses: string[];
}

export interface BackendEndpoint {
  address: string;
  weight: number;
  state: Exclude<EndpointState, 'out'>;
  pod?: BackendPod;
  nodeName?: string;
}

export type BackendIssue = { kind: 'invalidWeight'; pod: string; value: string };

export interface ServiceBackends {
  4: BackendEndpoint[];
  6: BackendEndpoint[];
  issues: BackendIssue[];
}

export const NO_BACKENDS: ServiceBackends = Object.freeze({ 4: [], 6: [], issues: [] }) as unknown as ServiceBackends;

/** EndpointSlice conditions → what the endpoint is to a balancer (nil conditions read as the API documents). */
export function endpointState(conditions: EndpointConditions | undefined): EndpointState {
  const terminating = conditions?.terminating === true;
  const ready = conditions?.ready !== false; // nil = unknown, to be read as ready
  if (!terminating) return ready ? 'ready' : 'out';
  const serving = conditions?.serving ?? conditions?.ready ?? false;
  return serving === true ? 'draining' : 'out';
}

export type WeightOutcome = { kind: 'ok'; weight: number } | { kind: 'invalid'; value: string };

export function parseWeight(value: string | undefined): WeightOutcome {
  if (value === undefined) return { kind: 'ok', weight: DEFAULT_WEIGHT };
  const text = value.trim();
  if (!/^\d+$/.test(text)) return { kind: 'invalid', value };
  const n = Number(text);
  return n <= MAX_WEIGHT ? { kind: 'ok', weight: n } : { kind: 'invalid', value };
}

const RANK: Record<BackendEndpoint['state'], number> = { ready: 0, draining: 1 };

export function serviceBackends(slices: readonly EndpointSlice[], podOf: (namespace: string, name: string) => Pod | undefined): ServiceBackends {
  const out: ServiceBackends = { 4: [], 6: [], issues: [] };
  const chosen: Record<Family, Map<string, BackendEndpoint>> = { 4: new Map(), 6: new Map() };
  const sorted = [...slices].sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0));
  const reported = new Set<string>();
  for (const slice of sorted) {
    if (slice.addressType !== 'IPv4' && slice.addressType !== 'IPv6') continue;
    const family: Family = slice.addressType === 'IPv4' ? 4 : 6;
    for (const ep of slice.endpoints ?? []) {
      const state = endpointState(ep.conditions);
      if (state === 'out') continue;
      const ref = ep.targetRef;
      const podNs = ref?.namespace ?? slice.metadata.namespace ?? '';
      const pod = ref?.kind === 'Pod' && ref.name !== undefined ? podOf(podNs, ref.name) : undefined;
      let weight = 0;
      if (state === 'ready') {
        const parsed = parseWeight(pod?.metadata.annotations?.[ANNOTATIONS.weight]);
        if (parsed.kind === 'ok') weight = parsed.weight;
        else {
          weight = DEFAULT_WEIGHT;
          const podKey = `${podNs}/${ref?.name ?? ''}`;
          if (!reported.has(podKey)) {
            reported.add(podKey);
            out.issues.push({ kind: 'invalidWeight', pod: podKey, value: parsed.value });
          }
        }
      }
      for (const raw of ep.addresses) {
        const info = addressInfo(raw);
        if (info === undefined || info.family !== family) continue;
        const address = info.canonical;
        const backend: BackendEndpoint = { address, weight, state };
        const uid = ref?.uid ?? pod?.metadata.uid;
        if (ref?.kind === 'Pod' && ref.name !== undefined && uid !== undefined) {
          const podIps: string[] = [];
          for (const p of pod?.status?.podIPs ?? []) {
            const ip = addressInfo(p.ip);
            if (ip !== undefined) podIps.push(ip.canonical);
          }
          backend.pod = { namespace: podNs, name: ref.name, uid, addresses: podIps.length > 0 ? [...new Set(podIps)].sort() : [address] };
        }
        const nodeName = ep.nodeName ?? pod?.spec?.nodeName;
        if (nodeName !== undefined) backend.nodeName = nodeName;
        const existing = chosen[family].get(address);
        // The same address in two slices (a slice being replaced): the better state wins.
        if (existing === undefined || RANK[state] < RANK[existing.state]) chosen[family].set(address, backend);
      }
    }
  }
  for (const family of [4, 6] as const) {
    out[family] = [...chosen[family].values()].sort((a, b) => compareAddresses(a.address, b.address));
  }
  return out;
}

export function compareAddresses(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function countBackends(backends: readonly BackendEndpoint[]): { ready: number; draining: number } {
  let ready = 0;
  let draining = 0;
  for (const b of backends) {
    if (b.state === 'ready') ready++;
    else draining++;
  }
  return { ready, draining };
}
