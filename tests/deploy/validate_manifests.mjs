// Offline validation of deploy/kubernetes/ (there is no cluster in the tests).
//
//   node tests/deploy/validate_manifests.mjs --deps DIR [--manifests DIR] [--overlay DIR]...
//        [--server-src DIR]
//
// DIR holds node_modules installed from tests/deploy/package-lock.json (run_validate.sh
// does that). Three parts, each a list of named checks:
//   1. schema: every document of every manifest, checked against the Kubernetes API
//      schema of its apiVersion/kind (kubernetes-models, generated from Kubernetes'
//      OpenAPI spec); an unknown apiVersion/kind fails. kustomization.yaml must list
//      exactly the other manifests.
//   2. policy: what the deployment promises (gRPC probes on the container port, the
//      security context, resources, a grace period longer than the drain, the ConfigMap
//      wiring, the metrics port and its Prometheus annotations, Services, HPA and PDB
//      selecting the pods), each with its own message.
//   3. self-test: each policy point broken in turn, in memory, must fail with a message
//      naming it, so a check that can no longer fail is itself a failure.
// Then each overlay (default deploy/kubernetes-tls/) is rendered as `kubectl kustomize`
// would (its resources, then its JSON 6902 patches; kubectl is not needed) and the
// rendered documents go through the same schema and policy checks, plus the TLS ones
// (probes on the plaintext health port, the TLS files in a read-only Secret mount) and
// their own self-test.
// Prints one line per failure and a summary `deploy_manifests: N passed, N failed`;
// exits 1 on any failure, 2 on a usage or set-up error.

import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, "..", "..");

function parseArgs(argv) {
  const args = {
    deps: null,
    manifests: path.join(repoRoot, "deploy", "kubernetes"),
    serverSrc: path.join(repoRoot, "server"),
    overlays: [],
  };
  let overlaysGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s);
    const value = inline !== undefined ? inline : argv[++i];
    if (value === undefined) usage(`${flag} needs a value`);
    if (flag === "--deps") args.deps = value;
    else if (flag === "--manifests") args.manifests = value;
    else if (flag === "--server-src") args.serverSrc = value;
    else if (flag === "--overlay") {
      overlaysGiven = true;
      args.overlays.push(value);
    }
    else usage(`unknown argument ${flag}`);
  }
  if (!args.deps) usage("--deps is required");
  if (!overlaysGiven) args.overlays.push(path.join(repoRoot, "deploy", "kubernetes-tls"));
  return args;
}

function usage(message) {
  console.error(`validate_manifests: ${message}`);
  console.error(
    "usage: node validate_manifests.mjs --deps DIR [--manifests DIR] [--overlay DIR]... " +
    "[--server-src DIR]");
  process.exit(2);
}

const args = parseArgs(process.argv.slice(2));
const requireDep = createRequire(path.join(path.resolve(args.deps), "package.json"));
let YAML;
try {
  YAML = requireDep("yaml");
  requireDep.resolve("kubernetes-models/v1");
} catch (error) {
  console.error(`validate_manifests: cannot load the npm packages from ${args.deps} ` +
                `(run tests/deploy/run_validate.sh, which installs them): ${error.message}`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------
// Facts from the server's sources, so the test follows the flags rather than a copy.

// Flag names from every ABSL_FLAG(type, name, ...) under server/.
function serverFlags(serverSrc) {
  const flags = new Set();
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (/\.(cc|h)$/.test(entry.name)) {
        const text = fs.readFileSync(full, "utf8");
        for (const m of text.matchAll(/ABSL_FLAG\(\s*[\w:<>]+\s*,\s*(\w+)\s*,/g)) flags.add(m[1]);
      }
    }
  };
  walk(serverSrc);
  return flags;
}

const FLAGS = serverFlags(args.serverSrc);
for (const needed of ["listen", "drain_grace_ms", "shutdown_timeout_s", "tls_cert_file",
  "tls_key_file", "tls_client_ca_file", "health_listen"]) {
  if (!FLAGS.has(needed)) {
    console.error(`validate_manifests: no ABSL_FLAG '${needed}' found under ${args.serverSrc}`);
    process.exit(2);
  }
}
// The server's defaults for the limits the memory check adds up (server/main.cc).
const DEFAULTS = {
  CONVSERVE_MEMORY_BUDGET_BYTES: 2 * 2 ** 30,
  CONVSERVE_MAX_MODEL_BYTES: 2 ** 30,
  CONVSERVE_COMPUTE_THREADS: 0,
  CONVSERVE_MAX_MESSAGE_BYTES: 256 * 2 ** 20,
  CONVSERVE_DRAIN_GRACE_MS: 500,
  CONVSERVE_SHUTDOWN_TIMEOUT_S: 30,
};
// Free memory glibc keeps for reuse (M_TRIM_THRESHOLD in server/main.cc TuneMalloc).
const MALLOC_KEEP_BYTES = 256 * 2 ** 20;
// After the calls in flight, server->Shutdown() gets a 1 s deadline (server/main.cc).
const FINAL_SHUTDOWN_S = 1;
// The health service names the server registers (server/main.cc).
const HEALTH_SERVICES = ["", "convserve.v1.ConvService"];
const REQUIRED_CONFIG = ["CONVSERVE_LISTEN", "CONVSERVE_COMPUTE_THREADS",
  "CONVSERVE_MEMORY_BUDGET_BYTES", "CONVSERVE_LOG_LEVEL", "CONVSERVE_DRAIN_GRACE_MS",
  "CONVSERVE_SHUTDOWN_TIMEOUT_S"];
const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "critical", "off"];

// ---------------------------------------------------------------------------------------
// Loading.

// A bundle: { dir, files: [{ name, docs: [object] }], parseErrors: [string] }.
function loadBundle(dir) {
  const bundle = { dir, files: [], parseErrors: [] };
  const names = fs.readdirSync(dir).filter((n) => /\.ya?ml$/.test(n)).sort();
  for (const name of names) {
    const text = fs.readFileSync(path.join(dir, name), "utf8");
    // YAML 1.1, as kubectl reads it: an unquoted `off` or `yes` is a boolean there.
    const docs = [];
    for (const doc of YAML.parseAllDocuments(text, { version: "1.1" })) {
      if (doc.errors.length > 0) {
        bundle.parseErrors.push(`${name}: ${doc.errors.map((e) => e.message).join("; ")}`);
        continue;
      }
      const value = doc.toJS();
      if (value !== null && value !== undefined) docs.push(value);
    }
    bundle.files.push({ name, docs });
  }
  return bundle;
}

