// The API is written once, in src/shared/api/ (zod, used by the operator and the agent),
// and crds/*.yaml are generated from it (test/shared/api/crd-generate.test.ts); but each
// rule still runs twice: as a zod refinement, and as the OpenAPI and CEL its `.meta()`
// gives the API server. They must agree. Every fixture below goes through both — created
// (dryRun=All, as the admin) in a real kube-apiserver holding the CRDs, and parsed by the
// schema — and both must accept it (201, with the server's defaults equal to zod's) or
// both reject it, blaming the same field. One rule has no O(1) CEL form and lives only in
// zod: a VipPool range must run from the lower address to the higher; the API server
// accepts such a pool and the operator reports it Ready=False InvalidAddresses
// (test/operator/bad-input.test.ts).
// One control plane serves the whole file.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import https from 'node:https';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml, parseAllDocuments, stringify as stringifyYaml } from 'yaml';
import type { z } from 'zod';
import { ControlPlane } from '../../src/lab/control-plane.ts';
import { installCrds } from '../../src/lab/install.ts';
import {
  BALANCER_NODE_CONDITIONS, BALANCER_NODE_REASONS, BalancerNodeSpec, BalancerNodeStatus, DecapOutcome, IP_PATTERN, LOAD_BALANCER_VIP_CONDITIONS,
  LoadBalancerVipSpec, LoadBalancerVipStatus, VIP_POOL_CONDITIONS, VipPoolSpec, VipPoolStatus,
} from '../../src/shared/api/index.ts';
import { RANGE_ORDER, parsePoolEntry } from '../../src/shared/api/common.ts';
import { REPO_ROOT, START_TIMEOUT_MS, STOP_TIMEOUT_MS, TEST_TIMEOUT_MS } from './harness.ts';

const API = '/apis/fulcrum.dev/v1alpha1';
const CRD_FILES = ['loadbalancervips', 'vippools', 'balancernodes'].map((p) => join(REPO_ROOT, 'crds', `${p}.fulcrum.dev.yaml`));

type Json = Record<string, unknown>;
type Kind = 'LoadBalancerVip' | 'VipPool' | 'BalancerNode';

const KINDS: Record<Kind, { path: string; spec: z.ZodType; status: z.ZodType }> = {
  LoadBalancerVip: { path: `${API}/namespaces/default/loadbalancervips`, spec: LoadBalancerVipSpec, status: LoadBalancerVipStatus },
  VipPool: { path: `${API}/vippools`, spec: VipPoolSpec, status: VipPoolStatus },
  BalancerNode: { path: `${API}/balancernodes`, spec: BalancerNodeSpec, status: BalancerNodeStatus },
};

/**
 * A fixture: valid when `field` is absent; otherwise the field both must reject (k8s
 * notation) — or, with `operatorOnly`, the field zod rejects while the API server accepts
 * it: a rule the CRD does not state, which the operator (VipPool: a range's order, no
 * O(1) CEL form) or the agent (BalancerNode: unique entries of its atomic lists)
 * enforces instead.
 */
type Fixture = { name: string; spec: unknown; field?: string; operatorOnly?: true };

// ------------------------------------------------------------------ helpers

let cp: ControlPlane;
before(async () => {
  cp = await ControlPlane.start({ controllerManager: false });
  await installCrds(cp);
}, { timeout: START_TIMEOUT_MS });
after(() => cp?.stop(), { timeout: STOP_TIMEOUT_MS });

type Response = { status: number; body: Json };

