// BalancerNode (cluster-scoped, short name bnode, named after the node): the operator→agent
// contract as a Kubernetes object. spec is src/shared/desired-state.ts's NodeDesiredState
// adapted: a decap duty names its pod by UID and the agent resolves the network namespace
// itself, so no host path travels through the API. status is what the agent reports. The
// one definition of the kind: crds/balancernodes.fulcrum.dev.yaml is generated from
// BALANCER_NODE_CRD below (`npm run gen:crds`).
//
// Addresses here use an OpenAPI pattern (IP_PATTERN) rather than CEL isIP(): a node may
// hold a thousand VIPs with thousands of backends, and patterns cost nothing in the CRD's
// CEL cost budget.
//
// The lists that grow with the node's VIPs, backends and pods are atomic, not list-maps:
// the API server records every list-map key and set element in managedFields, which made
// a stored BalancerNode 2.8 times its spec (1.33 MB for a 470 kB spec at 500 VIPs × 20
// backends, near etcd's 1.5 MiB) and made every write cost the API server a field-by-field
// merge. Each list has one writer (spec: the operator, status: the agent) that writes it
// whole, so nothing is lost. Uniqueness is no longer the API server's: the operator's
// compute makes one entry per key, and the agent's contract validation (the zod rules
// below and toNodeDesiredState, which also catches canonical duplicates such as
// "2001:db8::1" and "2001:DB8::1") refuses a spec with duplicates (InvalidSpec).
//
// Size: an object is limited by etcd's request size (1.5 MiB by default), about 25 000
// backend entries in all; the item bounds below are per list.
import { z } from 'zod';
import { FulcrumError } from '../errors.ts';
import { Encapsulation, NodeDesiredState, Protocol } from '../desired-state.ts';
import type { NodeDesiredStateInput } from '../desired-state.ts';
import {
  API_VERSION, Conditions, Count32, GROUP, Generation, IpText, VERSION, WEIGHT_DEFAULT, WEIGHT_MAX, WEIGHT_MIN, boundedString, uniqueBy, wire,
} from './common.ts';
import { doc } from './crd-generate.ts';
import type { CrdSkeleton } from './crd-generate.ts';

export const BALANCER_NODE = { kind: 'BalancerNode', plural: 'balancernodes', shortName: 'bnode', namespaced: false } as const;

/** The condition types of status.conditions (docs/operator.md lists the reasons). */
export const BALANCER_NODE_CONDITIONS = ['Ready', 'Programmed'] as const;
export type BalancerNodeConditionType = (typeof BALANCER_NODE_CONDITIONS)[number];

/**
 * The reasons the agent reports on its BalancerNode, the same words in its logs, metrics
 * and Events (docs/operator.md#balancernode-status explains each). Only ever add.
 */
export const BALANCER_NODE_REASONS = [
  // Ready
  'AgentReady', // the agent runs; its programs are loaded (and attached, on a balancer node)
  'LoadFailed', // a BPF object failed to open, load or pass the verifier
  'AttachFailed', // XDP could not be attached to a configured interface in an allowed mode
  'BpffsUnavailable', // the pin root is not on a BPF filesystem and the agent could not (or may not) mount one
  // Programmed
  'Programmed', // the data plane holds spec generation metadata.generation
  'InvalidSpec', // the spec breaks the node contract (toNodeDesiredState threw); nothing of it applied
  'ApplyFailed', // a map operation failed or a table is full; the data plane keeps status.observedGeneration
  'DecapFailed', // the VIPs are programmed; at least one decap duty failed (status.decap)
] as const;
export type BalancerNodeReason = (typeof BALANCER_NODE_REASONS)[number];

/** namespace/name of a pod. */
export const POD_REF = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
/** A pod UID as the agent accepts it: it becomes part of paths on the node. */
export const POD_UID = '^[0-9A-Za-z][-0-9A-Za-z]*$';
/** Printable ASCII without "/" and ":" (Linux's dev_valid_name also refuses "." and ".."). */
export const INTERFACE_NAME = '^[!-.0-9;-~]+$';

const NOT_DOTS = 'must be an interface name (printable ASCII without / and :, not . or ..)';

const PodRef = z.string().max(317).regex(new RegExp(POD_REF)).meta({ description: 'The pod, as namespace/name.' });
const InterfaceName = z
  .string()
  .max(15)
  .regex(new RegExp(INTERFACE_NAME))
  .refine((n) => n !== '.' && n !== '..', { message: NOT_DOTS })
  .meta({ 'x-kubernetes-validations': [{ rule: "self != '.' && self != '..'", message: NOT_DOTS }] });