// The kubernetes-models class of an apiVersion/kind, or null if Kubernetes has none.
function modelClass(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string") return null;
  if (!/^([a-z0-9.-]+\/)?v[0-9a-z]+$/.test(apiVersion)) return null;
  let module;
  try {
    module = requireDep(`kubernetes-models/${apiVersion}`);
  } catch {
    return null;
  }
  const cls = module[kind];
  return typeof cls === "function" && cls.kind === kind && cls.apiVersion === apiVersion
    ? cls : null;
}

// ---------------------------------------------------------------------------------------
// Rendering an overlay: what `kubectl kustomize DIR` does for the features used here
// (resources: files or directories with their own kustomization; patches: JSON 6902
// operations from a file, on one target by kind and name). Anything else is an error
// rather than silently ignored. Returns { dir, rendered: true, files: [{ name, docs }],
// parseErrors }.

function parseYamlFile(file, errors) {
  const docs = [];
  for (const doc of YAML.parseAllDocuments(fs.readFileSync(file, "utf8"), { version: "1.1" })) {
    if (doc.errors.length > 0) {
      errors.push(`${file}: ${doc.errors.map((e) => e.message).join("; ")}`);
      continue;
    }
    const value = doc.toJS();
    if (value !== null && value !== undefined) docs.push(value);
  }
  return docs;
}

// JSON pointer (RFC 6901) tokens.
function pointerTokens(pointer) {
  if (pointer === "") return [];
  if (!pointer.startsWith("/")) throw new Error(`path ${json(pointer)} does not start with /`);
  return pointer.slice(1).split("/").map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));
}

// Applies RFC 6902 operations add, remove, replace and test to `doc` in place.
function applyJsonPatch(doc, operations, where) {
  if (!Array.isArray(operations)) throw new Error(`${where}: expected a list of operations`);
  operations.forEach((operation, index) => {
    const at = `${where} operation ${index + 1} (${operation?.op} ${operation?.path})`;
    const tokens = pointerTokens(operation?.path ?? "");
    if (tokens.length === 0) throw new Error(`${at}: cannot patch the whole document`);
    let parent = doc;
    for (const token of tokens.slice(0, -1)) {
      parent = Array.isArray(parent) ? parent[Number(token)] : parent?.[token];
      if (parent === undefined || parent === null || typeof parent !== "object") {
        throw new Error(`${at}: ${json(token)} does not exist`);
      }
    }
    const last = tokens[tokens.length - 1];
    const exists = Array.isArray(parent) ? Number(last) < parent.length : last in parent;
    switch (operation.op) {
      case "add":
        if (Array.isArray(parent)) {
          if (last === "-") parent.push(operation.value);
          else parent.splice(Number(last), 0, operation.value);
        } else {
          parent[last] = operation.value;
        }
        break;
      case "replace":
      case "remove":
        if (!exists) throw new Error(`${at}: nothing to ${operation.op} there`);
        if (operation.op === "replace") parent[last] = operation.value;
        else if (Array.isArray(parent)) parent.splice(Number(last), 1);
        else delete parent[last];
        break;
      case "test":
        if (!exists || json(parent[last]) !== json(operation.value)) {
          throw new Error(`${at}: found ${json(parent[last])}, not ${json(operation.value)}`);
        }
        break;
      default:
        throw new Error(`${at}: unsupported operation ${json(operation.op)}`);
    }
  });
}

const KUSTOMIZATION_FIELDS = new Set(["apiVersion", "kind", "resources", "patches", "images",
  "namespace"]);

function renderKustomization(dir, errors) {
  const file = path.join(dir, "kustomization.yaml");
  const kustomization = parseYamlFile(file, errors)[0] ?? {};
  for (const key of Object.keys(kustomization)) {
    if (!KUSTOMIZATION_FIELDS.has(key)) {
      errors.push(`${file}: ${key}: this test renders only resources and patches (JSON 6902)`);
    }
  }
  const docs = [];
  for (const resource of kustomization.resources ?? []) {
    const full = path.resolve(dir, resource);
    if (path.resolve(dir).startsWith(full + path.sep)) {
      errors.push(`${file}: resource ${resource} contains this directory; kustomize refuses ` +
        "an overlay inside its base as a cycle");
    } else if (fs.existsSync(full) && fs.statSync(full).isDirectory()) {
      docs.push(...renderKustomization(full, errors));
    } else if (fs.existsSync(full)) {
      docs.push(...parseYamlFile(full, errors));
    } else {
      errors.push(`${file}: resource ${resource} does not exist`);
    }
  }
  for (const patch of kustomization.patches ?? []) {
    const target = patch.target ?? {};
    const where = `${file}: patch ${patch.path}`;
    if (typeof patch.path !== "string" || !target.kind || !target.name) {
      errors.push(`${where}: expected path and target.kind, target.name`);
      continue;
    }
    const matches = docs.filter((d) => d.kind === target.kind && d.metadata?.name === target.name);
    if (matches.length !== 1) {
      errors.push(`${where}: target ${target.kind}/${target.name} matches ${matches.length} ` +
        "documents, expected 1");
      continue;
    }
    try {
      applyJsonPatch(matches[0], parseYamlFile(path.join(dir, patch.path), errors)[0], where);
    } catch (error) {
      errors.push(error.message);
    }
  }
  return docs;
}

function renderOverlay(dir) {
  const parseErrors = [];
  const docs = renderKustomization(dir, parseErrors);
  return { dir, rendered: true, files: [{ name: `${path.basename(dir)} (rendered)`, docs }],
    parseErrors };
}

// ---------------------------------------------------------------------------------------
// Helpers.

