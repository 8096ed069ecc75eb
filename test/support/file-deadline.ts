// A hard deadline for each test file's process, loaded into every one with --import
// (package.json). node:test's --test-timeout fails a test that runs too long, but a hook
// that never settles (a server that never answers, a child that never exits) keeps the
// file's process alive for ever, and the run with it. This ends such a process with the
// reason in words. Armed only in the files' processes (NODE_TEST_CONTEXT), not in the
// runner that starts them; unref'd, so it never keeps a finished process alive.
const FILE_DEADLINE_MS = Number(process.env['FULCRUM_TEST_FILE_DEADLINE_MS'] ?? 15 * 60_000);

if (process.env['NODE_TEST_CONTEXT'] !== undefined) {
  const file = process.argv[1] ?? 'this test file';
  setTimeout(() => {
    process.stderr.write(`test: ${file} was still running after ${FILE_DEADLINE_MS / 1000} s (a hook or a test waits without bound): ending it\n`);
    process.exit(124);
  }, FILE_DEADLINE_MS).unref();
}