export const BalancerNodeBackend = z.object({
  address: IpText.meta({ description: "The backend's address (the tunnel's outer destination)." }),
  weight: z.int().min(WEIGHT_MIN).max(WEIGHT_MAX).default(WEIGHT_DEFAULT)
    .meta({ description: 'Relative share of new flows, 0 to 10000; 0 = draining. Default 1.' }),
}).meta({ description: 'One backend.' });
export type BalancerNodeBackend = z.infer<typeof BalancerNodeBackend>;

export const BalancerNodeVip = z.object({
  name: boundedString(253, 1).meta({
    description: doc`The LoadBalancerVip this entry comes from, as namespace/name: the entry's
      identity in logs, metrics and status (the entries of one LoadBalancerVip share it).`,
  }),
  address: IpText.meta({ description: 'The VIP address.' }),
  port: z.int().min(0).max(65535).meta({ description: 'The destination port; 0 = every port of the protocol.' }),
  protocol: Protocol.meta({ description: 'TCP or UDP.' }),
  encapsulation: Encapsulation.default('ipip').meta({ description: 'ipip (IPIP / IP6IP6 / 4in6 / 6in4 by the families) or gue (GUE variant 1).' }),
  sourceIpOnly: z.boolean().default(false).meta({ description: 'Hash the client address only (one backend per client).' }),
  lruBypass: z.boolean().default(false).meta({ description: 'Skip the connection table; Maglev alone places every packet.' }),
  backends: z
    .array(BalancerNodeBackend)
    .max(4096)
    .superRefine((list, ctx) => uniqueBy(list, (b) => b.address, ctx, []))
    .default([])
    .meta({
      description: doc`The backends, each with its weight: its relative share of the Maglev ring.
        Weight 0 drains a backend: it takes no new flows, and flows in the connection table stay
        with it.`,
      'x-kubernetes-list-type': 'atomic',
    }),
}).meta({ description: 'One VIP entry of the XDP program.' });
export type BalancerNodeVip = z.infer<typeof BalancerNodeVip>;

export const BalancerNodeDecap = z.object({
  pod: PodRef,
  podUID: z.string().min(1).max(128).regex(new RegExp(POD_UID)).meta({
    description: doc`The pod's UID: how the agent finds its network namespace, and so that a new pod
      with the same name is never mistaken for the old one. Letters, digits and dashes only (it
      becomes part of paths on the node).`,
  }),
  addresses: z
    .array(IpText)
    .min(1)
    .max(16)
    .superRefine((list, ctx) => uniqueBy(list, (a) => a, ctx, []))
    .meta({ description: "The pod's own addresses; tunnelled packets to them are decapsulated.", 'x-kubernetes-list-type': 'atomic' }),
  vips: z
    .array(IpText)
    .min(1)
    .max(1024)
    .superRefine((list, ctx) => uniqueBy(list, (a) => a, ctx, []))
    .meta({
      description: doc`The VIP addresses the pod serves: put on its loopback, and accepted as the inner
        destination of tunnelled packets.`,
      'x-kubernetes-list-type': 'atomic',
    }),
  interface: InterfaceName.default('eth0').meta({ description: "The pod's interface the tunnel arrives on. Default eth0." }),
}).meta({ description: 'One backend pod.' });
export type BalancerNodeDecap = z.infer<typeof BalancerNodeDecap>;

const spec = z.object({
  vips: z
    .array(BalancerNodeVip)
    .max(1024)
    .superRefine((list, ctx) => uniqueBy(list, (v) => JSON.stringify([v.address, v.port, v.protocol]), ctx, []))
    .default([])
    .meta({
      description: doc`The VIP entries this node balances: one per address, port and protocol, each
        with its backends.`,
      'x-kubernetes-list-type': 'atomic',
    }),
  decap: z
    .array(BalancerNodeDecap)
    .max(2048)
    .superRefine((list, ctx) => uniqueBy(list, (d) => d.pod, ctx, []))
    .default([])
    .meta({
      description: doc`The backend pods on this node (backend role): each must accept tunnelled traffic
        for its VIPs and answer clients directly. The agent finds the pod's network namespace from
        its UID, loads the decap program on its interface, puts the VIPs on its loopback and sets
        the sysctls direct server return needs.`,
      'x-kubernetes-list-type': 'atomic',
    }),
}).meta({
  description: doc`The node's desired state, computed by the operator from LoadBalancerVips,
    Services, EndpointSlices and Nodes. Do not edit: the operator overwrites it.`,
});

/** BalancerNode.spec as the API server accepts and defaults it. */
export const BalancerNodeSpec = wire(spec);
export type BalancerNodeSpec = z.output<typeof spec>;
export type BalancerNodeSpecInput = z.input<typeof spec>;

