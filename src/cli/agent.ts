// `fulcrum agent`: run the node agent. With a standalone file (agent: and state:
// sections) it programs the state and follows edits to the file. With --kubernetes the
// file is the agent's configuration alone and the state comes from the node's
// BalancerNode. --reset-maps starts over with empty maps; --uninstall removes the data
// plane from the node and exits.
import { Option } from 'commander';
import { z } from 'zod';
import { parseLogLevel, rootLogger, setLogLevel, LOG_LEVELS } from '../shared/logging.ts';
import { ObjectName } from '../shared/api/common.ts';
import { AgentConfig } from '../agent/config.ts';
import { DEFAULT_NETNS_STRATEGIES, formatNetnsStrategy, parseNetnsStrategies } from '../agent/netns-resolver.ts';
import { FulcrumError } from '../shared/errors.ts';
import { EXIT, usageError, type CommandModule } from './common.ts';

type AgentFlags = {
  config: string;
  resetMaps?: boolean;
  uninstall?: boolean;
  logLevel?: string;
  kubernetes?: boolean;
  kubeconfig?: string;
  nodeName?: string;
  podNetns?: string;
  resyncSeconds?: string;
};

/** Kubernetes mode's file: an AgentConfig whose nodeName may come from --node-name / NODE_NAME instead. */
const KubernetesAgentFile = AgentConfig.extend({ nodeName: AgentConfig.shape.nodeName.optional() });

const NODE_NAME_MISSING =
  'the node name is missing: pass --node-name <name> or set NODE_NAME (in a DaemonSet: env NODE_NAME from the ' +
  'downward API, valueFrom.fieldRef.fieldPath: spec.nodeName)';

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
          'reprogram on every valid edit of the file (or on SIGHUP). With --kubernetes, the file is the agent ' +
          'configuration alone: program this node\'s BalancerNode on every change (and every --resync-seconds, or ' +
          'on SIGHUP) and report in its status. SIGTERM / SIGINT stop the agent without ' +
          'detaching: forwarding and the connection table go on, and the next agent adopts them.',
      )
      .requiredOption('-c, --config <file>', 'the agent\'s YAML file (see docs/agent.md)')
      .option('--reset-maps', 'unpin the balancer maps and start with empty ones (needed after changing ringSize, maxVips, maxBackends or connTableSize; drops the connection table)')
      .option('--uninstall', 'remove the data plane from this node and exit: detach the balancer, unpin its maps, undo every backend pod\'s decap')
      .option('--kubernetes', 'Kubernetes mode: --config is the agent configuration alone; program this node\'s BalancerNode and report in its status')
      .option('--kubeconfig <file>', 'with --kubernetes: the API server and credentials (default: the pod\'s service account, else KUBECONFIG or ~/.kube/config)')
      .option('--node-name <name>', 'with --kubernetes: this node\'s name, which its BalancerNode has (default: NODE_NAME)')
      .option('--pod-netns <strategies>', `with --kubernetes: how backend pods' network namespaces are found, tried in order: dir=<directory> (files named <pod UID> or <namespace>_<name>), proc (the pod's cgroup in /proc; needs hostPID) (default: ${DEFAULT_NETNS_STRATEGIES.map(formatNetnsStrategy).join(',')})`)
      .option('--resync-seconds <n>', 'with --kubernetes: program the current spec again this often, repairing drift (default: 60)')
      .addOption(new Option('--log-level <level>', 'log level (default: FULCRUM_LOG_LEVEL or info)').choices(LOG_LEVELS))
      .addHelpText('after', '\nExit codes: 0 stopped cleanly, 1 runtime failure, 2 invalid command line or configuration.')
      .action(async (flags: AgentFlags) => {
        if (flags.logLevel !== undefined) setLogLevel(parseLogLevel(flags.logLevel, '--log-level'));
        if (flags.uninstall === true && flags.resetMaps === true) throw usageError('--uninstall and --reset-maps do not go together');
        // The data plane and the Kubernetes client load here, not at the top: every
        // other `fulcrum` command (and --help) starts without them.
        const { parseYaml, readConfigText, runStandalone } = await import('../agent/standalone.ts');
        const { uninstallNode } = await import('../agent/agent.ts');
        if (flags.kubernetes === true) {
          await runKubernetesMode(flags);
          setExitCode(EXIT.ok);
          return;
        }
        for (const [flag, value] of [['--kubeconfig', flags.kubeconfig], ['--node-name', flags.nodeName], ['--pod-netns', flags.podNetns], ['--resync-seconds', flags.resyncSeconds]] as const) {
          if (value !== undefined) throw usageError(`${flag} is for Kubernetes mode: add --kubernetes`);
        }
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
            `${flags.config} holds an agent configuration without a state: section: run it in Kubernetes mode ` +
              '(add --kubernetes; the state then comes from this node\'s BalancerNode), or write a standalone file ' +
              'with agent: and state: sections.',
          );
        }
        await runStandalone({ file: flags.config, ...(flags.resetMaps === true ? { resetMaps: true } : {}) });
        setExitCode(EXIT.ok);
      });
  },
};

