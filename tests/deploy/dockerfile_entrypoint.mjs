// Prints what the image would run, one item per line, for install_smoke.sh: first the install
// prefix of the build stage's `cmake --install`, then NAME=VALUE for each ENV of the runtime
// stage, then "--", then the ENTRYPOINT and CMD words.
// Usage: node dockerfile_entrypoint.mjs DOCKERFILE
import { fail } from "./npm_modules.mjs";
import { envOf, execForm, readDockerfile } from "./dockerfile.mjs";

const file = process.argv[2];
if (!file) fail("usage: dockerfile_entrypoint.mjs DOCKERFILE");
const { stages } = readDockerfile(file);
const build = stages[0], runtime = stages[stages.length - 1];
const runs = build.instructions.filter((i) => i.keyword === "RUN").map((i) => i.args).join("\n");
const prefix = /cmake --install \S+ --prefix (\S+)/.exec(runs)?.[1];
if (!prefix) fail("no cmake --install --prefix in the build stage");
const lines = [prefix];
for (const [k, v] of Object.entries(envOf(runtime))) if (k !== "PATH") lines.push(`${k}=${v}`);
lines.push("--", ...(execForm(runtime, "ENTRYPOINT") ?? []), ...(execForm(runtime, "CMD") ?? []));
console.log(lines.join("\n"));
