// The lab guardian (see sweep.ts): `node guardian.ts <pid>` waits for process <pid>
// to end, however it ends, then removes what lab runs of dead processes left behind.
import { processAlive } from './netns.ts';
import { sweepStaleLabs } from './sweep.ts';

const POLL_MS = 200;

const owner = Number(process.argv[2]);
if (!Number.isInteger(owner) || owner <= 1) {
  process.stderr.write('usage: guardian.ts <pid of the lab process>\n');
  process.exit(2);
}
while (processAlive(owner)) await new Promise((resolve) => setTimeout(resolve, POLL_MS));
await sweepStaleLabs();