/**
 * --kubernetes: validate everything before touching the node (the file with line and
 * column, the node name, the strategies, the kubeconfig), then run until SIGTERM.
 */
async function runKubernetesMode(flags: AgentFlags): Promise<void> {
  const [{ parseYaml, readConfigText }, { uninstallNode }, { loadKubeConfig, serveKubernetesAgent }] = await Promise.all([
    import('../agent/standalone.ts'), import('../agent/agent.ts'), import('../agent/kubernetes.ts'),
  ]);
  const nodeName = (flags.nodeName ?? process.env.NODE_NAME ?? '').trim();
  const text = await readConfigText(flags.config);
  const data: unknown = parseYaml(text, flags.config, z.unknown());
  if (data !== null && typeof data === 'object' && ('agent' in data || 'state' in data)) {
    throw usageError(
      `${flags.config} is a standalone file (agent: / state: sections). In Kubernetes mode the file holds the agent ` +
        'configuration alone (the fields of the agent: section, at the top level); the state comes from this node\'s BalancerNode.',
    );
  }
  const file = parseYaml(text, flags.config, KubernetesAgentFile);
  const name = nodeName !== '' ? nodeName : file.nodeName ?? '';
  if (name === '') throw usageError(NODE_NAME_MISSING);
  if (!ObjectName.safeParse(name).success) {
    throw usageError(`the node name "${name}" is not a Kubernetes object name (lower-case letters, digits, '-' and '.', at most 253)`);
  }
  if (flags.uninstall === true) {
    const result = await uninstallNode({ ...file, nodeName: name }, rootLogger);
    const failed = result.decap.pods.filter((p) => p.outcome === 'failed');
    rootLogger.info({ pinRoot: file.pinRoot, detachedLinks: result.detachedLinks, unpinnedMaps: result.unpinnedMaps.length,
      decapRemoved: result.decap.pods.length - failed.length }, 'uninstalled the data plane');
    if (failed.length > 0) {
      throw new FulcrumError('ERR_NETNS', `could not remove decap from ${failed.length} pod(s): ${failed.map((p) => `${p.pod}: ${p.outcome === 'failed' ? p.error.message : ''}`).join('; ')}`);
    }
    return;
  }
  const strategies = flags.podNetns !== undefined ? parseNetnsStrategies(flags.podNetns) : DEFAULT_NETNS_STRATEGIES;
  let resyncMs: number | undefined;
  if (flags.resyncSeconds !== undefined) {
    const seconds = Number(flags.resyncSeconds);
    if (!Number.isFinite(seconds) || seconds < 1 || seconds > 86_400) throw usageError(`--resync-seconds: "${flags.resyncSeconds}" is not a number of seconds from 1 to 86400`);
    resyncMs = seconds * 1000;
  }
  const kubeConfig = loadKubeConfig(flags.kubeconfig);
  await serveKubernetesAgent({
    kubeConfig,
    nodeName: name,
    agentConfig: file,
    netns: strategies,
    ...(resyncMs !== undefined ? { resyncMs } : {}),
    ...(flags.resetMaps === true ? { agentOptions: { resetMaps: true } } : {}),
  });
}
