// The kubeconfig that points kubectl and @kubernetes/client-node at an in-process server.
// The server speaks plain HTTP on loopback; client-node still wants skipTLSVerify set for an
// http:// cluster, and kubectl accepts insecure-skip-tls-verify there as well.

import { KubeConfig } from '@kubernetes/client-node';
import YAML from 'yaml';

export const KUBECONFIG_NAMES = { cluster: 'fulcrum-apiserver', user: 'fulcrum-admin', context: 'fulcrum' } as const;

export function kubeconfigYaml(url: string, namespace = 'default'): string {
  return YAML.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: KUBECONFIG_NAMES.cluster, cluster: { server: url, 'insecure-skip-tls-verify': true } }],
    users: [{ name: KUBECONFIG_NAMES.user, user: {} }],
    contexts: [{ name: KUBECONFIG_NAMES.context, context: { cluster: KUBECONFIG_NAMES.cluster, user: KUBECONFIG_NAMES.user, namespace } }],
    'current-context': KUBECONFIG_NAMES.context,
    preferences: {},
  });
}

export function kubeConfigFor(url: string, namespace = 'default'): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: KUBECONFIG_NAMES.cluster, server: url, skipTLSVerify: true }],
    users: [{ name: KUBECONFIG_NAMES.user }],
    contexts: [{ name: KUBECONFIG_NAMES.context, cluster: KUBECONFIG_NAMES.cluster, user: KUBECONFIG_NAMES.user, namespace }],
    currentContext: KUBECONFIG_NAMES.context,
  });
  return kc;
}
