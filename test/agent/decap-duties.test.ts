// DecapDuties against real network namespaces: a "node" namespace and backend "pod"
// namespaces joined by veth pairs (nothing touches the host namespace). A duty is
// applied, then checked from the outside: the tc filter, the VIPs on the pod's lo,
// the sysctls, and real traffic — IPIP and IP6IP6 frames carrying UDP to a VIP,
// injected from the node namespace with a raw socket, reach a socket bound to the VIP
// in the pod, and the pod's reply leaves with the VIP as source (its ARP request
// naming the pod's own address, not the VIP). Then re-apply, VIP changes, an agent
// restart, removal, and the undo of a duty whose pod is gone.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pino } from 'pino';
import { makePinDir } from '../../src/agent/bpf/bpffs.ts';
import { DECAP_TC_HANDLE, DECAP_TC_PRIORITY, DecapDuties, podKey, type DecapPodResult, type DecapPodStatus } from '../../src/agent/decap-duties.ts';
import { PodNetns } from '../../src/agent/pod-netns.ts';
import { inNetns } from '../../src/agent/bpf/attach.ts';
import { addrKey, u32 } from '../../src/agent/bpf/abi.ts';
import { BPF_MAP_TYPE, BpfMap, createMap } from '../../src/agent/bpf/map.ts';
import { Registry, linkMac, netnsPath, nsExec, nsSpawn, sh } from '../../src/lab/netns.ts';
import { DecapDuty } from '../../src/shared/desired-state.ts';
import { isFulcrumError } from '../../src/shared/errors.ts';
import { encapsulate, ipv4, ipv6, udp, type TunnelConfig } from '../support/packets.ts';
import { REPO, rootOnly, uniqueName } from '../bpf/support.ts';

const OBJECT = join(REPO, 'bpf/build/decap.bpf.o');
const GUE_PORT = 6080;
const TC = { handle: DECAP_TC_HANDLE, priority: DECAP_TC_PRIORITY };

const POD4 = '10.200.0.2';
const NODE4 = '10.200.0.1';
const POD6 = 'fd00:200::2';
const NODE6 = 'fd00:200::1';
const VIP4 = '203.0.113.10';
const VIP4B = '203.0.113.11';
const VIP6 = '2001:db8:f::10';
const CLIENT4 = '198.51.100.7';
const CLIENT6 = '2001:db8:c::7';
const SERVICE_PORT = 5353;
const CLIENT_PORT = 40000;
/** Not Fulcrum's: must survive every apply and the removal. */
const FOREIGN_LO = '192.0.2.55';

