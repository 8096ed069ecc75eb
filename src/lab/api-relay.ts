// The lab's way into its API server from inside a lab namespace:
//
//   node api-relay.ts <port> <unix socket>
//
// listens on 127.0.0.1:<port> of the namespace it runs in and pipes every connection
// to the unix socket, which the lab process serves from the host side (cluster.ts).
// A unix socket is a file, not a network: nothing crosses between the host's network
// namespace and the lab's, and the lab namespaces stay unconnected to the host. The
// relay only moves bytes: the TLS session runs end to end between the client and
// kube-apiserver (whose certificate names 127.0.0.1), so the operator and the agents
// reach the cluster at https://127.0.0.1:<port> and verify it as they would on a node.
//
// Prints "ready" on stdout once it listens; exits when its parent namespace is removed
// (the lab kills every process in its namespaces) or on SIGTERM.
import { connect, createServer } from 'node:net';

const port = Number(process.argv[2]);
const socketPath = process.argv[3];
if (!Number.isInteger(port) || port <= 0 || port > 65535 || socketPath === undefined) {
  process.stderr.write('usage: api-relay.ts <port> <unix socket path>\n');
  process.exit(2);
}

const server = createServer((inbound) => {
  const outbound = connect(socketPath);
  // Either side ending or failing ends both: a half-open relay would hang a watch.
  inbound.on('error', () => outbound.destroy());
  outbound.on('error', () => inbound.destroy());
  inbound.pipe(outbound).pipe(inbound);
});
server.on('error', (err) => {
  process.stderr.write(`api-relay: ${err.message}\n`);
  process.exit(1);
});
server.listen({ host: '127.0.0.1', port }, () => process.stdout.write('ready\n'));
process.once('SIGTERM', () => process.exit(0));
