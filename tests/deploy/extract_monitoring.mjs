// Pulls the monitoring pieces out of their Kubernetes wrappers for the tools that test them:
//   OUT/rules.yaml     the PrometheusRule's spec (a plain Prometheus rule file: promtool, Prometheus)
//   OUT/queries.json   {alerts: [{alert, expr}], adapter: [{name, seriesQuery, metricsQuery}],
//                       dashboard: [{panel, refId, expr}]} for the live Prometheus test
// Usage: node extract_monitoring.mjs SOURCE_DIR OUT_DIR
import fs from "node:fs";
import path from "node:path";
import { fail, readYamlDocuments, yamlStringify } from "./npm_modules.mjs";

const [src, out] = process.argv.slice(2);
if (!src || !out) fail("usage: extract_monitoring.mjs SOURCE_DIR OUT_DIR");
fs.mkdirSync(out, { recursive: true });

const ruleDocs = await readYamlDocuments(path.join(src, "deploy/k8s/base/prometheusrule.yaml"));
const rule = ruleDocs.find((d) => d.kind === "PrometheusRule");
if (!rule?.spec?.groups?.length) fail("deploy/k8s/base/prometheusrule.yaml: no PrometheusRule with groups");
fs.writeFileSync(path.join(out, "rules.yaml"), await yamlStringify(rule.spec));
const alerts = rule.spec.groups.flatMap((g) => g.rules.filter((r) => r.alert).map((r) => ({ alert: r.alert, expr: r.expr })));

const [adapterConfig] = await readYamlDocuments(path.join(src, "deploy/k8s/prometheus-adapter/config.yaml"));
const adapter = (adapterConfig?.rules ?? []).map((r) => ({
  name: r.name?.as, seriesQuery: r.seriesQuery, metricsQuery: r.metricsQuery,
}));
if (adapter.length === 0) fail("deploy/k8s/prometheus-adapter/config.yaml: no rules");

const dashboardFile = path.join(src, "deploy/grafana/foxserve-dashboard.json");
const dash = JSON.parse(fs.readFileSync(dashboardFile, "utf8"));
const dashboard = [];
for (const p of dash.panels ?? []) {
  for (const t of p.targets ?? []) dashboard.push({ panel: p.title, refId: t.refId, expr: t.expr });
}

fs.writeFileSync(path.join(out, "queries.json"), JSON.stringify({ alerts, adapter, dashboard }, null, 2));
console.log(`${alerts.length} alerts, ${adapter.length} adapter rules, ${dashboard.length} dashboard queries -> ${out}`);
