// The resources the operator reads and writes, and the subset of each wire object it
// uses. Objects stay plain JSON as the API server sent them (no generated model
// classes): one code path for built-ins and custom resources, no Date conversion, and
// fields newer than a model survive a read-modify-write.

import { ANNOTATIONS, API_VERSION, BALANCER_NODE_LABEL, GROUP, LOAD_BALANCER_CLASS, VERSION } from '../shared/api/index.ts';
import type { KubeObject, ResourceType } from '../shared/kube/objects.ts';

export type { KubeObject, ObjectMeta, OwnerReference, ResourceType } from '../shared/kube/objects.ts';

export { ANNOTATIONS, API_VERSION, GROUP, LOAD_BALANCER_CLASS, VERSION };
export const FINALIZER = 'fulcrum.dev/cleanup';
export const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'fulcrum-operator' } as const;

/** Nodes that balance a VIP whose spec has no nodeSelector. */
export const DEFAULT_BALANCER_LABEL = { key: BALANCER_NODE_LABEL, value: 'true' } as const;
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export const RESOURCES = {
  loadBalancerVips: { group: GROUP, version: VERSION, plural: 'loadbalancervips', kind: 'LoadBalancerVip', namespaced: true },
  vipPools: { group: GROUP, version: VERSION, plural: 'vippools', kind: 'VipPool', namespaced: false },
  balancerNodes: { group: GROUP, version: VERSION, plural: 'balancernodes', kind: 'BalancerNode', namespaced: false },
  services: { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true },
  endpointSlices: { group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', kind: 'EndpointSlice', namespaced: true },
  pods: { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true },
  nodes: { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false },
  namespaces: { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false },
  leases: { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease', namespaced: true },
  events: { group: 'events.k8s.io', version: 'v1', plural: 'events', kind: 'Event', namespaced: true },
} as const satisfies Record<string, ResourceType>;

export function apiVersionOf(rt: ResourceType): string {
  return rt.group === '' ? rt.version : `${rt.group}/${rt.version}`;
}

// ------------------------------------------------------------------ wire shapes

export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface ServicePort {
  name?: string;
  port: number;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  targetPort?: number | string;
}

export interface Service extends KubeObject {
  spec?: {
    type?: string;
    loadBalancerClass?: string | null;
    loadBalancerIP?: string;
    ports?: ServicePort[];
    ipFamilies?: ('IPv4' | 'IPv6')[];
    sessionAffinity?: string;
    selector?: Record<string, string>;
  };
  status?: { loadBalancer?: { ingress?: { ip?: string; hostname?: string; ipMode?: 'VIP' | 'Proxy' }[] } };
}

export interface EndpointConditions {
  ready?: boolean | null;
  serving?: boolean | null;
  terminating?: boolean | null;
}

export interface Endpoint {
  addresses: string[];
  conditions?: EndpointConditions;
  nodeName?: string;
  targetRef?: { kind?: string; name?: string; namespace?: string; uid?: string };
}

export interface EndpointSlice extends KubeObject {
  addressType: 'IPv4' | 'IPv6' | 'FQDN';
  endpoints?: Endpoint[] | null;
  ports?: { name?: string; port?: number; protocol?: string }[] | null;
}

export interface Pod extends KubeObject {
  spec?: { nodeName?: string };
  status?: { podIP?: string; podIPs?: { ip: string }[]; phase?: string };
}

export interface Node extends KubeObject {
  spec?: { unschedulable?: boolean };
}

export type Namespace = KubeObject;

export interface Lease extends KubeObject {
  spec?: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number | null;
    acquireTime?: string | null;
    renewTime?: string | null;
    leaseTransitions?: number | null;
  };
}

export function objectKey(obj: KubeObject): string {
  return obj.metadata.namespace ? `${obj.metadata.namespace}/${obj.metadata.name}` : obj.metadata.name;
}

export function splitKey(key: string): { namespace?: string; name: string } {
  const i = key.indexOf('/');
  return i < 0 ? { name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}
