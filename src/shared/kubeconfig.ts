// Where the operator and the agent find the API server: one rule for both, so that
// neither falls back to client-node's silent http://localhost:8080 when nothing is set.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { FulcrumError, isFulcrumError } from './errors.ts';

/**
 * The API server's address and credentials: the file given, else the pod's service
 * account (in a cluster), else $KUBECONFIG or ~/.kube/config. ERR_CONFIG when there is
 * none, rather than client-node's fallback to http://localhost:8080.
 */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (path !== undefined) {
      kc.loadFromFile(path);
    } else if (process.env.KUBERNETES_SERVICE_HOST !== undefined && process.env.KUBERNETES_SERVICE_HOST !== '') {
      kc.loadFromCluster();
    } else if ((process.env.KUBECONFIG ?? '') !== '' || existsSync(join(homedir(), '.kube', 'config'))) {
      kc.loadFromDefault();
    } else {
      throw new FulcrumError('ERR_CONFIG',
        'no kubeconfig: pass --kubeconfig <file>, set KUBECONFIG, or run in a pod (its service account is used)');
    }
  } catch (err) {
    if (isFulcrumError(err)) throw err;
    throw new FulcrumError('ERR_CONFIG', `cannot load the kubeconfig${path !== undefined ? ` ${path}` : ''}: ${(err as Error).message}`,
      { cause: err, ...(path !== undefined ? { details: { file: path } } : {}) });
  }
  const cluster = kc.getCurrentCluster();
  if (cluster === null) throw new FulcrumError('ERR_CONFIG', `the kubeconfig${path !== undefined ? ` ${path}` : ''} has no current cluster (set current-context)`);
  try {
    new URL(cluster.server);
  } catch (cause) {
    throw new FulcrumError('ERR_CONFIG', `the kubeconfig's server "${cluster.server}" is not a URL`, { cause });
  }
  return kc;
}
