// Prints `N passed, N failed` from jest's --json results, alone on the last line (CI reads it).
// Usage: node jest-summary.js RESULTS.json EXIT_CODE
const { existsSync, readFileSync } = require('node:fs');

const [file, rcText] = process.argv.slice(2);
const rc = Number(rcText ?? 0);
let passed = 0;
let failed = 0;
if (file && existsSync(file)) {
  const r = JSON.parse(readFileSync(file, 'utf8'));
  passed = r.numPassedTests ?? 0;
  failed = (r.numFailedTests ?? 0) + (r.numRuntimeErrorTestSuites ?? 0);
  for (const s of r.testResults ?? []) {
    if (s.status === 'failed' && (s.assertionResults ?? []).every((a) => a.status !== 'failed')) {
      console.log(`suite failed outside its tests: ${s.name}\n${(s.message ?? '').slice(0, 2000)}`);
    }
  }
}
// A non-zero exit with no failing test (typecheck, lint, format, or a crashed run) still fails.
if (rc !== 0 && failed === 0) failed = 1;
console.log(`${passed} passed, ${failed} failed`);
