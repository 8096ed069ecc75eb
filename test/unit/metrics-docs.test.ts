// docs/metrics.md and docs/grafana/fulcrum.json against the metrics the code registers.
//
// Where the names come from:
// - AgentMetrics (src/agent/metrics.ts) and OperatorMetrics (src/operator/metrics.ts) are
//   instantiated with registries of their own — the real names, types and label names.
//   AgentMetrics reads the data plane only through the MetricsSource it is given, so a
//   source that reports "nothing loaded" makes it side-effect free; OperatorMetrics needs
//   nothing. prom-client's default process metrics come with them.
// - The Kubernetes-mode metrics are registered inside the KubernetesAgent constructor
//   (src/agent/kubernetes.ts), which needs a started Agent (BPF programs, root) and a
//   kubeconfig: they cannot be instantiated in isolation, so they are taken from the
//   source text — every `new Counter|Gauge|Histogram|Summary({ name: … })` under src/.
//   The same scan runs over the two modules above and must agree with their registries,
//   which keeps the scanner honest; a registration in any other file is picked up too.
//
// What must hold:
// - docs/metrics.md has one table row per registered metric (the default process metrics
//   as the families `<prefix>process_*` and `<prefix>nodejs_*`), with its type and exactly
//   its label names, and names no `fulcrum_*` series that does not exist;
// - every reason of src/shared/reasons.ts has a row in "Not-forwarded reasons" with its
//   program and action (reasonAction()), and no row names a reason that does not exist;
//   every global counter (GSTATS) is named;
// - every PromQL expression — the dashboard's panel targets and variable queries, and the
//   ```promql blocks of docs/metrics.md and docs/operations.md — uses only `fulcrum_*`
//   series that exist (a counter or gauge by its registered name: the registries use the
//   Prometheus text format, in which prom-client adds no `_total`; a histogram as
//   `_bucket`, `_sum`, `_count`; a summary as itself, `_sum`, `_count`), and only labels
//   those series have (plus the scrape's `instance` and `job`, and `le` on buckets);
// - every `fulcrum_*` name (or `fulcrum_…*` family) in docs/operations.md and docs/architecture.md exists;
// - the dashboard has the `datasource`, `node` and `vip` variables, every panel and target
//   queries `${datasource}`, and every `$variable` it uses is defined or built in.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { AgentMetrics, METRIC_PREFIX } from '../../src/agent/metrics.ts';
import { OperatorMetrics } from '../../src/operator/metrics.ts';
import { GSTATS, REASONS, reasonAction, type Reason } from '../../src/shared/reasons.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const METRICS_DOC = join(ROOT, 'docs/metrics.md');
const OPERATIONS_DOC = join(ROOT, 'docs/operations.md');
const DASHBOARD = join(ROOT, 'docs/grafana/fulcrum.json');
const OPERATOR_PREFIX = 'fulcrum_operator_';

type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary';
type MetricInfo = { name: string; type: MetricType; labels: readonly string[]; defaultMetric: boolean; origin: string };

// ─── what the code registers ─────────────────────────────────────────────────────────

async function registryMetrics(registry: Registry, origin: string, defaults: ReadonlySet<string>): Promise<MetricInfo[]> {
  assert.match(registry.contentType, /^text\/plain; version=0\.0\.4/, `${origin}: the suffix rules below assume the Prometheus text format`);
  const out: MetricInfo[] = [];
  for (const m of await registry.getMetricsAsJSON()) {
    const metric = registry.getSingleMetric(m.name) as unknown as { labelNames?: readonly string[] };
    out.push({ name: m.name, type: String(m.type) as MetricType, labels: [...(metric.labelNames ?? [])], defaultMetric: defaults.has(m.name), origin });
  }
  return out;
}

async function defaultMetricNames(prefix: string): Promise<Set<string>> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix });
  return new Set((await registry.getMetricsAsJSON()).map((m) => m.name));
}

type Scanned = { name: string; type: MetricType; labels: readonly string[] | undefined; file: string };

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(path));
    else if (entry.name.endsWith('.ts')) out.push(path);
  }
  return out.sort();
}

/** The text of the object literal whose `{` is at `open`, braces balanced. */
function objectLiteral(text: string, open: number): string {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === '{') depth++;
    else if (text[i] === '}' && --depth === 0) return text.slice(open, i + 1);
  }
  throw new Error(`unbalanced braces from offset ${open}`);
}

