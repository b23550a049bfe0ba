// Validates rendered Kubernetes manifests against the API's OpenAPI schemas, offline, with the
// npm packages kubernetes-models (core and apps/policy/autoscaling groups) and
// @kubernetes-models/prometheus-operator (PodMonitor, ServiceMonitor, PrometheusRule CRDs).
// An object of an API group neither package covers fails: nothing is skipped.
// Before the real files, a known-bad Deployment must be rejected, so a validator that accepts
// everything cannot pass.
// Usage: node validate_manifests.mjs RENDERED_DIR   (every *.yaml in it)
import fs from "node:fs";
import path from "node:path";
import { fail, importPackageFile, readYamlDocuments } from "./npm_modules.mjs";

// The package file that holds the models of an apiVersion.
function modelFile(apiVersion) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group === "") return `kubernetes-models/${version}/index.js`;
  if (group === "monitoring.coreos.com") {
    return `@kubernetes-models/prometheus-operator/monitoring.coreos.com/${version}/index.js`;
  }
  return `kubernetes-models/${group}/${version}/index.js`;
}

async function validate(object) {
  const { apiVersion, kind } = object;
  if (!apiVersion || !kind) throw new Error("object without apiVersion or kind");
  const models = await importPackageFile(modelFile(apiVersion));
  const Model = models[kind];
  if (!Model) throw new Error(`no schema for ${apiVersion} ${kind}`);
  new Model(object).validate();  // throws with the failing paths
}

async function selfTest() {
  const bad = {
    apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "bad" },
    spec: {
      selector: { matchLabels: { a: "b" } },
      template: {
        metadata: { labels: { a: "b" } },
        spec: { containers: [{ name: "c", image: "i", readinessProbe: { grpc: { port: "grpc" } } }] },
      },
    },
  };
  try {
    await validate(bad);
  } catch (e) {
    return;
  }
  fail("self-test: a Deployment with a string gRPC probe port was accepted");
}

const dir = process.argv[2];
if (!dir) fail("usage: validate_manifests.mjs RENDERED_DIR");
const files = fs.readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort().map((f) => path.join(dir, f));
if (files.length === 0) fail(`${dir}: no rendered manifests`);
await selfTest();
let errors = 0, count = 0;
for (const file of files) {
  for (const object of await readYamlDocuments(file)) {
    const what = `${file}: ${object.kind} ${object.metadata?.namespace ?? ""}/${object.metadata?.name}`;
    try {
      await validate(object);
      count++;
      console.log(`valid   ${what} (${object.apiVersion})`);
    } catch (e) {
      errors++;
      console.error(`INVALID ${what}: ${e.message}`);
    }
  }
}
if (errors) fail(`${errors} invalid objects`);
console.log(`${count} objects valid`);
