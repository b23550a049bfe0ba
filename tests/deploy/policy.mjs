// Policy checks on rendered manifests, beyond what the API schemas say:
//   - shutdown: terminationGracePeriodSeconds >= preStop sleep + foxserve --drain-timeout + 5 s;
//   - probes: readiness, liveness (and startup if present) are native gRPC probes on the gRPC port;
//   - resources: cpu and memory requests and a memory limit on every container; GPU overlays ask
//     for nvidia.com/gpu and run --device cuda, CPU overlays neither;
//   - non-root: runAsNonRoot, a non-zero user, read-only root filesystem, no privilege escalation;
//   - wiring: Services, the PodDisruptionBudget and the PodMonitor select the pods and name ports
//     they have; the HPA scales this Deployment on metrics the Prometheus Adapter rules provide,
//     with a running-sequences target below --max-num-seqs.
// Mutated copies of the first file (grace period too short, an HTTP probe, no resources, root)
// must each be caught first, so a check that passes everything fails here.
// Usage: node policy.mjs RENDERED_DIR   (every *.yaml in it: the renderings with a Deployment
// are checked; the one with the Prometheus Adapter's ConfigMap tells which metrics it serves)
import fs from "node:fs";
import path from "node:path";
import { fail, readYamlDocuments } from "./npm_modules.mjs";

// foxserve's flag defaults (server/server_flags.cc) for the flags checked here.
const FLAG_DEFAULTS = { "drain-timeout": 30, port: 50051, "metrics-port": 9400, "max-num-seqs": 64, device: "auto" };

// foxserve's command line: "--name value" or "--name=value"; a later flag wins.
function parseFlags(args) {
  const flags = { ...FLAG_DEFAULTS };
  for (let i = 0; i < args.length; i++) {
    const arg = String(args[i]);
    if (!arg.startsWith("--")) continue;
    const eq = arg.indexOf("=");
    if (eq > 0) flags[arg.slice(2, eq)] = arg.slice(eq + 1);
    else flags[arg.slice(2)] = String(args[++i]);
  }
  return flags;
}

function quantity(value) {  // enough of Kubernetes quantities for "4", "500m", "2Gi"
  const m = /^([0-9.]+)(m|Ki|Mi|Gi|Ti)?$/.exec(String(value));
  if (!m) return NaN;
  const scale = { m: 1e-3, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 }[m[2]] ?? 1;
  return Number(m[1]) * scale;
}

