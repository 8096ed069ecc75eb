// `fulcrum agent`: run the node agent. With a standalone file (agent: and state:
// sections) it programs the state and follows edits to the file; --reset-maps starts
// over with empty maps; --uninstall removes the data plane from the node and exits.
import { Option } from 'commander';
import { z } from 'zod';
import { parseLogLevel, rootLogger, setLogLevel, LOG_LEVELS } from '../shared/logging.ts';
import { AgentConfig } from '../agent/config.ts';
import { uninstallNode } from '../agent/agent.ts';
import { FulcrumError } from '../shared/errors.ts';
import { parseYaml, readConfigText, runStandalone } from '../agent/standalone.ts';
import { EXIT, usageError, type CommandModule } from './common.ts';

type AgentFlags = { config: string; resetMaps?: boolean; uninstall?: boolean; logLevel?: string };

/** Just enough of the file to find the agent section (uninstall must work even if the state is broken). */
const AgentSectionOnly = z.looseObject({ agent: AgentConfig });

/** A file that is an agent configuration itself (no agent: / state: sections) is meant for Kubernetes mode. */
const KubernetesModeFile = z.looseObject({ nodeName: z.string(), agent: z.never().optional(), state: z.never().optional() });

export const agentCommand: CommandModule = {
  name: 'agent',
  register(program, setExitCode) {
    program
      .command('agent')
      .summary('run the node agent (XDP balancer and backend duties)')
      .description(
        'Run the node agent. With a standalone file (sections agent: and state:), program the state and ' +
          'reprogram on every valid edit of the file (or on SIGHUP). SIGTERM / SIGINT stop the agent without ' +
          'detaching: forwarding and the connection table go on, and the next agent adopts them.',
      )
      .requiredOption('-c, --config <file>', 'the agent\'s YAML file (see docs/agent.md)')
      .option('--reset-maps', 'unpin the balancer maps and start with empty ones (needed after changing ringSize, maxVips, maxBackends or connTableSize; drops the connection table)')
      .option('--uninstall', 'remove the data plane from this node and exit: detach the balancer, unpin its maps, undo every backend pod\'s decap')
      .addOption(new Option('--log-level <level>', 'log level (default: FULCRUM_LOG_LEVEL or info)').choices(LOG_LEVELS))
      .addHelpText('after', '\nExit codes: 0 stopped cleanly, 1 runtime failure, 2 invalid command line or configuration.')
      .action(async (flags: AgentFlags) => {
        if (flags.logLevel !== undefined) setLogLevel(parseLogLevel(flags.logLevel, '--log-level'));
        if (flags.uninstall === true && flags.resetMaps === true) throw usageError('--uninstall and --reset-maps do not go together');
        const text = await readConfigText(flags.config);
        if (flags.uninstall === true) {
          const { agent } = parseYaml(text, flags.config, AgentSectionOnly);
          const result = await uninstallNode(agent, rootLogger);
          const failed = result.decap.pods.filter((p) => p.outcome === 'failed');
          rootLogger.info({ pinRoot: agent.pinRoot, detachedLinks: result.detachedLinks, unpinnedMaps: result.unpinnedMaps.length,
            decapRemoved: result.decap.pods.length - failed.length }, 'uninstalled the data plane');
          if (failed.length > 0) {
            throw new FulcrumError('ERR_NETNS', `could not remove decap from ${failed.length} pod(s): ${failed.map((p) => `${p.pod}: ${p.outcome === 'failed' ? p.error.message : ''}`).join('; ')}`);
          }
          setExitCode(EXIT.ok);
          return;
        }
        const data: unknown = parseYaml(text, flags.config, z.unknown());
        if (KubernetesModeFile.safeParse(data).success) {
          throw usageError(
            `${flags.config} holds an agent configuration without a state: section. Kubernetes mode (watching this ` +
              'node\'s BalancerNode) is not part of this build; write a standalone file with agent: and state: sections.',
          );
        }
        await runStandalone({ file: flags.config, ...(flags.resetMaps === true ? { resetMaps: true } : {}) });
        setExitCode(EXIT.ok);
      });
  },
};