// Run inside the namespaces with nsenter. inject: send one frame out of an interface
// through an AF_PACKET socket, then watch that interface for the UDP reply to the
// client port and for ARP requests. arp-probe: ask who-has an address, report whether
// anyone answered. listen: a UDP socket bound to the VIP answers one datagram.
const PYTHON = String.raw`
import json, socket, struct, sys, time

def packet_socket(iface):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((iface, 0))
    return s

def frames(s, seconds):
    deadline = time.time() + seconds
    while True:
        left = deadline - time.time()
        if left <= 0:
            return
        s.settimeout(left)
        try:
            frame, addr = s.recvfrom(65535)
        except socket.timeout:
            return
        if addr[2] != socket.PACKET_OUTGOING:
            yield frame

def udp_of(frame):
    kind = struct.unpack('!H', frame[12:14])[0]
    if kind == 0x0800 and frame[23] == 17:
        ihl = (frame[14] & 15) * 4
        src, dst, l4 = socket.inet_ntop(socket.AF_INET, frame[26:30]), socket.inet_ntop(socket.AF_INET, frame[30:34]), 14 + ihl
    elif kind == 0x86dd and frame[20] == 17:
        src, dst, l4 = socket.inet_ntop(socket.AF_INET6, frame[22:38]), socket.inet_ntop(socket.AF_INET6, frame[38:54]), 54
    else:
        return None
    sport, dport, length = struct.unpack('!HHH', frame[l4:l4 + 6])
    return {'src': src, 'dst': dst, 'sport': sport, 'dport': dport, 'payload': frame[l4 + 8:l4 + length].decode('latin-1')}

mode = sys.argv[1]
if mode == 'inject':
    iface, frame, client_port, seconds = sys.argv[2], bytes.fromhex(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    s = packet_socket(iface)
    s.send(frame)
    out = {'reply': None, 'arpSenders': []}
    for f in frames(s, seconds):
        if struct.unpack('!H', f[12:14])[0] == 0x0806 and struct.unpack('!H', f[20:22])[0] == 1:
            out['arpSenders'].append(socket.inet_ntop(socket.AF_INET, f[28:32]))
            continue
        u = udp_of(f)
        if u and u['dport'] == client_port:
            out['reply'] = u
            break
    print(json.dumps(out))
elif mode == 'arp-probe':
    iface, mac, sender, target = sys.argv[2], bytes.fromhex(sys.argv[3].replace(':', '')), sys.argv[4], sys.argv[5]
    s = packet_socket(iface)
    arp = struct.pack('!HHBBH', 1, 0x0800, 6, 4, 1) + mac + socket.inet_aton(sender) + bytes(6) + socket.inet_aton(target)
    s.send(b'\xff' * 6 + mac + b'\x08\x06' + arp)
    answered = False
    for f in frames(s, 0.5):
        if struct.unpack('!H', f[12:14])[0] == 0x0806 and struct.unpack('!H', f[20:22])[0] == 2 and socket.inet_ntop(socket.AF_INET, f[28:32]) == target:
            answered = True
            break
    print(json.dumps({'answered': answered}))
elif mode == 'listen':
    vip, port = sys.argv[2], int(sys.argv[3])
    u = socket.socket(socket.AF_INET6 if ':' in vip else socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((vip, port))
    u.settimeout(5)
    print('ready', flush=True)
    data, peer = u.recvfrom(2048)
    u.sendto(b'pong:' + data, peer)
    print(json.dumps({'from': peer[0], 'port': peer[1], 'data': data.decode()}), flush=True)
`;

type Injected = {
  reply: { src: string; dst: string; sport: number; dport: number; payload: string } | null;
  arpSenders: string[];
};

const lab = new Registry('dd');
const pinRoot = `/sys/fs/bpf/${uniqueName('fulcrum-dd')}`;
let podNs = '';
let pod2Ns = '';
let pod3Ns = '';
let nodeNs = '';
let podMac = '';
let nodeMac = '';
let duties: DecapDuties;

const duty = (input: Partial<DecapDuty> & Pick<DecapDuty, 'pod' | 'netns'>): DecapDuty =>
  DecapDuty.parse({ addresses: [POD4, POD6], vips: [VIP4, VIP6], ...input });
let podDuty: DecapDuty;
let pod2Duty: DecapDuty;

before(async () => {
  if ('skip' in rootOnly) return;
  execFileSync('make', ['-s', '-C', join(REPO, 'bpf'), 'build/decap.bpf.o']);
  podNs = await lab.addNamespace('pod');
  pod2Ns = await lab.addNamespace('pod2');
  pod3Ns = await lab.addNamespace('pod3');
  nodeNs = await lab.addNamespace('node');
  await lab.addVeth({ ns: podNs, name: 'eth0' }, { ns: nodeNs, name: 'vpod' });
  await lab.addVeth({ ns: pod2Ns, name: 'eth0' }, { ns: nodeNs, name: 'vpod2' });
  await nsExec(podNs, ['ip', 'addr', 'add', `${POD4}/24`, 'dev', 'eth0']);
  await nsExec(podNs, ['ip', 'addr', 'add', `${POD6}/64`, 'dev', 'eth0', 'nodad']);
  await nsExec(podNs, ['ip', 'route', 'add', 'default', 'via', NODE4]);
  await nsExec(podNs, ['ip', '-6', 'route', 'add', 'default', 'via', NODE6]);
  await nsExec(podNs, ['ip', 'addr', 'add', `${FOREIGN_LO}/32`, 'dev', 'lo']);
  await nsExec(nodeNs, ['ip', 'addr', 'add', `${NODE4}/24`, 'dev', 'vpod']);
  await nsExec(nodeNs, ['ip', 'addr', 'add', `${NODE6}/64`, 'dev', 'vpod', 'nodad']);
  await nsExec(pod2Ns, ['ip', 'addr', 'add', '10.201.0.2/24', 'dev', 'eth0']);
  await nsExec(nodeNs, ['ip', 'addr', 'add', '10.201.0.1/24', 'dev', 'vpod2']);
  podMac = await linkMac(podNs, 'eth0');
  nodeMac = await linkMac(nodeNs, 'vpod');
  podDuty = duty({ pod: 'shop/web-0', netns: netnsPath(podNs) });
  pod2Duty = duty({ pod: 'shop/web-1', netns: netnsPath(pod2Ns), addresses: ['10.201.0.2'], vips: [VIP4] });
  duties = new DecapDuties({ objectPath: OBJECT, guePort: GUE_PORT, pinRoot });
});

