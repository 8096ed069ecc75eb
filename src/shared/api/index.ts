// fulcrum.dev/v1alpha1: the zod schemas and types of LoadBalancerVip, VipPool and
// BalancerNode, which accept exactly what crds/*.yaml accept. docs/operator.md is the
// user's guide to the same API.
export * from './common.ts';
export * from './load-balancer-vip.ts';
export * from './vip-pool.ts';
export * from './balancer-node.ts';
