// The Dockerfile and the chart must agree, and there is no Docker engine here to build the
// image: this reads the Dockerfile and checks what each side relies on — where the BPF
// objects land (where the agent's loader looks), the entrypoint (the chart passes only
// args), the user (the operator's runAsUser), the ports, the tools the agent runs, and that
// the build context lets every COPY through.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { basename, join, posix, relative } from 'node:path';
import { before, describe, it } from 'node:test';
import { DECAP_OBJECT } from '../../src/agent/agent.ts';
import { BALANCER_OBJECT, defaultObjectDir } from '../../src/agent/loader.ts';
import { agentCommand } from '../../src/cli/agent.ts';
import { operatorCommand } from '../../src/cli/operator.ts';
import { ROOT, container, render, type K8sObject, type Rendered } from './support.ts';

type Instruction = { op: string; args: string; line: number };
type Stage = { name: string; from: string; instructions: Instruction[] };

/** Instructions by stage; continuation lines joined, comments dropped (as BuildKit does). */
function parseDockerfile(text: string): { globalArgs: Map<string, string>; stages: Stage[] } {
  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let logical = lines[i]!;
    if (logical.trim() === '' || logical.trim().startsWith('#')) continue;
    while (logical.endsWith('\\') && i + 1 < lines.length) {
      i++;
      if (lines[i]!.trim().startsWith('#')) continue;
      logical = `${logical.slice(0, -1)} ${lines[i]!.trim()}`;
    }
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(logical);
    assert.ok(m, `Dockerfile line ${start + 1}: not an instruction`);
    const op = m[1]!.toUpperCase();
    const args = m[2]!.trim().replace(/\s+/g, ' ');
    if (op === 'FROM') {
      const f = /^(\S+)(?: AS (\S+))?$/i.exec(args);
      assert.ok(f, `FROM on line ${start + 1}`);
      stages.push({ name: f[2] ?? String(stages.length), from: f[1]!, instructions: [] });
    } else if (stages.length === 0) {
      assert.equal(op, 'ARG', 'only ARG comes before the first FROM');
      const [k, v] = args.split('=', 2);
      globalArgs.set(k!, v ?? '');
    } else {
      stages[stages.length - 1]!.instructions.push({ op, args, line: start + 1 });
    }
  }
  return { globalArgs, stages };
}

const dockerfile = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
const stage = (name: string): Stage => {
  const s = dockerfile.stages.find((x) => x.name === name);
  assert.ok(s, `a stage named ${name}`);
  return s;
};
const ops = (s: Stage, op: string) => s.instructions.filter((i) => i.op === op);
const runtime = dockerfile.stages[dockerfile.stages.length - 1]!;
const workdir = (s: Stage): string => {
  const w = ops(s, 'WORKDIR');
  return w[w.length - 1]?.args ?? '/';
};

type Copy = { from: string | undefined; sources: string[]; dest: string };
function copies(s: Stage): Copy[] {
  return ops(s, 'COPY').map((c) => {
    const words = c.args.split(' ');
    let from: string | undefined;
    while (words[0]!.startsWith('--')) {
      const flag = words.shift()!;
      if (flag.startsWith('--from=')) from = flag.slice('--from='.length);
    }
    const dest = words.pop()!;
    return { from, sources: words, dest: posix.resolve(workdir(s), dest) };
  });
}

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string; license: string; engines: { node: string } };
const APP = workdir(runtime);

let defaults: Rendered;
before(async () => {
  defaults = await render();
});

const workloads = () => [...defaults.ofKind('Deployment'), ...defaults.ofKind('DaemonSet')];

