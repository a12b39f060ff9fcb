// The browser tests' checks, one copy: each check prints "ok ..." or "FAIL ..." (counted by
// harness.run_node in the Python test that runs the script), and finish() exits 1 if any failed.
let failures = 0;

export function check(cond, what, detail) {
  console.log((cond ? "ok   " : "FAIL ") + what +
    (cond || detail === undefined ? "" : ": got " + JSON.stringify(detail)));
  if (!cond) failures++;
}

// A wait that fails the check instead of the script.
export async function expect(what, promise) {
  try {
    await promise;
    check(true, what);
  } catch (e) {
    check(false, what + ": " + String(e.message).split("\n")[0]);
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function finish() {
  process.exit(failures ? 1 : 0);
}
