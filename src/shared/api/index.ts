// fulcrum.dev/v1alpha1: the zod schemas and types of LoadBalancerVip, VipPool and
// BalancerNode, from which crds/*.yaml are generated (crds.ts, `npm run gen:crds`).
// docs/operator.md is the user's guide to the same API.
export * from './common.ts';
export * from './load-balancer-vip.ts';
export * from './vip-pool.ts';
export * from './balancer-node.ts';
