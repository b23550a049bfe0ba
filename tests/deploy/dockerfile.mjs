// A small reader for deploy/Dockerfile: instructions with continuation lines joined, comments
// dropped, ${ARG} defaults substituted in FROM lines, grouped by stage. Enough for the policy
// check and for install_smoke.sh, which runs the image's ENTRYPOINT against a local install.
import fs from "node:fs";

export function readDockerfile(file) {
  const lines = fs.readFileSync(file, "utf8").split("\n");
  const instructions = [];
  let current = null;
  for (const raw of lines) {
    const line = raw.replace(/\r$/, "");
    if (current === null && (/^\s*#/.test(line) || /^\s*$/.test(line))) continue;
    if (current !== null && /^\s*#/.test(line)) continue;  // comments inside a continued RUN
    const text = line.replace(/\\\s*$/, "");
    current = current === null ? text.trim() : `${current} ${text.trim()}`;
    if (!/\\\s*$/.test(line)) {
      const m = /^(\w+)\s*(.*)$/.exec(current);
      instructions.push({ keyword: m[1].toUpperCase(), args: m[2] });
      current = null;
    }
  }
  const globalArgs = {};
  const stages = [];
  for (const ins of instructions) {
    if (ins.keyword === "ARG" && stages.length === 0) {
      const [name, value] = ins.args.split("=");
      globalArgs[name] = value;
    }
    if (ins.keyword === "FROM") {
      const from = ins.args.replace(/\$\{(\w+)\}/g, (_, n) => globalArgs[n] ?? `\${${n}}`);
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(from);
      stages.push({ image: m[1], name: m[2], instructions: [] });
    } else if (stages.length) {
      stages[stages.length - 1].instructions.push(ins);
    }
  }
  return { instructions, stages, globalArgs };
}

// The exec-form JSON array of `keyword` (ENTRYPOINT or CMD) in the last stage.
export function execForm(stage, keyword) {
  const ins = stage.instructions.filter((i) => i.keyword === keyword).pop();
  if (!ins) return undefined;
  return JSON.parse(ins.args);
}

// ENV of a stage as name -> value (the KEY=VALUE form).
export function envOf(stage) {
  const env = {};
  for (const ins of stage.instructions.filter((i) => i.keyword === "ENV")) {
    for (const m of ins.args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) env[m[1]] = m[2].replace(/^"|"$/g, "");
  }
  return env;
}
