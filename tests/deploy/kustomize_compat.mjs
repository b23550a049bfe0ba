// The kustomizations must render with the kustomize v2.0 inside Debian 12's kubectl 1.20
// (kubernetes-client) as well as with current kubectl. Machines that already have a newer
// kubectl keep it (scripts/install_deps.sh), so this checks statically what v2.0 cannot read:
// only fields it knows, directories only under `bases` (v2.0 wants files in `resources`), and
// no `patches`/`labels`/`components` (added in v3+).
// Usage: node kustomize_compat.mjs SOURCE_DIR
import fs from "node:fs";
import path from "node:path";
import { fail, readYamlDocuments } from "./npm_modules.mjs";

const V2_FIELDS = new Set([
  "apiVersion", "kind", "namespace", "namePrefix", "nameSuffix", "commonLabels",
  "commonAnnotations", "resources", "bases", "crds", "images", "vars", "configMapGenerator",
  "secretGenerator", "generatorOptions", "patchesStrategicMerge", "patchesJson6902",
]);
const src = process.argv[2];
if (!src) fail("usage: kustomize_compat.mjs SOURCE_DIR");
const root = path.join(src, "deploy/k8s");
const files = [];
const walk = (dir) => {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) walk(path.join(dir, e.name));
    else if (e.name === "kustomization.yaml") files.push(path.join(dir, e.name));
  }
};
walk(root);
if (files.length === 0) fail(`${root}: no kustomization.yaml`);
const problems = [];
for (const file of files.sort()) {
  const [k] = await readYamlDocuments(file);
  const dir = path.dirname(file);
  for (const key of Object.keys(k)) {
    if (!V2_FIELDS.has(key)) problems.push(`${file}: field "${key}" is unknown to kustomize v2.0 (kubectl 1.20)`);
  }
  for (const r of k.resources ?? []) {
    if (!fs.existsSync(path.join(dir, r)) || fs.statSync(path.join(dir, r)).isDirectory()) {
      problems.push(`${file}: resources entry "${r}" is not a file (kustomize v2.0 wants directories under bases)`);
    }
  }
  for (const b of k.bases ?? []) {
    if (!fs.existsSync(path.join(dir, b, "kustomization.yaml"))) problems.push(`${file}: base "${b}" has no kustomization.yaml`);
  }
  for (const p of k.patchesJson6902 ?? []) {
    if (!p.path) problems.push(`${file}: inline patchesJson6902 (kustomize v2.0 reads patches from files only)`);
  }
  console.log(`${file}: ${Object.keys(k).join(", ")}`);
}
for (const p of problems) console.error(`PROBLEM ${p}`);
if (problems.length) fail(`${problems.length} fields kustomize v2.0 cannot read`);
console.log(`${files.length} kustomizations readable by kustomize v2.0 and later`);
