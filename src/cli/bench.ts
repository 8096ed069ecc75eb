// `fulcrum bench <name>`: run one of the benchmarks in bench/ as a child process with the
// Node flags and CPU pinning it is meant to run with, pass its output and exit code
// through, and say where its JSON landed. BENCHMARKS is the one list of benchmarks:
// the npm scripts (bench:xdp, ...) call this command instead of repeating the flags.
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { availableParallelism, constants } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Argument } from 'commander';
import { EXIT, childExitCode, type CommandModule, type ExitCode } from './common.ts';

export type Benchmark = {
  readonly name: string;
  /** The script, relative to the installation's root. */
  readonly file: string;
  /** Node flags the figures assume (--expose-gc: the benchmark collects garbage between runs). */
  readonly nodeFlags: readonly string[];
  /** Run pinned to this CPU (taskset -c): one CPU keeps the kernel's timings comparable between runs. */
  readonly cpu?: number;
  /** Where it writes its JSON, relative to the root; null when it only prints. */
  readonly output: string | null;
  readonly summary: string;
  /** The targets it is judged by (the benchmark itself prints whether they were met). */
  readonly targets: string;
};

export const BENCHMARKS: readonly Benchmark[] = [
  {
    name: 'xdp',
    file: 'bench/xdp.ts',
    nodeFlags: [],
    cpu: 1,
    output: 'bench/out/xdp.json',
    summary: 'ns per packet per scenario through BPF_PROG_TEST_RUN (root); FULCRUM_BENCH_BASELINE=<git rev> runs that revision\'s balancer interleaved and reports ratios',
    targets: 'ratio to the baseline (net of the floor): established <= 0.88, LRU bypass <= 0.82, new flows <= 0.75, ICMP echo <= 0.73',
  },
  {
    name: 'agent',
    file: 'bench/agent.ts',
    nodeFlags: ['--expose-gc'],
    output: 'bench/out/agent.json',
    summary: 'programming 512 VIPs x 100 backends, one-backend deltas, memory (root)',
    targets: 'full <= 10 s, delta <= 20 ms, rss <= 250 MB',
  },
  {
    name: 'operator',
    file: 'bench/operator.ts',
    nodeFlags: ['--expose-gc'],
    output: 'bench/out/operator.json',
    summary: 'operator at 100 nodes, 500 VIPs, 10,000 endpoints',
    targets: 'change p99 <= 1 s, resync <= 30 s, rss <= 300 MB',
  },
  {
    name: 'maglev',
    file: 'bench/maglev.ts',
    nodeFlags: [],
    output: null,
    summary: 'Maglev ring builds of 65537 slots, 10 to 1000 backends',
    targets: '<= 4 ms per ring (equal weights)',
  },
];

/** The installation's root: bench/ and bench/out/ are found from here, whatever the working directory. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export type BenchPlan =
  | { readonly outcome: 'run'; readonly command: string; readonly args: readonly string[]; readonly note?: string }
  | { readonly outcome: 'missing'; readonly message: string };

export type BenchHost = {
  readonly root: string;
  readonly execPath: string;
  readonly cpus: number;
  readonly hasTaskset: boolean;
  readonly exists: (path: string) => boolean;
};

/** How to run a benchmark on this host. Pure: the host's facts come in `host`. */
export function planBenchmark(bench: Benchmark, host: BenchHost): BenchPlan {
  const script = join(host.root, bench.file);
  if (!host.exists(script)) {
    return {
      outcome: 'missing',
      message: `benchmark ${bench.name}: ${bench.file} is not in this installation (${host.root}); images built without the ` +
        'benchmarks leave bench/ out: run it from a source checkout',
    };
  }
  const node = [host.execPath, ...bench.nodeFlags, script];
  if (bench.cpu === undefined) return { outcome: 'run', command: node[0]!, args: node.slice(1) };
  if (!host.hasTaskset || host.cpus <= bench.cpu) {
    const why = !host.hasTaskset ? 'taskset (util-linux) is not installed' : `this machine has ${host.cpus} CPU(s)`;
    return { outcome: 'run', command: node[0]!, args: node.slice(1), note: `running unpinned (${why}): expect noisier figures than on CPU ${bench.cpu}` };
  }
  return { outcome: 'run', command: 'taskset', args: ['-c', String(bench.cpu), ...node] };
}

