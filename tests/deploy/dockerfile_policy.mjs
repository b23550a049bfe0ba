// What deploy/Dockerfile must keep, checked without a Docker engine:
//   - two stages: CUDA devel on Ubuntu 24.04 to build, the same CUDA version's runtime to run;
//   - the build stage installs every build dependency scripts/install_deps.sh names (those the
//     tests alone need excepted), builds with scripts/build.sh and installs with cmake --install,
//     so a new dependency or build step cannot reach CI without reaching the image;
//   - the runtime stage runs as a numeric non-root user, exposes the default ports, and its
//     ENTRYPOINT is foxserve with an explicit --model inside the install prefix.
// Usage: node dockerfile_policy.mjs DOCKERFILE INSTALL_DEPS.sh
import fs from "node:fs";
import { fail } from "./npm_modules.mjs";
import { envOf, execForm, readDockerfile } from "./dockerfile.mjs";

const [file, installDeps] = process.argv.slice(2);
if (!file || !installDeps) fail("usage: dockerfile_policy.mjs DOCKERFILE INSTALL_DEPS.sh");
const { stages } = readDockerfile(file);
const problems = [];
const check = (ok, message) => { if (!ok) problems.push(message); };

check(stages.length >= 2, `expected a build and a runtime stage, found ${stages.length}`);
const build = stages[0], runtime = stages[stages.length - 1];
const devel = /^nvidia\/cuda:([0-9.]+)-devel-ubuntu24\.04$/.exec(build.image);
const run = /^nvidia\/cuda:([0-9.]+)-runtime-ubuntu24\.04$/.exec(runtime.image);
check(devel, `build stage is ${build.image}, not nvidia/cuda:VERSION-devel-ubuntu24.04`);
check(run, `runtime stage is ${runtime.image}, not nvidia/cuda:VERSION-runtime-ubuntu24.04`);
check(devel && run && devel[1] === run[1], "build and runtime stages use different CUDA versions");

// Build dependencies: the packages of install_deps.sh's list, less those only tests use.
const depsText = fs.readFileSync(installDeps, "utf8");
const list = /packages=\(([\s\S]*?)\)/.exec(depsText);
check(list, `${installDeps}: no packages=( ... ) list`);
const testOnly = /^(git|python3|sentencepiece|nodejs|npm|prometheus|kubernetes-client|libgtest-dev|libgmock-dev|libbenchmark-dev|clang(-\d+)?|libclang-rt-\d+-dev|llvm(-\d+)?)$/;
const wanted = (list?.[1] ?? "").split(/\s+/).filter((p) => p && !p.startsWith("#") && !testOnly.test(p));
const buildRuns = build.instructions.filter((i) => i.keyword === "RUN").map((i) => i.args).join("\n");
const installed = new Set((buildRuns.match(/apt-get install[^&;]*/g) ?? []).join(" ").split(/\s+/));
for (const p of wanted) check(installed.has(p), `build stage does not install ${p} (listed in scripts/install_deps.sh)`);
check(wanted.length >= 10, `only ${wanted.length} build packages read from ${installDeps}`);
check(/scripts\/build\.sh/.test(buildRuns), "build stage does not build with scripts/build.sh");
const prefix = /cmake --install \S+ --prefix (\S+)/.exec(buildRuns)?.[1];
check(prefix, "build stage has no `cmake --install BUILD --prefix PREFIX`");

const user = runtime.instructions.filter((i) => i.keyword === "USER").pop()?.args ?? "";
const uid = /^(\d+)(:\d+)?$/.exec(user);
check(uid && Number(uid[1]) > 0, `runtime user is "${user}", not a numeric non-root uid`);
const exposed = runtime.instructions.filter((i) => i.keyword === "EXPOSE").flatMap((i) => i.args.split(/\s+/));
for (const port of ["50051", "9400"]) check(exposed.includes(port), `port ${port} not exposed`);
let entrypoint;
try {
  entrypoint = execForm(runtime, "ENTRYPOINT");
} catch (e) {
  problems.push(`ENTRYPOINT is not an exec-form JSON array: ${e.message}`);
}
check(Array.isArray(entrypoint) && prefix && entrypoint[0] === `${prefix}/bin/foxserve`,
      `ENTRYPOINT does not start ${prefix}/bin/foxserve`);
const model = entrypoint?.[entrypoint.indexOf("--model") + 1];
check(entrypoint?.includes("--model") && model?.startsWith(`${prefix}/`), "ENTRYPOINT does not pass --model inside the install prefix");
const module = envOf(runtime).FOXSERVE_SENTENCEPIECE_MODULE;
check(module === `${prefix}/lib/foxserve/libfoxserve_sentencepiece.so`, `FOXSERVE_SENTENCEPIECE_MODULE is ${module}`);

for (const p of problems) console.error(`PROBLEM ${p}`);
if (problems.length) fail(`${file}: ${problems.length} problems`);
console.log(`${file}: ${build.image} -> ${runtime.image}, ${wanted.length} build packages, user ${user}, entrypoint ${entrypoint.join(" ")}`);