/** Interpolations a metric name may use, and what they stand for. */
const NAME_PARTS: Readonly<Record<string, string>> = { METRIC_PREFIX, p: METRIC_PREFIX };

function scanRegistrations(): Scanned[] {
  const out: Scanned[] = [];
  for (const file of sourceFiles(join(ROOT, 'src'))) {
    const text = readFileSync(file, 'utf8');
    const rel = relative(ROOT, file);
    for (const m of text.matchAll(/new\s+(Counter|Gauge|Histogram|Summary)\s*(?:<[^>(]*>)?\s*\(\s*\{/g)) {
      const body = objectLiteral(text, m.index + m[0].length - 1);
      const nameMatch = /\bname:\s*(`[^`]*`|'[^']*'|"[^"]*")/.exec(body);
      assert.ok(nameMatch, `${rel}: a ${m[1]} whose name is not a literal: ${body.slice(0, 80)}`);
      const name = nameMatch[1]!.slice(1, -1).replace(/\$\{(\w+)\}/g, (_, part: string) => {
        const value = NAME_PARTS[part];
        assert.ok(value !== undefined, `${rel}: metric name ${nameMatch[1]} interpolates \${${part}}, which this test does not know`);
        return value;
      });
      const labelMatch = /\blabelNames:\s*\[([^\]]*)\]/.exec(body);
      const labels = labelMatch ? [...labelMatch[1]!.matchAll(/'([^']*)'|"([^"]*)"/g)].map((l) => l[1] ?? l[2]!) : /\blabelNames:/.test(body) ? undefined : [];
      out.push({ name, type: m[1]!.toLowerCase() as MetricType, labels, file: rel });
    }
  }
  return out;
}

const MODULES = { agent: 'src/agent/metrics.ts', operator: 'src/operator/metrics.ts' } as const;

async function registeredMetrics(): Promise<Map<string, MetricInfo>> {
  const agentDefaults = await defaultMetricNames(METRIC_PREFIX);
  const operatorDefaults = await defaultMetricNames(OPERATOR_PREFIX);
  const agent = new AgentMetrics({ balancer: () => undefined, state: () => undefined, decap: () => [] }, { version: 'test', node: 'test' });
  const operator = new OperatorMetrics({ defaultMetrics: true });
  const fromRegistries = [
    ...(await registryMetrics(agent.registry, MODULES.agent, agentDefaults)),
    ...(await registryMetrics(operator.registry, MODULES.operator, operatorDefaults)),
  ];
  const all = new Map<string, MetricInfo>();
  for (const m of fromRegistries) {
    assert.ok(!all.has(m.name), `${m.name} registered twice`);
    all.set(m.name, m);
  }

  const scanned = scanRegistrations();
  // The scanner must see exactly what the two registries hold (default metrics aside).
  for (const file of Object.values(MODULES)) {
    const fromScan = scanned.filter((s) => s.file === file).map((s) => `${s.name} ${s.type}`).sort();
    const fromRegistry = fromRegistries.filter((m) => m.origin === file && !m.defaultMetric).map((m) => `${m.name} ${m.type}`).sort();
    assert.deepEqual(fromScan, fromRegistry, `the source scan of ${file} disagrees with its registry`);
  }
  for (const s of scanned) {
    if (s.file === MODULES.agent || s.file === MODULES.operator) continue;
    assert.ok(s.labels !== undefined, `${s.file}: ${s.name} has labelNames that are not a literal list; this test cannot read them`);
    assert.ok(!all.has(s.name), `${s.name} (${s.file}) is registered twice`);
    all.set(s.name, { name: s.name, type: s.type, labels: s.labels, defaultMetric: false, origin: s.file });
  }
  // Default metrics are turned on only in the two modules (their families are documented per prefix).
  for (const file of sourceFiles(join(ROOT, 'src'))) {
    const rel = relative(ROOT, file);
    if (/collectDefaultMetrics\s*\(/.test(readFileSync(file, 'utf8'))) {
      assert.ok(rel === MODULES.agent || rel === MODULES.operator, `${rel} turns on default metrics; document them and teach this test`);
    }
  }
  return all;
}

const registered = await registeredMetrics();

/** The metric a series name belongs to (prom-client's exposition of each type), or undefined. */
function seriesOf(series: string): { metric: MetricInfo; suffix: '' | '_bucket' | '_sum' | '_count' } | undefined {
  const exact = registered.get(series);
  if (exact !== undefined && exact.type !== 'histogram') return { metric: exact, suffix: '' };
  for (const suffix of ['_bucket', '_sum', '_count'] as const) {
    if (!series.endsWith(suffix)) continue;
    const base = registered.get(series.slice(0, -suffix.length));
    if (base === undefined) continue;
    if (base.type === 'histogram' || (base.type === 'summary' && suffix !== '_bucket')) return { metric: base, suffix };
  }
  return undefined;
}

/** Labels a selector of this series may use: its own, the scrape's, and le / quantile. */
function seriesLabels(series: string): Set<string> {
  const s = seriesOf(series);
  if (s === undefined) return new Set();
  const labels = new Set([...s.metric.labels, 'instance', 'job']);
  if (s.suffix === '_bucket') labels.add('le');
  if (s.metric.type === 'summary' && s.suffix === '') labels.add('quantile');
  return labels;
}

// ─── PromQL ──────────────────────────────────────────────────────────────────────────

type Token = { kind: 'ident' | 'string' | 'punct' | 'number' | 'range'; text: string };

const GRAFANA_BUILTINS = new Set(['__rate_interval', '__interval', '__interval_ms', '__range', '__range_s', '__range_ms', '__all']);

/** Grafana variables used in a piece of text: $name, ${name}, ${name:format}, [[name]]. */
function variablesIn(text: string): string[] {
  return [...text.matchAll(/\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]/g)].map((m) => m[1] ?? m[2] ?? m[3]!);
}

function tokenize(expr: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < expr.length) {
    const rest = expr.slice(i);
    let m: RegExpExecArray | null;
    if ((m = /^\s+/.exec(rest)) || (m = /^#[^\n]*/.exec(rest))) {
      i += m[0].length;
    } else if ((m = /^("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)/.exec(rest))) {
      tokens.push({ kind: 'string', text: m[0].slice(1, -1) });
      i += m[0].length;
    } else if ((m = /^\[[^\]]*\]/.exec(rest))) {
      tokens.push({ kind: 'range', text: m[0] });
      i += m[0].length;
    } else if ((m = /^\$\{\w+(?::\w+)?\}|^\$\w+/.exec(rest))) {
      tokens.push({ kind: 'number', text: m[0] }); // a Grafana variable stands for a value
      i += m[0].length;
    } else if ((m = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(rest))) {
      tokens.push({ kind: 'ident', text: m[0] });
      i += m[0].length;
    } else if ((m = /^[0-9][0-9a-zA-Z.+]*/.exec(rest))) {
      tokens.push({ kind: 'number', text: m[0] });
      i += m[0].length;
    } else if ((m = /^(=~|!~|!=|==|>=|<=|[-+*/%^@=<>(){},])/.exec(rest))) {
      tokens.push({ kind: 'punct', text: m[0] });
      i += m[0].length;
    } else {
      throw new Error(`cannot read PromQL at "${rest.slice(0, 20)}" in: ${expr}`);
    }
  }
  return tokens;
}

const GROUPING = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);

/** Problems with one PromQL expression (empty: fine). */
function checkPromql(expr: string): string[] {
  const problems: string[] = [];
  const tokens = tokenize(expr);
  const allowed = new Set<string>();
  const grouping: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.kind !== 'ident') continue;
    if (t.text.startsWith('fulcrum_')) {
      if (seriesOf(t.text) === undefined) {
        problems.push(`${t.text} is not a series of any registered metric`);
        continue;
      }
      const labels = seriesLabels(t.text);
      for (const l of labels) allowed.add(l);
      if (tokens[i + 1]?.text === '{') {
        for (i += 2; i < tokens.length && tokens[i]!.text !== '}'; i++) {
          const label = tokens[i]!;
          if (label.kind === 'ident' && tokens[i + 1]?.kind === 'punct' && ['=', '!=', '=~', '!~'].includes(tokens[i + 1]!.text)) {
            if (!labels.has(label.text)) problems.push(`${t.text} has no label ${label.text}`);
            i += 2; // the operator and the value
          }
        }
      }
    } else if (GROUPING.has(t.text) && tokens[i + 1]?.text === '(') {
      for (i += 2; i < tokens.length && tokens[i]!.text !== ')'; i++) {
        if (tokens[i]!.kind === 'ident') grouping.push(tokens[i]!.text);
      }
    } else if (t.text === 'label_values' && tokens[i + 1]?.text === '(') {
      const metric = tokens[i + 2];
      const label = tokens[i + 4];
      if (metric?.kind === 'ident' && tokens[i + 3]?.text === ',' && label?.kind === 'ident') {
        if (seriesOf(metric.text) === undefined) problems.push(`${metric.text} is not a series of any registered metric`);
        else if (!seriesLabels(metric.text).has(label.text)) problems.push(`label_values: ${metric.text} has no label ${label.text}`);
        i += 5;
      }
    }
  }
  for (const label of grouping) {
    if (!allowed.has(label)) problems.push(`groups by ${label}, which none of its series has`);
  }
  return problems;
}

function promqlBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/```promql\n([\s\S]*?)```/g)].map((m) => m[1]!.trim());
}

// ─── docs/metrics.md ────────────────────────────────────────────────────────────────

const doc = readFileSync(METRICS_DOC, 'utf8');

function cells(line: string): string[] {
  return line.trim().replace(/^\|/, '').replace(/\|$/, '').split('|').map((c) => c.trim());
}

function backticked(cell: string): string[] {
  return [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
}

type DocRow = { name: string; type: string; labels: string[]; line: number };

function documentedMetrics(): { rows: Map<string, DocRow>; families: string[] } {
  const rows = new Map<string, DocRow>();
  const families: string[] = [];
  doc.split('\n').forEach((line, index) => {
    if (!line.startsWith('| `fulcrum_')) return;
    const [first = '', type = '', labels = ''] = cells(line);
    const names = backticked(first);
    if (names.every((n) => n.endsWith('*'))) {
      families.push(...names);
      return;
    }
    assert.equal(names.length, 1, `docs/metrics.md:${index + 1}: one metric per row`);
    const name = names[0]!;
    assert.ok(!rows.has(name), `docs/metrics.md:${index + 1}: ${name} has two rows`);
    rows.set(name, { name, type, labels: backticked(labels), line: index + 1 });
  });
  return { rows, families };
}

function section(markdown: string, heading: string): string {
  const start = markdown.indexOf(`\n## ${heading}\n`);
  assert.ok(start >= 0, `docs/metrics.md has no section "## ${heading}"`);
  const end = markdown.indexOf('\n## ', start + 1);
  return markdown.slice(start, end < 0 ? undefined : end);
}

describe('docs/metrics.md', () => {
  const { rows, families } = documentedMetrics();

  test('every registered metric has a row with its type and labels', () => {
    for (const m of registered.values()) {
      if (m.defaultMetric) continue;
      const row = rows.get(m.name);
      assert.ok(row !== undefined, `${m.name} (${m.origin}) is not documented in docs/metrics.md`);
      assert.equal(row.type, m.type, `docs/metrics.md:${row.line}: ${m.name} is a ${m.type}`);
      assert.deepEqual([...row.labels].sort(), [...m.labels].sort(), `docs/metrics.md:${row.line}: the labels of ${m.name}`);
    }
  });

  test('no row names a metric that is not registered', () => {
    for (const row of rows.values()) {
      const m = registered.get(row.name);
      assert.ok(m !== undefined && !m.defaultMetric, `docs/metrics.md:${row.line}: ${row.name} is not registered by the code`);
    }
  });

  test('default process metrics are documented as families, and the families exist', () => {
    for (const family of families) {
      const prefix = family.slice(0, -1);
      assert.ok([...registered.values()].some((m) => m.defaultMetric && m.name.startsWith(prefix)), `docs/metrics.md: ${family} matches no default metric`);
    }
    for (const m of registered.values()) {
      if (!m.defaultMetric) continue;
      assert.ok(families.some((f) => m.name.startsWith(f.slice(0, -1))), `${m.name} is in no documented family (${families.join(', ')})`);
    }
  });

  test('every fulcrum_* name in the text is a real metric, series or family', () => {
    for (const [token] of doc.matchAll(/fulcrum_[a-z0-9_]+\*?/g)) {
      if (token.endsWith('*')) {
        assert.ok(families.includes(token), `docs/metrics.md names the family ${token} outside its table row`);
      } else {
        assert.ok(registered.has(token) || seriesOf(token) !== undefined, `docs/metrics.md names ${token}, which is neither a registered metric nor one of its series`);
      }
    }
  });

  test('every reason has a row with its program and action, and nothing else does', () => {
    const reasons = section(doc, 'Not-forwarded reasons');
    const seen = new Set<string>();
    for (const line of reasons.split('\n')) {
      if (!line.startsWith('| `')) continue;
      const [first = '', program = '', action = ''] = cells(line);
      const [name = ''] = backticked(first);
      assert.ok((REASONS as readonly string[]).includes(name), `docs/metrics.md: ${name} is not a reason of src/shared/reasons.ts`);
      const reason = name as Reason;
      assert.ok(!seen.has(reason), `docs/metrics.md: ${reason} has two rows`);
      seen.add(reason);
      assert.equal(action, reasonAction(reason), `docs/metrics.md: the action of ${reason}`);
      assert.equal(program, reason.startsWith('decap_') ? 'decap' : 'balancer', `docs/metrics.md: the program of ${reason}`);
    }
    assert.deepEqual([...seen].sort(), [...REASONS].sort(), 'docs/metrics.md: reasons without a row');
  });

  test('every global counter is named', () => {
    for (const g of GSTATS) assert.ok(doc.includes(`\`${g}\``), `docs/metrics.md does not name the global counter ${g}`);
  });

  test('every fulcrum_* name in docs/operations.md and docs/architecture.md is a real metric or series', () => {
    for (const file of ['docs/operations.md', 'docs/architecture.md']) {
      const path = join(ROOT, file);
      if (!existsSync(path)) continue;
      for (const [token] of readFileSync(path, 'utf8').matchAll(/fulcrum_[a-z0-9_]+\*?/g)) {
        if (token.endsWith('*')) {
          assert.ok([...registered.keys()].some((n) => n.startsWith(token.slice(0, -1))), `${file} names ${token}, which matches no registered metric`);
        } else {
          assert.ok(registered.has(token) || seriesOf(token) !== undefined, `${file} names ${token}, which is neither a registered metric nor one of its series`);
        }
      }
    }
  });

  test('its PromQL, and that of docs/operations.md, uses only series and labels that exist', () => {
    const blocks = promqlBlocks(doc).map((expr) => ({ file: 'docs/metrics.md', expr }));
    if (existsSync(OPERATIONS_DOC)) blocks.push(...promqlBlocks(readFileSync(OPERATIONS_DOC, 'utf8')).map((expr) => ({ file: 'docs/operations.md', expr })));
    assert.ok(blocks.length > 0);
    for (const { file, expr } of blocks) assert.deepEqual(checkPromql(expr), [], `${file}: ${expr}`);
  });
});

// ─── docs/grafana/fulcrum.json ───────────────────────────────────────────────────────

type Target = { expr?: string; datasource?: { uid?: string } };
type Panel = { id: number; type: string; title: string; datasource?: { uid?: string }; targets?: Target[]; panels?: Panel[] };
type Variable = { name: string; type: string; query?: string | { query?: string }; definition?: string };
type Dashboard = { schemaVersion: number; panels: Panel[]; templating: { list: Variable[] } };

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;

function allPanels(panels: readonly Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

describe('docs/grafana/fulcrum.json', () => {
  const panels = allPanels(dashboard.panels).filter((p) => p.type !== 'row');
  const variables = dashboard.templating.list;

  test('schema and variables', () => {
    assert.ok(dashboard.schemaVersion >= 36 && dashboard.schemaVersion <= 41, `schemaVersion ${dashboard.schemaVersion}`);
    const byName = new Map(variables.map((v) => [v.name, v]));
    assert.equal(byName.get('datasource')?.type, 'datasource');
    assert.equal(byName.get('datasource')?.query, 'prometheus');
    for (const name of ['node', 'vip']) {
      const v = byName.get(name);
      assert.ok(v !== undefined, `variable ${name} is missing`);
      assert.equal(v.type, 'query', `variable ${name}`);
      const q = typeof v.query === 'string' ? v.query : v.query?.query ?? '';
      assert.match(q, /^label_values\(/, `variable ${name} comes from label_values`);
    }
    const ids = allPanels(dashboard.panels).map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  });

  test('every panel queries ${datasource}', () => {
    assert.ok(panels.length > 0);
    for (const p of panels) {
      assert.equal(p.datasource?.uid, '${datasource}', `panel "${p.title}"`);
      assert.ok((p.targets ?? []).length > 0, `panel "${p.title}" has no query`);
      for (const t of p.targets ?? []) assert.equal(t.datasource?.uid, '${datasource}', `a query of panel "${p.title}"`);
    }
  });

  test('every expression uses only series and labels that exist', () => {
    const exprs: { where: string; expr: string }[] = [];
    for (const p of panels) for (const t of p.targets ?? []) exprs.push({ where: `panel "${p.title}"`, expr: t.expr ?? '' });
    for (const v of variables) {
      if (v.type !== 'query') continue;
      exprs.push({ where: `variable ${v.name}`, expr: typeof v.query === 'string' ? v.query : v.query?.query ?? '' });
      if (v.definition !== undefined) exprs.push({ where: `variable ${v.name} (definition)`, expr: v.definition });
    }
    for (const { where, expr } of exprs) {
      assert.ok(/fulcrum_/.test(expr), `${where}: no fulcrum_* metric in ${expr}`);
      assert.deepEqual(checkPromql(expr), [], `${where}: ${expr}`);
    }
  });

  test('every $variable is defined or built in', () => {
    const defined = new Set(variables.map((v) => v.name));
    for (const p of panels) {
      for (const t of p.targets ?? []) {
        for (const v of variablesIn(t.expr ?? '')) assert.ok(defined.has(v) || GRAFANA_BUILTINS.has(v), `panel "${p.title}" uses $${v}`);
      }
    }
  });

  test('the panels cover what docs/metrics.md promises', () => {
    const used = new Set<string>();
    for (const p of panels) for (const t of p.targets ?? []) for (const [name] of (t.expr ?? '').matchAll(/fulcrum_[a-z0-9_]+/g)) used.add(seriesOf(name)!.metric.name);
    for (const name of [
      'fulcrum_agent_vip_packets_total', 'fulcrum_agent_vip_bytes_total', 'fulcrum_agent_backend_packets_total', 'fulcrum_agent_backend_bytes_total',
      'fulcrum_agent_conn_table_hits_total', 'fulcrum_agent_conn_table_misses_total', 'fulcrum_agent_not_forwarded_packets_total',
      'fulcrum_agent_programming_duration_seconds', 'fulcrum_agent_programming_errors_total', 'fulcrum_agent_ring_slots_written_total',
      'fulcrum_operator_reconcile_total', 'fulcrum_operator_queue_depth', 'fulcrum_operator_balancernode_writes_total', 'fulcrum_operator_leader',
    ]) {
      assert.ok(used.has(name), `no panel shows ${name}`);
    }
  });
});

describe('the PromQL checker itself', () => {
  test('finds unknown series, labels and grouping labels', () => {
    assert.deepEqual(checkPromql('rate(fulcrum_agent_vip_packets_total{vip="a"}[5m])'), []);
    assert.deepEqual(checkPromql('sum by (le) (rate(fulcrum_agent_programming_duration_seconds_bucket[5m]))'), []);
    assert.equal(checkPromql('fulcrum_agent_vip_packets').length, 1);
    assert.equal(checkPromql('fulcrum_agent_vip_packets_total_total').length, 1);
    assert.equal(checkPromql('fulcrum_agent_programming_duration_seconds').length, 1, 'a histogram has no bare series');
    assert.equal(checkPromql('fulcrum_agent_vips_bucket').length, 1, 'a gauge has no buckets');
    assert.equal(checkPromql('fulcrum_agent_vip_packets_total{node="x"}').length, 1);
    assert.equal(checkPromql('sum by (pod) (fulcrum_agent_vips)').length, 1);
    assert.equal(checkPromql('label_values(fulcrum_agent_build_info, vip)').length, 1);
    assert.deepEqual(checkPromql('label_values(fulcrum_agent_build_info, node)'), []);
    assert.deepEqual(checkPromql('sum by (node) (rate(fulcrum_agent_vips[$__rate_interval]) * on (instance) group_left (node) fulcrum_agent_build_info{node=~"$node"})'), []);
  });
});
