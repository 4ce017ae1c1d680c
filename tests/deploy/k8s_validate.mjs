// SPDX-License-Identifier: Apache-2.0
// Validate Kubernetes manifests against the Kubernetes OpenAPI schemas
// (kubernetes-models, generated from the upstream OpenAPI spec) and the
// Prometheus Operator CRD schemas (@kubernetes-models/prometheus-operator).
//
//   node k8s_validate.mjs FILE.yaml...     (multi-document YAML; "-" for stdin)
//
// Prints one JSON line per document:
//   {"file", "index", "kind", "name", "status": "valid"|"invalid"|"no-schema", "errors": [...]}
// Exit status 1 if any document is invalid. Documents whose kind has no
// schema here (CRDs such as NetworkAttachmentDefinition) are reported as
// no-schema and left to the structural checks in test_k8s.py.
import fs from "node:fs";
import yaml from "js-yaml";

const docsOf = (file) => {
  const text = fs.readFileSync(file === "-" ? 0 : file, "utf8");
  return yaml.loadAll(text).filter((d) => d !== null && d !== undefined);
};

function modulePath(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group === "monitoring.coreos.com")
    return `@kubernetes-models/prometheus-operator/monitoring.coreos.com/${version}/${kind}`;
  if (group === "") return `kubernetes-models/${version}/${kind}`;
  return `kubernetes-models/${group}/${version}/${kind}`;
}

let failed = false;
for (const file of process.argv.slice(2)) {
  const docs = docsOf(file);
  for (let i = 0; i < docs.length; i++) {
    const d = docs[i];
    const out = { file, index: i, kind: d.kind, name: d.metadata && d.metadata.name, errors: [] };
    if (typeof d.apiVersion !== "string" || typeof d.kind !== "string") {
      out.status = "invalid";
      out.errors.push("apiVersion and kind are required");
      failed = true;
      console.log(JSON.stringify(out));
      continue;
    }
    let Model;
    try {
      Model = (await import(modulePath(d.apiVersion, d.kind)))[d.kind];
    } catch (e) {
      Model = undefined;
    }
    if (!Model) {
      out.status = "no-schema";
      console.log(JSON.stringify(out));
      continue;
    }
    try {
      new Model(d).validate();
      out.status = "valid";
    } catch (e) {
      out.status = "invalid";
      out.errors = String(e.message).split(", ");
      failed = true;
    }
    console.log(JSON.stringify(out));
  }
}
process.exit(failed ? 1 : 0);