after(async () => {
  await duties?.close();
  await lab.cleanup();
  rmSync(pinRoot, { recursive: true, force: true });
});

// ── observing a pod from outside ─────────────────────────────────────────────────

async function loAddresses(ns: string): Promise<string[]> {
  const [lo] = JSON.parse(await nsExec(ns, ['ip', '-j', 'addr', 'show', 'dev', 'lo'])) as { addr_info: { local: string; prefixlen: number }[] }[];
  return lo!.addr_info.map((a) => `${a.local}/${a.prefixlen}`).sort();
}

async function ingressFilters(ns: string, dev: string): Promise<number> {
  const filters = JSON.parse(await nsExec(ns, ['tc', '-j', 'filter', 'show', 'dev', dev, 'ingress']) || '[]') as { options?: unknown }[];
  return filters.filter((f) => f.options !== undefined).length;
}

async function sysctls(ns: string, keys: string[]): Promise<string[]> {
  return (await nsExec(ns, ['sysctl', '-n', ...keys])).trim().split('\n');
}

function statusOf(pod: string): DecapPodStatus {
  const status = duties.status().find((s) => s.pod === pod);
  assert.ok(status, `status of ${pod}`);
  return status;
}

function byPod(results: readonly DecapPodResult[]): Map<string, DecapPodResult> {
  return new Map(results.map((r) => [r.pod, r]));
}

const tunnel: TunnelConfig = {
  tunnelSrc4: '172.16.0.0', tunnelSrc6: '100::', nodeAddr4: NODE4, nodeAddr6: NODE6,
  guePort: GUE_PORT, ttl: 64, nexthopMac: '00:00:00:00:00:00',
};

/** A client's UDP datagram to `vip`, encapsulated by "the balancer" towards the pod. */
function tunnelled(vip: string, payload: string): Buffer {
  const client = vip.includes(':') ? CLIENT6 : CLIENT4;
  const segment = udp({ sport: CLIENT_PORT, dport: SERVICE_PORT, payload });
  const inner = vip.includes(':') ? ipv6({ src: client, dst: vip }, segment) : ipv4({ src: client, dst: vip }, segment);
  return encapsulate({ inner, srcMac: nodeMac, backend: vip.includes(':') ? POD6 : POD4, config: { ...tunnel, nexthopMac: podMac } });
}

async function inject(frame: Buffer, seconds = 3): Promise<Injected> {
  const out = await nsExec(nodeNs, ['python3', '-c', PYTHON, 'inject', 'vpod', frame.toString('hex'), String(CLIENT_PORT), String(seconds)]);
  return JSON.parse(out) as Injected;
}