function selects(selector, labels) {
  return Object.entries(selector ?? {}).length > 0 &&
         Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

function preStopSeconds(container) {
  const preStop = container.lifecycle?.preStop;
  if (preStop?.sleep) return Number(preStop.sleep.seconds);
  const cmd = preStop?.exec?.command;
  if (Array.isArray(cmd) && cmd.length === 2 && /(^|\/)sleep$/.test(cmd[0])) return Number(cmd[1]);
  return undefined;
}

function checkDeployment(d, file, flagsOut) {
  const v = [];
  const where = `${file}: Deployment ${d.metadata.name}`;
  const pod = d.spec.template.spec;
  const podLabels = d.spec.template.metadata?.labels;
  if (!selects(d.spec.selector?.matchLabels, podLabels)) v.push(`${where}: selector does not match the pod labels`);
  const main = pod.containers.find((c) => c.name === "foxserve") ?? pod.containers[0];
  const flags = parseFlags([...(main.command ?? []), ...(main.args ?? [])]);
  flagsOut.flags = flags;
  flagsOut.ports = main.ports ?? [];
  flagsOut.podLabels = podLabels;

  const drain = Number(flags["drain-timeout"]);
  const preStop = preStopSeconds(main);
  const grace = pod.terminationGracePeriodSeconds ?? 30;
  if (preStop === undefined) v.push(`${where}: no preStop sleep (the pod must leave the endpoints before SIGTERM)`);
  else if (!(grace >= preStop + drain + 5)) {
    v.push(`${where}: terminationGracePeriodSeconds ${grace} < preStop ${preStop} + --drain-timeout ${drain} + 5`);
  }

  const grpcPort = Number(flags.port);
  const grpcNamed = (main.ports ?? []).find((p) => p.containerPort === grpcPort);
  if (!grpcNamed) v.push(`${where}: no containerPort for the gRPC port ${grpcPort}`);
  for (const kind of ["readinessProbe", "livenessProbe", "startupProbe"]) {
    const probe = main[kind];
    if (!probe) {
      if (kind !== "startupProbe") v.push(`${where}: no ${kind}`);
      continue;
    }
    if (!probe.grpc) v.push(`${where}: ${kind} is not a native gRPC probe`);
    else if (probe.grpc.port !== grpcPort) v.push(`${where}: ${kind} probes port ${probe.grpc.port}, gRPC listens on ${grpcPort}`);
  }

  const podSec = pod.securityContext ?? {};
  for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
    const cw = `${where} container ${c.name}`;
    const req = c.resources?.requests ?? {}, lim = c.resources?.limits ?? {};
    if (!(quantity(req.cpu) > 0)) v.push(`${cw}: no cpu request`);
    if (!(quantity(req.memory) > 0)) v.push(`${cw}: no memory request`);
    if (!(quantity(lim.memory) > 0)) v.push(`${cw}: no memory limit`);
    const sec = { ...podSec, ...(c.securityContext ?? {}) };
    if (sec.runAsNonRoot !== true) v.push(`${cw}: runAsNonRoot is not true`);
    if (sec.runAsUser === 0) v.push(`${cw}: runAsUser 0`);
    if (c.securityContext?.readOnlyRootFilesystem !== true) v.push(`${cw}: root filesystem not read-only`);
    if (c.securityContext?.allowPrivilegeEscalation !== false) v.push(`${cw}: allowPrivilegeEscalation not false`);
  }

  const gpus = Number(main.resources?.limits?.["nvidia.com/gpu"] ?? 0);
  const base = path.basename(file);
  if (base.includes("gpu")) {
    if (!(gpus >= 1)) v.push(`${where}: GPU overlay without an nvidia.com/gpu limit`);
    if (flags.device !== "cuda") v.push(`${where}: GPU overlay runs --device ${flags.device}, not cuda`);
  } else if (base.includes("cpu")) {
    if (gpus > 0) v.push(`${where}: CPU overlay asks for nvidia.com/gpu`);
    if (flags.device !== "cpu") v.push(`${where}: CPU overlay runs --device ${flags.device}, not cpu`);
  }
  return v;
}

function checkFile(objects, file, adapterMetrics) {
  const v = [];
  const deployments = objects.filter((o) => o.kind === "Deployment");
  if (deployments.length !== 1) return [`${file}: expected one Deployment, found ${deployments.length}`];
  const d = deployments[0];
  const ctx = {};
  v.push(...checkDeployment(d, file, ctx));
  const portNames = new Set(ctx.ports.map((p) => p.name));
  const byKind = (kind) => objects.filter((o) => o.kind === kind);

  const services = byKind("Service");
  if (!services.some((s) => s.spec.clusterIP === "None")) v.push(`${file}: no headless Service`);
  if (!services.some((s) => s.spec.clusterIP !== "None")) v.push(`${file}: no ClusterIP Service`);
  for (const s of services) {
    if (!selects(s.spec.selector, ctx.podLabels)) v.push(`${file}: Service ${s.metadata.name} does not select the pods`);
    for (const p of s.spec.ports ?? []) {
      if (typeof p.targetPort === "string" && !portNames.has(p.targetPort)) {
        v.push(`${file}: Service ${s.metadata.name} targets port ${p.targetPort}, which the pods lack`);
      }
    }
  }

  const pdbs = byKind("PodDisruptionBudget");
  if (pdbs.length !== 1) v.push(`${file}: expected one PodDisruptionBudget`);
  for (const p of pdbs) if (!selects(p.spec.selector?.matchLabels, ctx.podLabels)) v.push(`${file}: PDB does not select the pods`);

  const monitors = [...byKind("PodMonitor"), ...byKind("ServiceMonitor")];
  if (monitors.length === 0) v.push(`${file}: no PodMonitor or ServiceMonitor`);
  for (const m of byKind("PodMonitor")) {
    if (!selects(m.spec.selector?.matchLabels, ctx.podLabels)) v.push(`${file}: PodMonitor does not select the pods`);
    for (const e of m.spec.podMetricsEndpoints ?? []) {
      const port = ctx.ports.find((p) => p.name === e.port);
      if (!port) v.push(`${file}: PodMonitor scrapes port ${e.port}, which the pods lack`);
      else if (port.containerPort !== Number(ctx.flags["metrics-port"])) {
        v.push(`${file}: PodMonitor port ${e.port} is ${port.containerPort}, foxserve serves metrics on ${ctx.flags["metrics-port"]}`);
      }
    }
  }
  if (byKind("PrometheusRule").length !== 1) v.push(`${file}: expected one PrometheusRule`);

  const hpas = byKind("HorizontalPodAutoscaler");
  if (hpas.length !== 1) v.push(`${file}: expected one HorizontalPodAutoscaler`);
  for (const h of hpas) {
    const ref = h.spec.scaleTargetRef;
    if (ref.kind !== "Deployment" || ref.name !== d.metadata.name) v.push(`${file}: HPA does not scale Deployment ${d.metadata.name}`);
    if (!(h.spec.minReplicas >= 2)) v.push(`${file}: HPA minReplicas below 2 (one replica cannot drain without an outage)`);
    const pods = (h.spec.metrics ?? []).filter((m) => m.type === "Pods");
    if (pods.length === 0) v.push(`${file}: HPA has no per-pod custom metric`);
    for (const m of pods) {
      const name = m.pods.metric.name;
      if (!adapterMetrics.has(name)) v.push(`${file}: HPA metric ${name} is not served by the Prometheus Adapter rules`);
      if (name === "foxserve_running_sequences") {
        const target = quantity(m.pods.target.averageValue);
        const batch = Number(ctx.flags["max-num-seqs"]);
        if (!(target > 0 && target < batch)) v.push(`${file}: running-sequences target ${target} not in (0, --max-num-seqs ${batch})`);
      }
    }
  }
  return v;
}

