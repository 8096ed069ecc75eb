// Standalone mode: no Kubernetes. One YAML file holds the agent's configuration and
// the node's desired state (StandaloneFile); the agent programs it, then watches the
// file and programs every valid edit.
//
// A file that does not parse or validate is reported — file:line:column, field path,
// what is wrong — and changes nothing: the data plane keeps forwarding what it was
// last given. Editors save by writing a new file and renaming it over the old one, so
// the directory is watched (a watch on the file itself would follow the old inode),
// and bursts of events are debounced into one re-read.
//
// SIGTERM / SIGINT stop the agent without detaching: links and maps stay pinned, and
// the next agent adopts them. SIGHUP re-reads the file at once.
import { EventEmitter } from 'node:events';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { LineCounter, parseDocument, isNode } from 'yaml';
import type { z } from 'zod';
import { FulcrumError } from '../shared/errors.ts';
import { child, errorFields, rootLogger, type Logger } from '../shared/logging.ts';
import { Agent, type AgentOptions, type ReconcileResult } from './agent.ts';
import { StandaloneFile } from './config.ts';
import { parseOrThrow, type PathSegment } from './validate.ts';

/**
 * Reads and validates a standalone file. Throws FulcrumError ERR_CONFIG whose message
 * names the file, the line and column, and the field of every problem.
 */
export async function readStandaloneFile(path: string): Promise<{ file: StandaloneFile; text: string }> {
  const text = await readConfigText(path);
  return { file: parseStandaloneText(text, path), text };
}

/** The text of a configuration file, or ERR_CONFIG saying why it cannot be read. */
export async function readConfigText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new FulcrumError('ERR_CONFIG', `cannot read ${path}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code ?? (err as Error).message}`,
      { cause: err, details: { file: path } });
  }
}

/** Parses YAML text as a StandaloneFile; `name` is used in messages. */
export function parseStandaloneText(text: string, name: string): StandaloneFile {
  return parseYaml(text, name, StandaloneFile);
}

/**
 * Parses YAML text and validates it with `schema`. Throws FulcrumError ERR_CONFIG with
 * name:line:column for syntax errors and for every field zod rejects.
 */
