// `fulcrum lab`: the demo and the README's main job. It builds the network-namespace lab
// (two clients, a router that spreads VIP traffic over two balancer nodes by ECMP,
// three backend pods), runs the whole product on it — a real control plane on loopback
// (etcd, kube-apiserver, kube-controller-manager), the real operator, agents in
// Kubernetes mode, the lab as the kubelet — applies examples/, and drives real HTTP and
// UDP traffic at the VIPs the operator assigned while it shows, live, which pod answers.
// While it runs, kubectl works against it (the kubeconfig it prints). `--standalone`
// runs the agents from YAML files instead, without Kubernetes. Midway it drains one
// pod (weight 0) and brings it back, then prints a summary: the spread, the proof of
// direct server return (the balancers never carry a reply), and the data plane's own
// counters. Everything lives in namespaces the lab creates and removes again, also on
// Ctrl-C; nothing is sent from or to the host's network.
import { Option } from 'commander';
import type { PodRole } from '../lab/topology.ts';
import type { FlowResult } from '../lab/traffic.ts';
import { EXIT, usageError, type CommandModule } from './common.ts';

type LabFlags = { duration: string; flows: string; nextHop: 'mac' | 'fib'; standalone?: boolean; hold?: boolean };

const BAR = 40;
const ROUND_MS = 1000;

function bars(pods: readonly PodRole[], counts: Readonly<Record<string, number>>, weights: ReadonlyMap<PodRole, number>): string[] {
  const total = pods.reduce((s, p) => s + (counts[p] ?? 0), 0) || 1;
  return pods.map((pod) => {
    const n = counts[pod] ?? 0;
    const share = n / total;
    const weight = weights.get(pod) ?? 0;
    return `  ${pod}  weight ${String(weight).padEnd(2)} ${'█'.repeat(Math.round(share * BAR)).padEnd(BAR, '·')} ${(share * 100).toFixed(1).padStart(5)} %  (${n} flows)`;
  });
}

