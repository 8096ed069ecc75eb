// `fulcrum inspect`: what the data plane of this node holds, read from the maps a running
// agent pinned, without the agent's help and without changing anything (maps opened
// read-only, links only read, interfaces only queried). For an operator on a balancer
// node: which VIPs are programmed and forwarding, whether the weights took effect in the
// Maglev rings, how full the connection table is, and why packets were not forwarded.
//
// Reading is src/agent/inspect/pinned.ts; the report and its pure compute are
// src/agent/inspect/report.ts; this file is the command and the text it prints (pure
// functions over the report, so the tests can check them without BPF).
import { Argument, Option } from 'commander';
import { AgentConfig } from '../agent/config.ts';
import { inspectPinned, pinPresence } from '../agent/inspect/pinned.ts';
import {
  SECTIONS, type AttachmentReport, type BackendReport, type ConntrackReport, type InspectReport, type ReasonReport, type RingShareReport,
  type Section, type VipReport,
} from '../agent/inspect/report.ts';
import { FulcrumError } from '../shared/errors.ts';
import { EXIT, usageError, type CommandModule } from './common.ts';

type InspectFlags = { pinDir: string; json?: boolean; ringSize?: string; netns?: string };

/** The agent's own default (agent.pinRoot), so the two can never disagree. */
export const DEFAULT_PIN_DIR: string = AgentConfig.shape.pinRoot.parse(undefined);

/** Sections in print order, each once; none asked means all. */
export function selectSections(asked: readonly string[]): Section[] {
  return SECTIONS.filter((s) => asked.length === 0 || asked.includes(s));
}

export function notPinnedMessage(pinDir: string): string {
  return `no Fulcrum data plane pinned at ${pinDir} (is the agent running on this node?)`;
}

// ─── JSON ────────────────────────────────────────────────────────────────────────

const rawJSON = (JSON as unknown as { rawJSON(text: string): unknown }).rawJSON;

/**
 * The report as JSON. Counters are u64 in the maps and a busy node's byte counters pass
 * 2^53 within days, so bigints are written as exact integer literals (JSON has no limit;
 * a consumer that parses into doubles rounds them as it would any large number).
 */
export function reportJson(report: InspectReport): string {
  return `${JSON.stringify(report, (_key, value: unknown) => (typeof value === 'bigint' ? rawJSON(value.toString()) : value), 2)}\n`;
}

// ─── text ────────────────────────────────────────────────────────────────────────

type Align = 'left' | 'right';

/** Columns padded to their widest cell; numbers right-aligned so digits line up. */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[], align: readonly Align[], indent = ''): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    indent + cells.map((c, i) => (align[i] === 'right' ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)];
}

const hostPort = (address: string, port: number): string =>
  `${address.includes(':') ? `[${address}]` : address}:${port === 0 ? '*' : port}`;

function vipLines(ringSize: number, vips: readonly VipReport[]): string[] {
  const title = `VIPs (Maglev ring of ${ringSize} slots each)`;
  if (vips.length === 0) return [title, '  none programmed'];
  return [title, ...renderTable(
    ['ID', 'VIP', 'PROTOCOL', 'FLAGS', 'ENCAP', 'GEN', 'PACKETS', 'BYTES'],
    vips.map((v) => [String(v.id), hostPort(v.address, v.port), v.protocol, v.flags.join(',') || '-', v.encapsulation, String(v.gen),
      String(v.packets), String(v.bytes)]),
    ['right', 'left', 'left', 'left', 'left', 'right', 'right', 'right'],
  )];
}

function backendLines(backends: readonly BackendReport[]): string[] {
  const title = 'Backends (counters: forwarded packets and their bytes before encapsulation)';
  if (backends.length === 0) return [title, '  none programmed'];
  return [title, ...renderTable(
    ['ID', 'ADDRESS', 'PACKETS', 'BYTES'],
    backends.map((b) => [String(b.id), b.address, String(b.packets), String(b.bytes)]),
    ['right', 'left', 'right', 'right'],
  )];
}

