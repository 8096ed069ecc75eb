// What the three fulcrum.dev/v1alpha1 kinds share: the group's names, label selectors,
// conditions, and the address rules. The schemas in src/shared/api/ are the API's one
// definition: crds/*.yaml are generated from them (crd-generate.ts, `npm run gen:crds`),
// each field's description, CEL rules and list type riding in its `.meta()`. A zod
// refinement has no CRD form, so each one sits beside the meta that says the same to the
// API server (a CEL rule, a list type, a maxLength): an object that passes here is one
// the API server stores unchanged (test/operator/schemas.test.ts runs every fixture
// through both). The schemas describe the wire form: they never rewrite a value
// (addresses stay as written; canonicalAddress() is for comparing them).
//
// CEL: the rules use isIP(), ip(), isCIDR() and cidr() (Kubernetes' CEL IP and CIDR
// libraries, Kubernetes 1.31 or newer) and the strings extension. Each rule must stay O(1)
// in the API server's cost estimate: a CRD whose estimate is unbounded is refused at
// creation.
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { doc } from './crd-generate.ts';

export const GROUP = 'fulcrum.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

/** Services of type LoadBalancer with this loadBalancerClass are Fulcrum's. */
export const LOAD_BALANCER_CLASS = 'fulcrum.dev/xdp';

/** Nodes that balance a LoadBalancerVip that has no nodeSelector: this label with value "true". */
export const BALANCER_NODE_LABEL = 'fulcrum.dev/balancer';

/** Annotations that are part of the API (docs/operator.md). */
export const ANNOTATIONS = {
  /** Pod: relative share of new flows in every VIP it backs, "0".."10000" (default 1; 0 drains). */
  weight: 'fulcrum.dev/weight',
  /** Service: the VIP address to use. */
  address: 'fulcrum.dev/address',
  /** Service: the VipPool to allocate from. */
  pool: 'fulcrum.dev/pool',
  /** Service and LoadBalancerVip: VIPs with the same key may share one address (disjoint ports). */
  allowSharedIp: 'fulcrum.dev/allow-shared-ip',
  /** LoadBalancerVip: the family to allocate from a pool, IPv4 or IPv6 (set from the Service). */
  ipFamily: 'fulcrum.dev/ip-family',
} as const;

export const WEIGHT_MIN = 0;
export const WEIGHT_MAX = 10_000;
export const WEIGHT_DEFAULT = 1;

/** kube-openapi counts string length in code points (maxLength), not UTF-16 units. */
export function runeLength(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/** A string of at most `max` code points, as the CRD's maxLength says. */
export function boundedString(max: number, min = 0): z.ZodString {
  let s = z.string().refine((t) => runeLength(t) <= max, { message: `must be at most ${max} characters` });
  if (min > 0) s = s.refine((t) => runeLength(t) >= min, { message: `must be at least ${min} characters` });
  return s.meta(min > 0 ? { minLength: min, maxLength: max } : { maxLength: max });
}

/** Integers the CRDs bound by Number.MAX_SAFE_INTEGER, so JSON numbers and zod agree. */
export const Count = z.int().min(0).max(Number.MAX_SAFE_INTEGER).meta({ format: 'int64' });
export const Generation = z.int().min(0).max(Number.MAX_SAFE_INTEGER).meta({ format: 'int64' });
/** Counts the CRDs declare as int32 (a Go client reads them into an int32). */
export const Count32 = z.int().min(0).max(2147483647).meta({ format: 'int32' });

// ------------------------------------------------------------------ null pruning

/**
 * The API server drops object fields whose value is null (none of ours is nullable)
 * before defaulting and validating; so do the schemas, at their root, so that
 * `{ "pool": null }` means what it means to the server: no pool.
 */
export function withoutNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutNulls);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [key, child] of Object.entries(value)) if (child !== null) out[key] = withoutNulls(child);
  return out;
}

/** `schema` behind the server's null pruning; z.input of the result is unknown, use the inner schema's. */
export function wire<T extends z.ZodType>(schema: T): z.ZodPreprocess<T, unknown> {
  return z.preprocess(withoutNulls, schema);
}

