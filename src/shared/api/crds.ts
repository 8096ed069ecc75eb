// The three CRDs of fulcrum.dev, as the files crds/ holds (and the chart's copy,
// charts/fulcrum/files/crds/). Pure: scripts/gen-crds.ts writes them,
// test/shared/api/crd-generate.test.ts checks the committed files against them.
import { BALANCER_NODE_CRD } from './balancer-node.ts';
import { crdFileName, toCrdYaml } from './crd-generate.ts';
import type { CrdSkeleton } from './crd-generate.ts';
import { LOAD_BALANCER_VIP_CRD } from './load-balancer-vip.ts';
import { VIP_POOL_CRD } from './vip-pool.ts';

export const CRD_KINDS: readonly CrdSkeleton[] = [LOAD_BALANCER_VIP_CRD, VIP_POOL_CRD, BALANCER_NODE_CRD];

/** The directories, relative to the repository root, that hold the generated files. */
export const CRD_DIRS = ['crds', 'charts/fulcrum/files/crds'] as const;

/** File name → content of every generated CRD. */
export function crdFiles(): Map<string, string> {
  return new Map(CRD_KINDS.map((kind) => [crdFileName(kind), toCrdYaml(kind)]));
}
