// Print the vitest JSON reporter's totals; the last line is exactly `N passed, N failed`.
// Exit 1 when the results file is missing or unreadable, when no tests ran, or when any test failed.
import { readFileSync } from 'node:fs';

const file = process.argv[2] ?? 'test-results.json';
let r;
try {
  r = JSON.parse(readFileSync(file, 'utf8'));
} catch (e) {
  console.error(`test-summary: cannot read ${file}: ${e instanceof Error ? e.message : e}`);
  console.log('0 passed, 0 failed');
  process.exit(1);
}

const passed = r.numPassedTests ?? 0;
const failed = r.numFailedTests ?? 0;
const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
const total = r.numTotalTests ?? 0;
// A suite that fails to load (syntax error, import error) reports no failed tests but a failed suite.
const failedSuites = r.numFailedTestSuites ?? 0;

if (total === 0) console.error('test-summary: no tests ran');
if (failedSuites > 0) console.log(`${failedSuites} test file(s) failed`);
if (skipped > 0) console.log(`${skipped} skipped`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || failedSuites > 0 || total === 0 || r.success === false ? 1 : 0);
