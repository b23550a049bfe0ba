// Static checks of the Grafana dashboard: valid JSON Grafana can import (uid, title, panels with
// ids and grid positions), every query on the ${datasource} variable, no template variable the
// dashboard does not define, and panels for what issue 7 asks for: throughput, TTFT and
// inter-token latency percentiles, KV usage, preemptions, the pruned-block ratio per layer over
// time. The live test runs every query against a real Prometheus.
// Usage: node dashboard_check.mjs DASHBOARD.json
import fs from "node:fs";
import { fail } from "./npm_modules.mjs";

const file = process.argv[2];
if (!file) fail("usage: dashboard_check.mjs DASHBOARD.json");
let dash;
try {
  dash = JSON.parse(fs.readFileSync(file, "utf8"));
} catch (e) {
  fail(`${file}: ${e.message}`);
}
const problems = [];
if (!dash.uid || !dash.title) problems.push("no uid or title");
const defined = new Set((dash.templating?.list ?? []).map((v) => v.name));
const builtins = new Set(["__rate_interval", "__interval", "__range"]);
const ids = new Set();
const queries = [];
for (const p of dash.panels ?? []) {
  if (ids.has(p.id)) problems.push(`panel id ${p.id} used twice`);
  ids.add(p.id);
  const g = p.gridPos;
  if (!g || ![g.x, g.y, g.w, g.h].every(Number.isInteger) || g.x + g.w > 24) problems.push(`panel "${p.title}": bad gridPos`);
  if (p.type === "row") continue;
  if (!p.targets?.length) problems.push(`panel "${p.title}": no queries`);
  for (const t of p.targets ?? []) {
    if (!t.expr) problems.push(`panel "${p.title}" ${t.refId}: empty query`);
    if ((t.datasource ?? p.datasource)?.uid !== "${datasource}") problems.push(`panel "${p.title}" ${t.refId}: not on the \${datasource} variable`);
    for (const m of (t.expr ?? "").matchAll(/\$\{?(\w+)/g)) {
      if (!defined.has(m[1]) && !builtins.has(m[1])) problems.push(`panel "${p.title}" ${t.refId}: undefined variable $${m[1]}`);
    }
    queries.push({ title: p.title, expr: t.expr ?? "" });
  }
}
const required = {
  "request or token throughput": (q) => /rate\(foxserve_(requests|generated_tokens)_total/.test(q.expr),
  "TTFT percentiles": (q) => /histogram_quantile\(0\.\d+,.*foxserve_time_to_first_token_seconds_bucket/.test(q.expr),
  "inter-token latency percentiles": (q) => /histogram_quantile\(0\.\d+,.*foxserve_inter_token_latency_seconds_bucket/.test(q.expr),
  "KV usage": (q) => /foxserve_kv_usage_ratio|foxserve_kv_blocks_used/.test(q.expr),
  "preemptions": (q) => /foxserve_preemptions_total/.test(q.expr),
  "pruned-block ratio per layer": (q) => /by \(layer\)/.test(q.expr) && /foxserve_acp_(blocks_skipped_total|pruned_block_ratio)/.test(q.expr),
};
for (const [what, test] of Object.entries(required)) {
  const hit = queries.find(test);
  if (!hit) problems.push(`no panel shows ${what}`);
  else console.log(`${what}: "${hit.title}"`);
}
const quantiles = (re) => new Set(queries.filter((q) => re.test(q.expr)).map((q) => /histogram_quantile\((0\.\d+)/.exec(q.expr)?.[1]));
for (const [name, re] of [["TTFT", /time_to_first_token/], ["inter-token latency", /inter_token_latency/]]) {
  if (quantiles(re).size < 3) problems.push(`${name}: fewer than 3 percentiles`);
}
for (const p of problems) console.error(`PROBLEM ${p}`);
if (problems.length) fail(`${file}: ${problems.length} problems`);
console.log(`${file}: ${ids.size} panels, ${queries.length} queries`);