/** A listener on the VIP in the pod, an encapsulated datagram from the node, and what each side saw. */
async function roundTrip(vip: string, payload: string): Promise<{ received: { from: string; port: number; data: string }; injected: Injected }> {
  const listener = nsSpawn(podNs, ['python3', '-c', PYTHON, 'listen', vip, String(SERVICE_PORT)]);
  const lines = createInterface({ input: listener.stdout! })[Symbol.asyncIterator]();
  let stderr = '';
  listener.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  try {
    const ready = await lines.next();
    assert.equal(ready.value, 'ready', `listener on ${vip}: ${stderr}`);
    const injected = await inject(tunnelled(vip, payload));
    const line = await lines.next();
    assert.ok(!line.done, `the listener on ${vip} received nothing: ${stderr}`);
    return { received: JSON.parse(line.value as string) as { from: string; port: number; data: string }, injected };
  } finally {
    listener.kill('SIGKILL');
  }
}

// ── the tests (in order: each builds on the state the previous one left) ───────────

test('the host network namespace is refused before anything is done in it', rootOnly, () => {
  assert.throws(() => PodNetns.tryOpen('/proc/self/ns/net'),
    (err) => isFulcrumError(err, 'ERR_NETNS') && err.details['reason'] === 'host-namespace');
  assert.equal(PodNetns.tryOpen(netnsPath(`${lab.prefix}-nonexistent`)), null);
});

test('apply programs the pods it can and reports the ones it cannot', rootOnly, async () => {
  const ghost = duty({ pod: 'shop/gone', netns: netnsPath(`${lab.prefix}-ghost`) });
  const noInterface = duty({ pod: 'shop/no-eth', netns: netnsPath(pod3Ns), interface: 'eth7' });
  const result = await duties.apply([podDuty, pod2Duty, ghost, noInterface]);
  const pods = byPod(result.pods);

  assert.equal(pods.get('shop/web-0')?.outcome, 'programmed');
  assert.equal(pods.get('shop/web-1')?.outcome, 'programmed');
  const gone = pods.get('shop/gone');
  assert.ok(gone?.outcome === 'failed' && gone.action === 'program');
  assert.equal(gone.error.code, 'ERR_NETNS');
  assert.match(gone.error.message, /no network namespace at .*ghost.*the pod is gone/);
  const noEth = pods.get('shop/no-eth');
  assert.ok(noEth?.outcome === 'failed');
  assert.match(noEth.error.message, /has no interface eth7/);
  assert.equal(statusOf('shop/no-eth').programmed, false);
  assert.equal(statusOf('shop/web-0').programmed, true);

  // The filter: our program, once, at ingress of the pod's eth0.
  const web0 = statusOf('shop/web-0');
  assert.equal(await inNetns(netnsPath(podNs), 'queryTcIngress', 'eth0', TC), web0.progId);
  assert.equal(await ingressFilters(podNs, 'eth0'), 1);
  assert.equal(await inNetns(netnsPath(pod2Ns), 'queryTcIngress', 'eth0', TC), statusOf('shop/web-1').progId);
  assert.notEqual(web0.progId, statusOf('shop/web-1').progId, 'one program per pod');

  // VIPs on lo as host routes, next to what was there before.
  assert.deepEqual(await loAddresses(podNs), ['127.0.0.1/8', `${FOREIGN_LO}/32`, `${VIP4}/32`, `${VIP6}/128`, '::1/128'].sort());
  assert.deepEqual([...web0.vips].sort(), [VIP4, VIP6].sort());
  assert.deepEqual([...web0.addresses].sort(), [POD4, POD6].sort());

  assert.deepEqual(await sysctls(podNs, [
    'net.ipv4.conf.all.arp_ignore', 'net.ipv4.conf.lo.arp_ignore', 'net.ipv4.conf.eth0.arp_ignore',
    'net.ipv4.conf.all.arp_announce', 'net.ipv4.conf.lo.arp_announce', 'net.ipv4.conf.eth0.arp_announce',
    'net.ipv4.conf.all.rp_filter', 'net.ipv4.conf.eth0.rp_filter',
  ]), ['1', '1', '1', '2', '2', '2', '0', '0']);

  // Maps pinned per pod, with the record a restarted agent needs.
  const dir = join(pinRoot, 'decap', podKey('shop/web-0'));
  assert.deepEqual(readdirSync(dir).sort(), ['decap_addrs', 'decap_vips', 'duty', 'global_stats', 'reason_stats']);
});

