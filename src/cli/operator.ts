// `fulcrum operator`: run the cluster operator (a Deployment, leader-elected when it has
// more than one replica). It turns LoadBalancerVips, Services of class fulcrum.dev/xdp,
// EndpointSlices, Pods and Nodes into one BalancerNode per node. SIGTERM / SIGINT stop it
// cleanly: controllers drain and the lease is released so a standby takes over at once.
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { Option } from 'commander';
import { LOG_LEVELS, child, parseLogLevel, rootLogger, setLogLevel } from '../shared/logging.ts';
import type { Logger } from '../shared/logging.ts';
import { EXIT, usageError, type CommandModule } from './common.ts';

export type OperatorFlags = {
  kubeconfig?: string;
  namespace?: string;
  leaderElect?: boolean;
  identity?: string;
  metricsPort?: string;
  metricsHost?: string;
  logLevel?: string;
};

const SERVICE_ACCOUNT_NAMESPACE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/** The operator's namespace (for its Lease): the flag, POD_NAMESPACE, the service account's, else "default". */
export function operatorNamespace(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (flag !== undefined && flag !== '') return flag;
  if (env['POD_NAMESPACE']) return env['POD_NAMESPACE'];
  if (existsSync(SERVICE_ACCOUNT_NAMESPACE)) return readFileSync(SERVICE_ACCOUNT_NAMESPACE, 'utf8').trim();
  return 'default';
}

function parsePort(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw usageError(`--metrics-port: "${text}" is not a port (0-65535)`);
  return n;
}

/** Runs the operator until `signal` aborts. */
export async function runOperator(flags: OperatorFlags, signal: AbortSignal, log: Logger = child({ component: 'operator' })): Promise<void> {
  // Imported here, not at the top: the Kubernetes client and the operator take most of
  // a second to load, which every other `fulcrum` command (and --help) need not pay.
  const [{ loadKubeConfig }, { Operator }] = await Promise.all([import('../shared/kubeconfig.ts'), import('../operator/operator.ts')]);
  const kubeConfig = loadKubeConfig(flags.kubeconfig);
  const httpPort = parsePort(flags.metricsPort ?? '8080');
  const operator = new Operator({
    kubeConfig,
    namespace: operatorNamespace(flags.namespace),
    leaderElect: flags.leaderElect === true,
    identity: flags.identity ?? process.env['POD_NAME'] ?? `${hostname()}_${process.pid}`,
    log,
    defaultMetrics: true,
    ...(httpPort !== undefined ? { httpPort, httpHost: flags.metricsHost ?? '0.0.0.0' } : {}),
  });
  log.info({ cluster: kubeConfig.getCurrentCluster()?.server, leaderElect: flags.leaderElect === true, metrics: operator.httpUrl }, 'operator starting');
  await operator.start();
  await new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
  await operator.stop();
}

export const operatorCommand: CommandModule = {
  name: 'operator',
  register(program, setExitCode) {
    program
      .command('operator')
      .summary('run the cluster operator (LoadBalancerVips and Services → BalancerNodes)')
      .description(
        'Run the operator: watch LoadBalancerVips, VipPools, Services of class fulcrum.dev/xdp, EndpointSlices, ' +
          'Pods and Nodes, and keep one BalancerNode per node. With --leader-elect only the holder of the Lease ' +
          '"fulcrum-operator" in --namespace writes. Serves /metrics, /healthz and /readyz on --metrics-port.',
      )
      .option('--kubeconfig <file>', 'kubeconfig to use (default: in-cluster, then KUBECONFIG, then ~/.kube/config)')
      .option('-n, --namespace <namespace>', 'the operator\'s namespace, for its Lease (default: POD_NAMESPACE, the service account\'s, or default)')
      .option('--leader-elect', 'take part in leader election (run several replicas, one writes)')
      .option('--identity <name>', 'the Lease holder identity (default: POD_NAME, else hostname_pid)')
      .option('--metrics-port <port>', 'port of /metrics, /healthz, /readyz (0: any free port)', '8080')
      .option('--metrics-host <address>', 'address to serve them on', '0.0.0.0')
      .addOption(new Option('--log-level <level>', 'log level (default: FULCRUM_LOG_LEVEL or info)').choices(LOG_LEVELS))
      .addHelpText('after', '\nExit codes: 0 stopped cleanly, 1 runtime failure, 2 invalid command line or kubeconfig.')
      .action(async (flags: OperatorFlags) => {
        if (flags.logLevel !== undefined) setLogLevel(parseLogLevel(flags.logLevel, '--log-level'));
        const abort = new AbortController();
        const stop = (sig: NodeJS.Signals): void => {
          rootLogger.info({ signal: sig }, 'stopping');
          abort.abort();
        };
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
        try {
          await runOperator(flags, abort.signal);
        } finally {
          process.off('SIGTERM', stop);
          process.off('SIGINT', stop);
        }
        setExitCode(EXIT.ok);
      });
  },
};