function onPath(command: string): boolean {
  return (process.env['PATH'] ?? '').split(delimiter).some((dir) => dir !== '' && existsSync(join(dir, command)));
}

function thisHost(): BenchHost {
  return { root: ROOT, execPath: process.execPath, cpus: availableParallelism(), hasTaskset: onPath('taskset'), exists: existsSync };
}

/** Runs the child with the terminal; resolves to its exit code (128 + signal number when a signal ended it). */
function runChild(command: string, args: readonly string[], cwd: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: 'inherit' });
    // Ctrl-C reaches the whole foreground process group, the benchmark included: let it
    // finish its cleanup (BPF objects, child processes) and report its own status. A
    // SIGTERM sent to this process alone is handed on.
    const ignore = (): void => {};
    const forward = (): void => void child.kill('SIGTERM');
    process.on('SIGINT', ignore);
    process.on('SIGTERM', forward);
    const done = (): void => {
      process.off('SIGINT', ignore);
      process.off('SIGTERM', forward);
    };
    child.on('error', (err) => {
      done();
      reject(err);
    });
    child.on('exit', (code, signal) => {
      done();
      resolve(code ?? 128 + (signal !== null ? constants.signals[signal] : 0));
    });
  });
}

export async function runBenchmark(bench: Benchmark, host: BenchHost = thisHost(),
  write: (text: string) => void = (text) => void process.stderr.write(text)): Promise<ExitCode> {
  const plan = planBenchmark(bench, host);
  if (plan.outcome === 'missing') {
    write(`fulcrum: ${plan.message}\n`);
    return EXIT.runtime;
  }
  if (plan.note !== undefined) write(`fulcrum bench: ${plan.note}\n`);
  const started = Date.now();
  const code = await runChild(plan.command, plan.args, host.root);
  if (bench.output === null) {
    write(`fulcrum bench: ${bench.name} prints its figures only (no JSON file)\n`);
  } else {
    const path = join(host.root, bench.output);
    const fresh = existsSync(path) && statSync(path).mtimeMs >= started - 1000;
    write(fresh
      ? `fulcrum bench: results in ${path}\n`
      : `fulcrum bench: ${bench.name} wrote no new ${path} (exit code ${code})\n`);
  }
  return code === 0 ? EXIT.ok : childExitCode(code);
}

function benchmarkList(): string {
  const width = Math.max(...BENCHMARKS.map((b) => b.name.length));
  return BENCHMARKS.map((b) => `  ${b.name.padEnd(width)}  ${b.summary}; target ${b.targets}; ${b.output ?? 'no JSON'}`).join('\n');
}

export const benchCommand: CommandModule = {
  name: 'bench',
  register(program, setExitCode) {
    program
      .command('bench')
      .summary('run a benchmark (xdp, agent, operator, maglev) with its flags and CPU pinning')
      .description(
        'Run one benchmark from bench/ as a child process, with the Node flags and CPU pinning its figures assume; ' +
          'its output and exit code pass through. Each prints a table and (but maglev) writes JSON under bench/out/. ' +
          'Benchmarks are never tests: run them on a quiet machine. FULCRUM_BENCH_* environment variables reach the ' +
          'benchmark (see the head of each file in bench/).',
      )
      .addArgument(new Argument('<benchmark>', 'which benchmark').choices(BENCHMARKS.map((b) => b.name)))
      .addHelpText('after', `\nBenchmarks:\n${benchmarkList()}\n\nExit codes: the benchmark's own (128 + n when signal n ended it); ` +
        '1 when its file is missing; 2 for an unknown benchmark.')
      .action(async (name: string) => {
        setExitCode(await runBenchmark(BENCHMARKS.find((b) => b.name === name)!));
      });
  },
};