// ------------------------------------------------------------------ status (the agent's)

export const AttachModeStatus = z.enum(['native', 'generic', 'none']);
export type AttachModeStatus = z.infer<typeof AttachModeStatus>;

/** A decap duty's outcome: programmed; pending (no network namespace on this node yet); failed. */
export const DecapOutcome = z.enum(['programmed', 'pending', 'failed']);
export type DecapOutcome = z.infer<typeof DecapOutcome>;

export const BalancerNodeInterfaceStatus = z.object({
  name: z.string().max(15).regex(new RegExp(INTERFACE_NAME)).meta({ description: 'The interface.' }),
  mode: z.enum(['native', 'generic']).meta({ description: 'native or generic.' }),
  programId: z.int().min(0).max(4294967295).meta({ description: "The kernel's id of the attached program (bpftool prog show id N).", format: 'int64' }),
}).meta({ description: 'One attachment.' });

export const BalancerNodeVipStatus = z.object({
  name: boundedString(253, 1).meta({ description: "The entry's name from spec (the LoadBalancerVip's namespace/name)." }),
  key: boundedString(64, 1).meta({ description: 'The entry\'s data-plane key, PROTOCOL/address:port ("TCP/192.0.2.10:443", "UDP/[2001:db8::10]:0").' }),
  ringDigest: z.string().min(1).max(64).regex(/^[0-9a-f]+$/).meta({
    description: doc`A digest of the entry's Maglev ring over its backends' addresses: equal on every
      node that programmed the same backends and weights.`,
  }),
  backends: Count32.meta({ description: 'The backends in the ring (weight 0 ones included).' }),
}).meta({ description: 'One programmed VIP entry.' });
export type BalancerNodeVipStatus = z.infer<typeof BalancerNodeVipStatus>;

export const BalancerNodeDecapStatus = z.object({
  pod: PodRef,
  outcome: DecapOutcome.meta({
    description: doc`programmed (the pod decapsulates and answers from its VIPs), pending (its network
      namespace is not on this node yet: the pod is starting, or has not been scheduled here),
      failed (see message).`,
  }),
  message: boundedString(1024).optional().meta({ description: 'Why, for pending and failed.' }),
}).meta({ description: "One pod's outcome." });
export type BalancerNodeDecapStatus = z.infer<typeof BalancerNodeDecapStatus>;

const status = z.object({
  observedGeneration: Generation.optional().meta({
    description: doc`The spec generation whose VIP entries the data plane holds: the agent sets it
      once it has applied that generation, and vips below describe it (decap lists each pod's
      outcome). A generation that fails to apply leaves it at the previous one, with Programmed
      False (its observedGeneration naming the generation that failed) and the errors.`,
  }),
  attachMode: AttachModeStatus.optional().meta({
    description: doc`How the XDP program runs: native (the driver's XDP on every interface), generic
      (skb mode on at least one interface: slower), none (not attached: a backend-only node, or
      attaching failed).`,
  }),
  interfaces: z
    .array(BalancerNodeInterfaceStatus)
    .max(16)
    .superRefine((list, ctx) => uniqueBy(list, (i) => i.name, ctx, []))
    .optional()
    .meta({ description: 'The interfaces the XDP program is attached to.', 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] }),
  vipCount: Count32.optional().meta({ description: 'The number of VIP entries programmed (the length of vips).' }),
  vips: z
    .array(BalancerNodeVipStatus)
    .max(1024)
    .superRefine((list, ctx) => uniqueBy(list, (v) => v.key, ctx, []))
    .optional()
    .meta({ description: 'The VIP entries programmed.', 'x-kubernetes-list-type': 'atomic' }),
  decap: z
    .array(BalancerNodeDecapStatus)
    .max(2048)
    .superRefine((list, ctx) => uniqueBy(list, (d) => d.pod, ctx, []))
    .optional()
    .meta({ description: 'The outcome of each decap duty of spec.', 'x-kubernetes-list-type': 'atomic' }),
  conditions: Conditions.optional().meta({
    description: doc`Ready (the agent runs and its programs are loaded and attached) and Programmed
      (the data plane holds the current spec generation). docs/operator.md lists every reason.`,
  }),
  errors: z.array(boundedString(1024)).max(32).optional()
    .meta({ description: 'What failed in the last apply, one line each (most relevant first).' }),
  agentVersion: boundedString(128).optional().meta({ description: "The agent's version." }),
}).meta({ description: "What the node's agent programmed. Written by the agent only." });

export const BalancerNodeStatus = wire(status);
export type BalancerNodeStatus = z.output<typeof status>;