test('IPIP and IP6IP6 to a VIP reach a socket on the VIP; the reply leaves from the VIP', rootOnly, async () => {
  const before = statusOf('shop/web-0');

  const v4 = await roundTrip(VIP4, 'ping-4');
  assert.deepEqual(v4.received, { from: CLIENT4, port: CLIENT_PORT, data: 'ping-4' });
  assert.deepEqual(v4.injected.reply, { src: VIP4, dst: CLIENT4, sport: SERVICE_PORT, dport: CLIENT_PORT, payload: 'pong:ping-4' });
  // arp_announce=2: resolving its gateway for that reply, the pod named its own address.
  assert.ok(v4.injected.arpSenders.length > 0, 'the pod resolved its gateway');
  assert.deepEqual([...new Set(v4.injected.arpSenders)], [POD4]);

  const v6 = await roundTrip(VIP6, 'ping-6');
  assert.deepEqual(v6.received, { from: CLIENT6, port: CLIENT_PORT, data: 'ping-6' });
  assert.deepEqual(v6.injected.reply, { src: VIP6, dst: CLIENT6, sport: SERVICE_PORT, dport: CLIENT_PORT, payload: 'pong:ping-6' });

  // A tunnel packet for a destination the pod does not serve is dropped, not decapsulated.
  const stray = await inject(tunnelled('203.0.113.99', 'stray'), 0.3);
  assert.equal(stray.reply, null);

  const now = statusOf('shop/web-0');
  assert.equal(now.decapped.packets - before.decapped.packets, 2n);
  assert.equal(now.reasons.decap_drop_not_vip!.packets - before.reasons.decap_drop_not_vip!.packets, 1n);
});

test('arp_ignore: the pod does not answer ARP for the VIP on its network', rootOnly, async () => {
  const probe = async (target: string) => JSON.parse(
    await nsExec(nodeNs, ['python3', '-c', PYTHON, 'arp-probe', 'vpod', nodeMac, NODE4, target])) as { answered: boolean };
  assert.deepEqual(await probe(POD4), { answered: true }, 'control: the pod answers for its own address');
  assert.deepEqual(await probe(VIP4), { answered: false });
});

test('re-applying the same duties changes nothing and duplicates nothing', rootOnly, async () => {
  const progId = statusOf('shop/web-0').progId;
  const result = await duties.apply([podDuty, pod2Duty]);
  const pods = byPod(result.pods);
  for (const pod of ['shop/web-0', 'shop/web-1']) {
    const r = pods.get(pod);
    assert.ok(r?.outcome === 'programmed', `${pod}: ${JSON.stringify(r)}`);
    assert.equal(r.attached, false, `${pod}: the filter was already in place`);
  }
  // The two failed duties of the first apply are gone from the desired state: shop/no-eth
  // got as far as pinning, so it is undone; shop/gone never pinned anything.
  assert.equal(pods.get('shop/no-eth')?.outcome, 'removed');
  assert.equal(pods.has('shop/gone'), false);

  assert.equal(await ingressFilters(podNs, 'eth0'), 1);
  assert.equal(await inNetns(netnsPath(podNs), 'queryTcIngress', 'eth0', TC), progId);
  assert.deepEqual(await loAddresses(podNs), ['127.0.0.1/8', `${FOREIGN_LO}/32`, `${VIP4}/32`, `${VIP6}/128`, '::1/128'].sort());
});

test('drift is repaired: a deleted filter and a deleted VIP come back', rootOnly, async () => {
  await inNetns(netnsPath(podNs), 'detachTcIngress', 'eth0', TC);
  await nsExec(podNs, ['ip', 'addr', 'del', `${VIP4}/32`, 'dev', 'lo']);
  const result = await duties.apply([podDuty, pod2Duty]);
  const r = byPod(result.pods).get('shop/web-0');
  assert.ok(r?.outcome === 'programmed' && r.attached);
  assert.equal(await inNetns(netnsPath(podNs), 'queryTcIngress', 'eth0', TC), statusOf('shop/web-0').progId);
  assert.ok((await loAddresses(podNs)).includes(`${VIP4}/32`));
});