function add(into: Record<string, number>, from: Readonly<Record<string, number>>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

async function runLab(flags: LabFlags): Promise<void> {
  // The lab (and with it the whole product) loads here, not at the top: every other
  // `fulcrum` command (and --help) starts without it.
  const [{ Lab }, { POD_ROLES }, { countByPod, failedFlows }] = await Promise.all([
    import('../lab/lab.ts'), import('../lab/topology.ts'), import('../lab/traffic.ts'),
  ]);
  const seconds = Number(flags.duration);
  const flowsPerRound = Number(flags.flows);
  if (!Number.isFinite(seconds) || seconds < 5 || seconds > 3600) throw usageError(`--duration must be 5..3600 seconds, got ${flags.duration}`);
  if (!Number.isInteger(flowsPerRound) || flowsPerRound < 10 || flowsPerRound > 2000) throw usageError(`--flows must be 10..2000, got ${flags.flows}`);
  // Every flow uses a fresh client source port (so none meets a TIME_WAIT socket), one
  // round a second; each client has about 20,000 to give.
  if (seconds * flowsPerRound * 1.5 > 20_000) throw usageError(`--duration × --flows is too much for the clients' source ports: keep duration × flows × 1.5 under 20000`);
  const out = (line = '') => process.stdout.write(`${line}\n`);
  const live = process.stdout.isTTY === true;

  const mode = flags.standalone === true ? 'standalone' : 'kubernetes';
  out(mode === 'kubernetes'
    ? 'fulcrum lab: building network namespaces, starting etcd, kube-apiserver, kube-controller-manager, the operator and the agents, applying examples/ ...'
    : 'fulcrum lab: building network namespaces, starting agents (standalone mode) ...');
  const lab = await Lab.start({ nextHop: flags.nextHop, mode });
  try {
    // The targets: an IPv4 and an IPv6 VIP, each with an HTTP and a UDP port.
    const target = (family: 4 | 6, protocol: 'TCP' | 'UDP') => {
      const vip = lab.vips.find((v) => v.protocol === protocol && v.address.includes(':') === (family === 6));
      if (vip === undefined) throw new Error(`no IPv${family} ${protocol} VIP to drive traffic at`);
      return vip;
    };
    const [http4, http6, udp4, udp6] = [target(4, 'TCP'), target(6, 'TCP'), target(4, 'UDP'), target(6, 'UDP')];
    for (const vip of [http4, http6, udp4, udp6]) out(`  VIP ${vip.name.padEnd(16)} ${vip.address} port ${vip.port}/${vip.protocol} (${vip.encapsulation})`);
    out(`  backends ${POD_ROLES.join(', ')}; balancer nodes lb1, lb2 (next hop: ${flags.nextHop})`);
    out(`  logs and configs: ${lab.dir}`);
    if (lab.cluster !== undefined) {
      out();
      out('  kubectl works against the lab while it runs (kubectl: .tools/bin/kubectl, from scripts/kube-tools.sh):');
      out(`    export KUBECONFIG=${lab.cluster.kubeconfigPath}`);
      out('    kubectl get lbvip,svc -n demo          kubectl describe lbvip web -n demo');
      out('    kubectl get balancernodes              kubectl annotate pod pod3 -n demo fulcrum.dev/weight=2');
      out('    kubectl apply --server-side -f examples/   kubectl delete lbvip web6 -n demo');
      if (flags.hold !== true) out('  (add --hold to keep the lab up after the summary, until Ctrl-C)');
    }
    out();

    const before = await Promise.all([lab.linkStats('lb1'), lab.linkStats('lb2'), lab.linkStats('client1'), lab.linkStats('client2')]);
    // A long download alongside the short flows: with direct server return its bytes
    // flow pod → client and never cross a balancer.
    const download = await lab.client('client2').startTransfer(http4.address, { direction: 'download', bytes: 40_000_000, durationMs: seconds * 500 });
    const total: Record<string, number> = {};
    const failures: FlowResult[] = [];
    const started = Date.now();
    const drainAt = seconds / 3;
    const restoreAt = (2 * seconds) / 3;
    let phase: 'even' | 'draining' | 'restored' = 'even';
    let round = 0;
    let lines = 0;
    while ((Date.now() - started) / 1000 < seconds) {
      const roundStart = Date.now();
      const elapsed = (roundStart - started) / 1000;
      if (phase === 'even' && elapsed >= drainAt) {
        await lab.setWeights({ pod2: 0 });
        phase = 'draining';
      } else if (phase === 'draining' && elapsed >= restoreAt) {
        await lab.setWeights({ pod2: 1 });
        phase = 'restored';
      }
      round++;
      const roundCounts: Record<string, number> = {};
      const results = (await Promise.all([
        lab.client('client1').http(http4.address, { count: flowsPerRound, port: http4.port }),
        lab.client('client2').http(http6.address, { count: flowsPerRound, port: http6.port }),
        lab.client('client1').udp(udp4.address, { count: Math.ceil(flowsPerRound / 2), port: udp4.port }),
        lab.client('client2').udp(udp6.address, { count: Math.ceil(flowsPerRound / 2), port: udp6.port }),
      ])).flat();
      add(roundCounts, countByPod(results));
      add(total, roundCounts);
      failures.push(...failedFlows(results));
      const note = phase === 'draining' ? 'pod2 draining (weight 0): new flows avoid it' : phase === 'restored' ? 'pod2 back (weight 1)' : 'equal weights';
      const block = [
        `round ${round}  ${elapsed.toFixed(0).padStart(3)} s / ${seconds} s   ${results.length} new flows (HTTP + UDP, IPv4 + IPv6)   ${note}`,
        ...bars(POD_ROLES, roundCounts, lab.backends()),
      ];
      if (live && lines > 0) process.stdout.write(`\x1b[${lines}A\x1b[J`);
      for (const line of block) out(line);
      lines = block.length;
      await new Promise((r) => setTimeout(r, Math.max(0, ROUND_MS - (Date.now() - roundStart))));
    }

    const downloaded = await download.result();
    const after = await Promise.all([lab.linkStats('lb1'), lab.linkStats('lb2'), lab.linkStats('client1'), lab.linkStats('client2')]);
    const delta = (i: number, k: 'rxBytes' | 'txBytes') => after[i]![k] - before[i]![k];
    const forwarded = (await Promise.all(['lb1', 'lb2'].map((role) => lab.metrics(role as 'lb1')))).map((samples) => ({
      packets: samples.filter((s) => s.name === 'fulcrum_agent_vip_packets_total').reduce((a, s) => a + s.value, 0),
      hits: samples.filter((s) => s.name === 'fulcrum_agent_conn_table_hits_total').reduce((a, s) => a + s.value, 0),
      misses: samples.filter((s) => s.name === 'fulcrum_agent_conn_table_misses_total').reduce((a, s) => a + s.value, 0),
      drops: samples.filter((s) => s.name === 'fulcrum_agent_not_forwarded_packets_total' && s.labels['action'] === 'drop').reduce((a, s) => a + s.value, 0),
    }));

    out();
    out(`summary after ${round} rounds:`);
    for (const line of bars(POD_ROLES, total, new Map(POD_ROLES.map((p) => [p, 1])))) out(line.replace(/weight \d+ +/, ''));
    out(`  flows without an answer: ${failures.length}`);
    out(`  a ${downloaded.bytes} byte download from ${downloaded.pod ?? '?'} (${downloaded.completed ? 'complete' : `incomplete: ${downloaded.error}`}) ran alongside`);
    out(`  direct server return: the clients received ${delta(2, 'rxBytes') + delta(3, 'rxBytes')} bytes, the balancers' NICs only ${delta(0, 'rxBytes') + delta(1, 'rxBytes')} (the requests) — replies go from the pods straight to the clients`);
    forwarded.forEach((f, i) => out(`  lb${i + 1}: ${f.packets} packets forwarded, connection table ${f.hits} hits / ${f.misses} misses, ${f.drops} dropped`));
    out(`  look inside a balancer: fulcrum inspect --pin-dir ${lab.pinRoot('lb1')} --netns /run/netns/${lab.topology.prefix}-lb1`);
    out(`    (its metrics: nsenter --net=/run/netns/${lab.topology.prefix}-lb1 curl -s 127.0.0.1:9464/metrics)`);
    if (failures.length > 0) throw new Error(`${failures.length} flows got no answer`);
    if (flags.hold === true) {
      out();
      out('the lab stays up (--hold): kubectl and fulcrum inspect work as shown above; Ctrl-C removes it.');
      // The lab's own SIGINT handler tears everything down and exits.
      await new Promise<never>(() => undefined);
    }
  } finally {
    out('removing the lab ...');
    await lab.teardown();
    out('done: every namespace, pin and process of this run is gone.');
  }
}

export const labCommand: CommandModule = {
  name: 'lab',
  register(program, setExitCode) {
    program
      .command('lab')
      .summary('run the lab: real traffic through real XDP balancers in network namespaces')
      .description(
        'Build a lab of network namespaces (clients, an ECMP router, two balancer nodes, three backend pods), ' +
          'run a real Kubernetes control plane on loopback (etcd, kube-apiserver, kube-controller-manager), the operator ' +
          'and the agents, with the lab as the nodes\' kubelet; apply examples/, drive HTTP and UDP ' +
          'traffic at the VIPs and show live which pod answers; drain one pod midway (its weight annotation) and bring ' +
          'it back; print a summary; remove everything. kubectl works against it while it runs. Needs root.',
      )
      .option('--duration <seconds>', 'how long to drive traffic', '30')
      .option('--flows <n>', 'new HTTP flows per client and round', '100')
      .addOption(new Option('--next-hop <how>', 'how balancers find the next hop').choices(['mac', 'fib']).default('mac'))
      .option('--standalone', 'no Kubernetes: the agents run from YAML files the lab writes (as on a host without a cluster)')
      .option('--hold', 'keep the lab up after the summary (for kubectl and fulcrum inspect) until Ctrl-C')
      .action(async (flags: LabFlags) => {
        if (process.getuid?.() !== 0) throw usageError('the lab needs root (BPF and network namespaces)');
        await runLab(flags);
        setExitCode(EXIT.ok);
      });
  },
};
