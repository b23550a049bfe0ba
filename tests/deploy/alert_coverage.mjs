// Each alert of the PrometheusRule must be fired by a promtool unit test (an alert_rule_test with
// expected alerts) and seen quiet by another (exp_alerts: []), so adding an alert without tests,
// or renaming one, fails.
// Usage: node alert_coverage.mjs QUERIES.json ALERTS_TEST.yaml
import fs from "node:fs";
import { fail, readYamlDocuments } from "./npm_modules.mjs";

const [queriesFile, testFile] = process.argv.slice(2);
if (!queriesFile || !testFile) fail("usage: alert_coverage.mjs QUERIES.json ALERTS_TEST.yaml");
const alerts = JSON.parse(fs.readFileSync(queriesFile, "utf8")).alerts.map((a) => a.alert);
const [tests] = await readYamlDocuments(testFile);
const fired = new Set(), quiet = new Set();
for (const t of tests.tests ?? []) {
  for (const a of t.alert_rule_test ?? []) (a.exp_alerts?.length ? fired : quiet).add(a.alertname);
}
let missing = 0;
for (const alert of alerts) {
  const ok = fired.has(alert) && quiet.has(alert);
  if (!ok) missing++;
  console.log(`${ok ? "covered" : "MISSING"} ${alert} (fires: ${fired.has(alert)}, quiet: ${quiet.has(alert)})`);
}
for (const name of [...fired, ...quiet]) if (!alerts.includes(name)) fail(`tests name ${name}, which no rule defines`);
if (missing) fail(`${missing} alerts lack a firing and a quiet unit test`);