// The custom metric names the adapter's rules expose (name.as, else the series name).
function adapterMetricNames(objects) {
  const names = new Set();
  for (const o of objects.filter((x) => x.kind === "ConfigMap")) {
    for (const text of Object.values(o.data ?? {})) {
      for (const m of text.matchAll(/^\s*as:\s*"?([A-Za-z0-9_:]+)"?/gm)) names.add(m[1]);
    }
  }
  return names;
}

function selfTest(objects, file, adapterMetrics) {
  const mutations = {
    "grace period shorter than preStop + drain + 5": (d) => { d.spec.template.spec.terminationGracePeriodSeconds = 20; },
    "HTTP readiness probe": (d) => { d.spec.template.spec.containers[0].readinessProbe = { httpGet: { port: 9400, path: "/" } }; },
    "no resources": (d) => { delete d.spec.template.spec.containers[0].resources; },
    "runs as root": (d) => {
      d.spec.template.spec.securityContext = { runAsUser: 0 };
      delete d.spec.template.spec.containers[0].securityContext;
    },
  };
  for (const [name, mutate] of Object.entries(mutations)) {
    const copy = structuredClone(objects);
    mutate(copy.find((o) => o.kind === "Deployment"));
    if (checkFile(copy, file, adapterMetrics).length === 0) fail(`self-test: "${name}" passed the policy`);
  }
}

const dir = process.argv[2];
if (!dir) fail("usage: policy.mjs RENDERED_DIR");
const rendered = [];
for (const f of fs.readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort()) {
  rendered.push({ file: path.join(dir, f), objects: await readYamlDocuments(path.join(dir, f)) });
}
const adapterMetrics = new Set(rendered.flatMap((r) => [...adapterMetricNames(r.objects)]));
if (adapterMetrics.size === 0) fail(`${dir}: no rendering holds Prometheus Adapter rules`);
const files = rendered.filter((r) => r.objects.some((o) => o.kind === "Deployment"));
if (files.length < 3) fail(`${dir}: expected base, cpu and gpu renderings with a Deployment, found ${files.length}`);
let violations = 0;
selfTest(files[0].objects, files[0].file, adapterMetrics);
for (const { file, objects } of files) {
  const v = checkFile(objects, file, adapterMetrics);
  for (const line of v) console.error(`VIOLATION ${line}`);
  violations += v.length;
  if (v.length === 0) console.log(`ok ${file}`);
}
if (violations) fail(`${violations} policy violations`);
console.log(`policy holds for ${files.length} renderings (adapter metrics: ${[...adapterMetrics].join(", ")})`);
