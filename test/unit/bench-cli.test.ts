// `fulcrum bench`: the list of benchmarks, how each is run (never actually run here:
// benchmarks are not tests), and that the npm scripts go through the command so the
// flags live in one place.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BENCHMARKS, ROOT, planBenchmark, runBenchmark, type BenchHost } from '../../src/cli/bench.ts';
import { EXIT } from '../../src/cli/common.ts';

const CLI = join(ROOT, 'src/cli.ts');

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const host = (over: Partial<BenchHost> = {}): BenchHost =>
  ({ root: '/opt/fulcrum', execPath: '/usr/bin/node', cpus: 8, hasTaskset: true, exists: () => true, ...over });

test('fulcrum bench --help lists every benchmark on one line, with its target', () => {
  const r = cli(['bench', '--help']);
  assert.equal(r.status, EXIT.ok, r.stderr);
  for (const b of BENCHMARKS) {
    const line = r.stdout.split('\n').find((l) => l.startsWith(`  ${b.name} `));
    assert.ok(line !== undefined, `${b.name} listed:\n${r.stdout}`);
    assert.ok(line.includes(`target ${b.targets}`), line);
  }
  assert.deepEqual(BENCHMARKS.map((b) => b.name), ['xdp', 'agent', 'operator', 'maglev']);
});

test('an unknown benchmark is a usage error (exit 2), named in words', () => {
  const r = cli(['bench', 'nosuch']);
  assert.equal(r.status, EXIT.usage);
  assert.match(r.stderr, /'nosuch' is invalid for argument 'benchmark'\. Allowed choices are xdp, agent, operator, maglev\./);
  assert.equal(cli(['bench']).status, EXIT.usage, 'the benchmark is required');
});

test('each benchmark runs with its own flags; xdp pinned to CPU 1 with taskset', () => {
  const plans = Object.fromEntries(BENCHMARKS.map((b) => [b.name, planBenchmark(b, host())]));
  assert.deepEqual(plans, {
    xdp: { outcome: 'run', command: 'taskset', args: ['-c', '1', '/usr/bin/node', '/opt/fulcrum/bench/xdp.ts'] },
    agent: { outcome: 'run', command: '/usr/bin/node', args: ['--expose-gc', '/opt/fulcrum/bench/agent.ts'] },
    operator: { outcome: 'run', command: '/usr/bin/node', args: ['--expose-gc', '/opt/fulcrum/bench/operator.ts'] },
    maglev: { outcome: 'run', command: '/usr/bin/node', args: ['/opt/fulcrum/bench/maglev.ts'] },
  });
  const xdp = BENCHMARKS[0]!;
  assert.deepEqual(planBenchmark(xdp, host({ cpus: 1 })), {
    outcome: 'run', command: '/usr/bin/node', args: ['/opt/fulcrum/bench/xdp.ts'],
    note: 'running unpinned (this machine has 1 CPU(s)): expect noisier figures than on CPU 1',
  });
  assert.match((planBenchmark(xdp, host({ hasTaskset: false })) as { note: string }).note, /taskset \(util-linux\) is not installed/);
});

test('a benchmark file missing from the installation is said in words, exit 1, nothing run', async () => {
  const lines: string[] = [];
  const code = await runBenchmark(BENCHMARKS[1]!, host({ exists: () => false }), (t) => void lines.push(t));
  assert.equal(code, EXIT.runtime);
  assert.deepEqual(lines, ['fulcrum: benchmark agent: bench/agent.ts is not in this installation (/opt/fulcrum); images built without the benchmarks leave bench/ out: run it from a source checkout\n']);
});

test('the benchmark\'s exit code passes through, and where its JSON landed is said', async () => {
  // Stand-ins in a scratch installation: the real benchmarks are never run by tests.
  const root = mkdtempSync(join(tmpdir(), 'fulcrum-bench-'));
  try {
    mkdirSync(join(root, 'bench'));
    writeFileSync(join(root, 'bench/agent.ts'), "import { mkdirSync, writeFileSync } from 'node:fs';\n" +
      "mkdirSync('bench/out', { recursive: true });\nwriteFileSync('bench/out/agent.json', '{}');\n");
    writeFileSync(join(root, 'bench/maglev.ts'), 'process.exit(7);\n');
    const lines: string[] = [];
    const run = (name: string) => runBenchmark(BENCHMARKS.find((b) => b.name === name)!, host({ root, execPath: process.execPath, exists: existsSync }),
      (t) => void lines.push(t));
    assert.equal(await run('agent'), EXIT.ok);
    assert.deepEqual(lines.splice(0), [`fulcrum bench: results in ${join(root, 'bench/out/agent.json')}\n`]);
    assert.equal(await run('maglev'), 7);
    assert.deepEqual(lines.splice(0), ['fulcrum bench: maglev prints its figures only (no JSON file)\n']);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('the npm bench scripts are this command, one per benchmark: the flags live in BENCHMARKS only', () => {
  const scripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
  const bench = Object.fromEntries(Object.entries(scripts).filter(([name]) => name.startsWith('bench:')));
  assert.deepEqual(bench, Object.fromEntries(BENCHMARKS.map((b) => [`bench:${b.name}`, `node src/cli.ts bench ${b.name}`])));
  for (const b of BENCHMARKS) {
    assert.ok(b.output === null || b.output.startsWith('bench/out/'), `${b.name} writes under bench/out/`);
  }
});
