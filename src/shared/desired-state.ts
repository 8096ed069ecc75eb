// The operator→agent contract: what one node must program. The operator writes it
// into BalancerNode.spec; in standalone mode it comes from the agent's YAML file.
// Validated with zod at both ends; addresses are normalised to canonical text so
// that equal states compare equal.
import { z } from 'zod';
import { canonicalAddress, isIpAddress } from './addresses.ts';

export const IpAddress = z
  .string()
  .refine(isIpAddress, { message: 'must be an IPv4 or IPv6 address' })
  .transform(canonicalAddress);

export const Protocol = z.enum(['TCP', 'UDP']);
export type Protocol = z.infer<typeof Protocol>;

/** ipip: IPIP / IP6IP6 / 4in6 / 6in4 chosen by the families; gue: UDP (variant 1). */
export const Encapsulation = z.enum(['ipip', 'gue']);
export type Encapsulation = z.infer<typeof Encapsulation>;

export const Backend = z.strictObject({
  address: IpAddress,
  /** Relative share of new flows; 0 = draining: no new flows, established ones stay. */
  weight: z.int().min(0).max(10_000).default(1),
});
export type Backend = z.infer<typeof Backend>;

export const Vip = z
  .strictObject({
    /** Stable identity for logs, metrics and status (the operator uses namespace/name). */
    name: z.string().min(1).max(253),
    address: IpAddress,
    /** 0 = every port of this protocol. */
    port: z.int().min(0).max(65535),
    protocol: Protocol,
    encapsulation: Encapsulation.default('ipip'),
    /** Hash the client address only: every connection of a client reaches one backend. */
    sourceIpOnly: z.boolean().default(false),
    /** Skip the connection table: Maglev alone decides (saves memory for huge flow counts). */
    lruBypass: z.boolean().default(false),
    backends: z.array(Backend).max(4096),
  })
  .superRefine((vip, ctx) => {
    const seen = new Set<string>();
    for (const [i, b] of vip.backends.entries()) {
      if (seen.has(b.address)) ctx.addIssue({ code: 'custom', path: ['backends', i, 'address'], message: `duplicate backend ${b.address}` });
      seen.add(b.address);
    }
  });
export type Vip = z.infer<typeof Vip>;

/** A local backend pod that must accept tunnelled traffic and answer clients directly. */
export const DecapDuty = z.strictObject({
  /** namespace/name of the pod, for logs and status. */
  pod: z.string().min(1),
  /** The pod's network namespace: a path such as /run/netns/x or /proc/<pid>/ns/net. */
  netns: z.string().min(1),
  /** The pod's interface the tunnel arrives on. */
  interface: z.string().min(1).default('eth0'),
  /** The pod's own addresses: outer destinations the decap program accepts. */
  addresses: z.array(IpAddress).min(1),
  /** VIPs the pod serves: put on its loopback and accepted as inner destinations. */
  vips: z.array(IpAddress).min(1),
});
export type DecapDuty = z.infer<typeof DecapDuty>;

export function vipKey(vip: Pick<Vip, 'address' | 'port' | 'protocol'>): string {
  return `${vip.protocol}/${vip.address.includes(':') ? `[${vip.address}]` : vip.address}:${vip.port}`;
}

export const NodeDesiredState = z
  .strictObject({
    /** The BalancerNode generation this state came from (0 in standalone mode). */
    generation: z.int().min(0).default(0),
    vips: z.array(Vip).default([]),
    decap: z.array(DecapDuty).default([]),
  })
  .superRefine((state, ctx) => {
    const seen = new Map<string, string>();
    for (const [i, vip] of state.vips.entries()) {
      const key = vipKey(vip);
      const other = seen.get(key);
      if (other !== undefined) ctx.addIssue({ code: 'custom', path: ['vips', i], message: `${key} is also VIP ${other}` });
      seen.set(key, vip.name);
    }
    const pods = new Set<string>();
    for (const [i, duty] of state.decap.entries()) {
      if (pods.has(duty.pod)) ctx.addIssue({ code: 'custom', path: ['decap', i, 'pod'], message: `duplicate decap duty for ${duty.pod}` });
      pods.add(duty.pod);
    }
  });
export type NodeDesiredState = z.infer<typeof NodeDesiredState>;
export type NodeDesiredStateInput = z.input<typeof NodeDesiredState>;
