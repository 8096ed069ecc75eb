// Fulcrum installed on a real control plane as a user installs it without Helm:
// `kubectl apply --server-side -f crds/ -f deploy/rbac/` as the cluster admin, then the
// operator and the agents run as the ServiceAccounts that creates, with tokens from
// TokenRequest (what the kubelet mounts into their pods), so RBAC is enforced on them
// exactly as on a cluster. The tests and the lab share this; the chart's own install is
// tested against the same control plane in test/chart.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ControlPlane } from './control-plane.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const CRD_DIR = join(REPO, 'crds');
export const RBAC_DIR = join(REPO, 'deploy/rbac');

/** The namespace deploy/rbac and the chart install into. */
export const FULCRUM_NAMESPACE = 'fulcrum-system';
export const OPERATOR_SERVICE_ACCOUNT = 'fulcrum-operator';
export const AGENT_SERVICE_ACCOUNT = 'fulcrum-agent';
export const CRD_NAMES = ['balancernodes.fulcrum.dev', 'loadbalancervips.fulcrum.dev', 'vippools.fulcrum.dev'] as const;

export type FulcrumIdentities = {
  /** A kubeconfig file for the operator's ServiceAccount (system:serviceaccount:fulcrum-system:fulcrum-operator). */
  readonly operatorKubeconfig: string;
  /** A kubeconfig file for the agents' ServiceAccount (one for every node, as the DaemonSet's pods share it). */
  readonly agentKubeconfig: string;
  readonly operatorUser: string;
  readonly agentUser: string;
};

/** Applies the CRDs and waits until the API server serves them. */
export async function installCrds(cp: ControlPlane): Promise<void> {
  await cp.kubectl(['apply', '--server-side', '--field-manager=fulcrum-install', '-f', CRD_DIR]);
  await cp.kubectl(['wait', '--for=condition=Established', '--timeout=60s', ...CRD_NAMES.map((n) => `crd/${n}`)]);
}

/**
 * CRDs, namespace, RBAC, and a kubeconfig per identity (written under cp.dir, or `dir`);
 * `server` overrides the address in them (a relay inside a lab namespace).
 */
export async function installFulcrum(cp: ControlPlane, options: { dir?: string; server?: string } = {}): Promise<FulcrumIdentities> {
  await installCrds(cp);
  await cp.kubectl(['apply', '--server-side', '--field-manager=fulcrum-install', '-f', '-'], {
    input: `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${FULCRUM_NAMESPACE}\n`,
  });
  await cp.kubectl(['apply', '--server-side', '--field-manager=fulcrum-install', '-f', RBAC_DIR]);
  const dir = options.dir ?? cp.dir;
  const operatorKubeconfig = join(dir, 'operator.kubeconfig');
  const agentKubeconfig = join(dir, 'agent.kubeconfig');
  writeFileSync(operatorKubeconfig, await cp.serviceAccountKubeconfig(FULCRUM_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, options.server), { mode: 0o600 });
  writeFileSync(agentKubeconfig, await cp.serviceAccountKubeconfig(FULCRUM_NAMESPACE, AGENT_SERVICE_ACCOUNT, options.server), { mode: 0o600 });
  return {
    operatorKubeconfig,
    agentKubeconfig,
    operatorUser: `system:serviceaccount:${FULCRUM_NAMESPACE}:${OPERATOR_SERVICE_ACCOUNT}`,
    agentUser: `system:serviceaccount:${FULCRUM_NAMESPACE}:${AGENT_SERVICE_ACCOUNT}`,
  };
}