// ------------------------------------------------------------------ names

/** DNS-1123 subdomain (object names: VipPools, Pods). */
export const DNS1123_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
/** DNS-1035 label (Service names). */
export const DNS1035_LABEL = '^[a-z]([-a-z0-9]*[a-z0-9])?$';

export const ObjectName = z.string().max(253).regex(new RegExp(DNS1123_SUBDOMAIN));
export const ServiceName = z.string().max(63).regex(new RegExp(DNS1035_LABEL));

// ------------------------------------------------------------------ label selectors

/** A label key: an optional DNS-subdomain prefix and "/", then a name of at most 63 characters. */
export const LABEL_KEY = '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$';
export const LABEL_VALUE = '^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$';

const LabelValue = z.string().max(63).regex(new RegExp(LABEL_VALUE));

export const LabelSelectorOperator = z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']);
export type LabelSelectorOperator = z.infer<typeof LabelSelectorOperator>;

const VALUES_BY_OPERATOR = 'values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist';

export const LabelSelectorRequirement = z
  .object({
    key: z.string().max(317).regex(new RegExp(LABEL_KEY)).meta({ description: 'The label key.' }),
    operator: LabelSelectorOperator.meta({ description: 'In, NotIn, Exists or DoesNotExist.' }),
    values: z.array(LabelValue).max(64).optional().meta({ description: 'The values for In and NotIn; empty for Exists and DoesNotExist.' }),
  })
  .superRefine((r, ctx) => {
    const n = r.values?.length ?? 0;
    const needsValues = r.operator === 'In' || r.operator === 'NotIn';
    if (needsValues ? n === 0 : n > 0) ctx.addIssue({ code: 'custom', path: [], message: VALUES_BY_OPERATOR });
  })
  .meta({
    description: 'A label key, an operator, and values.',
    'x-kubernetes-validations': [{
      rule: "self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0 : !has(self.values) || size(self.values) == 0",
      message: VALUES_BY_OPERATOR,
    }],
  });
export type LabelSelectorRequirement = z.infer<typeof LabelSelectorRequirement>;

/**
 * metav1.LabelSelector: every matchLabels pair and every requirement must hold; {}
 * selects everything. `about` words the two fields' descriptions for what is selected.
 */
export function labelSelector(about: { readonly matchLabels: string; readonly matchExpressions: string }) {
  return z.object({
    matchLabels: z
      .record(z.string(), LabelValue)
      .refine((m) => Object.keys(m).length <= 64, { message: 'must have at most 64 labels' })
      .optional()
      .meta({ description: about.matchLabels, maxProperties: 64 }),
    matchExpressions: z.array(LabelSelectorRequirement).max(32).optional().meta({ description: about.matchExpressions }),
  }).meta({ 'x-kubernetes-map-type': 'atomic' });
}

export const LabelSelector = labelSelector({
  matchLabels: 'Labels that must be present, with exactly these values.',
  matchExpressions: 'Requirements the labels must all meet.',
});
export type LabelSelector = z.infer<typeof LabelSelector>;

// ------------------------------------------------------------------ conditions

export const CONDITION_TYPE = '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$';
export const CONDITION_REASON = '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$';
/** The date-time format the API server checks (RFC 3339). */
const DATE_TIME = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

export const ConditionStatus = z.enum(['True', 'False', 'Unknown']);
export type ConditionStatus = z.infer<typeof ConditionStatus>;

/** metav1.Condition, as controller-gen declares it. */
export const Condition = z.object({
  type: z.string().max(316).regex(new RegExp(CONDITION_TYPE)).meta({ description: 'Type of condition in CamelCase.' }),
  status: ConditionStatus.meta({ description: 'Status of the condition, one of True, False, Unknown.' }),
  observedGeneration: Generation.optional().meta({ description: 'The .metadata.generation the condition was set for.' }),
  lastTransitionTime: z
    .string()
    .refine((t) => DATE_TIME.test(t) && !Number.isNaN(Date.parse(t)), { message: 'must be an RFC 3339 date-time' })
    .meta({ description: 'The last time the condition went from one status to another.', format: 'date-time' }),
  reason: z.string().min(1).max(1024).regex(new RegExp(CONDITION_REASON))
    .meta({ description: "A programmatic identifier for the condition's last transition, in CamelCase." }),
  message: boundedString(32768).meta({ description: 'A human readable message with details about the transition.' }),
}).meta({ description: 'Condition contains details for one aspect of the current state of this API Resource.' });
export type Condition = z.infer<typeof Condition>;