function ringLines(shares: readonly RingShareReport[]): string[] {
  const lines = ['Ring shares (a backend\'s slots are its share of new flows; a draining backend holds none)'];
  if (shares.length === 0) return [...lines, '  no VIPs programmed'];
  for (const ring of shares) {
    lines.push(`  ${ring.vip} (VIP ${ring.vipId}, ${ring.ringSize} slots)`);
    const rows = ring.members.map((m) => [m.address ?? `(id ${m.backendId} not in the backends table)`, String(m.backendId), String(m.slots),
      `${m.percent.toFixed(2)} %`]);
    if (ring.emptySlots > 0) rows.push(['(no backend: dropped)', '-', String(ring.emptySlots), `${((ring.emptySlots / ring.ringSize) * 100).toFixed(2)} %`]);
    lines.push(...renderTable(['BACKEND', 'ID', 'SLOTS', 'SHARE'], rows, ['left', 'right', 'right', 'right'], '    '));
  }
  return lines;
}

function conntrackLines(c: ConntrackReport): string[] {
  return [
    `Connection table (per-CPU LRU, BPF_F_NO_COMMON_LRU: each of the ${c.possibleCpus} possible CPUs evicts from its own share)`,
    ...renderTable(
      ['TABLE', 'ENTRIES', 'CAPACITY', 'PER CPU', 'MEAN PER CPU', 'FILL', 'COUNTED IN'],
      c.tables.map((t) => [t.map, String(t.entries), String(t.capacity), String(t.perCpuCapacity), String(t.meanPerCpu),
        `${t.fillPercent.toFixed(2)} %`, `${t.countMs.toFixed(2)} ms`]),
      ['left', 'right', 'right', 'right', 'right', 'right', 'right'],
    ),
    `hits ${c.hits}   misses ${c.misses}   UDP expired ${c.udpExpired}   (packets)`,
  ];
}

function reasonLines(reasons: readonly ReasonReport[]): string[] {
  return ['Not forwarded (every verdict other than a forward, by reason)', ...renderTable(
    ['REASON', 'ACTION', 'PACKETS', 'BYTES'],
    reasons.map((r) => [r.reason, r.action, String(r.packets), String(r.bytes)]),
    ['left', 'left', 'right', 'right'],
  )];
}

const MODE_NOTES: Partial<Record<AttachmentReport['mode'], string>> = {
  detached: 'the interface is gone; the agent attaches anew when it starts',
  unknown: 'no interface of that name and index in this network namespace (--netns <path> names the right one)',
};

function attachmentLines(attachments: readonly AttachmentReport[]): string[] {
  const title = 'XDP attachments (links pinned by the agent)';
  if (attachments.length === 0) return [title, '  none: the balancer is not attached to any interface'];
  const notes = attachments.filter((a) => MODE_NOTES[a.mode] !== undefined).map((a) => `  ${a.interface}: ${a.mode}: ${MODE_NOTES[a.mode]}`);
  return [title, ...renderTable(
    ['INTERFACE', 'MODE', 'PROGRAM', 'LINK', 'IFINDEX'],
    attachments.map((a) => [a.interface, a.mode, String(a.programId), String(a.linkId), String(a.ifindex)]),
    ['left', 'left', 'right', 'right', 'right'],
  ), ...notes];
}

/** The report as the tables a person reads, in section order. */
export function formatReport(report: InspectReport): string {
  const blocks: string[][] = [[`Fulcrum data plane pinned at ${report.pinDir} (${report.possibleCpus} possible CPUs)`]];
  if (report.vips !== undefined) blocks.push(vipLines(report.ringSize ?? 0, report.vips));
  if (report.backends !== undefined) blocks.push(backendLines(report.backends));
  if (report.ringShares !== undefined) blocks.push(ringLines(report.ringShares));
  if (report.conntrack !== undefined) blocks.push(conntrackLines(report.conntrack));
  if (report.notForwarded !== undefined) blocks.push(reasonLines(report.notForwarded));
  if (report.attachments !== undefined) blocks.push(attachmentLines(report.attachments));
  return `${blocks.map((b) => b.join('\n')).join('\n\n')}\n`;
}

