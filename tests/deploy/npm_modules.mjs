// Loads the npm packages the deploy tests use from the folder scripts/test.sh installs them into
// (BUILD/npm-deploy/node_modules, given as $FOXSERVE_DEPLOY_NODE_MODULES). ES modules ignore
// NODE_PATH, so packages are imported by file URL; a missing one fails with how to install it.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

// The pinned list scripts/test.sh installs.
const PACKAGES_FILE = new URL("./npm-packages.txt", import.meta.url);

export function nodeModulesDir() {
  const dir = process.env.FOXSERVE_DEPLOY_NODE_MODULES;
  if (!dir) fail("FOXSERVE_DEPLOY_NODE_MODULES is not set (CTest sets it)");
  return dir;
}

export function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}

// Imports `file` (a path inside a package, e.g. "kubernetes-models/apps/v1/index.js").
export async function importPackageFile(file) {
  const full = path.join(nodeModulesDir(), file);
  if (!fs.existsSync(full)) {
    const packages = fs.readFileSync(PACKAGES_FILE, "utf8").split(/\s+/).filter(Boolean).join(" ");
    fail(`${full} is missing. Install the deploy test tools with scripts/test.sh, or:\n` +
         `  npm install --no-save --no-package-lock --prefix BUILD/npm-deploy ${packages}`);
  }
  return import(pathToFileURL(full).href);
}

// Every document of a multi-document YAML file, as plain objects (empty documents dropped).
export async function readYamlDocuments(file) {
  const YAML = await importPackageFile("yaml/dist/index.js");
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"));
  const out = [];
  for (const doc of docs) {
    if (doc.errors.length) fail(`${file}: ${doc.errors.map((e) => e.message).join("; ")}`);
    const value = doc.toJS();
    if (value != null) out.push(value);
  }
  return out;
}

export async function yamlStringify(value) {
  const YAML = await importPackageFile("yaml/dist/index.js");
  return YAML.stringify(value);
}