test('a changed VIP set changes lo and the map, and only the VIPs Fulcrum added', rootOnly, async () => {
  podDuty = duty({ pod: 'shop/web-0', netns: netnsPath(podNs), vips: [VIP4, VIP4B] });
  const result = await duties.apply([podDuty, pod2Duty]);
  assert.ok(result.pods.every((r) => r.outcome === 'programmed'), JSON.stringify(result.pods));
  assert.deepEqual(await loAddresses(podNs), ['127.0.0.1/8', `${FOREIGN_LO}/32`, `${VIP4}/32`, `${VIP4B}/32`, '::1/128'].sort());
  assert.deepEqual([...statusOf('shop/web-0').vips].sort(), [VIP4, VIP4B].sort());
});

test('a restarted agent adopts the pinned maps and swaps its program in', rootOnly, async () => {
  const before = statusOf('shop/web-0');
  await duties.close();
  const logs: { msg: string; pod?: string }[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => { logs.push(JSON.parse(line) as { msg: string }); } });
  duties = new DecapDuties({ objectPath: OBJECT, guePort: GUE_PORT, pinRoot, logger });

  const result = await duties.apply([podDuty, pod2Duty]);
  // The record the previous agent left matches: no undo, the filter is replaced in place.
  assert.deepEqual(logs.filter((l) => /moved|removed|failed/.test(l.msg)), []);
  assert.ok(logs.some((l) => l.msg === 'decap attached' && l.pod === 'shop/web-0'));
  const r = byPod(result.pods).get('shop/web-0');
  assert.ok(r?.outcome === 'programmed' && r.attached, 'the new program replaces the old one');
  const after = statusOf('shop/web-0');
  assert.notEqual(after.progId, before.progId);
  assert.equal(await inNetns(netnsPath(podNs), 'queryTcIngress', 'eth0', TC), after.progId);
  assert.equal(await ingressFilters(podNs, 'eth0'), 1);
  assert.equal(after.decapped.packets, before.decapped.packets, 'counters survive (adopted maps)');

  const v4 = await roundTrip(VIP4B, 'after-restart');
  assert.equal(v4.injected.reply?.src, VIP4B);
  assert.equal(statusOf('shop/web-0').decapped.packets, before.decapped.packets + 1n);
});

test('a duty that disappears is undone: filter, VIPs on lo, pins', rootOnly, async () => {
  const result = await duties.apply([pod2Duty]);
  const pods = byPod(result.pods);
  assert.equal(pods.get('shop/web-0')?.outcome, 'removed');
  assert.equal(pods.get('shop/web-1')?.outcome, 'programmed');

  assert.equal(await inNetns(netnsPath(podNs), 'queryTcIngress', 'eth0', TC), 0);
  assert.equal(await ingressFilters(podNs, 'eth0'), 0);
  assert.deepEqual(await loAddresses(podNs), ['127.0.0.1/8', `${FOREIGN_LO}/32`, '::1/128'].sort());
  assert.equal(existsSync(join(pinRoot, 'decap', podKey('shop/web-0'))), false);
  assert.equal(duties.status().some((s) => s.pod === 'shop/web-0'), false);
  // The other pod is untouched.
  assert.equal(await inNetns(netnsPath(pod2Ns), 'queryTcIngress', 'eth0', TC), statusOf('shop/web-1').progId);

  // Undoing twice is as good as once.
  const again = await duties.apply([pod2Duty]);
  assert.deepEqual(again.pods.map((p) => p.outcome), ['programmed']);
});

test('a pod that went away while the agent was down is cleaned up from its pins', rootOnly, async () => {
  await duties.close();
  await sh('ip', ['netns', 'del', pod2Ns]);
  duties = new DecapDuties({ objectPath: OBJECT, guePort: GUE_PORT, pinRoot });

  const result = await duties.apply([]);
  assert.deepEqual(result.pods.map((p) => [p.pod, p.outcome]), [['shop/web-1', 'removed']]);
  assert.deepEqual(readdirSync(join(pinRoot, 'decap')), []);
});

