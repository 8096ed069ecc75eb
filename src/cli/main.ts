// The `fulcrum` command line: the root program, its global options and the list of
// subcommands. Each subcommand is one module under src/cli/ (agent.ts, ...); adding
// one (operator, lab, inspect, bench) is adding it to COMMANDS.
import { Command, CommanderError } from 'commander';
import { FULCRUM_VERSION } from '../shared/version.ts';
import { agentCommand } from './agent.ts';
import { benchCommand } from './bench.ts';
import { inspectCommand } from './inspect.ts';
import { labCommand } from './lab.ts';
import { operatorCommand } from './operator.ts';
import { EXIT, exitCodeFor, reportError, type CommandModule, type ExitCode } from './common.ts';

export const COMMANDS: readonly CommandModule[] = [agentCommand, operatorCommand, labCommand, inspectCommand, benchCommand];

/** Runs the CLI on `argv` (process.argv form) and resolves to the exit code. Never throws. */
export async function main(argv: readonly string[]): Promise<ExitCode> {
  let exitCode: ExitCode = EXIT.ok;
  const program = new Command('fulcrum')
    .description('Fulcrum: XDP layer-4 load balancing for Kubernetes on bare metal')
    .version(FULCRUM_VERSION, '-V, --version')
    .option('--debug', 'print stack traces with errors')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  for (const command of COMMANDS) command.register(program, (code) => (exitCode = code));
  // Subcommands inherit exitOverride and the output settings.
  for (const sub of program.commands) sub.exitOverride();

  try {
    await program.parseAsync([...argv]);
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Asked-for help and --version exit 0; everything else commander rejects (and
      // has explained on stderr, including help shown for a missing command) is usage.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    reportError(err, program.opts<{ debug?: boolean }>().debug === true);
    return exitCodeFor(err);
  }
}
