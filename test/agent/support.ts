// Helpers for the agent tests: a BPF pin root of their own under /sys/fs/bpf (always
// removed, links detached first), a small balancer configuration, desired states, and
// client packets for BPF_PROG_TEST_RUN.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBpffs } from '../../src/agent/bpf/bpffs.ts';
import { detachLink } from '../../src/agent/bpf/attach.ts';
import type { BalancerConfig } from '../../src/agent/bpf/abi.ts';
import type { BalancerLimits } from '../../src/agent/dataplane/balancer.ts';
import { NodeDesiredState, type NodeDesiredStateInput } from '../../src/shared/desired-state.ts';
import { pino, type Logger } from 'pino';
import { ether, ipv4, ipv6, tcp, udp } from '../support/packets.ts';
import { REPO, uniqueName } from '../bpf/support.ts';

export { REPO, TestNetns, rootOnly, uniqueName, tempDir } from '../bpf/support.ts';

export const OBJECT_DIR = join(REPO, 'bpf/build');
export const OBJECT = join(OBJECT_DIR, 'balancer.bpf.o');

export function buildBpf(): void {
  execFileSync('make', ['-s', '-C', join(REPO, 'bpf')]);
}

export const RING_SIZE = 251;
export const LIMITS: BalancerLimits = { maxVips: 8, maxBackends: 64, connTableSize: 4096 };
export const NEXTHOP_MAC = '02:00:00:00:00:fe';
export const LB_MAC = '02:00:00:00:00:02';
export const CLIENT_MAC = '02:00:00:00:00:01';
export const CONFIG: BalancerConfig = {
  ringSize: RING_SIZE, mtu: 1500, tunnelTtl: 64, guePort: 6080, tunnelSrc4: '172.16.0.0', tunnelSrc6: 'fd00:7::',
  nodeAddr4: '192.168.50.1', nodeAddr6: 'fd00:50::1', nexthopMac: NEXTHOP_MAC,
};

/** A pin root of its own: /sys/fs/bpf/fulcrum-test-<pid>-<hex>; cleanup detaches links and removes every pin. */
export function pinRoot(): { root: string; cleanup: () => void } {
  const root = `/sys/fs/bpf/${uniqueName('fulcrum-test', 40)}`;
  // Fail at once, in words, where bpffs is missing (scripts/setup.sh mounts it); tests never mount it.
  ensureBpffs(root, { mount: false });
  return {
    root,
    cleanup: () => {
      const links = join(root, 'links');
      if (existsSync(links)) for (const name of readdirSync(links)) {
        try {
          detachLink(join(links, name));
        } catch {
          // Already gone with its namespace.
        }
      }
      rmSync(root, { recursive: true, force: true });
    },
  };
}

export const desired = (input: NodeDesiredStateInput): NodeDesiredState => NodeDesiredState.parse(input);

export const WEB4 = { name: 'default/web', address: '10.10.0.1', port: 80, protocol: 'TCP' as const };
export const DNS6 = { name: 'default/dns', address: 'fd00:10::1', port: 53, protocol: 'UDP' as const };
export const B4 = ['10.1.0.1', '10.1.0.2', '10.1.0.3'];
export const B6 = ['fd00:1::1', 'fd00:1::2'];

/** Two VIPs (IPv4 TCP with three backends, IPv6 UDP with two), as a desired state. */
export function baseState(overrides: { web4Backends?: { address: string; weight?: number }[] } = {}): NodeDesiredState {
  return desired({
    generation: 1,
    vips: [
      { ...WEB4, backends: overrides.web4Backends ?? B4.map((address) => ({ address })) },
      { ...DNS6, encapsulation: 'gue', backends: B6.map((address) => ({ address, weight: 2 })) },
    ],
  });
}

export const CLIENT4 = '198.51.100.7';
export const CLIENT6 = '2001:db8:c::7';

export function tcp4(dst: string, dport: number, sport: number, syn: boolean): Buffer {
  return ether({ dst: LB_MAC, src: CLIENT_MAC },
    ipv4({ src: CLIENT4, dst, df: true }, tcp({ sport, dport, flags: syn ? { syn: true } : { ack: true }, payload: syn ? '' : 'hello' })));
}

export function udp6(dst: string, dport: number, sport: number): Buffer {
  return ether({ dst: LB_MAC, src: CLIENT_MAC }, ipv6({ src: CLIENT6, dst }, udp({ sport, dport, payload: 'query' })));
}

/** A logger that keeps every line in memory (JSON objects), for asserting on logs. */
export function memoryLogger(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { log, lines };
}

/** Resolves when `check` passes, polling; rejects with the last failure after `timeoutMs`. */
export async function eventually<T>(check: () => T | Promise<T>, timeoutMs = 5000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${timeoutMs} ms: ${(last as Error)?.message ?? last}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
