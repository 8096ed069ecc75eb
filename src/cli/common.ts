// What every `fulcrum` subcommand shares: exit codes, how an error is told to a
// person (code and words; a stack trace only with --debug), and the shape of a
// command module. Each subcommand lives in its own file under src/cli/ and is listed
// in src/cli/main.ts.
import type { Command } from 'commander';
import { FulcrumError, isFulcrumError, type ErrorCode } from '../shared/errors.ts';

export const EXIT = {
  ok: 0,
  /** Something failed while running: BPF, attach, network namespace, I/O. */
  runtime: 1,
  /** The command line or a configuration file is wrong: fix it and run again. */
  usage: 2,
  /**
   * Nothing to look at: no Fulcrum data plane is pinned where `fulcrum inspect` looked.
   * Its own code, because it is an answer (the agent is not running or not installed on
   * this node) that scripts and probes act on, not a failure to read.
   */
  notPinned: 3,
} as const;

/**
 * The exit status of a child that a command runs on the user's behalf (`fulcrum bench`),
 * passed through unchanged: the benchmark's own code means what the benchmark says.
 */
export type ChildExitCode = number & { readonly childExitCode: true };
export type ExitCode = (typeof EXIT)[keyof typeof EXIT] | ChildExitCode;

export function childExitCode(code: number): ChildExitCode {
  return code as ChildExitCode;
}

/** Error codes that mean "what you gave me is wrong" rather than "something broke". */
const USAGE_CODES: ReadonlySet<ErrorCode> = new Set(['ERR_CONFIG', 'ERR_DESIRED_STATE']);

export function exitCodeFor(err: unknown): ExitCode {
  return isFulcrumError(err) && USAGE_CODES.has(err.code) ? EXIT.usage : EXIT.runtime;
}

/** The error as words on stderr: `fulcrum: ERR_CONFIG: ...`, then its causes; the stacks with debug. */
export function reportError(err: unknown, debug: boolean, write: (text: string) => void = (t) => process.stderr.write(t)): void {
  if (isFulcrumError(err)) {
    write(`fulcrum: ${err.code}: ${err.message}\n`);
  } else {
    write(`fulcrum: ERR_INTERNAL: ${err instanceof Error ? err.message : String(err)}\n`);
  }
  let cause = err instanceof Error ? err.cause : undefined;
  for (let depth = 0; cause !== undefined && depth < 5; depth++) {
    const text = cause instanceof Error ? cause.message : String(cause);
    if (!(err instanceof Error) || !err.message.includes(text)) write(`  caused by: ${text}\n`);
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  if (debug && err instanceof Error && err.stack) write(`${err.stack}\n`);
  if (!debug && !isFulcrumError(err)) write('  (run with --debug for the stack trace: this is a bug, please report it)\n');
}

/** Options every command sees (set on the root program). */
export type GlobalOptions = { debug?: boolean };

/** A subcommand: adds itself to the root program. Its action resolves to an exit code. */
export type CommandModule = {
  readonly name: string;
  register(program: Command, setExitCode: (code: ExitCode) => void): void;
};

/** Throw from an action for a usage error found after commander's own checks. */
export function usageError(message: string): FulcrumError {
  return new FulcrumError('ERR_CONFIG', message);
}