describe('Dockerfile and chart agree', () => {
  it('the entrypoint is the fulcrum CLI in the image, and the chart passes it only a command and flags', () => {
    const [entrypoint] = ops(runtime, 'ENTRYPOINT');
    assert.ok(entrypoint);
    assert.deepEqual(JSON.parse(entrypoint.args), ['node', `${APP}/src/cli.ts`]);
    assert.ok(existsSync(join(ROOT, 'src', 'cli.ts')));
    const src = copies(runtime).find((c) => c.dest === `${APP}/src`);
    assert.ok(src, `the runtime copies src/ to ${APP}/src`);
    // Its src/ is the one that was type-checked.
    assert.equal(src.from, 'check');
    assert.ok(copies(stage('check')).some((c) => c.from === undefined && c.sources.includes('src/') && c.dest === posix.resolve(workdir(stage('check')), 'src')));
    const commands = new Set([agentCommand.name, operatorCommand.name]);
    for (const w of workloads()) {
      for (const c of w.spec.template.spec.containers as K8sObject[]) {
        assert.equal(c.command, undefined, `${w.metadata.name}/${c.name} keeps the entrypoint`);
        assert.ok(commands.has(c.args[0]), `${w.metadata.name}/${c.name} runs ${String(c.args[0])}`);
      }
    }
    assert.equal(container(defaults.get('Deployment', 'fulcrum-operator'), 'operator').args[0], operatorCommand.name);
    assert.equal(container(defaults.get('DaemonSet', 'fulcrum-agent'), 'agent').args[0], agentCommand.name);
  });

  it('puts the BPF objects where the agent\'s loader looks for them', () => {
    // defaultObjectDir() is <installation>/bpf/build; the installation is APP in the image.
    const inImage = posix.join(APP, relative(ROOT, defaultObjectDir()).split('\\').join('/'));
    assert.equal(inImage, `${APP}/bpf/build`);
    const bpfCopies = copies(runtime).filter((c) => c.from === 'bpf');
    assert.equal(bpfCopies.length, 1);
    const [copy] = bpfCopies;
    assert.equal(copy!.dest, inImage);
    assert.deepEqual(copy!.sources.map((s) => basename(s)).sort(), [BALANCER_OBJECT, DECAP_OBJECT].sort());
    // ... and they come from where the bpf stage's make writes them (bpf/Makefile's BUILD).
    const build = /^BUILD\s*:=\s*(\S+)/m.exec(readFileSync(join(ROOT, 'bpf', 'Makefile'), 'utf8'))?.[1];
    assert.ok(build);
    const bpf = stage('bpf');
    assert.ok(ops(bpf, 'RUN').some((r) => /\bmake -C bpf\b/.test(r.args)));
    const built = posix.join(workdir(bpf), 'bpf', build);
    for (const source of copy!.sources) assert.equal(posix.dirname(source), built, source);
    // The chart leaves bpfObjectDir out, so the agent uses that default.
    for (const [file, text] of Object.entries(defaults.get('ConfigMap', 'fulcrum-agent').data as Record<string, string>)) {
      assert.ok(!text.includes('bpfObjectDir'), file);
    }
  });

  it('runs as the user the operator\'s securityContext names; the agent overrides it with root', () => {
    const [user] = ops(runtime, 'USER');
    assert.ok(user);
    const [uid, gid] = user.args.split(':').map(Number);
    assert.ok(uid! > 0, 'a non-root USER');
    const pod = defaults.get('Deployment', 'fulcrum-operator').spec.template.spec.securityContext;
    assert.equal(pod.runAsUser, uid);
    assert.equal(pod.runAsGroup, gid);
    assert.equal(pod.runAsNonRoot, true);
    assert.ok(ops(runtime, 'RUN').some((r) => r.args.includes(`--uid ${uid}`) && r.args.includes(`--gid ${gid}`)), 'the user exists in /etc/passwd');
    for (const ds of defaults.ofKind('DaemonSet')) {
      assert.equal(container(ds, 'agent').securityContext.runAsUser, 0, ds.metadata.name);
      assert.equal(container(ds, 'mount-bpffs', true).securityContext.runAsUser, 0, ds.metadata.name);
    }
  });

  it('EXPOSEs exactly the ports the chart\'s containers serve', () => {
    const exposed = ops(runtime, 'EXPOSE').flatMap((e) => e.args.split(' ')).map((p) => Number(p.replace(/\/tcp$/, ''))).sort();
    const served = workloads().flatMap((w) => (w.spec.template.spec.containers as K8sObject[]).flatMap((c) => (c.ports ?? []).map((p: K8sObject) => p.containerPort as number)));
    assert.deepEqual(exposed, [...new Set(served)].sort());
  });

  it('installs a package for every program the agent and the chart run in the container', () => {
    const install = ops(runtime, 'RUN').map((r) => /apt-get install (.*?)(&&|$)/.exec(r.args)?.[1]).find((x) => x !== undefined);
    assert.ok(install, 'the runtime installs Debian packages');
    const packages = new Set(install.split(' ').filter((w) => w !== '' && !w.startsWith('-')));
    assert.ok(packages.has('libbpf1'), 'koffi loads libbpf.so.1');
    // Programs the agent spawns: spawn('x', …) and run(['x', …]) in src/agent.
    const provider: Record<string, string> = { nsenter: 'util-linux', ip: 'iproute2', sh: 'dash', cat: 'coreutils' };
    // Debian's Essential packages are in every debian:12-slim image without an install.
    for (const essential of ['dash', 'coreutils']) packages.add(essential);
    const spawned = new Set<string>();
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) walk(path);
        else if (entry.name.endsWith('.ts')) {
          for (const m of readFileSync(path, 'utf8').matchAll(/\b(?:spawn|execFile|spawnSync|execFileSync)\(\s*'([^']+)'|\brun\(\s*\[\s*'([^']+)'/g)) spawned.add(m[1] ?? m[2]!);
        }
      }
    };
    walk(join(ROOT, 'src', 'agent'));
    assert.ok(spawned.has('nsenter'), `found ${[...spawned].join(', ')}`);
    for (const program of spawned) {
      assert.ok(program in provider, `the agent runs ${program}: name its Debian package here and install it in the Dockerfile`);
      assert.ok(packages.has(provider[program]!), `${program} needs ${provider[program]}`);
    }
    // The chart's init container: sh, stat and grep are in every debian:12-slim; mount is named.
    const init = container(defaults.get('DaemonSet', 'fulcrum-agent'), 'mount-bpffs', true);
    assert.equal(init.command[0], '/bin/sh');
    assert.match(init.args.join(' '), /\bmount -t bpf\b/);
    assert.ok(packages.has('mount'));
  });

  it('takes Node 24 from the official image and the app\'s dependencies from npm ci', () => {
    assert.match(dockerfile.globalArgs.get('NODE_IMAGE') ?? '', /^node:24-bookworm/);
    assert.match(pkg.engines.node, />=\s*24/);
    assert.equal(stage('node').from, '${NODE_IMAGE}');
    assert.match(dockerfile.globalArgs.get('RUNTIME_IMAGE') ?? '', /^debian:12-slim$/, 'the same Debian release as node:24-bookworm');
    assert.equal(runtime.from, '${RUNTIME_IMAGE}');
    assert.ok(copies(runtime).some((c) => c.from === 'node' && c.sources.join() === '/usr/local/bin/node' && c.dest === '/usr/local/bin/node'));
    assert.ok(ops(stage('deps'), 'RUN').some((r) => /npm ci --omit=dev --legacy-peer-deps/.test(r.args)));
    assert.ok(ops(stage('check'), 'RUN').some((r) => /npm ci --legacy-peer-deps/.test(r.args)));
    assert.ok(ops(stage('check'), 'RUN').some((r) => /\btsc -p tsconfig\.json\b/.test(r.args)));
    const modules = copies(runtime).find((c) => c.dest === `${APP}/node_modules`);
    assert.equal(modules?.from, 'deps', 'production dependencies only');
    assert.ok(copies(runtime).some((c) => c.from === undefined && c.sources.includes('package.json') && c.dest === APP), 'package.json: "type": "module" and the version');
  });

  it('labels the image with OCI annotations and package.json\'s version and license', () => {
    const labels = new Map<string, string>();
    for (const l of ops(runtime, 'LABEL')) {
      for (const m of l.args.matchAll(/(\S+?)="([^"]*)"/g)) labels.set(m[1]!, m[2]!);
    }
    for (const key of ['title', 'description', 'version', 'revision', 'licenses']) assert.ok(labels.has(`org.opencontainers.image.${key}`), key);
    assert.equal(labels.get('org.opencontainers.image.version'), '${VERSION}');
    assert.equal(labels.get('org.opencontainers.image.licenses'), pkg.license);
    const version = ops(runtime, 'ARG').find((a) => a.args.startsWith('VERSION='));
    assert.equal(version?.args, `VERSION=${pkg.version}`);
  });

  it('builds from a context that lets every COPY through and keeps host artifacts out', () => {
    const patterns = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
    // Docker's rule: the last pattern that matches decides; "!" re-includes.
    const matches = (pattern: string, path: string): boolean => {
      const p = pattern.replace(/\/$/, '');
      if (p === '*') return true;
      if (p.startsWith('**/')) return path.split('/').includes(p.slice(3));
      return path === p || path.startsWith(`${p}/`);
    };
    const excluded = (path: string): boolean => {
      let out = false;
      for (const pattern of patterns) {
        const negated = pattern.startsWith('!');
        if (matches(negated ? pattern.slice(1) : pattern, path)) out = !negated;
      }
      return out;
    };
    const fromContext = dockerfile.stages.flatMap((s) => copies(s).filter((c) => c.from === undefined).flatMap((c) => c.sources));
    assert.ok(fromContext.length > 0);
    for (const source of fromContext) assert.ok(!excluded(source.replace(/\/$/, '')), `.dockerignore excludes ${source}, which the Dockerfile copies`);
    for (const artifact of ['node_modules', '.tools', 'bpf/build', 'bench/out', '.git', 'src/node_modules']) assert.ok(excluded(artifact), `${artifact} is kept out`);
    // tsc in the check stage sees every directory tsconfig.json includes.
    const tsconfig = JSON.parse(readFileSync(join(ROOT, 'tsconfig.json'), 'utf8')) as { include: string[] };
    const checked = copies(stage('check')).filter((c) => c.from === undefined).flatMap((c) => c.sources.map((s) => s.replace(/\/$/, '')));
    for (const dir of tsconfig.include) assert.ok(checked.includes(dir), `the check stage copies ${dir}/`);
  });
});
