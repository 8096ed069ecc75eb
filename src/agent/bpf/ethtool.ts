// Interface offloads the balancer cares about, through the SIOCETHTOOL ioctl (no ethtool
// binary needed in the image), in the calling thread's network namespace.
//
// Why: in generic (skb) XDP mode the program runs after GRO, so it sees merged
// super-packets of up to 64 KB. It cannot segment them, and answers them with ICMP
// frag-needed: bulk TCP to a VIP stalls. The kernel already turns LRO and hardware GRO
// off when a generic program is installed (generic_xdp_install), but not software GRO;
// turning that off makes every packet the program sees one that arrived on the wire.
import koffi from 'koffi';
import { FulcrumError } from '../../shared/errors.ts';
import { errnoName } from './libbpf.ts';
import { AF_INET, SOCK_DGRAM, close, ioctlEthtool, socket } from './libc.ts';

/** <linux/sockios.h> */
const SIOCETHTOOL = 0x8946;
/** <linux/ethtool.h>: get / set generic receive offload, with struct ethtool_value. */
const ETHTOOL_GGRO = 0x2b;
const ETHTOOL_SGRO = 0x2c;
const IFNAMSIZ = 16;

function ethtool(iface: string, cmd: number, data = 0): number {
  const name = Buffer.alloc(IFNAMSIZ);
  if (Buffer.byteLength(iface) >= IFNAMSIZ) throw new FulcrumError('ERR_BPF_ATTACH', `interface name ${iface} is longer than ${IFNAMSIZ - 1} bytes`);
  name.write(iface);
  const value = Buffer.alloc(8);
  value.writeUInt32LE(cmd, 0);
  value.writeUInt32LE(data, 4);
  const fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) throw new FulcrumError('ERR_BPF_ATTACH', `cannot open a socket for ethtool: ${errnoName(koffi.errno())}`);
  try {
    if (ioctlEthtool(fd, SIOCETHTOOL, { name: [...name], data: value, pad: new Array<number>(16).fill(0) }) !== 0) {
      const err = errnoName(koffi.errno());
      throw new FulcrumError('ERR_BPF_ATTACH', `ethtool request 0x${cmd.toString(16)} on ${iface} failed: ${err}`, { details: { interface: iface, errno: err } });
    }
    return value.readUInt32LE(4);
  } finally {
    close(fd);
  }
}

/** Whether software GRO is on for `iface`. */
export function groEnabled(iface: string): boolean {
  return ethtool(iface, ETHTOOL_GGRO) !== 0;
}

/**
 * Turns software GRO off on `iface` (see the header); returns whether it was on. Needs
 * CAP_NET_ADMIN in the interface's namespace.
 */
export function disableGro(iface: string): boolean {
  if (!groEnabled(iface)) return false;
  ethtool(iface, ETHTOOL_SGRO, 0);
  if (groEnabled(iface)) throw new FulcrumError('ERR_BPF_ATTACH', `GRO on ${iface} stayed on after it was turned off (the driver keeps it fixed)`);
  return true;
}
