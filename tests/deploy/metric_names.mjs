// Every foxserve_* metric that the alerts, the Prometheus Adapter rules and the dashboard query
// must be one that server/metrics.cc exports (histograms with their _bucket/_sum/_count series),
// so a renamed metric or a typo fails here instead of leaving a panel or an alert silently empty.
// Usage: node metric_names.mjs SOURCE_DIR
import fs from "node:fs";
import path from "node:path";
import { fail } from "./npm_modules.mjs";

const src = process.argv[2];
if (!src) fail("usage: metric_names.mjs SOURCE_DIR");
const metricsCc = fs.readFileSync(path.join(src, "server/metrics.cc"), "utf8");
const exported = new Set();
for (const m of metricsCc.matchAll(/(?:Name|Gauge)\(\s*"(foxserve_[a-z0-9_]+)"/g)) exported.add(m[1]);
const histograms = [...metricsCc.matchAll(/BuildHistogram\(\)\s*\.Name\("(foxserve_[a-z0-9_]+)"/g)].map((m) => m[1]);
if (exported.size < 10 || histograms.length === 0) fail(`found only ${exported.size} metric names in server/metrics.cc: has its style changed?`);
for (const h of histograms) for (const s of ["_bucket", "_sum", "_count"]) exported.add(h + s);

const sources = {
  "deploy/k8s/base/prometheusrule.yaml": fs.readFileSync(path.join(src, "deploy/k8s/base/prometheusrule.yaml"), "utf8"),
  "deploy/k8s/base/horizontalpodautoscaler.yaml": fs.readFileSync(path.join(src, "deploy/k8s/base/horizontalpodautoscaler.yaml"), "utf8"),
  "deploy/k8s/prometheus-adapter/config.yaml": fs.readFileSync(path.join(src, "deploy/k8s/prometheus-adapter/config.yaml"), "utf8"),
  "deploy/grafana/foxserve-dashboard.json": fs.readFileSync(path.join(src, "deploy/grafana/foxserve-dashboard.json"), "utf8"),
};
let unknown = 0;
for (const [file, text] of Object.entries(sources)) {
  // Comments may name things loosely; only YAML/JSON content counts.
  const body = text.split("\n").filter((l) => !/^\s*#/.test(l)).join("\n");
  const used = new Set([...body.matchAll(/\bfoxserve_[a-z0-9_]+\b/g)].map((m) => m[0]));
  for (const name of used) {
    if (!exported.has(name)) {
      console.error(`${file}: ${name} is not a metric that server/metrics.cc exports`);
      unknown++;
    }
  }
  console.log(`${file}: ${used.size} metric names checked`);
}
if (unknown) fail(`${unknown} unknown metric names`);
