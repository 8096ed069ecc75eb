// VipPool (cluster-scoped, short name vippool): addresses the operator assigns to VIPs.
// Mirrors crds/vippools.fulcrum.dev.yaml: KEEP IN SYNC.
import { z } from 'zod';
import { FulcrumError } from '../errors.ts';
import { API_VERSION, Conditions, Count, Generation, LabelSelector, PoolEntry, parsePoolEntry, uniqueBy, wire } from './common.ts';
import type { PoolRange } from './common.ts';

export const VIP_POOL = { kind: 'VipPool', plural: 'vippools', shortName: 'vippool', namespaced: false } as const;

/** The condition types of status.conditions (docs/operator.md lists the reasons). */
export const VIP_POOL_CONDITIONS = ['Ready', 'Exhausted'] as const;
export type VipPoolConditionType = (typeof VIP_POOL_CONDITIONS)[number];

const spec = z.object({
  /** CIDRs and FIRST-LAST ranges; assignment takes the lowest free address, entries in order. */
  addresses: z
    .array(PoolEntry)
    .min(1)
    .max(64)
    .superRefine((list, ctx) => uniqueBy(list, (a) => a, ctx, [])),
  /** Services that name no pool may get addresses from this one. */
  autoAssign: z.boolean().default(true),
  /** Only VIPs in matching namespaces; absent: every namespace. */
  namespaceSelector: LabelSelector.optional(),
  /** Only matching Services (a VIP's spec.backends.service); absent: every Service. */
  serviceSelector: LabelSelector.optional(),
  /** Never assign IPv4 addresses ending in .0 or .255. */
  avoidBuggyIPs: z.boolean().default(false),
});

/** VipPool.spec as the API server accepts and defaults it. */
export const VipPoolSpec = wire(spec);
export type VipPoolSpec = z.output<typeof spec>;
export type VipPoolSpecInput = z.input<typeof spec>;

const status = z.object({
  /** Distinct addresses of the pool held by VIPs. */
  assigned: Count.optional(),
  /** Addresses left to assign, capped at Number.MAX_SAFE_INTEGER. */
  available: Count.optional(),
  conditions: Conditions.optional(),
  observedGeneration: Generation.optional(),
});

export const VipPoolStatus = wire(status);
export type VipPoolStatus = z.output<typeof status>;

export const VipPool = wire(
  z.object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal(VIP_POOL.kind),
    metadata: z.looseObject({ name: z.string() }),
    spec,
    status: status.optional(),
  }),
);
export type VipPool = z.output<typeof VipPool>;

/**
 * The ranges of a validated pool, in spec order (a CIDR as its first and last address).
 * Throws on an entry the schema would reject: parse the spec first.
 */
export function poolRanges(s: Pick<VipPoolSpec, 'addresses'>): PoolRange[] {
  return s.addresses.map((text) => {
    const parsed = parsePoolEntry(text);
    if (parsed.kind === 'invalid') throw new FulcrumError('ERR_INTERNAL', `VipPool entry ${text} was not validated: ${parsed.messages.join('; ')}`);
    return parsed.range;
  });
}