/** A condition list keyed by type (x-kubernetes-list-type: map). */
export const Conditions = z
  .array(Condition)
  .max(16)
  .superRefine((list, ctx) => uniqueBy(list, (c) => c.type, ctx, []))
  .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] });

// ------------------------------------------------------------------ list uniqueness

/**
 * x-kubernetes-list-type map/set: the API server rejects a second item with the same
 * key (compared as written, after defaulting) at that item's index.
 */
export function uniqueBy<T>(items: readonly T[], key: (item: T) => string, ctx: z.RefinementCtx, path: readonly PropertyKey[]): void {
  const seen = new Set<string>();
  items.forEach((item, i) => {
    const k = key(item);
    if (seen.has(k)) ctx.addIssue({ code: 'custom', path: [...path, i], message: `duplicate entry ${k}` });
    seen.add(k);
  });
}

// ------------------------------------------------------------------ addresses

/**
 * The CRDs' CEL rules and these functions agree on what an address is:
 *
 * - isIP() (Kubernetes' CEL IP library, which itself refuses zones, IPv4-mapped IPv6
 *   and leading zeros) with no zone ("%eth0") and no embedded dotted quad in IPv6
 *   ("::ffff:192.0.2.1"), which the rules exclude in words of their own;
 * - BalancerNode addresses use IP_PATTERN instead (an OpenAPI pattern costs nothing in
 *   the CEL budget, and that kind holds up to a million of them).
 */
export function isPlainIp(text: string): boolean {
  return isIP(text) !== 0 && !text.includes('%') && !(text.includes(':') && text.includes('.'));
}

const HEX_GROUP = '[0-9a-fA-F]{1,4}';
const OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
/**
 * An IPv4 address in dotted decimal without leading zeros, or an IPv6 address in
 * hexadecimal groups (no zone, no embedded dotted quad). Written into the BalancerNode
 * CRD verbatim; test/operator/schemas.test.ts checks the two copies are equal.
 */
export const IP_PATTERN =
  `^((${OCTET}\\.){3}${OCTET}` +
  `|(${HEX_GROUP}:){7}${HEX_GROUP}` +
  `|(${HEX_GROUP}:){1,7}:` +
  `|(${HEX_GROUP}:){1,6}:${HEX_GROUP}` +
  `|(${HEX_GROUP}:){1,5}(:${HEX_GROUP}){1,2}` +
  `|(${HEX_GROUP}:){1,4}(:${HEX_GROUP}){1,3}` +
  `|(${HEX_GROUP}:){1,3}(:${HEX_GROUP}){1,4}` +
  `|(${HEX_GROUP}:){1,2}(:${HEX_GROUP}){1,5}` +
  `|${HEX_GROUP}:(:${HEX_GROUP}){1,6}` +
  `|:((:${HEX_GROUP}){1,7}|:))$`;
const IP_RE = new RegExp(IP_PATTERN);

/** An address as the BalancerNode CRD accepts it (IP_PATTERN), kept as written. */
export const IpText = z.string().max(39).regex(IP_RE, { message: 'must be an IPv4 or IPv6 address' });

/** The 32 hex digits of an IPv6 address: what the CRDs' CEL expansion computes, here from bytes. */
export function ipv6Hex(text: string): string {
  return Buffer.from(ipaddr.parse(text).toByteArray()).toString('hex');
}

/** The address as one unsigned number, for ordering and masks. */
export function ipToBigInt(text: string): bigint {
  let n = 0n;
  for (const byte of ipaddr.parse(text).toByteArray()) n = (n << 8n) | BigInt(byte);
  return n;
}

