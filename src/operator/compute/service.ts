// Service type=LoadBalancer with our class → the LoadBalancerVip it owns. Pure.
//
// Address, first that applies: annotation fulcrum.dev/address, spec.loadBalancerIP
// (deprecated upstream, still honoured), annotation fulcrum.dev/pool, the pool the
// Service's VIP already uses (a VIP never moves pools by itself), else the first
// matching auto-assign pool: pools with selectors before catch-all ones, pools with room
// before full ones, then by name.
import { canonicalAddress, isIpAddress } from '../../shared/addresses.ts';
import type { LoadBalancerVipSpec } from '../api.ts';
import { ANNOTATIONS, LOAD_BALANCER_CLASS } from '../kinds.ts';
import type { Service, ServicePort } from '../kinds.ts';
import { parseRanges } from './allocate.ts';
import type { PoolInput } from './allocate.ts';
import { matchesSelector } from './selectors.ts';

export function isOurService(svc: Service | undefined): boolean {
  return svc !== undefined && svc.spec?.type === 'LoadBalancer' && svc.spec.loadBalancerClass === LOAD_BALANCER_CLASS;
}

/** The wire form of a LoadBalancerVip spec (what is written), with defaults spelled out. */
export type LoadBalancerVipSpecInput = Omit<LoadBalancerVipSpec, 'hashing' | 'nodeSelector'> & {
  hashing: { sourceIpOnly: boolean; lruBypass: boolean };
};

export interface PoolCandidate extends PoolInput {
  /** Usable addresses left (from poolUsage), if known. */
  available?: number | undefined;
}

export type ServiceVipOutcome =
  | { kind: 'vip'; spec: LoadBalancerVipSpecInput; annotations: Record<string, string>; unsupportedPorts: ServicePort[] }
  | { kind: 'noSupportedPorts'; unsupportedPorts: ServicePort[] }
  | { kind: 'invalidAnnotation'; annotation: string; value: string; message: string }
  | { kind: 'noMatchingPool' };

export interface ServiceVipInput {
  service: Service;
  namespaceLabels: Readonly<Record<string, string>> | undefined;
  pools: readonly PoolCandidate[];
  /** spec.pool of the VIP this Service owns today, if any. */
  currentPool?: string | undefined;
}

export function serviceFamily(svc: Service): 4 | 6 | undefined {
  const first = svc.spec?.ipFamilies?.[0];
  return first === 'IPv4' ? 4 : first === 'IPv6' ? 6 : undefined;
}

export function poolMatches(pool: PoolInput, svc: Service, namespaceLabels: Readonly<Record<string, string>> | undefined): boolean {
  if (pool.spec.namespaceSelector !== undefined && !matchesSelector(pool.spec.namespaceSelector, namespaceLabels)) return false;
  if (pool.spec.serviceSelector !== undefined && !matchesSelector(pool.spec.serviceSelector, svc.metadata.labels)) return false;
  return true;
}

function hasFamily(pool: PoolInput, family: 4 | 6 | undefined): boolean {
  if (family === undefined) return true;
  const parsed = parseRanges(pool.spec.addresses);
  return parsed.kind === 'ok' && parsed.ranges.some((r) => r.family === family);
}

export function choosePool(input: ServiceVipInput): string | undefined {
  const { service, namespaceLabels, pools, currentPool } = input;
  const family = serviceFamily(service);
  const eligible = pools.filter((p) => p.spec.autoAssign && poolMatches(p, service, namespaceLabels) && hasFamily(p, family));
  if (currentPool !== undefined && eligible.some((p) => p.name === currentPool)) return currentPool;
  const specific = (p: PoolInput): number => (p.spec.namespaceSelector !== undefined || p.spec.serviceSelector !== undefined ? 0 : 1);
  const full = (p: PoolCandidate): number => (p.available === 0 ? 1 : 0);
  const sorted = [...eligible].sort((a, b) => specific(a) - specific(b) || full(a) - full(b) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return sorted[0]?.name;
}

export function serviceVip(input: ServiceVipInput): ServiceVipOutcome {
  const svc = input.service;
  const ann = svc.metadata.annotations ?? {};
  const unsupportedPorts: ServicePort[] = [];
  const seen = new Set<string>();
  const ports: { port: number; protocol: 'TCP' | 'UDP' }[] = [];
  for (const p of svc.spec?.ports ?? []) {
    const protocol = p.protocol ?? 'TCP';
    if (protocol !== 'TCP' && protocol !== 'UDP') {
      unsupportedPorts.push(p);
      continue;
    }
    const key = `${protocol}/${p.port}`;
    if (seen.has(key)) continue;
    seen.add(key);
    ports.push({ port: p.port, protocol });
  }
  ports.sort((a, b) => (a.protocol < b.protocol ? -1 : a.protocol > b.protocol ? 1 : a.port - b.port));
  if (ports.length === 0) return { kind: 'noSupportedPorts', unsupportedPorts };

  let source: { address: string } | { pool: string };
  const annotated = ann[ANNOTATIONS.address];
  const lbIp = svc.spec?.loadBalancerIP;
  if (annotated !== undefined && annotated !== '') {
    if (!isIpAddress(annotated.trim())) return { kind: 'invalidAnnotation', annotation: ANNOTATIONS.address, value: annotated, message: 'not an IP address' };
    source = { address: canonicalAddress(annotated.trim()) };
  } else if (lbIp !== undefined && lbIp !== '') {
    if (!isIpAddress(lbIp)) return { kind: 'invalidAnnotation', annotation: 'spec.loadBalancerIP', value: lbIp, message: 'not an IP address' };
    source = { address: canonicalAddress(lbIp) };
  } else if (ann[ANNOTATIONS.pool] !== undefined && ann[ANNOTATIONS.pool] !== '') {
    source = { pool: ann[ANNOTATIONS.pool]! };
  } else {
    const pool = choosePool(input);
    if (pool === undefined) return { kind: 'noMatchingPool' };
    source = { pool };
  }

  const annotations: Record<string, string> = {};
  const shareKey = ann[ANNOTATIONS.allowSharedIp];
  if (shareKey !== undefined && shareKey !== '') annotations[ANNOTATIONS.allowSharedIp] = shareKey;
  const family = serviceFamily(svc);
  if (family !== undefined && 'pool' in source) annotations[ANNOTATIONS.ipFamily] = family === 4 ? 'IPv4' : 'IPv6';

  return {
    kind: 'vip',
    spec: {
      ...source,
      ports,
      backends: { service: svc.metadata.name },
      encapsulation: 'ipip',
      hashing: { sourceIpOnly: svc.spec?.sessionAffinity === 'ClientIP', lruBypass: false },
    },
    annotations,
    unsupportedPorts,
  };
}