// A Kubernetes quantity ("2", "500m", "2560Mi", "1.5G", "1e9") as a number, or NaN.
function quantity(value) {
  if (typeof value === "number") return value;
  if (typeof value !== "string") return NaN;
  const m = /^([0-9.]+)(?:([eE][-+]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E))?$/.exec(value);
  if (!m) return NaN;
  const units = { m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
    Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
  const base = Number(m[1]);
  if (m[2]) return Number(m[1] + m[2]);
  return m[3] ? base * units[m[3]] : base;
}

const mib = (bytes) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
const json = (value) => JSON.stringify(value);

// Whether every label of `selector` is in `labels` (and the selector is not empty).
function selects(selector, labels) {
  if (!selector || typeof selector !== "object" || Object.keys(selector).length === 0) {
    return false;
  }
  return Object.entries(selector).every(([k, v]) => labels && labels[k] === v);
}

// ---------------------------------------------------------------------------------------
// The checks. Each returns a list of { name, ok, message } for one bundle.

function runChecks(bundle) {
  const results = [];
  const check = (name, ok, message) => results.push({ name, ok: Boolean(ok), message });

  // --- 1. Schema ------------------------------------------------------------------------
  for (const error of bundle.parseErrors) {
    check(bundle.rendered ? "overlay renders" : "yaml parses", false, error);
  }
  const kustomizationFile = bundle.files.find((f) => f.name === "kustomization.yaml");
  const all = [];
  for (const file of bundle.files) {
    if (file.name === "kustomization.yaml") continue;
    check(`${file.name} has documents`, file.docs.length > 0, `${file.name}: no YAML document`);
    file.docs.forEach((doc, index) => {
      const where = `${file.name}#${index + 1} (${doc?.kind}/${doc?.metadata?.name})`;
      const cls = modelClass(doc?.apiVersion, doc?.kind);
      if (!cls) {
        check("schema", false,
          `${where}: unknown apiVersion/kind ${json(doc?.apiVersion)}/${json(doc?.kind)}: ` +
          "not a Kubernetes API type this test knows");
        return;
      }
      try {
        new cls(doc).validate();
        check(`schema ${where}`, true);
      } catch (error) {
        check("schema", false,
          `${where}: does not match the ${doc.apiVersion} ${doc.kind} schema: ${error.message}`);
      }
      all.push({ file: file.name, doc });
    });
  }

  // kustomization.yaml: `kubectl apply -k` applies exactly what it lists.
  const kustomization = kustomizationFile?.docs[0];
  if (bundle.rendered) {
    // An overlay's files are patches, not manifests: its rendered output is checked.
  } else if (!kustomization) {
    check("kustomization", false, "kustomization.yaml is missing or empty");
  } else {
    check("kustomization kind",
      kustomization.apiVersion === "kustomize.config.k8s.io/v1beta1" &&
        kustomization.kind === "Kustomization",
      `kustomization.yaml: expected apiVersion kustomize.config.k8s.io/v1beta1, kind ` +
        `Kustomization, got ${kustomization.apiVersion}/${kustomization.kind}`);
    const listed = Array.isArray(kustomization.resources) ? kustomization.resources : [];
    const manifests = bundle.files.filter((f) => f.name !== "kustomization.yaml")
      .map((f) => f.name);
    const unlisted = manifests.filter((n) => !listed.includes(n));
    const missing = listed.filter((n) => !manifests.includes(n));
    check("kustomization lists every manifest", unlisted.length === 0,
      `kustomization.yaml: resources does not list ${unlisted.join(", ")}, so ` +
        "`kubectl apply -k` would skip it");
    check("kustomization lists only existing files", missing.length === 0,
      `kustomization.yaml: resources lists ${missing.join(", ")}, which does not exist`);
  }

  const ofKind = (kind) => all.filter((x) => x.doc.kind === kind).map((x) => x.doc);
  const one = (kind) => {
    const found = ofKind(kind);
    check(`one ${kind}`, found.length === 1, `expected exactly one ${kind}, found ${found.length}`);
    return found[0];
  };

  // --- 2. Policy ------------------------------------------------------------------------
  const deployment = one("Deployment");
  const configMaps = ofKind("ConfigMap");
  const services = ofKind("Service");
  const hpa = one("HorizontalPodAutoscaler");
  const pdb = one("PodDisruptionBudget");
  if (!deployment) return results;

  const podSpec = deployment.spec?.template?.spec ?? {};
  const podLabels = deployment.spec?.template?.metadata?.labels ?? {};
  const containers = podSpec.containers ?? [];
  check("one container", containers.length === 1,
    `Deployment ${deployment.metadata?.name}: expected one container, found ${containers.length}`);
  const container = containers[0] ?? {};
  const C = `Deployment ${deployment.metadata?.name}, container ${container.name}`;
  const port = container.ports?.[0] ?? {};
  const containerPort = port.containerPort;
  check("container port", Number.isInteger(containerPort),
    `${C}: ports[0].containerPort is not set`);

  check("selector matches the pod labels",
    selects(deployment.spec?.selector?.matchLabels, podLabels),
    `Deployment: spec.selector.matchLabels ${json(deployment.spec?.selector?.matchLabels)} ` +
      `does not select the pod template's labels ${json(podLabels)}`);
  check("image set", typeof container.image === "string" && container.image.length > 0,
    `${C}: no image`);

  // TLS: the server's flags from the ConfigMap (resolved below, needed by the probes).
  const refsEarly = (container.envFrom ?? []).map((e) => e.configMapRef?.name).filter(Boolean);
  const configEarly = configMaps.find((cm) => refsEarly.includes(cm.metadata?.name))?.data ?? {};
  const tlsOn = Boolean(configEarly.CONVSERVE_TLS_CERT_FILE || configEarly.CONVSERVE_TLS_KEY_FILE);
  const healthListen = configEarly.CONVSERVE_HEALTH_LISTEN ?? "";
  const healthMatch = /^(.*):([0-9]+)$/.exec(healthListen);
  const healthPort = healthMatch ? Number(healthMatch[2]) : undefined;
  // Probes: native gRPC (grpc.health.v1) on the container port, or with TLS on the
  // plaintext health port (the kubelet's gRPC probe cannot do TLS).
  const probePort = tlsOn ? healthPort : containerPort;
  const probePortName = tlsOn
    ? `the plaintext health port ${healthPort} (CONVSERVE_HEALTH_LISTEN): with TLS on, the ` +
      "kubelet's gRPC probe, which cannot do TLS, would never pass on the container port"
    : `the container port ${containerPort}`;
  for (const probeName of ["livenessProbe", "readinessProbe"]) {
    const probe = container[probeName];
    const other = probe && ["httpGet", "tcpSocket", "exec"].filter((k) => k in probe);
    check(`${probeName} is gRPC`, probe?.grpc && other.length === 0,
      `${C}: ${probeName} must be a native gRPC probe (grpc: {port: ${containerPort}}), ` +
        `got ${probe ? Object.keys(probe).filter((k) => !/Seconds|Threshold/.test(k)) : "none"}`);
    check(`${probeName} port`, probe?.grpc?.port === probePort,
      `${C}: ${probeName}.grpc.port is ${json(probe?.grpc?.port)}, not ${probePortName}`);
    check(`${probeName} health service`, HEALTH_SERVICES.includes(probe?.grpc?.service ?? ""),
      `${C}: ${probeName}.grpc.service ${json(probe?.grpc?.service)} is not one the server ` +
        `registers (${HEALTH_SERVICES.map(json).join(" or ")}): the probe would never pass`);
  }

  // Security context: the container's, falling back to the pod's where Kubernetes does.
  const csc = container.securityContext ?? {};
  const psc = podSpec.securityContext ?? {};
  const runAsNonRoot = csc.runAsNonRoot ?? psc.runAsNonRoot;
  const runAsUser = csc.runAsUser ?? psc.runAsUser;
  check("runAsNonRoot", runAsNonRoot === true,
    `${C}: securityContext.runAsNonRoot must be true (container or pod), got ` +
      json(runAsNonRoot));
  check("runAsUser numeric non-root", Number.isInteger(runAsUser) && runAsUser > 0,
    `${C}: securityContext.runAsUser must be a non-zero uid (the image's USER is the name ` +
      `'convserve', uid 10001, which runAsNonRoot cannot verify), got ${json(runAsUser)}`);
  check("readOnlyRootFilesystem", csc.readOnlyRootFilesystem === true,
    `${C}: securityContext.readOnlyRootFilesystem must be true, got ` +
      `${json(csc.readOnlyRootFilesystem)}`);
  check("allowPrivilegeEscalation", csc.allowPrivilegeEscalation === false,
    `${C}: securityContext.allowPrivilegeEscalation must be false, got ` +
      `${json(csc.allowPrivilegeEscalation)}`);
  const dropped = csc.capabilities?.drop ?? [];
  check("capabilities drop ALL", dropped.includes("ALL"),
    `${C}: securityContext.capabilities.drop must include ALL, got ${json(dropped)}`);
  check("no added capabilities", (csc.capabilities?.add ?? []).length === 0,
    `${C}: securityContext.capabilities.add must be empty, got ${json(csc.capabilities?.add)}`);
  check("not privileged", csc.privileged !== true, `${C}: securityContext.privileged is true`);

  // Resources.
  const requests = container.resources?.requests ?? {};
  const limits = container.resources?.limits ?? {};
  for (const [kind, values] of [["requests", requests], ["limits", limits]]) {
    for (const resource of ["cpu", "memory"]) {
      check(`resources.${kind}.${resource}`, !Number.isNaN(quantity(values[resource])),
        `${C}: resources.${kind}.${resource} must be set, got ${json(values[resource])}`);
    }
  }
  for (const resource of ["cpu", "memory"]) {
    const request = quantity(requests[resource]);
    const limit = quantity(limits[resource]);
    if (!Number.isNaN(request) && !Number.isNaN(limit)) {
      check(`${resource} request <= limit`, request <= limit,
        `${C}: resources.requests.${resource} ${requests[resource]} exceeds the limit ` +
          `${limits[resource]}`);
    }
  }

  // The ConfigMap behind envFrom, and its keys.
  const refs = (container.envFrom ?? []).map((e) => e.configMapRef?.name).filter(Boolean);
  check("envFrom configMapRef", refs.length > 0,
    `${C}: no envFrom configMapRef: the configuration would not reach the server`);
  const configMap = configMaps.find((cm) => refs.includes(cm.metadata?.name));
  check("envFrom ConfigMap exists", refs.length === 0 || configMap,
    `${C}: envFrom references ConfigMap ${json(refs)}, but the manifests define ` +
      `${json(configMaps.map((cm) => cm.metadata?.name))}`);
  const config = configMap?.data ?? {};
  for (const key of Object.keys(config)) {
    const flag = key.startsWith("CONVSERVE_") ? key.slice("CONVSERVE_".length).toLowerCase() : "";
    check(`ConfigMap key ${key}`, FLAGS.has(flag) && key === key.toUpperCase(),
      `ConfigMap ${configMap.metadata.name}: ${key} is not CONVSERVE_<FLAG> for a flag of ` +
        `convserve_server (${[...FLAGS].sort().join(", ")})`);
  }
  if (configMap) {
    for (const key of REQUIRED_CONFIG) {
      check(`ConfigMap sets ${key}`, key in config,
        `ConfigMap ${configMap.metadata.name}: ${key} is not set`);
    }
  }
  const integer = (key) => {
    const text = config[key];
    if (text === undefined) return DEFAULTS[key];
    const ok = typeof text === "string" && /^[0-9]+$/.test(text);
    check(`${key} is an integer`, ok, `ConfigMap: ${key} ${json(text)} is not an integer`);
    return ok ? Number(text) : NaN;
  };
  if (config.CONVSERVE_LOG_LEVEL !== undefined) {
    check("log level", LOG_LEVELS.includes(config.CONVSERVE_LOG_LEVEL),
      `ConfigMap: CONVSERVE_LOG_LEVEL ${json(config.CONVSERVE_LOG_LEVEL)} is not one of ` +
        LOG_LEVELS.join(", "));
  }
  check("no command-line flags", (container.args ?? []).length === 0 &&
      (container.command ?? []).every((word) => !word.startsWith("--")),
    `${C}: command/args pass flags (${json(container.command)} ${json(container.args)}); ` +
      "the ConfigMap is meant to be the whole configuration");
  check("enableServiceLinks false", podSpec.enableServiceLinks === false,
    `Deployment: spec.template.spec.enableServiceLinks must be false, or Kubernetes injects ` +
      "CONVSERVE_SERVICE_HOST, CONVSERVE_PORT, ... (for the Service 'convserve') into the " +
      "server's CONVSERVE_<FLAG> environment");

  // CONVSERVE_LISTEN: all interfaces, on the container port.
  const listen = config.CONVSERVE_LISTEN ?? "0.0.0.0:50051";
  const listenMatch = /^(.*):([0-9]+)$/.exec(listen);
  check("listen port = container port", listenMatch && Number(listenMatch[2]) === containerPort,
    `ConfigMap: CONVSERVE_LISTEN ${json(listen)} does not listen on the container port ` +
      `${containerPort} the probes and Services use`);
  check("listen on all interfaces",
    listenMatch && ["0.0.0.0", "[::]", ""].includes(listenMatch[1]),
    `ConfigMap: CONVSERVE_LISTEN ${json(listen)} must listen on all interfaces (0.0.0.0 or ` +
      "[::]): the kubelet's probes and the Services connect to the pod's IP");

  // Metrics: Prometheus finds the pods by their annotations and scrapes the port of
  // CONVSERVE_METRICS_LISTEN on the pod's IP.
  const annotations = deployment.spec?.template?.metadata?.annotations ?? {};
  const metricsListen = config.CONVSERVE_METRICS_LISTEN ?? "";
  const scrape = annotations["prometheus.io/scrape"];
  if (metricsListen !== "" || scrape === "true") {
    const m = /^(.*):([0-9]+)$/.exec(metricsListen);
    const metricsPort = m ? Number(m[2]) : NaN;
    check("metrics listen set", m,
      `ConfigMap: CONVSERVE_METRICS_LISTEN ${json(metricsListen)} is not HOST:PORT, but the pod ` +
        "template asks Prometheus to scrape it (prometheus.io/scrape)");
    check("metrics listen on all interfaces", m && ["0.0.0.0", "[::]"].includes(m[1]),
      `ConfigMap: CONVSERVE_METRICS_LISTEN ${json(metricsListen)} must listen on all ` +
        "interfaces (0.0.0.0 or [::]): Prometheus scrapes the pod's IP");
    check("metrics port is a container port",
      (container.ports ?? []).some((p) => p.containerPort === metricsPort),
      `${C}: no containerPort ${metricsPort} for CONVSERVE_METRICS_LISTEN ${json(metricsListen)}`);
    check("metrics port is not the gRPC port", metricsPort !== containerPort,
      `ConfigMap: CONVSERVE_METRICS_LISTEN ${json(metricsListen)} uses the gRPC port ` +
        `${containerPort}; the server cannot listen twice on it`);
    check("prometheus.io/scrape", scrape === "true",
      `Deployment: the pod template's annotation prometheus.io/scrape must be "true" when ` +
        `CONVSERVE_METRICS_LISTEN is set, got ${json(scrape)}`);
    check("prometheus.io/port", annotations["prometheus.io/port"] === String(metricsPort),
      `Deployment: the pod template's annotation prometheus.io/port ` +
        `${json(annotations["prometheus.io/port"])} is not the port of CONVSERVE_METRICS_LISTEN ` +
        `(${metricsPort})`);
    check("prometheus.io/path", annotations["prometheus.io/path"] === "/metrics",
      `Deployment: the pod template's annotation prometheus.io/path must be "/metrics" (the ` +
        `only path the metrics port serves), got ${json(annotations["prometheus.io/path"])}`);
  }

  // Compute threads within the CPU limit.
  const threads = integer("CONVSERVE_COMPUTE_THREADS");
  const cpuLimit = quantity(limits.cpu);
  if (!Number.isNaN(cpuLimit)) {
    check("compute threads <= cpu limit", threads >= 1 && threads <= Math.ceil(cpuLimit),
      `ConfigMap: CONVSERVE_COMPUTE_THREADS ${json(config.CONVSERVE_COMPUTE_THREADS ?? "unset")}` +
        ` must be between 1 and the CPU limit ${limits.cpu} (0 or unset means one thread ` +
        "per core of the node, not of the pod)");
  }

  // Memory limit above what the configuration lets the server hold.
  const memoryLimit = quantity(limits.memory);
  if (!Number.isNaN(memoryLimit)) {
    const budget = integer("CONVSERVE_MEMORY_BUDGET_BYTES");
    const models = integer("CONVSERVE_MAX_MODEL_BYTES");
    const message = integer("CONVSERVE_MAX_MESSAGE_BYTES");
    const floor = budget + models + 2 * message + MALLOC_KEEP_BYTES;
    // A value that is not an integer has failed above already.
    if (!Number.isNaN(floor)) check("memory limit covers the budget", memoryLimit > floor,
      `${C}: resources.limits.memory ${limits.memory} (${mib(memoryLimit)}) must exceed ` +
        `memory budget ${mib(budget)} + model bytes ${mib(models)} + one request and one ` +
        `response of ${mib(message)} + ${mib(MALLOC_KEEP_BYTES)} glibc keeps = ${mib(floor)}`);
  }

  // Grace period longer than the whole stop.
  const grace = podSpec.terminationGracePeriodSeconds;
  const drainMs = integer("CONVSERVE_DRAIN_GRACE_MS");
  const shutdownS = integer("CONVSERVE_SHUTDOWN_TIMEOUT_S");
  const preStop = container.lifecycle?.preStop;
  let preStopS = 0;
  if (preStop) {
    const command = preStop.exec?.command ?? [];
    const sleep = command.length === 2 && /(^|\/)sleep$/.test(command[0]) &&
      /^[0-9]+$/.test(command[1]);
    check("preStop is a plain sleep", sleep,
      `${C}: lifecycle.preStop ${json(preStop)} is not ["sleep", "<seconds>"], so the test ` +
        "cannot count it in the grace period");
    if (sleep) preStopS = Number(command[1]);
  }
  const stopS = preStopS + drainMs / 1000 + shutdownS + FINAL_SHUTDOWN_S;
  check("grace period > drain", Number.isInteger(grace) && grace > stopS,
    `Deployment: terminationGracePeriodSeconds ${json(grace)} must exceed preStop ${preStopS} s` +
      ` + CONVSERVE_DRAIN_GRACE_MS ${drainMs} ms + CONVSERVE_SHUTDOWN_TIMEOUT_S ${shutdownS} s` +
      ` + the final shutdown ${FINAL_SHUTDOWN_S} s = ${stopS} s, or calls in flight are killed`);

  // TLS: both files or neither, the health port declared, the files in a read-only Secret.
  if (tlsOn || configEarly.CONVSERVE_TLS_CLIENT_CA_FILE || healthListen) {
    const T = (key) => configEarly[key] ?? "";
    check("TLS cert and key together",
      Boolean(T("CONVSERVE_TLS_CERT_FILE")) === Boolean(T("CONVSERVE_TLS_KEY_FILE")),
      "ConfigMap: CONVSERVE_TLS_CERT_FILE and CONVSERVE_TLS_KEY_FILE must be set both or " +
        `neither (the server exits 2 otherwise), got ${json(T("CONVSERVE_TLS_CERT_FILE"))} and ` +
        json(T("CONVSERVE_TLS_KEY_FILE")));
    check("TLS health port set", !tlsOn || healthMatch,
      "ConfigMap: with TLS on, CONVSERVE_HEALTH_LISTEN must be set (HOST:PORT) for the " +
        `probes, which cannot do TLS; got ${json(healthListen)}`);
    check("health port without TLS", tlsOn || !healthListen,
      `ConfigMap: CONVSERVE_HEALTH_LISTEN ${json(healthListen)} without TLS: the server exits 2`);
    if (healthMatch) {
      check("health listen on all interfaces", ["0.0.0.0", "[::]", ""].includes(healthMatch[1]),
        `ConfigMap: CONVSERVE_HEALTH_LISTEN ${json(healthListen)} must listen on all ` +
          "interfaces: the kubelet's probes connect to the pod's IP");
      check("health port is a container port",
        (container.ports ?? []).some((p) => p.containerPort === healthPort) &&
          healthPort !== containerPort,
        `${C}: the health port ${healthPort} (CONVSERVE_HEALTH_LISTEN) is not a containerPort ` +
          `of its own in ports ${json(container.ports)}`);
    }
    const mounts = container.volumeMounts ?? [];
    const volumes = podSpec.volumes ?? [];
    for (const key of ["CONVSERVE_TLS_CERT_FILE", "CONVSERVE_TLS_KEY_FILE",
      "CONVSERVE_TLS_CLIENT_CA_FILE"]) {
      const file = T(key);
      if (!file) continue;
      const mount = mounts.find((m) => path.posix.dirname(file) === m.mountPath.replace(/\/$/, ""));
      const volume = volumes.find((v) => v.name === mount?.name);
      check(`${key} in a Secret`, mount && volume?.secret?.secretName,
        `ConfigMap: ${key} ${json(file)} is not in a mounted Secret (volumeMounts ` +
          `${json(mounts.map((m) => m.mountPath))}): the server would not find it`);
      if (mount && volume?.secret) {
        check(`${key} mount read-only`, mount.readOnly === true,
          `${C}: volumeMount ${mount.name} at ${mount.mountPath} holding ${key} must be readOnly`);
        const items = volume.secret.items;
        const base = path.posix.basename(file);
        check(`${key} is a key of the Secret`,
          !items || items.some((item) => (item.path ?? item.key) === base),
          `${C}: Secret volume ${volume.name} lists items ${json(items)} without ${base} (${key})`);
      }
    }
  }

  check("no replicas with an HPA", !(hpa && deployment.spec?.replicas !== undefined),
    `Deployment: spec.replicas is set (${deployment.spec?.replicas}) while an HPA scales it; ` +
      "every `kubectl apply` would reset the HPA's count");

  // Services: select the pods, target the container port, one ClusterIP and one headless.
  check("two Services", services.length === 2,
    `expected two Services (ClusterIP and headless), found ${services.length}`);
  for (const service of services) {
    const S = `Service ${service.metadata?.name}`;
    check(`${S} selects the pods`, selects(service.spec?.selector, podLabels),
      `${S}: selector ${json(service.spec?.selector)} does not select the Deployment's pod ` +
        `labels ${json(podLabels)}`);
    const ports = service.spec?.ports ?? [];
    check(`${S} has ports`, ports.length > 0, `${S}: no ports`);
    for (const p of ports) {
      const target = p.targetPort ?? p.port;
      check(`${S} targets the container port`, target === containerPort || target === port.name,
        `${S}: port ${p.port} targets ${json(target)}, not the container port ` +
          `${containerPort}${port.name ? ` (${json(port.name)})` : ""}`);
    }
  }
  const headless = services.filter((s) => s.spec?.clusterIP === "None");
  const clusterIp = services.filter((s) => s.spec?.clusterIP !== "None" &&
    (s.spec?.type ?? "ClusterIP") === "ClusterIP");
  check("a headless Service", headless.length === 1,
    `expected one headless Service (spec.clusterIP: None), found ` +
      `${json(headless.map((s) => s.metadata?.name))}`);
  check("a ClusterIP Service", clusterIp.length === 1,
    `expected one ClusterIP Service with a cluster IP, found ` +
      `${json(clusterIp.map((s) => s.metadata?.name))}`);

  // HorizontalPodAutoscaler.
  if (hpa) {
    const ref = hpa.spec?.scaleTargetRef ?? {};
    check("HPA targets the Deployment", ref.kind === "Deployment" &&
        ref.apiVersion === "apps/v1" && ref.name === deployment.metadata?.name,
      `HorizontalPodAutoscaler ${hpa.metadata?.name}: scaleTargetRef ${json(ref)} is not the ` +
        `Deployment ${json(deployment.metadata?.name)} (apps/v1)`);
    const cpu = (hpa.spec?.metrics ?? []).some((m) => m.type === "Resource" &&
      m.resource?.name === "cpu" && m.resource?.target?.type === "Utilization");
    check("HPA scales on CPU", cpu,
      `HorizontalPodAutoscaler ${hpa.metadata?.name}: no Resource metric on cpu with a ` +
        `Utilization target in ${json(hpa.spec?.metrics)}`);
    const min = hpa.spec?.minReplicas ?? 1;
    check("HPA keeps two pods", min >= 2 && min <= hpa.spec?.maxReplicas,
      `HorizontalPodAutoscaler ${hpa.metadata?.name}: minReplicas ${min} must be at least 2 ` +
        `(one pod evicted under the PDB must leave one serving) and at most maxReplicas ` +
        `${hpa.spec?.maxReplicas}`);
  }

  // PodDisruptionBudget.
  if (pdb) {
    check("PDB selects the pods", selects(pdb.spec?.selector?.matchLabels, podLabels),
      `PodDisruptionBudget ${pdb.metadata?.name}: selector.matchLabels ` +
        `${json(pdb.spec?.selector?.matchLabels)} does not select the Deployment's pod labels ` +
        `${json(podLabels)}`);
    check("PDB has a budget",
      pdb.spec?.minAvailable !== undefined || pdb.spec?.maxUnavailable !== undefined,
      `PodDisruptionBudget ${pdb.metadata?.name}: neither minAvailable nor maxUnavailable set`);
  }
  return results;
}

// ---------------------------------------------------------------------------------------
// 3. Self-test: break one point at a time; the checks must fail, naming it.

const findDoc = (bundle, kind, name) => bundle.files.flatMap((f) => f.docs)
  .find((d) => d.kind === kind && (name === undefined || d.metadata?.name === name));
const deploymentOf = (b) => findDoc(b, "Deployment");
const containerOf = (b) => deploymentOf(b).spec.template.spec.containers[0];
const configOf = (b) => findDoc(b, "ConfigMap").data;
const headlessOf = (b) => b.files.flatMap((f) => f.docs)
  .find((d) => d.kind === "Service" && d.spec?.clusterIP === "None");
const clusterIpOf = (b) => b.files.flatMap((f) => f.docs)
  .find((d) => d.kind === "Service" && d.spec?.clusterIP !== "None");

// [what is broken, how, a part of the message the failure must contain]
const MUTATIONS = [
  ["unknown kind", (b) => b.files[0].docs.push({ apiVersion: "v1", kind: "Frobnicator",
    metadata: { name: "x" } }), "unknown apiVersion/kind"],
  ["schema violation", (b) => { containerOf(b).ports[0].containerPort = "fifty"; },
    "does not match the apps/v1 Deployment schema"],
  ["kustomization misses a file", (b) => {
    const k = b.files.find((f) => f.name === "kustomization.yaml").docs[0];
    k.resources = k.resources.filter((r) => r !== "pdb.yaml");
  }, "resources does not list pdb.yaml"],
  ["liveness probe over TCP", (b) => {
    containerOf(b).livenessProbe = { tcpSocket: { port: 50051 }, periodSeconds: 10 };
  }, "livenessProbe must be a native gRPC probe"],
  ["readiness probe on another port", (b) => { containerOf(b).readinessProbe.grpc.port = 50052; },
    "readinessProbe.grpc.port is 50052"],
  ["readiness probe on an unknown health service", (b) => {
    containerOf(b).readinessProbe.grpc.service = "convserve.ConvService";
  }, "is not one the server registers"],
  ["runAsNonRoot false", (b) => {
    containerOf(b).securityContext.runAsNonRoot = false;
  }, "runAsNonRoot must be true"],
  ["runAsUser missing", (b) => {
    delete deploymentOf(b).spec.template.spec.securityContext.runAsUser;
    delete containerOf(b).securityContext.runAsUser;
  }, "runAsUser must be a non-zero uid"],
  ["writable root filesystem", (b) => {
    containerOf(b).securityContext.readOnlyRootFilesystem = false;
  }, "readOnlyRootFilesystem must be true"],
  ["privilege escalation allowed", (b) => {
    delete containerOf(b).securityContext.allowPrivilegeEscalation;
  }, "allowPrivilegeEscalation must be false"],
  ["capabilities kept", (b) => {
    containerOf(b).securityContext.capabilities.drop = ["NET_RAW"];
  }, "capabilities.drop must include ALL"],
  ["no memory limit", (b) => { delete containerOf(b).resources.limits.memory; },
    "resources.limits.memory must be set"],
  ["no cpu request", (b) => { delete containerOf(b).resources.requests.cpu; },
    "resources.requests.cpu must be set"],
  ["memory limit below the budget", (b) => { containerOf(b).resources.limits.memory = "1Gi"; },
    "resources.limits.memory 1Gi (1024 MiB) must exceed"],
  ["grace period too short", (b) => {
    deploymentOf(b).spec.template.spec.terminationGracePeriodSeconds = 30;
  }, "terminationGracePeriodSeconds 30 must exceed"],
  ["shutdown timeout beyond the grace period", (b) => {
    configOf(b).CONVSERVE_SHUTDOWN_TIMEOUT_S = "60";
  }, "CONVSERVE_SHUTDOWN_TIMEOUT_S 60 s"],
  ["envFrom names a missing ConfigMap", (b) => {
    containerOf(b).envFrom[0].configMapRef.name = "convserve-settings";
  }, "envFrom references ConfigMap [\"convserve-settings\"]"],
  ["ConfigMap key that is no flag", (b) => {
    configOf(b).CONVSERVE_DRAIN_GRACE = "500";
  }, "CONVSERVE_DRAIN_GRACE is not CONVSERVE_<FLAG>"],
  ["listen port differs from the container port", (b) => {
    configOf(b).CONVSERVE_LISTEN = "0.0.0.0:8080";
  }, "does not listen on the container port"],
  ["listen on loopback", (b) => { configOf(b).CONVSERVE_LISTEN = "127.0.0.1:50051"; },
    "must listen on all interfaces"],
  ["metrics annotation on another port", (b) => {
    deploymentOf(b).spec.template.metadata.annotations["prometheus.io/port"] = "9091";
  }, "is not the port of CONVSERVE_METRICS_LISTEN"],
  ["metrics port not a container port", (b) => {
    containerOf(b).ports = containerOf(b).ports.filter((p) => p.name !== "metrics");
  }, "no containerPort 9090 for CONVSERVE_METRICS_LISTEN"],
  ["metrics on loopback", (b) => { configOf(b).CONVSERVE_METRICS_LISTEN = "127.0.0.1:9090"; },
    "CONVSERVE_METRICS_LISTEN \"127.0.0.1:9090\" must listen on all interfaces"],
  ["scrape annotation without metrics", (b) => { delete configOf(b).CONVSERVE_METRICS_LISTEN; },
    "CONVSERVE_METRICS_LISTEN \"\" is not HOST:PORT"],
  ["metrics not scraped", (b) => {
    deploymentOf(b).spec.template.metadata.annotations["prometheus.io/scrape"] = "false";
  }, "prometheus.io/scrape must be \"true\""],
  ["metrics path elsewhere", (b) => {
    deploymentOf(b).spec.template.metadata.annotations["prometheus.io/path"] = "/";
  }, "prometheus.io/path must be \"/metrics\""],
  ["compute threads above the cpu limit", (b) => {
    configOf(b).CONVSERVE_COMPUTE_THREADS = "8";
  }, "CONVSERVE_COMPUTE_THREADS \"8\" must be between 1 and the CPU limit"],
  ["service links on", (b) => { delete deploymentOf(b).spec.template.spec.enableServiceLinks; },
    "enableServiceLinks must be false"],
  ["Service selects other pods", (b) => {
    clusterIpOf(b).spec.selector = { "app.kubernetes.io/name": "convserve-canary" };
  }, "does not select the Deployment's pod labels"],
  ["Service targets another port", (b) => { headlessOf(b).spec.ports[0].targetPort = 8080; },
    "targets 8080, not the container port"],
  ["no headless Service", (b) => { delete headlessOf(b).spec.clusterIP; },
    "expected one headless Service"],
  ["HPA targets another Deployment", (b) => {
    findDoc(b, "HorizontalPodAutoscaler").spec.scaleTargetRef.name = "convserve-old";
  }, "is not the Deployment \"convserve\""],
  ["HPA on memory", (b) => {
    findDoc(b, "HorizontalPodAutoscaler").spec.metrics[0].resource.name = "memory";
  }, "no Resource metric on cpu"],
  ["PDB selects other pods", (b) => {
    findDoc(b, "PodDisruptionBudget").spec.selector.matchLabels = { app: "convserve" };
  }, "PodDisruptionBudget convserve: selector.matchLabels"],
  ["replicas fixed under an HPA", (b) => { deploymentOf(b).spec.replicas = 3; },
    "spec.replicas is set (3)"],
];

// The same for a rendered TLS overlay.
const TLS_MUTATIONS = [
  ["readiness probe on the TLS port", (b) => {
    containerOf(b).readinessProbe.grpc.port = containerOf(b).ports[0].containerPort;
  }, "with TLS on, the kubelet's gRPC probe, which cannot do TLS"],
  ["no health port", (b) => { delete configOf(b).CONVSERVE_HEALTH_LISTEN; },
    "with TLS on, CONVSERVE_HEALTH_LISTEN must be set"],
  ["health port not declared", (b) => { containerOf(b).ports.splice(1); },
    "is not a containerPort of its own"],
  ["health port on loopback", (b) => {
    configOf(b).CONVSERVE_HEALTH_LISTEN = "127.0.0.1:50052";
  }, "CONVSERVE_HEALTH_LISTEN \"127.0.0.1:50052\" must listen on all interfaces"],
  ["key without certificate", (b) => { delete configOf(b).CONVSERVE_TLS_CERT_FILE; },
    "must be set both or neither"],
  ["certificate outside the Secret", (b) => {
    configOf(b).CONVSERVE_TLS_CERT_FILE = "/tmp/tls.crt";
  }, "CONVSERVE_TLS_CERT_FILE \"/tmp/tls.crt\" is not in a mounted Secret"],
  ["writable Secret mount", (b) => { containerOf(b).volumeMounts[0].readOnly = false; },
    "must be readOnly"],
];

function selfTest(bundle, mutations = MUTATIONS) {
  const results = [];
  for (const [what, mutate, expected] of mutations) {
    const copy = structuredClone(bundle);
    let failures;
    try {
      mutate(copy);
      failures = runChecks(copy).filter((r) => !r.ok);
    } catch (error) {
      results.push({ name: `self-test: ${what}`, ok: false,
        message: `self-test "${what}": the checks threw ${error.stack}` });
      continue;
    }
    const hit = failures.find((r) => r.message.includes(expected));
    results.push({ name: `self-test: ${what}`, ok: Boolean(hit),
      message: `self-test "${what}": expected a failure containing ${json(expected)}, got ` +
        (failures.length ? failures.map((r) => r.message).join(" | ") : "no failure") });
    if (hit && process.env.VERBOSE) console.log(`  broken "${what}" -> ${hit.message}`);
  }
  return results;
}

// ---------------------------------------------------------------------------------------

const everything = [];
const targets = [[loadBundle(args.manifests), MUTATIONS],
  ...args.overlays.map((dir) => [renderOverlay(dir), TLS_MUTATIONS])];
for (const [bundle, mutations] of targets) {
  const results = runChecks(bundle);
  const realFailed = results.some((r) => !r.ok);
  // The self-test breaks manifests that pass; on failing ones it would only repeat them.
  const selfResults = realFailed ? [] : selfTest(bundle, mutations);
  everything.push(...results, ...selfResults);
  const documents = bundle.files.reduce((n, f) => n + f.docs.length, 0);
  console.log(`${bundle.rendered ? "rendered overlay, " : `${bundle.files.length} files, `}` +
    `${documents} documents in ${bundle.dir}; ${results.length} manifest checks, ` +
    `${selfResults.length} self-test breakages` +
    (realFailed ? " (self-test skipped: the manifests fail)" : ""));
}
const failed = everything.filter((r) => !r.ok);
for (const r of failed) console.log(`FAIL ${r.name}: ${r.message}`);
console.log(`deploy_manifests: ${everything.length - failed.length} passed, ` +
  `${failed.length} failed`);
process.exit(failed.length === 0 ? 0 : 1);