/** IPv6 addresses that are IPv4-mapped (::ffff:0:0/96): the Kubernetes IP library rejects them. */
function isV4Mapped(text: string): boolean {
  return text.includes(':') && ipv6Hex(text).startsWith('00000000000000000000ffff');
}

const UNUSABLE_VIP = 'must be a unicast address a VIP can use: not unspecified, loopback, link-local, multicast, IPv4-mapped, 0.0.0.0/8 or 240.0.0.0/4';

/** Why an address cannot be a VIP, or undefined when it can: what VipAddress's CEL rules say. */
export function vipAddressProblem(text: string): string | undefined {
  if (!(isIP(text) !== 0 && !text.includes('%'))) return 'must be an IPv4 or IPv6 address (192.0.2.10, 2001:db8::10)';
  if (text.includes(':') && text.includes('.')) return NO_DOTTED_IPV6;
  if (text.includes(':')) {
    const hex = ipv6Hex(text);
    const unusable = hex === '0'.repeat(32) || hex === `${'0'.repeat(31)}1` || hex.startsWith(`${'0'.repeat(20)}ffff`)
      || hex.startsWith('ff') || /^fe[89ab]/.test(hex);
    if (unusable) return UNUSABLE_VIP;
  } else if (/^(0|127|22[4-9]|2[3-5][0-9])\.|^169\.254\./.test(text)) {
    return UNUSABLE_VIP;
  }
  return undefined;
}

const NO_DOTTED_IPV6 = 'write IPv6 addresses in hexadecimal groups, without an embedded dotted-quad IPv4 address';

/**
 * A VIP address as LoadBalancerVip.spec.address accepts it, kept as written. isIP itself
 * refuses IPv4-mapped IPv6, zones and leading zeros in IPv4 octets.
 */
export const VipAddress = z.string().max(39).superRefine((text, ctx) => {
  const problem = vipAddressProblem(text);
  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
}).meta({
  'x-kubernetes-validations': [
    { rule: 'isIP(self)', message: 'must be an IPv4 or IPv6 address (192.0.2.10, 2001:db8::10)' },
    { rule: "!isIP(self) || ip(self).family() == 4 || !self.contains('.')", message: NO_DOTTED_IPV6 },
    {
      rule: doc`!isIP(self) || (ip(self).isGlobalUnicast() &&
        !cidr('0.0.0.0/8').containsIP(ip(self)) && !cidr('240.0.0.0/4').containsIP(ip(self)))`,
      message: UNUSABLE_VIP,
    },
  ],
});

/** An address in a status field written by the operator (isIP, no zone, no dotted IPv6). */
export const StatusAddress = z.string().max(39).refine(isPlainIp, { message: 'must be an IPv4 or IPv6 address' }).meta({
  'x-kubernetes-validations': [{ rule: "isIP(self) && (ip(self).family() == 4 || !self.contains('.'))", message: 'must be an IPv4 or IPv6 address' }],
});

// ------------------------------------------------------------------ pool entries

/** One VipPool entry, parsed: an inclusive range of one family. */
export type PoolRange = { readonly family: 4 | 6; readonly first: bigint; readonly last: bigint };

export type PoolEntryOutcome = { readonly kind: 'ok'; readonly range: PoolRange } | { readonly kind: 'invalid'; readonly messages: readonly string[] };

const POOL_ENTRY_SYNTAX = 'must be a CIDR (192.0.2.0/28, 2001:db8::/120) or an address range FIRST-LAST (192.0.2.100-192.0.2.110)';

/** Kubernetes' isCIDR, as far as the CRD's rules use it: an address, "/", a prefix length of the family. */
function isCidrText(text: string): boolean {
  const slash = text.indexOf('/');
  if (slash < 0) return false;
  const address = text.slice(0, slash);
  const bits = text.slice(slash + 1);
  const family = isIP(address);
  return family !== 0 && /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}

/**
 * The one pool-entry rule the CRD cannot state: CEL has no O(1) way to order IPv6
 * addresses, so the API server accepts a downward range and the operator refuses the
 * pool (Ready=False, InvalidAddresses).
 */
export const RANGE_ORDER = 'a range must run from the lower address to the higher (192.0.2.100-192.0.2.110)';