// ─── the command ─────────────────────────────────────────────────────────────────

function parseRingSize(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 2) throw usageError(`--ring-size: "${text}" is not a ring size (the agent's balancer.ringSize, a prime)`);
  return n;
}

const HELP_AFTER = `
Sections (none: all of them):
  vips       each VIP: address, port, protocol, flags (src-ip-only, lru-bypass),
             encapsulation (ipip, gue), ring size, forwarded packets and bytes
  backends   each backend: id, address, forwarded packets and bytes; then the ring shares
  ring       each VIP's Maglev ring: every backend's slots and share (%), so you can
             see that the weights took effect
  conntrack  connection-table fill per family (entries, capacity, per-CPU capacity,
             fill %, and how long counting took); hits, misses, UDP entries expired
  counters   every reason a packet was not forwarded, with its count; the XDP links
             the agent pinned (interface, native / generic mode, program id)

Counters are summed over CPUs. Nothing is changed: maps are opened read-only, and
--json prints the same report for scripts (fields: docs/agent.md#inspecting-a-node).

Examples:
  fulcrum inspect
  fulcrum inspect ring counters
  fulcrum inspect conntrack --json | jq '.conntrack.tables[] | {map, fillPercent}'

Exit codes: 0 read and printed; 1 a map could not be read (permissions: run as root);
2 invalid command line; 3 no Fulcrum data plane is pinned at --pin-dir.`;

export const inspectCommand: CommandModule = {
  name: 'inspect',
  register(program, setExitCode) {
    program
      .command('inspect')
      .summary('show what this node\'s data plane holds: VIPs, ring shares, connection table, counters')
      .description(
        'Read the BPF maps the agent pinned on this node and print what they hold, without changing anything: ' +
          'programmed VIPs and their traffic, backends and their share of each Maglev ring, connection-table fill, ' +
          'and the packets not forwarded, by reason. Works while the agent runs and after it stopped (the pins ' +
          'outlive it). Needs root.',
      )
      .addArgument(new Argument('[sections...]', `what to show: ${SECTIONS.join(', ')} (default: all)`).choices(SECTIONS))
      .option('--pin-dir <dir>', 'the agent\'s pin directory (agent.pinRoot in its configuration)', DEFAULT_PIN_DIR)
      .option('--json', 'print the report as JSON (stable field names) instead of tables')
      .option('--ring-size <n>', 'the agent\'s balancer.ringSize; needed only when maxVips is below 16, where the map sizes fit more than one')
      .addOption(new Option('--netns <path>', 'network namespace of the balancer\'s interfaces, for the attach mode (default: this process\'s, the node\'s)'))
      .addHelpText('after', HELP_AFTER)
      .action(async (sections: string[], flags: InspectFlags) => {
        const ringSize = parseRingSize(flags.ringSize);
        const presence = pinPresence(flags.pinDir);
        if (presence.outcome === 'absent') {
          process.stderr.write(`fulcrum: ${notPinnedMessage(flags.pinDir)}\n`);
          setExitCode(EXIT.notPinned);
          return;
        }
        if (presence.outcome === 'denied') throw new FulcrumError('ERR_BPF_MAP', presence.message);
        if (presence.outcome === 'no-bpffs') throw presence.error;
        const report = await inspectPinned(flags.pinDir, {
          sections: selectSections(sections),
          ...(ringSize !== undefined ? { ringSize } : {}),
          ...(flags.netns !== undefined ? { netns: flags.netns } : {}),
        });
        process.stdout.write(flags.json === true ? reportJson(report) : formatReport(report));
        setExitCode(EXIT.ok);
      });
  },
};
