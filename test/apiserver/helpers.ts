// Shared fixtures for the apiserver tests: a server per suite, a kubectl runner that does not
// block the event loop the server runs on, and small polling/error helpers.

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ApiException } from '@kubernetes/client-node';
import { startApiServer } from '../../src/apiserver/index.ts';
import type { ApiServer, ApiServerOptions } from '../../src/apiserver/index.ts';

const run = promisify(execFile);
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');

export async function withServer(options: ApiServerOptions = {}): Promise<ApiServer> {
  return startApiServer(options);
}

/** The metav1.Status of a failed client-node call. */
export function statusOf(err: unknown): { code: number; reason?: string; message?: string; details?: { causes?: { field?: string; reason: string; message: string }[] } } {
  if (!(err instanceof ApiException)) throw err;
  const body: unknown = typeof err.body === 'string' ? JSON.parse(err.body) : err.body;
  return body as ReturnType<typeof statusOf>;
}

export async function expectStatus(promise: Promise<unknown>, code: number): Promise<ReturnType<typeof statusOf>> {
  try {
    await promise;
  } catch (err) {
    const status = statusOf(err);
    if (status.code !== code) throw new Error(`expected HTTP ${code}, got ${status.code}: ${status.message}`);
    return status;
  }
  throw new Error(`expected HTTP ${code}, but the call succeeded`);
}

export async function waitFor<T>(probe: () => T | undefined | false | Promise<T | undefined | false>, what: string, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// ---------------------------------------------------------------- kubectl

let kubectlPath: string | undefined | null;

/** kubectl from scripts/kube-tools.sh, or null (with the reason logged) when it cannot be produced. */
export async function findKubectl(): Promise<string | null> {
  if (kubectlPath !== undefined) return kubectlPath;
  try {
    const { stdout } = await run('bash', [join(REPO_ROOT, 'scripts', 'kube-tools.sh')], { encoding: 'utf8' });
    const candidate = join(stdout.trim(), 'kubectl');
    kubectlPath = existsSync(candidate) ? candidate : null;
  } catch (err) {
    console.error(`kubectl unavailable: scripts/kube-tools.sh failed: ${(err as Error).message}`);
    kubectlPath = null;
  }
  return kubectlPath;
}

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function makeKubectl(server: ApiServer): Promise<((...args: string[]) => Promise<KubectlResult>) | null> {
  const bin = await findKubectl();
  if (bin === null) return null;
  // A private discovery cache: ports are reused across runs, cached discovery must not be.
  const cacheDir = await mkdtemp(join(tmpdir(), 'kubectl-cache-'));
  return async (...args: string[]) => {
    try {
      const { stdout, stderr } = await run(bin, ['--kubeconfig', server.kubeconfigPath, '--cache-dir', cacheDir, ...args], {
        encoding: 'utf8', timeout: 30_000, env: { ...process.env, KUBECTL_KUBERC: 'false' },
      });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
    }
  };
}