export const BalancerNode = wire(
  z.object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal(BALANCER_NODE.kind),
    metadata: z.looseObject({ name: z.string(), generation: Generation.optional() }),
    spec,
    status: status.optional(),
  }),
);
export type BalancerNode = z.output<typeof BalancerNode>;

/** What crds/balancernodes.fulcrum.dev.yaml says besides the schemas above. */
export const BALANCER_NODE_CRD: CrdSkeleton = {
  group: GROUP,
  version: VERSION,
  kind: BALANCER_NODE.kind,
  plural: BALANCER_NODE.plural,
  singular: 'balancernode',
  shortNames: [BALANCER_NODE.shortName],
  categories: ['fulcrum'],
  scope: 'Cluster',
  source: 'src/shared/api/balancer-node.ts',
  description: doc`BalancerNode is the data-plane state of one node, named after the node: the VIPs
    it balances (balancer role) and the local backend pods it decapsulates for (backend role). The
    operator writes spec; the node's agent programs it into BPF maps and reports in status. This is
    the only object an agent watches.`,
  spec,
  status,
  printerColumns: [
    { name: 'VIPs', type: 'integer', description: "VIP entries (address, port, protocol) the node's data plane holds.", jsonPath: '.status.vipCount' },
    { name: 'Generation', type: 'integer', description: "The spec's generation (what the operator wants).", jsonPath: '.metadata.generation' },
    { name: 'Programmed', type: 'integer', description: "The spec generation the node's data plane holds.", jsonPath: '.status.observedGeneration' },
    { name: 'Attach', type: 'string', description: "How XDP runs on the node's interfaces (native, generic, none).", jsonPath: '.status.attachMode' },
    { name: 'Ready', type: 'string', description: 'Whether the agent is running and its programs are loaded.', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    { name: 'Agent', type: 'string', priority: 1, description: "The agent's version.", jsonPath: '.status.agentVersion' },
  ],
};

// ------------------------------------------------------------------ spec → NodeDesiredState

/**
 * The network namespace of a backend pod on this node (a path such as
 * /proc/<pid>/ns/net or /run/netns/<name>), or undefined when the pod has none here (yet).
 * Resolve first (I/O), then map (pure): the resolver is typically a lookup in a table the
 * agent built from the container runtime or /proc.
 */
export type NetnsResolver = (pod: { readonly pod: string; readonly podUID: string }) => string | undefined;

export type UnresolvedDecap = { readonly pod: string; readonly podUID: string };

export type NodeDesiredStateMapping = {
  readonly state: NodeDesiredState;
  /** Duties left out because the resolver found no namespace: report them as outcome "pending". */
  readonly unresolved: readonly UnresolvedDecap[];
};

/**
 * A BalancerNode spec as the agent's NodeDesiredState: VIPs as they are, decap duties with
 * the namespace the resolver gives (duties it cannot resolve are left out and listed).
 * Validates the result against the contract, which canonicalises addresses; throws
 * ERR_DESIRED_STATE when the spec breaks it (e.g. "2001:db8::1" and "2001:DB8::1" as two
 * entries, which the API server's text comparison lets through).
 */
export function toNodeDesiredState(
  nodeSpec: BalancerNodeSpec,
  resolveNetns: NetnsResolver,
  options: { readonly generation?: number } = {},
): NodeDesiredStateMapping {
  const decap: NonNullable<NodeDesiredStateInput['decap']> = [];
  const unresolved: UnresolvedDecap[] = [];
  for (const duty of nodeSpec.decap) {
    const netns = resolveNetns({ pod: duty.pod, podUID: duty.podUID });
    if (netns === undefined) {
      unresolved.push({ pod: duty.pod, podUID: duty.podUID });
      continue;
    }
    decap.push({ pod: duty.pod, netns, interface: duty.interface, addresses: [...duty.addresses], vips: [...duty.vips] });
  }
  const input: NodeDesiredStateInput = {
    generation: options.generation ?? 0,
    vips: nodeSpec.vips.map((v) => ({
      name: v.name,
      address: v.address,
      port: v.port,
      protocol: v.protocol,
      encapsulation: v.encapsulation,
      sourceIpOnly: v.sourceIpOnly,
      lruBypass: v.lruBypass,
      backends: v.backends.map((b) => ({ address: b.address, weight: b.weight })),
    })),
    decap,
  };
  const parsed = NodeDesiredState.safeParse(input);
  if (!parsed.success) {
    throw new FulcrumError('ERR_DESIRED_STATE', `BalancerNode spec breaks the node contract: ${z.prettifyError(parsed.error)}`, {
      cause: parsed.error,
      details: { generation: input.generation },
    });
  }
  return { state: parsed.data, unresolved };
}