export function parseYaml<S extends z.ZodType>(text: string, name: string, schema: S): z.output<S> {
  const lineCounter = new LineCounter();
  // prettyErrors fills in linePos; its message adds " at line L, column C:" and a code
  // frame, which the name:line:column prefix replaces.
  const doc = parseDocument(text, { lineCounter, prettyErrors: true });
  if (doc.errors.length > 0) {
    const lines = doc.errors.map((e) => {
      const pos = e.linePos?.[0];
      const message = (e.message.split('\n', 1)[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
      return `  ${name}${pos ? `:${pos.line}:${pos.col}` : ''}: ${message}`;
    });
    throw new FulcrumError('ERR_CONFIG', `${name} is not valid YAML:\n${lines.join('\n')}`, { details: { file: name } });
  }
  const data: unknown = doc.toJS();
  // The deepest node of the path that exists (a missing field is reported at its parent).
  const locate = (path: readonly PathSegment[]): string | undefined => {
    for (let n = path.length; n >= 0; n--) {
      const node: unknown = doc.getIn(path.slice(0, n), true);
      if (isNode(node) && node.range) {
        const pos = lineCounter.linePos(node.range[0]);
        return `${name}:${pos.line}:${pos.col}`;
      }
    }
    return undefined;
  };
  return parseOrThrow(schema, data ?? {}, name, { locate });
}

export type ReloadOutcome =
  | { readonly outcome: 'unchanged' }
  | { readonly outcome: 'rejected'; readonly error: FulcrumError }
  | { readonly outcome: 'reconciled'; readonly result: ReconcileResult };

export type StandaloneOptions = Omit<AgentOptions, 'log'> & {
  readonly file: string;
  readonly log?: Logger;
  /** Quiet time after the last file event before re-reading. Default 200 ms. */
  readonly debounceMs?: number;
};

/**
 * The agent driven by a file. Emits 'reload' (ReloadOutcome) after every re-read that
 * the watcher triggered.
 */
export class StandaloneAgent extends EventEmitter<{ reload: [ReloadOutcome]; stopped: [] }> {
  readonly agent: Agent;
  readonly path: string;
  readonly #log: Logger;
  readonly #debounceMs: number;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** The text last handed to the agent (edits that change nothing are skipped). */
  #appliedText: string;
  #appliedAgentSection: string;
  #reading: Promise<ReloadOutcome> | undefined;
  #again = false;

  private constructor(agent: Agent, path: string, text: string, file: StandaloneFile, log: Logger, debounceMs: number) {
    super();
    this.agent = agent;
    this.path = path;
    this.#log = log;
    this.#debounceMs = debounceMs;
    this.#appliedText = text;
    this.#appliedAgentSection = JSON.stringify(file.agent);
  }

  /**
   * Reads the file (an invalid one throws ERR_CONFIG: nothing was started), starts the
   * agent, programs the state and starts watching. A state that fails to program is
   * logged and retried on the next edit; the agent keeps running (not ready).
   */
  static async start(options: StandaloneOptions): Promise<StandaloneAgent> {
    const path = resolve(options.file);
    const log = child({ component: 'standalone', file: path }, options.log ?? rootLogger);
    const { file, text } = await readStandaloneFile(path);
    const agent = await Agent.start(file.agent, { ...options, log });
    const standalone = new StandaloneAgent(agent, path, text, file, log, options.debounceMs ?? 200);
    try {
      await standalone.#program(file);
      standalone.#watch();
    } catch (err) {
      await agent.stop();
      throw err;
    }
    return standalone;
  }

  /** Re-reads the file now and programs it if it changed and is valid. */
  reload(): Promise<ReloadOutcome> {
    if (this.#reading !== undefined) {
      // One read at a time; one more after it picks up whatever changed meanwhile.
      this.#again = true;
      return this.#reading;
    }
    this.#reading = this.#reload().finally(() => {
      this.#reading = undefined;
      if (this.#again) {
        this.#again = false;
        void this.reload().then((o) => this.emit('reload', o));
      }
    });
    return this.#reading;
  }

  /** Stops watching and stops the agent; the data plane keeps running. */
  async stop(): Promise<void> {
    this.#watcher?.close();
    this.#watcher = undefined;
    clearTimeout(this.#timer);
    await this.#reading?.catch(() => undefined);
    await this.agent.stop();
    this.emit('stopped');
  }

  async #reload(): Promise<ReloadOutcome> {
    let read: { file: StandaloneFile; text: string };
    try {
      read = await readStandaloneFile(this.path);
    } catch (err) {
      const error = err instanceof FulcrumError ? err : new FulcrumError('ERR_CONFIG', String(err), { cause: err });
      this.#log.error(errorFields(error), 'the file is not valid; the data plane keeps what it has');
      return { outcome: 'rejected', error };
    }
    if (read.text === this.#appliedText) return { outcome: 'unchanged' };
    this.#appliedText = read.text;
    const agentSection = JSON.stringify(read.file.agent);
    if (agentSection !== this.#appliedAgentSection) {
      this.#log.warn('the agent section changed; it takes effect when the agent restarts (the state section is applied now)');
      this.#appliedAgentSection = agentSection;
    }
    return { outcome: 'reconciled', result: await this.#program(read.file) };
  }

  async #program(file: StandaloneFile): Promise<ReconcileResult> {
    const result = await this.agent.reconcile(file.state);
    if (result.outcome === 'failed') {
      this.#log.error({ errors: result.errors }, 'the state could not be programmed; fix the file and save it again');
    }
    return result;
  }

  #watch(): void {
    const dir = dirname(this.path);
    const name = basename(this.path);
    this.#watcher = watch(dir, { persistent: true }, (_event, filename) => {
      // Some platforms give no filename: re-read then, it is cheap.
      if (filename !== null && filename !== name) return;
      clearTimeout(this.#timer);
      this.#timer = setTimeout(() => void this.reload().then((o) => this.emit('reload', o)), this.#debounceMs);
    });
    this.#watcher.on('error', (err) => this.#log.error(errorFields(err), `watching ${dir} failed; edits are no longer picked up`));
    this.#log.info({ dir }, 'watching the file for changes');
  }
}

/**
 * Runs standalone mode until SIGTERM or SIGINT, then stops without detaching.
 * Resolves when stopped. Start-up failures reject (the CLI maps them to exit codes).
 */
export async function runStandalone(options: StandaloneOptions): Promise<void> {
  const standalone = await StandaloneAgent.start(options);
  await new Promise<void>((resolveStopped) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      (options.log ?? rootLogger).info({ signal }, 'stopping; the data plane keeps running');
      void standalone.stop().then(resolveStopped, (err: unknown) => {
        (options.log ?? rootLogger).error(errorFields(err), 'stopping failed');
        resolveStopped();
      });
    };
    // SIGHUP: re-read now (a file changed where no watch can see it, e.g. a bind mount).
    const onHangup = () => void standalone.reload().then((o) => standalone.emit('reload', o));
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    process.on('SIGHUP', onHangup);
    standalone.once('stopped', () => process.off('SIGHUP', onHangup));
  });
}
