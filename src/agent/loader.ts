// The balancer data plane's life cycle on a node: load balancer.bpf.o with the node's
// configuration, adopt (or create) its maps pinned under <pinRoot>/maps/, and attach
// it to each configured interface through a bpf_link pinned at <pinRoot>/links/<if>.
//
// What must stay true across agent restarts and upgrades: traffic keeps flowing and
// the connection table keeps its entries. So a restarted agent never detaches. Maps
// are adopted by libbpf from their pins (same kernel objects: the connection table,
// counters and programmed state survive), and the freshly loaded program is swapped
// into each pinned link with bpf_link_update — an atomic replacement: every packet
// sees the old program or the new one. A new BPF object (upgrade) or a new .rodata
// configuration (MTU, tunnel addresses, ...) goes the same way.
//
// What cannot be adopted is said in words: a pinned map whose definition no longer
// matches (ring size, table sizes, or a new map layout) stops the start-up with the
// map, the difference and the way out (--reset-maps, or the previous configuration).
import { existsSync, readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../shared/logging.ts';
import { FulcrumError, isFulcrumError } from '../shared/errors.ts';
import { CFG_F_FIB_LOOKUP, type BalancerConfig } from './bpf/abi.ts';
import {
  attachXdpLink, detachLink, ifindexOf, inNetns, linkInfo, queryXdp, updateLink,
  type AttachXdpLinkOptions, type XdpLink, type XdpState,
} from './bpf/attach.ts';
import { BpfMap, mapTypeName } from './bpf/map.ts';
import type { MapSpec } from './bpf/object.ts';
import { makePinDir } from './bpf/bpffs.ts';
import { disableGro } from './bpf/ethtool.ts';
import { unpin } from './bpf/pin.ts';
import { BALANCER_MAPS, BalancerProgram, type BalancerLimits, type BalancerLoadOptions, type BalancerMapName } from './dataplane/balancer.ts';
import type { AgentConfig, AttachMode, BalancerSettings } from './config.ts';

/** enum bpf_link_type BPF_LINK_TYPE_XDP. */
const BPF_LINK_TYPE_XDP = 6;

export const BALANCER_OBJECT = 'balancer.bpf.o';

/** Where everything of the balancer is pinned, under the agent's pinRoot. */
export type PinLayout = {
  readonly root: string;
  /** One pin per map: <root>/maps/<map name>. */
  readonly maps: string;
  /** One pin per interface: <root>/links/<interface name>. */
  readonly links: string;
};

export function pinLayout(pinRoot: string): PinLayout {
  return { root: pinRoot, maps: join(pinRoot, 'maps'), links: join(pinRoot, 'links') };
}

/** bpf/build of this checkout (the image puts the objects there too). */
export function defaultObjectDir(): string {
  return fileURLToPath(new URL('../../bpf/build/', import.meta.url));
}

export function balancerObjectPath(config: Pick<AgentConfig, 'bpfObjectDir'>): string {
  return join(config.bpfObjectDir ?? defaultObjectDir(), BALANCER_OBJECT);
}

/** The .rodata configuration block for these settings (see docs/dataplane.md). */
export function balancerConfigFrom(s: BalancerSettings): BalancerConfig {
  return {
    ringSize: s.ringSize,
    mtu: s.mtu,
    tunnelTtl: s.tunnelTtl,
    guePort: s.guePort,
    udpTimeoutNs: BigInt(Math.round(s.udpTimeoutSeconds * 1e9)),
    tunnelSrc4: s.tunnelSource4,
    tunnelSrc6: s.tunnelSource6,
    ...(s.nodeAddress4 !== undefined ? { nodeAddr4: s.nodeAddress4 } : {}),
    ...(s.nodeAddress6 !== undefined ? { nodeAddr6: s.nodeAddress6 } : {}),
    ...('mac' in s.nextHop ? { nexthopMac: s.nextHop.mac, flags: 0 } : { flags: CFG_F_FIB_LOOKUP }),
  };
}

export function balancerLimitsFrom(s: BalancerSettings): BalancerLimits {
  return { maxVips: s.maxVips, maxBackends: s.maxBackends, connTableSize: s.connTableSize };
}

export function balancerLoadOptions(config: AgentConfig & { balancer: BalancerSettings }): BalancerLoadOptions {
  return {
    objectPath: balancerObjectPath(config),
    config: balancerConfigFrom(config.balancer),
    limits: balancerLimitsFrom(config.balancer),
    pinDir: pinLayout(config.pinRoot).maps,
  };
}

// ─── pinned maps ───────────────────────────────────────────────────────────────────

/** Which setting decides a map's max_entries, for the mismatch message. */
const SIZED_BY: Readonly<Record<BalancerMapName, string>> = {
  ring: 'balancer.maxVips × balancer.ringSize',
  vips_v4: 'balancer.maxVips',
  vips_v6: 'balancer.maxVips',
  vip_state: 'balancer.maxVips',
  vip_stats: 'balancer.maxVips',
  vip_addrs_v4: 'the VIP address table size, from balancer.maxVips',
  vip_addrs_v6: 'the VIP address table size, from balancer.maxVips',
  backends: 'balancer.maxBackends',
  backend_stats: 'balancer.maxBackends',
  conn_v4: 'balancer.connTableSize',
  conn_v6: 'balancer.connTableSize',
  reason_stats: 'the number of reasons in this build',
  global_stats: 'the number of global counters in this build',
};

/**
 * Counter maps indexed by this build's enums (bpf/include/reasons.h): a release that
 * appends a reason resizes them. They hold nothing forwarding depends on, so an upgrade
 * replaces them (their counters restart from zero, which Prometheus reads as a counter
 * reset) instead of refusing to adopt the maps that do matter.
 */
export const REPLACEABLE_MAPS: ReadonlySet<BalancerMapName> = new Set(['reason_stats', 'global_stats']);

export type MapChange = { readonly field: 'type' | 'key size' | 'value size' | 'max_entries' | 'flags'; readonly pinned: string; readonly wanted: string };
export type MapMismatch = { readonly map: BalancerMapName; readonly pinPath: string; readonly changes: readonly MapChange[]; readonly cause: string };

/**
 * Compares every map pinned in `pinDir` with the definition the object would create
 * under these options. An empty list means every pin can be adopted (missing pins are
 * fine: they are created).
 */
export function pinnedMapMismatches(options: BalancerLoadOptions & { pinDir: string }): MapMismatch[] {
  const pinned = BALANCER_MAPS.filter((name) => existsSync(join(options.pinDir, name)));
  if (pinned.length === 0) return [];
  const specs = BalancerProgram.mapSpecs({ ...options, pinDir: undefined });
  const out: MapMismatch[] = [];
  for (const name of pinned) {
    const pinPath = join(options.pinDir, name);
    const map = BpfMap.openPinned(pinPath);
    try {
      const spec: MapSpec = specs[name];
      const changes: MapChange[] = [];
      if (map.type !== spec.type) changes.push({ field: 'type', pinned: mapTypeName(map.type), wanted: mapTypeName(spec.type) });
      if (map.keySize !== spec.keySize) changes.push({ field: 'key size', pinned: `${map.keySize}`, wanted: `${spec.keySize}` });
      if (map.valueSize !== spec.valueSize) changes.push({ field: 'value size', pinned: `${map.valueSize}`, wanted: `${spec.valueSize}` });
      if (map.maxEntries !== spec.maxEntries) changes.push({ field: 'max_entries', pinned: `${map.maxEntries}`, wanted: `${spec.maxEntries}` });
      if (map.flags !== spec.flags) changes.push({ field: 'flags', pinned: `0x${map.flags.toString(16)}`, wanted: `0x${spec.flags.toString(16)}` });
      if (changes.length === 0) continue;
      const layoutChanged = changes.some((c) => c.field !== 'max_entries');
      out.push({
        map: name,
        pinPath,
        changes,
        cause: layoutChanged ? `the map's layout differs in this build of ${BALANCER_OBJECT} (an upgrade that changed the ABI)` : `${SIZED_BY[name]} changed`,
      });
    } finally {
      map.close();
    }
  }
  return out;
}

function mismatchError(mismatches: readonly MapMismatch[]): FulcrumError {
  const lines = mismatches.map((m) =>
    `  ${m.map} (${m.pinPath}): ${m.changes.map((c) => `${c.field} ${c.pinned} → ${c.wanted}`).join(', ')} — ${m.cause}`);
  return new FulcrumError(
    'ERR_CONFIG',
    `pinned balancer maps no longer match this configuration:\n${lines.join('\n')}\n` +
      'The running data plane was left untouched. Either restore the previous settings, or start with ' +
      '`fulcrum agent --config <file> --reset-maps`, which unpins the old maps and starts fresh ' +
      '(the connection table is lost: established flows are placed again by the Maglev ring).',
    { details: { mismatches } },
  );
}

/**
 * Unpins every balancer map under <pinRoot>/maps/ (`fulcrum agent --reset-maps`). The
 * maps live on while an attached program uses them, so traffic keeps flowing on the
 * old program until the next load swaps the new one in with fresh maps.
 */
export function resetMaps(pinRoot: string): string[] {
  const { maps } = pinLayout(pinRoot);
  if (!existsSync(maps)) return [];
  const removed: string[] = [];
  for (const name of readdirSync(maps)) {
    if (unpin(join(maps, name))) removed.push(name);
  }
  return removed.sort();
}

// ─── interfaces ────────────────────────────────────────────────────────────────────

/** The interface operations, in the agent's own namespace or (tests, lab) in another one. */
type InterfaceOps = {
  ifindexOf(name: string): Promise<number>;
  queryXdp(name: string): Promise<XdpState>;
  attachXdpLink(name: string, progFd: number, options: AttachXdpLinkOptions): Promise<XdpLink>;
  /** Turns software GRO off; resolves with whether it was on (bpf/ethtool.ts). */
  disableGro(name: string): Promise<boolean>;
};

function interfaceOps(netns: string | undefined): InterfaceOps {
  if (netns === undefined) {
    return {
      ifindexOf: async (name) => ifindexOf(name),
      queryXdp: async (name) => queryXdp(name),
      attachXdpLink: async (name, fd, options) => attachXdpLink(name, fd, options),
      disableGro: async (name) => disableGro(name),
    };
  }
  return {
    ifindexOf: (name) => inNetns(netns, 'ifindexOf', name),
    queryXdp: (name) => inNetns(netns, 'queryXdp', name),
    attachXdpLink: (name, fd, options) => inNetns(netns, 'attachXdpLink', name, fd, options),
    disableGro: (name) => inNetns(netns, 'disableGro', name),
  };
}

/** How an interface came to run the current program. */
export type AttachAction =
  | 'attached'    // no link was pinned: a new one was created
  | 'replaced'    // the pinned link now runs the new program (atomic, no gap)
  | 'reattached'; // the pinned link was unusable (interface recreated, or another mode asked): detached, then attached

export type InterfaceAttachment = {
  readonly interface: string;
  readonly ifindex: number;
  readonly mode: 'native' | 'generic';
  readonly action: AttachAction;
  readonly linkId: number;
  readonly progId: number;
  readonly pinPath: string;
  /** Generic mode only: software GRO was on and the agent turned it off (see bpf/ethtool.ts). */
  readonly groDisabled?: boolean;
};

/**
 * In generic mode the program runs after GRO and would see merged super-packets it
 * cannot forward (bpf/ethtool.ts): turn software GRO off, every start (someone may have
 * turned it on again), or refuse in words.
 */
async function makeGenericSafe(ops: InterfaceOps, attachment: InterfaceAttachment, log: Logger): Promise<InterfaceAttachment> {
  if (attachment.mode !== 'generic') return attachment;
  let wasOn: boolean;
  try {
    wasOn = await ops.disableGro(attachment.interface);
  } catch (err) {
    throw new FulcrumError('ERR_BPF_ATTACH',
      `${attachment.interface} runs the balancer in generic mode, which needs GRO off (merged packets cannot be forwarded), and GRO could not be turned off: ${(err as Error).message}; ` +
      'use a driver with native XDP (attachMode: native), or turn GRO off yourself (ethtool -K <if> gro off)', { cause: err, details: { interface: attachment.interface } });
  }
  if (wasOn) log.warn({ interface: attachment.interface }, 'generic XDP: turned GRO off on the interface (the program must see packets as they arrived)');
  return { ...attachment, groDisabled: wasOn };
}

function modeOf(state: XdpState, progId: number): 'native' | 'generic' | undefined {
  if (state.nativeProgId === progId) return 'native';
  if (state.genericProgId === progId) return 'generic';
  return undefined;
}

async function createLink(ops: InterfaceOps, name: string, progFd: number, mode: AttachMode, pinPath: string, log: Logger): Promise<XdpLink> {
  if (mode !== 'auto') return ops.attachXdpLink(name, progFd, { mode, pinPath });
  // auto: the driver's own XDP if it works (it can fail for reasons beyond support,
  // e.g. an MTU the driver cannot run XDP with), else the generic hook.
  try {
    return await ops.attachXdpLink(name, progFd, { mode: 'native', pinPath });
  } catch (nativeError) {
    if (!isFulcrumError(nativeError, 'ERR_BPF_ATTACH')) throw nativeError;
    log.warn({ interface: name, reason: nativeError.message }, 'native XDP attach failed; trying generic mode');
    try {
      return await ops.attachXdpLink(name, progFd, { mode: 'generic', pinPath });
    } catch (genericError) {
      throw new FulcrumError('ERR_BPF_ATTACH', `cannot attach XDP to ${name} in native or generic mode:\n  native: ${nativeError.message}\n  generic: ${(genericError as Error).message}`,
        { cause: genericError, details: { interface: name } });
    }
  }
}

/**
 * Runs `progFd` on `name`: the pinned link is updated in place when it is still good
 * (same interface, a mode the configuration accepts), otherwise a link is created.
 */
async function attachInterface(ops: InterfaceOps, name: string, mode: AttachMode, progFd: number, progId: number, linksDir: string,
  log: Logger): Promise<InterfaceAttachment> {
  const pinPath = join(linksDir, name);
  const ifindex = await ops.ifindexOf(name).catch((err: unknown) => {
    throw new FulcrumError('ERR_BPF_ATTACH', `interface ${name} (balancer.interfaces) does not exist on this node`, { cause: err, details: { interface: name } });
  });
  let action: AttachAction = 'attached';
  if (existsSync(pinPath)) {
    const link = linkInfo(pinPath);
    if (link.type !== BPF_LINK_TYPE_XDP) {
      throw new FulcrumError('ERR_BPF_ATTACH', `${pinPath} holds a link of type ${link.type}, not an XDP link; remove it`, { details: { pinPath } });
    }
    const current = modeOf(await ops.queryXdp(name), link.progId);
    const reason = link.ifindex !== ifindex
      ? `the link belongs to ifindex ${link.ifindex || '(gone)'}, ${name} is now ifindex ${ifindex}`
      : current === undefined
        ? 'the link\'s program is not what the interface runs'
        : mode !== 'auto' && current !== mode
          ? `the link runs in ${current} mode, the configuration asks for ${mode}`
          : undefined;
    if (reason === undefined) {
      updateLink(pinPath, progFd);
      log.info({ interface: name, linkId: link.id, oldProgId: link.progId, progId, mode: current }, 'replaced the program of the pinned XDP link');
      return { interface: name, ifindex, mode: current!, action: 'replaced', linkId: link.id, progId, pinPath };
    }
    // Only a link that cannot serve any more is detached; the new one follows at once.
    log.warn({ interface: name, linkId: link.id, reason }, 'pinned XDP link cannot be updated; attaching anew');
    detachLink(pinPath);
    action = 'reattached';
  }
  const link = await createLink(ops, name, progFd, mode, pinPath, log);
  const attachedMode = modeOf(await ops.queryXdp(name), link.progId) ?? (mode === 'generic' ? 'generic' : 'native');
  log.info({ interface: name, linkId: link.linkId, progId: link.progId, mode: attachedMode, action }, 'attached the balancer');
  return { interface: name, ifindex, mode: attachedMode, action, linkId: link.linkId, progId: link.progId, pinPath };
}

/** Detaches links pinned for interfaces the configuration no longer lists. */
function detachStaleLinks(linksDir: string, keep: ReadonlySet<string>, log: Logger): string[] {
  if (!existsSync(linksDir)) return [];
  const detached: string[] = [];
  for (const name of readdirSync(linksDir)) {
    if (keep.has(name)) continue;
    detachLink(join(linksDir, name));
    detached.push(name);
    log.info({ interface: name }, 'detached the balancer from an interface no longer configured');
  }
  return detached;
}

// ─── the whole data plane ──────────────────────────────────────────────────────────

export type LoadedDataplane = {
  readonly balancer: BalancerProgram;
  readonly layout: PinLayout;
  /** Maps that were pinned before and are now shared with the new program. */
  readonly adoptedMaps: readonly BalancerMapName[];
  readonly attachments: readonly InterfaceAttachment[];
  /** Interfaces whose links were detached because the configuration dropped them. */
  readonly detachedInterfaces: readonly string[];
};

export type LoadDataplaneOptions = {
  readonly config: AgentConfig & { balancer: BalancerSettings };
  readonly log: Logger;
  /** Unpin the old maps first (fulcrum agent --reset-maps). */
  readonly resetMaps?: boolean;
  /** Attach in this network namespace (a path such as /run/netns/x) instead of the agent's own. */
  readonly netns?: string;
};

/**
 * Loads the balancer, adopting pinned maps, and attaches it to every configured
 * interface. On a failure nothing already running is detached.
 */
export async function loadDataplane(options: LoadDataplaneOptions): Promise<LoadedDataplane> {
  const { config, log } = options;
  const layout = pinLayout(config.pinRoot);
  if (options.resetMaps === true) {
    const removed = resetMaps(config.pinRoot);
    log.warn({ maps: removed, pinDir: layout.maps }, 'reset: unpinned the balancer maps; starting with empty maps');
  }
  const loadOptions = { ...balancerLoadOptions(config), pinDir: layout.maps };
  const mismatches = pinnedMapMismatches(loadOptions);
  const replaceable = mismatches.filter((m) => REPLACEABLE_MAPS.has(m.map) && m.changes.every((c) => c.field === 'max_entries'));
  const blocking = mismatches.filter((m) => !replaceable.includes(m));
  if (blocking.length > 0) throw mismatchError(blocking);
  for (const m of replaceable) {
    // The running program keeps its old map until the new program is swapped in below.
    unpin(m.pinPath);
    log.warn({ map: m.map, changes: m.changes, pinPath: m.pinPath }, 'replaced a counter map this build sizes differently; its counters restart from zero');
  }
  const adoptedMaps = BALANCER_MAPS.filter((name) => existsSync(join(layout.maps, name)));
  // libbpf creates only the last directory of a pin path.
  makePinDir(layout.maps);

  const balancer = BalancerProgram.load(loadOptions);
  try {
    const progId = balancer.object.program('balancer').id;
    log.info({ object: loadOptions.objectPath, progId, adoptedMaps: adoptedMaps.length, pinDir: layout.maps }, 'loaded the balancer');
    const ops = interfaceOps(options.netns);
    const attachments: InterfaceAttachment[] = [];
    for (const iface of config.balancer.interfaces) {
      attachments.push(await makeGenericSafe(ops, await attachInterface(ops, iface.name, iface.attachMode, balancer.progFd, progId, layout.links, log), log));
    }
    const detachedInterfaces = detachStaleLinks(layout.links, new Set(config.balancer.interfaces.map((i) => i.name)), log);
    return { balancer, layout, adoptedMaps, attachments, detachedInterfaces };
  } catch (err) {
    // Attached links keep the program (and maps) alive on their own; only our fds go.
    balancer.close();
    throw err;
  }
}

export type UninstallResult = { readonly detachedLinks: readonly string[]; readonly unpinnedMaps: readonly string[] };

/**
 * Removes the balancer from the node for good: detaches every pinned link (traffic
 * goes to the stack again) and unpins every map (the connection table is gone).
 */
export function uninstallDataplane(pinRoot: string): UninstallResult {
  const layout = pinLayout(pinRoot);
  const detachedLinks: string[] = [];
  if (existsSync(layout.links)) {
    for (const name of readdirSync(layout.links)) {
      if (detachLink(join(layout.links, name))) detachedLinks.push(name);
    }
  }
  const unpinnedMaps = resetMaps(pinRoot);
  for (const dir of [layout.links, layout.maps, layout.root]) {
    try {
      rmdirSync(dir);
    } catch {
      // Missing, or holding pins that are not the balancer's (decap): leave it.
    }
  }
  return { detachedLinks: detachedLinks.sort(), unpinnedMaps };
}