/** One request to the real API server as the admin; JSON in and out. */
function send(method: string, path: string, body?: unknown, contentType = 'application/json', accept = 'application/json'): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = https.request(`${cp.url}${path}`, {
      method, ...cp.adminTls(), timeout: 60_000,
      headers: { Accept: accept, ...(body !== undefined ? { 'Content-Type': contentType } : {}) },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { text += d; });
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Json });
        } catch {
          resolve({ status: res.statusCode ?? 0, body: { message: text } });
        }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within 60 s`)));
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

function object(kind: Kind, name: string, spec: unknown): Json {
  return { apiVersion: 'fulcrum.dev/v1alpha1', kind, metadata: { name }, spec };
}

/** k8s field paths with map keys written as .key, so zod's and the server's compare. */
function normalise(field: string): string {
  return field.replace(/\[([^\]\d][^\]]*)\]/g, '.$1');
}

function zodFields(error: z.ZodError, root: string): string[] {
  return error.issues.map((issue) => normalise(issue.path.reduce<string>(
    (acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : `${acc}.${String(p)}`), root,
  )));
}

function causeFields(body: Json): string[] {
  const causes = (body['details'] as { causes?: { field?: string }[] } | undefined)?.causes ?? [];
  return causes.map((c) => normalise(c.field ?? ''));
}

/** Runs a fixture through the server (a dry-run create) and the schema and checks that they agree. */
async function checkBoth(kind: Kind, index: number, f: Fixture): Promise<void> {
  const { path, spec: schema } = KINDS[kind];
  const created = await send('POST', `${path}?dryRun=All`, object(kind, `${kind.toLowerCase()}-${index}`, f.spec));
  const parsed = schema.safeParse(f.spec);
  if (f.operatorOnly === true) {
    assert.equal(created.status, 201, `${f.name}: the server refused what only the operator checks: ${JSON.stringify(created.body['message'])}`);
    assert.ok(!parsed.success, `${f.name}: zod accepted an invalid fixture`);
    assert.ok(zodFields(parsed.error, 'spec').includes(f.field!), `${f.name}: zod blamed ${zodFields(parsed.error, 'spec').join(', ')}, not ${f.field}`);
  } else if (f.field === undefined) {
    assert.equal(created.status, 201, `${f.name}: the server rejected a valid fixture: ${JSON.stringify(created.body['message'])}`);
    assert.ok(parsed.success, `${f.name}: zod rejected a valid fixture: ${parsed.error?.message}`);
    assert.deepEqual(created.body['spec'], parsed.data, `${f.name}: the server's defaults differ from zod's`);
  } else {
    assert.equal(created.status, 422, `${f.name}: the server answered ${created.status}, not 422: ${JSON.stringify(created.body)}`);
    assert.ok(causeFields(created.body).includes(f.field), `${f.name}: the server blamed ${causeFields(created.body).join(', ')}, not ${f.field}`);
    assert.ok(!parsed.success, `${f.name}: zod accepted an invalid fixture`);
    const fields = zodFields(parsed.error, 'spec');
    assert.ok(fields.includes(f.field), `${f.name}: zod blamed ${fields.join(', ')}, not ${f.field}`);
  }
}

// ------------------------------------------------------------------ fixtures

const web = { service: 'web' };
const ports = [{ port: 80 }];

const LBVIP_FIXTURES: Fixture[] = [
  { name: 'address, one port (defaults: TCP, ipip)', spec: { address: '192.0.2.10', ports, backends: web } },
  { name: 'pool, UDP and TCP ports, gue, hashing defaults', spec: { pool: 'public', ports: [{ port: 53, protocol: 'UDP' }, { port: 53 }], backends: web, encapsulation: 'gue', hashing: {} } },
  { name: 'IPv6 address, all ports of both protocols', spec: { address: '2001:db8::10', allPorts: { protocols: ['TCP', 'UDP'] }, backends: web } },
  { name: 'upper-case IPv6 (kept as written)', spec: { address: '2001:DB8::A', ports, backends: web } },
  { name: 'node selector with labels and expressions', spec: { address: '198.51.100.7', ports, backends: web, nodeSelector: { matchLabels: { 'topology.kubernetes.io/zone': 'a' }, matchExpressions: [{ key: 'fulcrum.dev/balancer', operator: 'In', values: ['true'] }, { key: 'drain', operator: 'DoesNotExist' }] } } },
  { name: 'empty node selector (every node)', spec: { address: '198.51.100.8', ports, backends: web, nodeSelector: {} } },
  { name: 'hashing both set', spec: { address: '198.51.100.9', ports: [{ port: 443 }], backends: web, hashing: { sourceIpOnly: true, lruBypass: true } } },
  { name: 'port 65535 and port 1', spec: { address: '203.0.113.1', ports: [{ port: 1 }, { port: 65535 }], backends: web } },
  { name: 'the same port on TCP and UDP', spec: { address: '203.0.113.2', ports: [{ port: 443 }, { port: 443, protocol: 'UDP' }], backends: web } },
  { name: 'null pool is no pool (pruned)', spec: { address: '203.0.113.3', pool: null, ports, backends: web } },
  { name: 'unknown fields are pruned', spec: { address: '203.0.113.4', ports, backends: web, weight: 3 } },
  // invalid
  { name: 'address and pool both', spec: { address: '192.0.2.10', pool: 'public', ports, backends: web }, field: 'spec' },
  { name: 'neither address nor pool', spec: { ports, backends: web }, field: 'spec' },
  { name: 'bad IP', spec: { address: '192.0.2.300', ports, backends: web }, field: 'spec.address' },
  { name: 'IPv4 with a leading zero', spec: { address: '192.0.2.010', ports, backends: web }, field: 'spec.address' },
  { name: 'IPv6 with a zone', spec: { address: 'fe80::1%eth0', ports, backends: web }, field: 'spec.address' },
  { name: 'IPv6 with a dotted quad', spec: { address: '::ffff:192.0.2.1', ports, backends: web }, field: 'spec.address' },
  { name: 'IPv4-mapped in hex', spec: { address: '::ffff:c000:201', ports, backends: web }, field: 'spec.address' },
  { name: 'loopback', spec: { address: '127.0.0.1', ports, backends: web }, field: 'spec.address' },
  { name: 'IPv6 loopback written long', spec: { address: '0:0:0:0:0:0:0:1', ports, backends: web }, field: 'spec.address' },
  { name: 'unspecified', spec: { address: '::', ports, backends: web }, field: 'spec.address' },
  { name: 'multicast', spec: { address: '239.1.2.3', ports, backends: web }, field: 'spec.address' },
  { name: 'IPv6 multicast', spec: { address: 'FF02::1', ports, backends: web }, field: 'spec.address' },
  { name: 'link-local', spec: { address: '169.254.169.254', ports, backends: web }, field: 'spec.address' },
  { name: 'IPv6 link-local', spec: { address: 'fe80::1', ports, backends: web }, field: 'spec.address' },
  { name: 'broadcast', spec: { address: '255.255.255.255', ports, backends: web }, field: 'spec.address' },
  { name: 'port 0', spec: { address: '192.0.2.10', ports: [{ port: 0 }], backends: web }, field: 'spec.ports[0].port' },
  { name: 'port 70000', spec: { address: '192.0.2.10', ports: [{ port: 70000 }], backends: web }, field: 'spec.ports[0].port' },
  { name: 'a fractional port', spec: { address: '192.0.2.10', ports: [{ port: 80.5 }], backends: web }, field: 'spec.ports[0].port' },
  { name: 'duplicate ports (one defaulted to TCP)', spec: { address: '192.0.2.10', ports: [{ port: 80, protocol: 'TCP' }, { port: 80 }], backends: web }, field: 'spec.ports[1]' },
  { name: 'unknown protocol', spec: { address: '192.0.2.10', ports: [{ port: 80, protocol: 'SCTP' }], backends: web }, field: 'spec.ports[0].protocol' },
  { name: 'no ports', spec: { address: '192.0.2.10', ports: [], backends: web }, field: 'spec.ports' },
  { name: 'ports and allPorts both', spec: { address: '192.0.2.10', ports, allPorts: { protocols: ['TCP'] }, backends: web }, field: 'spec' },
  { name: 'neither ports nor allPorts', spec: { address: '192.0.2.10', backends: web }, field: 'spec' },
  { name: 'allPorts with a protocol twice', spec: { address: '192.0.2.10', allPorts: { protocols: ['UDP', 'UDP'] }, backends: web }, field: 'spec.allPorts.protocols[1]' },
  { name: 'allPorts without protocols', spec: { address: '192.0.2.10', allPorts: { protocols: [] }, backends: web }, field: 'spec.allPorts.protocols' },
  { name: 'no backends', spec: { address: '192.0.2.10', ports }, field: 'spec.backends' },
  { name: 'a Service name with upper case', spec: { address: '192.0.2.10', ports, backends: { service: 'Web' } }, field: 'spec.backends.service' },
  { name: 'a pool name that is not a DNS subdomain', spec: { pool: 'Public_Pool', ports, backends: web }, field: 'spec.pool' },
  { name: 'unknown encapsulation', spec: { address: '192.0.2.10', ports, backends: web, encapsulation: 'vxlan' }, field: 'spec.encapsulation' },
  { name: 'hashing option not a boolean', spec: { address: '192.0.2.10', ports, backends: web, hashing: { sourceIpOnly: 'yes' } }, field: 'spec.hashing.sourceIpOnly' },
  { name: 'In without values', spec: { address: '192.0.2.10', ports, backends: web, nodeSelector: { matchExpressions: [{ key: 'zone', operator: 'In' }] } }, field: 'spec.nodeSelector.matchExpressions[0]' },
  { name: 'Exists with values', spec: { address: '192.0.2.10', ports, backends: web, nodeSelector: { matchExpressions: [{ key: 'zone', operator: 'Exists', values: ['a'] }] } }, field: 'spec.nodeSelector.matchExpressions[0]' },
  { name: 'unknown selector operator', spec: { address: '192.0.2.10', ports, backends: web, nodeSelector: { matchExpressions: [{ key: 'zone', operator: 'Gt', values: ['1'] }] } }, field: 'spec.nodeSelector.matchExpressions[0].operator' },
  { name: 'label value that is not one', spec: { address: '192.0.2.10', ports, backends: web, nodeSelector: { matchLabels: { zone: 'a b' } } }, field: 'spec.nodeSelector.matchLabels.zone' },
  { name: 'label key that is not one', spec: { address: '192.0.2.10', ports, backends: web, nodeSelector: { matchExpressions: [{ key: '-zone', operator: 'Exists' }] } }, field: 'spec.nodeSelector.matchExpressions[0].key' },
];

const POOL_FIXTURES: Fixture[] = [
  { name: 'IPv4 CIDR (defaults: autoAssign true, avoidBuggyIPs false)', spec: { addresses: ['192.0.2.0/28'] } },
  { name: 'IPv6 CIDR, IPv4 range, a single-address range', spec: { addresses: ['2001:db8::/120', '192.0.2.100-192.0.2.110', '198.51.100.7-198.51.100.7'] } },
  { name: 'IPv6 range, upper case', spec: { addresses: ['2001:DB8::10-2001:db8::1F'] } },
  { name: 'host routes and the whole space', spec: { addresses: ['203.0.113.9/32', '2001:db8::1/128', '0.0.0.0/0', '::/0'] } },
  { name: 'prefix lengths off a nibble boundary', spec: { addresses: ['2001:db8::8000/113', '2001:db8::/33', '10.128.0.0/9'] } },
  { name: 'selectors, no auto-assign, avoid buggy IPs', spec: { addresses: ['192.0.2.0/24'], autoAssign: false, avoidBuggyIPs: true, namespaceSelector: { matchLabels: { team: 'edge' } }, serviceSelector: { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['internal'] }] } } },
  // invalid
  { name: 'no addresses', spec: { addresses: [] }, field: 'spec.addresses' },
  { name: 'bad CIDR', spec: { addresses: ['192.0.2.0/33'] }, field: 'spec.addresses[0]' },
  { name: 'not an address at all', spec: { addresses: ['pool-a'] }, field: 'spec.addresses[0]' },
  { name: 'a bare address (neither CIDR nor range)', spec: { addresses: ['192.0.2.1'] }, field: 'spec.addresses[0]' },
  { name: 'prefix length with a leading zero', spec: { addresses: ['192.0.2.0/024'] }, field: 'spec.addresses[0]' },
  { name: 'host bits set (IPv4)', spec: { addresses: ['192.0.2.5/28'] }, field: 'spec.addresses[0]' },
  { name: 'host bits set (IPv6, inside a nibble)', spec: { addresses: ['2001:db8::4000/113'] }, field: 'spec.addresses[0]' },
  { name: 'host bits set (IPv6, whole groups)', spec: { addresses: ['2001:db8::1:0/96'] }, field: 'spec.addresses[0]' },
  { name: 'mixed-family range', spec: { addresses: ['192.0.2.1-2001:db8::1'] }, field: 'spec.addresses[0]' },
  { name: 'reversed range (IPv4)', spec: { addresses: ['192.0.2.110-192.0.2.100'] }, field: 'spec.addresses[0]', operatorOnly: true },
  { name: 'reversed range across octets', spec: { addresses: ['10.0.1.0-10.0.0.255'] }, field: 'spec.addresses[0]', operatorOnly: true },
  { name: 'reversed range (IPv6, compressed differently)', spec: { addresses: ['2001:db8::1:0-2001:db8:0:0:0:0:0:ffff'] }, field: 'spec.addresses[0]', operatorOnly: true },
  { name: 'range with three ends', spec: { addresses: ['192.0.2.1-192.0.2.2-192.0.2.3'] }, field: 'spec.addresses[0]' },
  { name: 'range with spaces', spec: { addresses: ['192.0.2.1 - 192.0.2.9'] }, field: 'spec.addresses[0]' },
  { name: 'dotted-quad IPv6 CIDR', spec: { addresses: ['::ffff:192.0.2.0/120'] }, field: 'spec.addresses[0]' },
  { name: 'IPv4-mapped CIDR in hex', spec: { addresses: ['::ffff:c000:200/120'] }, field: 'spec.addresses[0]' },
  { name: 'zone in a range', spec: { addresses: ['fe80::1%eth0-fe80::9%eth0'] }, field: 'spec.addresses[0]' },
  { name: 'the same entry twice', spec: { addresses: ['192.0.2.0/28', '192.0.2.0/28'] }, field: 'spec.addresses[1]' },
  { name: 'autoAssign not a boolean', spec: { addresses: ['192.0.2.0/28'], autoAssign: 'yes' }, field: 'spec.autoAssign' },
  { name: 'NotIn without values in a namespace selector', spec: { addresses: ['192.0.2.0/28'], namespaceSelector: { matchExpressions: [{ key: 'team', operator: 'NotIn', values: [] }] } }, field: 'spec.namespaceSelector.matchExpressions[0]' },
];

const vip = (extra: Json = {}): Json => ({ name: 'default/web', address: '192.0.2.10', port: 80, protocol: 'TCP', backends: [{ address: '10.0.0.1' }], ...extra });
const duty = (extra: Json = {}): Json => ({ pod: 'default/web-0', podUID: '5f0c7a4e-7a1d-4c36-9e2b-6a3c1d2e4f50', addresses: ['10.0.0.1'], vips: ['192.0.2.10'], ...extra });

const NODE_FIXTURES: Fixture[] = [
  { name: 'empty spec (defaults: no VIPs, no duties)', spec: {} },
  { name: 'one VIP (defaults: ipip, hashing off, weight 1)', spec: { vips: [vip()] } },
  { name: 'all-ports VIP, weights 0 and 10000, IPv6, gue', spec: { vips: [vip({ address: '2001:db8::10', port: 0, encapsulation: 'gue', sourceIpOnly: true, lruBypass: true, backends: [{ address: '2001:db8:1::1', weight: 0 }, { address: '2001:db8:1::2', weight: 10000 }] })] } },
  { name: 'two ports of one VIP, same name', spec: { vips: [vip(), vip({ port: 443 })] } },
  { name: 'the same address and port on TCP and UDP', spec: { vips: [vip(), vip({ protocol: 'UDP' })] } },
  { name: 'a VIP without backends', spec: { vips: [vip({ backends: [] })] } },
  { name: 'a VIP with backends omitted (default [])', spec: { vips: [{ name: 'default/web', address: '192.0.2.10', port: 80, protocol: 'TCP' }] } },
  { name: 'decap duty (default interface eth0)', spec: { decap: [duty()] } },
  { name: 'decap duty, dual-stack pod on net1', spec: { decap: [duty({ addresses: ['10.0.0.1', 'fd00::1'], vips: ['192.0.2.10', '2001:db8::10'], interface: 'net1' })] } },
  // invalid
  { name: 'bad weight', spec: { vips: [vip({ backends: [{ address: '10.0.0.1', weight: 10001 }] })] }, field: 'spec.vips[0].backends[0].weight' },
  { name: 'negative weight', spec: { vips: [vip({ backends: [{ address: '10.0.0.1', weight: -1 }] })] }, field: 'spec.vips[0].backends[0].weight' },
  // The lists are atomic (managedFields would otherwise list every entry): no uniqueness
  // on the server; the agent refuses such a spec (InvalidSpec).
  { name: 'duplicate backend', spec: { vips: [vip({ backends: [{ address: '10.0.0.1' }, { address: '10.0.0.1', weight: 2 }] })] }, field: 'spec.vips[0].backends[1]', operatorOnly: true },
  { name: 'bad backend address', spec: { vips: [vip({ backends: [{ address: '10.0.0.256' }] })] }, field: 'spec.vips[0].backends[0].address' },
  { name: 'duplicate VIP key', spec: { vips: [vip(), vip({ name: 'other/web' })] }, field: 'spec.vips[1]', operatorOnly: true },
  { name: 'port 65536', spec: { vips: [vip({ port: 65536 })] }, field: 'spec.vips[0].port' },
  { name: 'missing protocol', spec: { vips: [{ name: 'default/web', address: '192.0.2.10', port: 80 }] }, field: 'spec.vips[0].protocol' },
  { name: 'empty name', spec: { vips: [vip({ name: '' })] }, field: 'spec.vips[0].name' },
  { name: 'VIP address with a zone', spec: { vips: [vip({ address: 'fe80::1%eth0' })] }, field: 'spec.vips[0].address' },
  { name: 'duty without a UID', spec: { decap: [duty({ podUID: undefined })] }, field: 'spec.decap[0].podUID' },
  { name: 'UID with a path in it', spec: { decap: [duty({ podUID: '../../etc' })] }, field: 'spec.decap[0].podUID' },
  { name: 'pod not namespace/name', spec: { decap: [duty({ pod: 'web-0' })] }, field: 'spec.decap[0].pod' },
  { name: 'duty without VIPs', spec: { decap: [duty({ vips: [] })] }, field: 'spec.decap[0].vips' },
  { name: 'duplicate pod', spec: { decap: [duty(), duty({ podUID: 'c0ffee00-0000-4000-8000-000000000000' })] }, field: 'spec.decap[1]', operatorOnly: true },
  { name: 'interface name too long', spec: { decap: [duty({ interface: 'a-very-long-ifname' })] }, field: 'spec.decap[0].interface' },
  { name: 'interface name with a slash', spec: { decap: [duty({ interface: 'eth0/1' })] }, field: 'spec.decap[0].interface' },
  { name: 'interface name ".."', spec: { decap: [duty({ interface: '..' })] }, field: 'spec.decap[0].interface' },
];

// ------------------------------------------------------------------ status fixtures

const T = '2026-11-01T10:00:00Z';
const cond = (type: string, status = 'True', reason = type): Json => ({ type, status, reason, message: '', lastTransitionTime: T, observedGeneration: 1 });

const STATUS_FIXTURES: Record<Kind, Fixture[]> = {
  LoadBalancerVip: [
    { name: 'full status', spec: { address: '192.0.2.10', conditions: [cond('Accepted'), cond('AddressAssigned', 'True', 'Allocated'), cond('Programmed', 'False', 'Pending')], balancerNodes: { selected: 3, programmed: 2 }, readyBackends: 4, drainingBackends: 1, observedGeneration: 1 } },
    { name: 'unknown condition status', spec: { conditions: [cond('Accepted', 'Maybe')] }, field: 'status.conditions[0].status' },
    { name: 'the same condition type twice', spec: { conditions: [cond('Accepted'), cond('Accepted', 'False')] }, field: 'status.conditions[1]' },
    { name: 'reason with a space', spec: { conditions: [cond('Accepted', 'True', 'not ok')] }, field: 'status.conditions[0].reason' },
    { name: 'bad transition time', spec: { conditions: [{ ...cond('Accepted'), lastTransitionTime: 'yesterday' }] }, field: 'status.conditions[0].lastTransitionTime' },
    { name: 'balancerNodes without programmed', spec: { balancerNodes: { selected: 3 } }, field: 'status.balancerNodes.programmed' },
    { name: 'negative readyBackends', spec: { readyBackends: -1 }, field: 'status.readyBackends' },
    { name: 'status address not an IP', spec: { address: 'web.example.com' }, field: 'status.address' },
  ],
  VipPool: [
    { name: 'full status', spec: { assigned: 3, available: 9007199254740991, conditions: [cond('Ready'), cond('Exhausted', 'False', 'AddressesAvailable')], observedGeneration: 1 } },
    { name: 'negative available', spec: { available: -1 }, field: 'status.available' },
  ],
  BalancerNode: [
    { name: 'full status', spec: { observedGeneration: 7, attachMode: 'native', interfaces: [{ name: 'eth0', mode: 'native', programId: 42 }], vipCount: 1, vips: [{ name: 'default/web', key: 'TCP/192.0.2.10:80', ringDigest: '0123456789abcdef', backends: 2 }], decap: [{ pod: 'default/web-0', outcome: 'programmed' }, { pod: 'default/web-1', outcome: 'pending', message: 'no network namespace yet' }], conditions: [cond('Ready', 'True', 'AgentReady'), cond('Programmed')], errors: [], agentVersion: '0.1.0' } },
    { name: 'unknown attach mode', spec: { attachMode: 'offload' }, field: 'status.attachMode' },
    { name: 'unknown decap outcome', spec: { decap: [{ pod: 'default/web-0', outcome: 'done' }] }, field: 'status.decap[0].outcome' },
    { name: 'ring digest not hex', spec: { vips: [{ name: 'default/web', key: 'TCP/192.0.2.10:80', ringDigest: 'XYZ', backends: 2 }] }, field: 'status.vips[0].ringDigest' },
    { name: 'the same interface twice', spec: { interfaces: [{ name: 'eth0', mode: 'native', programId: 1 }, { name: 'eth0', mode: 'generic', programId: 2 }] }, field: 'status.interfaces[1]' },
    { name: 'an error line too long', spec: { errors: ['x'.repeat(1025)] }, field: 'status.errors[0]' },
  ],
};

const BASE_SPEC: Record<Kind, unknown> = {
  LoadBalancerVip: { address: '192.0.2.10', ports, backends: web },
  VipPool: { addresses: ['192.0.2.0/28'] },
  BalancerNode: {},
};

// ------------------------------------------------------------------ tests

describe('API schemas: CRDs and zod agree', { timeout: TEST_TIMEOUT_MS * 5 }, () => {
  const tables: [Kind, Fixture[]][] = [['LoadBalancerVip', LBVIP_FIXTURES], ['VipPool', POOL_FIXTURES], ['BalancerNode', NODE_FIXTURES]];
  for (const [kind, fixtures] of tables) {
    describe(kind, () => {
      fixtures.forEach((f, i) => {
        it(`${f.operatorOnly ? `leaves to the ${kind === 'BalancerNode' ? 'agent' : 'operator'}` : f.field === undefined ? 'accepts' : 'rejects'}: ${f.name}`, () => checkBoth(kind, i, f));
      });
    });
  }

  for (const kind of Object.keys(STATUS_FIXTURES) as Kind[]) {
    describe(`${kind} status`, () => {
      STATUS_FIXTURES[kind].forEach((f, i) => {
        it(`${f.field === undefined ? 'accepts' : 'rejects'}: ${f.name}`, async () => {
          const { path, status: schema } = KINDS[kind];
          const name = `${kind.toLowerCase()}-status-${i}`;
          // A status write needs the object; the dry run stores nothing, and the object goes.
          assert.equal((await send('POST', path, object(kind, name, BASE_SPEC[kind]))).status, 201);
          const patched = await send('PATCH', `${path}/${name}/status?dryRun=All`, { status: f.spec }, 'application/merge-patch+json');
          assert.equal((await send('DELETE', `${path}/${name}`)).status, 200);
          const parsed = schema.safeParse(f.spec);
          if (f.field === undefined) {
            assert.equal(patched.status, 200, `${f.name}: ${JSON.stringify(patched.body['message'])}`);
            assert.ok(parsed.success, `${f.name}: zod rejected a valid status: ${parsed.error?.message}`);
            assert.deepEqual(patched.body['status'], parsed.data);
          } else {
            assert.equal(patched.status, 422, `${f.name}: the server answered ${patched.status}`);
            assert.ok(causeFields(patched.body).includes(f.field), `${f.name}: the server blamed ${causeFields(patched.body).join(', ')}`);
            assert.ok(!parsed.success, `${f.name}: zod accepted an invalid status`);
            assert.ok(zodFields(parsed.error, 'status').includes(f.field), `${f.name}: zod blamed ${zodFields(parsed.error, 'status').join(', ')}`);
          }
        });
      });
    });
  }

  it('serves the kinds with their short names, categories, scope and status subresource', async () => {
    const list = (await send('GET', API)).body as unknown as { resources: { name: string; kind: string; shortNames?: string[]; categories?: string[]; namespaced: boolean }[] };
    const byName = new Map(list.resources.map((r) => [r.name, r]));
    assert.deepEqual(byName.get('loadbalancervips')?.shortNames, ['lbvip']);
    assert.equal(byName.get('loadbalancervips')?.namespaced, true);
    assert.deepEqual(byName.get('vippools')?.shortNames, ['vippool']);
    assert.equal(byName.get('vippools')?.namespaced, false);
    assert.deepEqual(byName.get('balancernodes')?.shortNames, ['bnode']);
    assert.equal(byName.get('balancernodes')?.namespaced, false);
    for (const plural of ['loadbalancervips', 'vippools', 'balancernodes']) {
      assert.deepEqual(byName.get(plural)?.categories, ['fulcrum']);
      assert.ok(byName.has(`${plural}/status`), `${plural}/status`);
    }
  });

  it('keeps status out of spec writes and spec out of status writes', async () => {
    const { path } = KINDS.LoadBalancerVip;
    const created = await send('POST', path, { ...object('LoadBalancerVip', 'isolated', BASE_SPEC.LoadBalancerVip), status: { readyBackends: 5 } });
    assert.equal(created.status, 201);
    assert.equal(created.body['status'], undefined);
    const patched = await send('PATCH', `${path}/isolated/status`, { spec: { address: '192.0.2.99' }, status: { readyBackends: 5 } }, 'application/merge-patch+json');
    assert.equal((patched.body['spec'] as Json)['address'], '192.0.2.10');
    assert.equal((patched.body['status'] as Json)['readyBackends'], 5);
    assert.equal((await send('DELETE', `${path}/isolated`)).status, 200);
  });

  it('prints the columns kubectl get shows', async () => {
    type Table = { columnDefinitions: { name: string; priority: number }[]; rows: { cells: unknown[] }[] };
    const table = async (path: string): Promise<Table> => (await send('GET', path, undefined, undefined, 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json')).body as unknown as Table;
    const columns = (t: Awaited<ReturnType<typeof table>>) => t.columnDefinitions.filter((c) => c.priority === 0).map((c) => c.name);

    const { path: vipPath } = KINDS.LoadBalancerVip;
    await send('POST', vipPath, object('LoadBalancerVip', 'printed', { pool: 'public', ports: [{ port: 80 }, { port: 53, protocol: 'UDP' }], backends: web }));
    await send('PATCH', `${vipPath}/printed/status`, { status: { address: '192.0.2.20', readyBackends: 3, balancerNodes: { selected: 2, programmed: 2 } } }, 'application/merge-patch+json');
    const vips = await table(vipPath);
    assert.deepEqual(columns(vips), ['Name', 'Address', 'Ports', 'Backends', 'Programmed', 'Age']);
    const row = vips.rows.find((r) => r.cells[0] === 'printed')!;
    assert.deepEqual(row.cells.slice(0, 5), ['printed', '192.0.2.20', '[{"port":80,"protocol":"TCP"},{"port":53,"protocol":"UDP"}]', 3, 2]);

    const pools = await table(KINDS.VipPool.path);
    assert.deepEqual(columns(pools), ['Name', 'Addresses', 'Assigned', 'Available', 'Age']);

    const { path: nodePath } = KINDS.BalancerNode;
    await send('POST', nodePath, object('BalancerNode', 'node-printed', { vips: [vip()] }));
    await send('PATCH', `${nodePath}/node-printed/status`, { status: { observedGeneration: 1, attachMode: 'generic', vipCount: 1, conditions: [cond('Ready', 'True', 'AgentReady')] } }, 'application/merge-patch+json');
    const nodes = await table(nodePath);
    assert.deepEqual(columns(nodes), ['Name', 'VIPs', 'Generation', 'Programmed', 'Attach', 'Ready', 'Age']);
    assert.deepEqual(nodes.rows.find((r) => r.cells[0] === 'node-printed')!.cells.slice(0, 6), ['node-printed', 1, 1, 1, 'generic', 'True']);
    await send('DELETE', `${vipPath}/printed`);
    await send('DELETE', `${nodePath}/node-printed`);
  });
});

describe('API schemas: static checks of the CRDs', () => {
  const crds = CRD_FILES.map((file) => parseYaml(readFileSync(file, 'utf8')) as Json);

  it('writes IP_PATTERN into the BalancerNode CRD verbatim', () => {
    const text = readFileSync(CRD_FILES[2]!, 'utf8');
    const patterns = [...text.matchAll(/pattern: '(\^\(\(\(25.*)'/g)].map((m) => m[1]);
    assert.equal(patterns.length, 4, 'vips[].address, backends[].address, decap[].addresses[], decap[].vips[]');
    for (const p of patterns) assert.equal(p, IP_PATTERN);
  });

  it('describes every field, bounds every string and list, and declares a type everywhere', () => {
    const problems: string[] = [];
    const walk = (node: Json, path: string, needsDescription: boolean): void => {
      if (typeof node['type'] !== 'string') problems.push(`${path}: no type`);
      if (needsDescription && typeof node['description'] !== 'string') problems.push(`${path}: no description`);
      const typeMeta = /^[A-Za-z]+\.(apiVersion|kind)$/.test(path);
      if (node['type'] === 'string' && node['enum'] === undefined && node['format'] !== 'date-time' && !typeMeta && typeof node['maxLength'] !== 'number') problems.push(`${path}: no maxLength`);
      if (node['type'] === 'array' && typeof node['maxItems'] !== 'number') problems.push(`${path}: no maxItems`);
      for (const [key, child] of Object.entries((node['properties'] ?? {}) as Record<string, Json>)) {
        walk(child, `${path}.${key}`, true);
      }
      // List items and map values are described by their list or map.
      if (node['items'] !== undefined) walk(node['items'] as Json, `${path}[]`, false);
      if (typeof node['additionalProperties'] === 'object') walk(node['additionalProperties'] as Json, `${path}{}`, false);
    };
    for (const crd of crds) {
      const version = (crd['spec'] as { versions: { schema: { openAPIV3Schema: Json } }[] }).versions[0]!;
      walk(version.schema.openAPIV3Schema, (crd['spec'] as { names: { kind: string } }).names.kind, true);
    }
    assert.deepEqual(problems, []);
  });
});

// ------------------------------------------------------------------ randomised comparison

/** mulberry32: a small seeded generator, so a failure names a reproducible case. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class AddressGen {
  readonly r: () => number;
  constructor(seed: number) {
    this.r = prng(seed);
  }

  chance(p: number): boolean {
    return this.r() < p;
  }

  int(n: number): number {
    return Math.floor(this.r() * n);
  }

  pick<T>(list: readonly T[]): T {
    return list[this.int(list.length)]!;
  }

  /** An address as a number, biased towards the values the rules care about. */
  value(family: 4 | 6): bigint {
    if (family === 4) {
      const octet = (): number => (this.chance(0.4) ? this.pick([0, 1, 10, 127, 169, 192, 223, 224, 239, 240, 254, 255]) : this.int(256));
      return [octet(), octet(), octet(), octet()].reduce((acc, o) => (acc << 8n) | BigInt(o), 0n);
    }
    const groups = Array.from({ length: 8 }, () => (this.chance(0.45) ? 0 : this.chance(0.1) ? 0xffff : this.int(0x10000)));
    if (this.chance(0.15)) groups[0] = this.pick([0xff02, 0xfe80, 0xfebf, 0xfec0, 0x2001, 0xfd00, 0]);
    if (this.chance(0.05)) groups.splice(0, 6, 0, 0, 0, 0, 0, 0xffff);
    if (this.chance(0.05)) groups.splice(0, 8, 0, 0, 0, 0, 0, 0, 0, this.pick([0, 1]));
    return groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
  }

  /** Text for a value: IPv6 in any legal spelling (compression, padding, case). */
  render(n: bigint, family: 4 | 6): string {
    if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 0xffn)).join('.');
    const groups = [112n, 96n, 80n, 64n, 48n, 32n, 16n, 0n].map((s) => Number((n >> s) & 0xffffn));
    const pad = this.chance(0.15);
    let parts = groups.map((g) => (pad ? g.toString(16).padStart(4, '0') : g.toString(16)));
    if (this.chance(0.2)) parts = parts.map((p) => p.toUpperCase());
    const zeroRuns: [number, number][] = [];
    for (let i = 0; i < 8; i++) {
      if (groups[i] !== 0) continue;
      let j = i;
      while (j < 8 && groups[j] === 0) j++;
      for (let k = i + 1; k <= j; k++) zeroRuns.push([i, k]);
      i = j;
    }
    if (zeroRuns.length > 0 && this.chance(0.75)) {
      const [from, to] = this.pick(zeroRuns);
      return `${parts.slice(0, from).join(':')}::${parts.slice(to).join(':')}`;
    }
    return parts.join(':');
  }

  /** An address text: mostly valid, sometimes broken in the ways people break them. */
  address(family: 4 | 6 = this.chance(0.5) ? 4 : 6): string {
    const text = this.render(this.value(family), family);
    if (!this.chance(0.2)) return text;
    return this.pick([
      () => `${text}%eth0`,
      () => (family === 4 ? text.replace(/^(\d+)\./, '0$1.') : text.replace(/^([0-9a-fA-F]*)/, '1$1')),
      () => (family === 4 ? `${text}.1` : `${text}:1`),
      () => (family === 4 ? text.replace(/\d+$/, '256') : `::ffff:${this.render(this.value(4), 4)}`),
      () => (family === 4 ? text.split('.').slice(0, 3).join('.') : text.replace('::', ':::')),
      () => (family === 6 ? `1::${text.replace('::', ':')}::1` : ` ${text}`),
      () => text.toUpperCase().replace('F', 'G'),
    ])();
  }

  cidr(): string {
    const family = this.chance(0.5) ? 4 : 6;
    const width = family === 4 ? 32 : 128;
    const bits = this.chance(0.05) ? width + 1 + this.int(3) : this.int(width + 1);
    let n = this.value(family);
    if (this.chance(0.6)) n &= ~((1n << BigInt(width - Math.min(bits, width))) - 1n);
    const prefix = this.chance(0.05) ? `0${bits}` : String(bits);
    const text = `${this.render(n, family)}/${prefix}`;
    return this.chance(0.05) ? text.replace('/', `%eth0/`) : text;
  }

  range(): string {
    const family = this.chance(0.5) ? 4 : 6;
    const a = this.value(family);
    const other = this.chance(0.1) ? (family === 4 ? 6 : 4) : family;
    const b = other !== family ? this.value(other) : this.chance(0.15) ? a : a + BigInt(this.int(1000)) * (this.chance(0.75) ? 1n : -1n);
    const clamp = (v: bigint, f: 4 | 6): bigint => (v < 0n ? 0n : v >= 1n << (f === 4 ? 32n : 128n) ? (1n << (f === 4 ? 32n : 128n)) - 1n : v);
    const text = `${this.render(a, family)}-${this.render(clamp(b, other), other)}`;
    if (!this.chance(0.1)) return text;
    return this.pick([`${text}-${this.render(a, family)}`, text.replace('-', ' - '), `${this.address(family)}-${this.address(family)}`]);
  }

  poolEntry(): string {
    return this.chance(0.1) ? this.pick(['', '-', '/', '10.0.0.0', 'x/8', '1.2.3.4/', '-1.2.3.4', '::/', 'fe80::/10%']) : this.chance(0.5) ? this.cidr() : this.range();
  }
}

function rejectedIndices(body: Json, field: RegExp): Set<number> {
  const out = new Set<number>();
  for (const f of causeFields(body)) {
    const m = field.exec(f);
    if (m !== null) out.add(Number(m[1]));
  }
  return out;
}

/**
 * Which pool entries the API server refuses, from one dry-run create of all of them.
 * kube-apiserver skips every CEL rule of an object once its OpenAPI schema fails (a
 * cause without a field: "some validation rules were not checked"); then each entry is
 * asked about on its own.
 */
async function rejectedEntries(name: string, entries: readonly string[]): Promise<Set<number>> {
  const ask = async (list: readonly string[]): Promise<{ rejected: Set<number>; unchecked: boolean }> => {
    const res = await send('POST', `${KINDS.VipPool.path}?dryRun=All`, object('VipPool', name, { addresses: list }));
    assert.ok(res.status === 201 || res.status === 422, `${name}: HTTP ${res.status}`);
    if (res.status === 201) return { rejected: new Set(), unchecked: false };
    const elsewhere = causeFields(res.body).filter((f) => !/^spec\.addresses\[\d+\]$/.test(f));
    assert.ok(elsewhere.every((f) => f === '<nil>'), `${name}: refusals not of one entry: ${JSON.stringify(res.body['message'])}`);
    return { rejected: rejectedIndices(res.body, /^spec\.addresses\[(\d+)\]$/), unchecked: elsewhere.length > 0 };
  };
  const all = await ask(entries);
  if (!all.unchecked) return all.rejected;
  const rejected = new Set<number>();
  for (const [i, e] of entries.entries()) if ((await ask([e])).rejected.size > 0) rejected.add(i);
  return rejected;
}

/** Whether the API server must accept a pool entry: zod does, or zod refuses it only for the range order (the operator's check). */
function serverAcceptsEntry(entry: string): boolean {
  if (VipPoolSpec.safeParse({ addresses: [entry] }).success) return true;
  const parsed = parsePoolEntry(entry);
  return parsed.kind === 'invalid' && parsed.messages.length === 1 && parsed.messages[0] === RANGE_ORDER;
}

describe('API schemas: randomised comparison of the address rules', { timeout: TEST_TIMEOUT_MS * 5 }, () => {
  it('VipPool entries: the CEL rules and parsePoolEntry agree on 2,500 entries (the range order left to the operator)', async () => {
    const gen = new AddressGen(20261101);
    const seen = new Set<string>();
    let disagreements: string[] = [];
    let accepted = 0;
    let operatorOnly = 0;
    for (let batch = 0; batch < 40; batch++) {
      const entries: string[] = [];
      while (entries.length < 64) {
        const e = gen.poolEntry();
        if (!seen.has(e)) {
          seen.add(e);
          entries.push(e);
        }
      }
      const rejected = await rejectedEntries(`random-${batch}`, entries);
      entries.forEach((e, i) => {
        const zodOk = VipPoolSpec.safeParse({ addresses: [e] }).success;
        const serverOk = serverAcceptsEntry(e);
        if (serverOk === rejected.has(i)) disagreements.push(`${JSON.stringify(e)}: server ${rejected.has(i) ? 'rejects' : 'accepts'}, zod ${zodOk ? 'accepts' : 'rejects'}${serverOk && !zodOk ? ' (range order only)' : ''}`);
        if (zodOk) accepted++;
        if (serverOk && !zodOk) operatorOnly++;
      });
    }
    disagreements = disagreements.slice(0, 20);
    assert.deepEqual(disagreements, []);
    assert.ok(operatorOnly > 20, `downward ranges among the entries (${operatorOnly})`);
    assert.ok(accepted > 600 && accepted < 2000, `a useful mix of valid and invalid entries (${accepted} valid)`);
  });

  it('LoadBalancerVip addresses: the CEL rules and vipAddressProblem agree on 300 addresses', async () => {
    const gen = new AddressGen(7);
    const disagreements: string[] = [];
    for (let i = 0; i < 300; i++) {
      const address = gen.address();
      const res = await send('POST', `${KINDS.LoadBalancerVip.path}?dryRun=All`, object('LoadBalancerVip', `random-${i}`, { address, ports, backends: web }));
      const zodOk = LoadBalancerVipSpec.safeParse({ address, ports, backends: web }).success;
      if (zodOk !== (res.status === 201)) disagreements.push(`${JSON.stringify(address)}: server ${res.status}, zod ${zodOk ? 'accepts' : 'rejects'}`);
    }
    assert.deepEqual(disagreements.slice(0, 20), []);
  });

  it('BalancerNode addresses: IP_PATTERN in the CRD, in zod, and Node\'s isIP agree on 1,000 addresses', async () => {
    const gen = new AddressGen(99);
    const texts = new Set<string>();
    while (texts.size < 1000) texts.add(gen.address());
    const list = [...texts];
    const res = await send('POST', `${KINDS.BalancerNode.path}?dryRun=All`, object('BalancerNode', 'random', { decap: [duty({ vips: list })] }));
    const rejected = res.status === 201 ? new Set<number>() : rejectedIndices(res.body, /^spec\.decap\[0\]\.vips\[(\d+)\]$/);
    const { isPlainIp } = await import('../../src/shared/api/common.ts');
    const disagreements: string[] = [];
    list.forEach((t, i) => {
      const zodOk = BalancerNodeSpec.safeParse({ decap: [duty({ vips: [t] })] }).success;
      if (zodOk === rejected.has(i)) disagreements.push(`${JSON.stringify(t)}: server ${rejected.has(i) ? 'rejects' : 'accepts'}, zod ${zodOk ? 'accepts' : 'rejects'}`);
      if (zodOk !== isPlainIp(t)) disagreements.push(`${JSON.stringify(t)}: IP_PATTERN ${zodOk ? 'accepts' : 'rejects'}, isIP ${isPlainIp(t) ? 'accepts' : 'rejects'}`);
    });
    assert.deepEqual(disagreements.slice(0, 20), []);
  });
});

// ------------------------------------------------------------------ the documentation's examples

/** Every YAML document in docs/operator.md's ```yaml blocks. */
function docExamples(): Json[] {
  const text = readFileSync(join(REPO_ROOT, 'docs', 'operator.md'), 'utf8');
  const blocks = [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
  return blocks.flatMap((b) => parseAllDocuments(b).map((d) => d.toJSON() as Json));
}

const FULCRUM_KINDS = new Set<string>(['LoadBalancerVip', 'VipPool', 'BalancerNode']);

describe('docs/operator.md examples', { timeout: TEST_TIMEOUT_MS * 3 }, () => {
  it('explain every condition type, BalancerNode reason and decap outcome', () => {
    const doc = readFileSync(join(REPO_ROOT, 'docs', 'operator.md'), 'utf8');
    const words = [...LOAD_BALANCER_VIP_CONDITIONS, ...VIP_POOL_CONDITIONS, ...BALANCER_NODE_CONDITIONS, ...BALANCER_NODE_REASONS, ...DecapOutcome.options];
    assert.deepEqual(words.filter((w) => !doc.includes(`\`${w}\``)), []);
  });

  it('are accepted by the API server and by zod, and kept as written apart from defaults', async () => {
    const examples = docExamples();
    let checked = 0;
    for (const ex of examples) {
      const kind = ex['kind'] as string;
      const meta = ex['metadata'] as { name: string; namespace?: string };
      if (meta.namespace !== undefined) await send('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: meta.namespace } });
      if (FULCRUM_KINDS.has(kind)) {
        const k = kind as Kind;
        const path = k === 'LoadBalancerVip' ? `${API}/namespaces/${meta.namespace ?? 'default'}/loadbalancervips` : KINDS[k].path;
        const res = await send('POST', `${path}?dryRun=All`, ex);
        assert.equal(res.status, 201, `${kind} ${meta.name}: ${JSON.stringify(res.body['message'])}`);
        const parsed = KINDS[k].spec.safeParse(ex['spec']);
        assert.ok(parsed.success, `${kind} ${meta.name}: ${parsed.error?.message}`);
        assert.deepEqual(res.body['spec'], parsed.data);
        checked++;
      } else if (kind === 'Service') {
        const res = await send('POST', `/api/v1/namespaces/${meta.namespace ?? 'default'}/services?dryRun=All`, ex);
        assert.equal(res.status, 201, `Service ${meta.name}: ${JSON.stringify(res.body['message'])}`);
        checked++;
      } else if (kind === 'ValidatingAdmissionPolicy' || kind === 'ValidatingAdmissionPolicyBinding') {
        const plural = kind === 'ValidatingAdmissionPolicy' ? 'validatingadmissionpolicies' : 'validatingadmissionpolicybindings';
        const res = await send('POST', `/apis/admissionregistration.k8s.io/v1/${plural}?dryRun=All`, ex);
        assert.equal(res.status, 201, `${kind} ${meta.name}: ${JSON.stringify(res.body['message'])}`);
        checked++;
      } else {
        assert.fail(`an example of kind ${kind} nobody checks`);
      }
    }
    assert.ok(checked >= 6, `${checked} examples checked`);
  });

  it('apply with kubectl and print the documented columns', async () => {
    const applied = await cp.kubectl(['apply', '--server-side', '--field-manager=fulcrum-install', '-f', join(REPO_ROOT, 'crds')]);
    for (const crd of ['balancernodes', 'loadbalancervips', 'vippools']) assert.match(applied, new RegExp(`${crd}.fulcrum.dev serverside-applied`));
    await cp.kubectl(['get', 'namespace', 'shop']).catch(() => cp.kubectl(['create', 'namespace', 'shop']));
    const file = join(cp.dir, 'doc-examples.yaml');
    await writeFile(file, docExamples().filter((e) => FULCRUM_KINDS.has(e['kind'] as string)).map((e) => stringifyYaml(e)).join('---\n'));
    assert.match(await cp.kubectl(['apply', '-f', file]), /loadbalancervip.fulcrum.dev\/web created/);
    assert.match(await cp.kubectl(['get', 'lbvip', '-n', 'shop']), /^NAME\s+ADDRESS\s+PORTS\s+BACKENDS\s+PROGRAMMED\s+AGE\n/);
    assert.match(await cp.kubectl(['get', 'vippool', '-o', 'wide']), /^NAME\s+ADDRESSES\s+ASSIGNED\s+AVAILABLE\s+AGE\s+AUTO-ASSIGN\n/);
    assert.match(await cp.kubectl(['get', 'bnode']), /^NAME\s+VIPS\s+GENERATION\s+PROGRAMMED\s+ATTACH\s+READY\s+AGE\nworker-1\s+1\s/);
    const all = await cp.kubectl(['get', 'fulcrum', '-A']);
    for (const name of ['loadbalancervip.fulcrum.dev/web', 'vippool.fulcrum.dev/public', 'balancernode.fulcrum.dev/worker-1']) assert.ok(all.includes(name), name);
    await cp.kubectl(['delete', '-f', file, '--wait=true', '--timeout=60s']);
  });
});