test('a pod moved to a new namespace: the old attachment is undone, the new one made', rootOnly, async () => {
  await lab.addVeth({ ns: pod3Ns, name: 'eth0' }, { ns: nodeNs, name: 'vpod3' });
  const vip = '203.0.113.30';
  const mover = (ns: string) => duty({ pod: 'shop/mover', netns: netnsPath(ns), addresses: [POD4], vips: [vip] });
  const first = await duties.apply([mover(pod3Ns)]);
  assert.deepEqual(first.pods.map((p) => p.outcome), ['programmed']);
  assert.ok((await loAddresses(pod3Ns)).includes(`${vip}/32`));

  // Same pod, new sandbox: the duty now names another namespace.
  const second = await duties.apply([mover(podNs)]);
  assert.deepEqual(second.pods.map((p) => p.outcome), ['programmed']);
  assert.equal(await inNetns(netnsPath(pod3Ns), 'queryTcIngress', 'eth0', TC), 0);
  assert.ok(!(await loAddresses(pod3Ns)).includes(`${vip}/32`));
  assert.equal(await inNetns(netnsPath(podNs), 'queryTcIngress', 'eth0', TC), statusOf('shop/mover').progId);
  assert.ok((await loAddresses(podNs)).includes(`${vip}/32`));

  assert.deepEqual((await duties.apply([])).pods.map((p) => [p.pod, p.outcome]), [['shop/mover', 'removed']]);
  assert.deepEqual(await loAddresses(podNs), ['127.0.0.1/8', `${FOREIGN_LO}/32`, '::1/128'].sort());
});

test('a pinned map an upgrade changed is created afresh, keeping track of the VIPs on lo', rootOnly, async () => {
  // What an older agent with a smaller decap_vips left: the map pinned (no record), its VIP on lo.
  const oldVip = '203.0.113.20';
  const newVip = '203.0.113.21';
  const dir = join(pinRoot, 'decap', podKey('shop/upgraded'));
  makePinDir(dir);
  const old = createMap(BPF_MAP_TYPE.HASH, addrKey({ addr: oldVip }).length, 4, 16, 0, 'decap_vips');
  old.update(addrKey({ addr: oldVip }), u32(1));
  old.pin(join(dir, 'decap_vips'));
  old.close();
  await nsExec(pod3Ns, ['ip', 'addr', 'add', `${oldVip}/32`, 'dev', 'lo']);

  const upgraded = duty({ pod: 'shop/upgraded', netns: netnsPath(pod3Ns), addresses: ['10.202.0.2'], vips: [newVip] });
  const result = await duties.apply([upgraded]);
  assert.deepEqual(result.pods.map((p) => p.outcome), ['programmed'], JSON.stringify(result.pods));
  const vips = BpfMap.openPinned(join(dir, 'decap_vips'));
  try {
    assert.equal(vips.maxEntries, 1024, 'the map of the current object');
  } finally {
    vips.close();
  }
  assert.deepEqual(statusOf('shop/upgraded').vips, [newVip]);
  const lo = await loAddresses(pod3Ns);
  assert.ok(lo.includes(`${newVip}/32`) && !lo.includes(`${oldVip}/32`), lo.join(' '));

  assert.deepEqual((await duties.apply([])).pods.map((p) => p.outcome), ['removed']);
  assert.ok(!(await loAddresses(pod3Ns)).includes(`${newVip}/32`));
});

test('two duties naming one namespace and interface both fail, and nothing is programmed', rootOnly, async () => {
  const a = duty({ pod: 'shop/twin-a', netns: netnsPath(pod3Ns) });
  const b = duty({ pod: 'shop/twin-b', netns: netnsPath(pod3Ns) });
  const result = await duties.apply([a, b]);
  for (const r of result.pods) {
    assert.ok(r.outcome === 'failed' && r.error.code === 'ERR_DESIRED_STATE', JSON.stringify(r));
    assert.match(r.error.message, /same network namespace and interface/);
  }
  assert.equal(result.pods.length, 2);
  assert.deepEqual(readdirSync(join(pinRoot, 'decap')), []);
});