/**
 * Checks a VipPool entry the way the CRD's rules do (one message per failed rule, in
 * rule order) and parses it. A CIDR must have no host bits set; a range must run
 * upwards within one family (RANGE_ORDER: checked here, not by the API server).
 */
export function parsePoolEntry(text: string): PoolEntryOutcome {
  const messages: string[] = [];
  const parts = text.split('-');
  const isRange = text.includes('-');
  const syntaxOk = !text.includes('%') && (isRange
    ? parts.length === 2 && parts.every((p) => isIP(p) !== 0)
    : isCidrText(text) && (text.split('/')[1] === '0' || !text.split('/')[1]!.startsWith('0')));
  if (!syntaxOk) messages.push(POOL_ENTRY_SYNTAX);
  if (!parts.every((p) => !(p.includes(':') && p.includes('.')))) {
    messages.push(NO_DOTTED_IPV6);
  }
  const plain = syntaxOk && parts.every((p) => !(p.includes(':') && p.includes('.')));
  if (!plain) return { kind: 'invalid', messages };

  if (isRange) {
    const [a, b] = parts as [string, string];
    if (a.includes(':') !== b.includes(':')) return { kind: 'invalid', messages: [ONE_FAMILY] };
    if (isV4Mapped(a) || isV4Mapped(b)) messages.push(MAPPED);
    if (ipToBigInt(a) > ipToBigInt(b)) messages.push(RANGE_ORDER);
    return messages.length > 0 ? { kind: 'invalid', messages } : { kind: 'ok', range: { family: a.includes(':') ? 6 : 4, first: ipToBigInt(a), last: ipToBigInt(b) } };
  }
  const [address, bitsText] = text.split('/') as [string, string];
  const family = address.includes(':') ? 6 : 4;
  const width = family === 4 ? 32 : 128;
  const hostBits = BigInt(width - Number(bitsText));
  const mask = (1n << hostBits) - 1n;
  const base = ipToBigInt(address);
  if (isV4Mapped(address)) messages.push(MAPPED);
  if ((base & mask) !== 0n) messages.push(NO_HOST_BITS);
  return messages.length > 0 ? { kind: 'invalid', messages } : { kind: 'ok', range: { family, first: base, last: base | mask } };
}
const MAPPED = 'IPv4-mapped IPv6 addresses (::ffff:0:0/96) are not allowed: write the IPv4 address';

const ONE_FAMILY = 'both ends of a range must be of one family';
const NO_HOST_BITS = 'a CIDR must have no bits set after the prefix length (192.0.2.0/28, not 192.0.2.5/28)';

/**
 * A VipPool entry. The CEL rules run in order; each later rule skips entries that an
 * earlier one rejects for their form. isIP and isCIDR refuse IPv4-mapped IPv6, zones and
 * leading zeros themselves. That a range runs from the lower address to the higher has no
 * O(1) form for IPv6: the operator checks it (RANGE_ORDER).
 */
export const PoolEntry = z.string().max(79).superRefine((text, ctx) => {
  const parsed = parsePoolEntry(text);
  if (parsed.kind === 'invalid') for (const message of parsed.messages) ctx.addIssue({ code: 'custom', message });
}).meta({
  'x-kubernetes-validations': [
    {
      rule: doc`self.contains('-')
        ? size(self.split('-')) == 2 && isIP(self.split('-')[0]) && isIP(self.split('-')[1])
        : isCIDR(self) && !self.split('/')[1].matches('^0[0-9]')`,
      message: POOL_ENTRY_SYNTAX,
    },
    { rule: "self.split('-').all(a, !a.contains(':') || !a.contains('.'))", message: NO_DOTTED_IPV6 },
    {
      rule: doc`!(self.contains('-') && size(self.split('-')) == 2 && isIP(self.split('-')[0]) && isIP(self.split('-')[1])) ||
        ip(self.split('-')[0]).family() == ip(self.split('-')[1]).family()`,
      message: ONE_FAMILY,
    },
    { rule: "!isCIDR(self) || cidr(self) == cidr(self).masked()", message: NO_HOST_BITS },
  ],
});
