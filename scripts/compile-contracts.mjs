#!/usr/bin/env node
// Compile every Solidity source under contracts/src with the pinned solc-js and write one
// deterministic JSON artifact per contract (plus build-info.json) into contracts/artifacts.
//
// Why a hand-written driver instead of a framework: we need exactly one thing (standard-JSON
// compilation with an import callback for node_modules) and byte-for-byte reproducible output
// that CI can diff against the committed artifacts. solc-js is pinned in package.json/package-lock.
//
// Usage: node scripts/compile-contracts.mjs [--src DIR] [--out DIR] [--quiet]

import { createHash } from "node:crypto";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const nodeModules = path.join(repoRoot, "node_modules");

// Only settings that change the bytecode live here; they are copied into every artifact.
const SETTINGS = {
  evmVersion: "cancun",
  optimizer: { enabled: true, runs: 200 },
  viaIR: true,
};
const OUTPUT_SELECTION = {
  "*": {
    "*": [
      "abi",
      "metadata",
      "evm.bytecode.object",
      "evm.bytecode.linkReferences",
      "evm.deployedBytecode.object",
      "evm.deployedBytecode.immutableReferences",
      "evm.deployedBytecode.linkReferences",
      "evm.methodIdentifiers",
    ],
  },
};
const EIP170_LIMIT = 24576;

function fail(message) {
  process.stderr.write(`compile-contracts: ${message}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const args = {
    src: path.join(repoRoot, "contracts", "src"),
    out: path.join(repoRoot, "contracts", "artifacts"),
    quiet: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--src" || arg === "--out") {
      const value = argv[++i];
      if (!value) fail(`${arg} needs a directory`);
      args[arg.slice(2)] = path.resolve(value);
    } else if (arg === "--quiet") {
      args.quiet = true;
    } else {
      fail(`unknown argument: ${arg}`);
    }
  }
  return args;
}

function sha256(buffer) {
  return createHash("sha256").update(buffer).digest("hex");
}

// Recursively sort object keys so JSON.stringify output is stable; arrays keep their order
// (ABI entry order is meaningful to nobody, but it is what solc emits, and solc is deterministic).
function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === "object") {
    const out = {};
    for (const key of Object.keys(value).sort()) out[key] = sortKeys(value[key]);
    return out;
  }
  return value;
}

function stableJson(value) {
  return `${JSON.stringify(sortKeys(value), null, 2)}\n`;
}

function listSolFiles(dir) {
  const found = [];
  const walk = (current) => {
    for (const entry of fs.readdirSync(current, { withFileTypes: true })) {
      const full = path.join(current, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile() && entry.name.endsWith(".sol")) found.push(full);
    }
  };
  walk(dir);
  return found.sort();
}

function pinnedSolcVersion() {
  const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, "package.json"), "utf8"));
  const pinned = pkg.dependencies?.solc;
  if (!pinned || !/^\d+\.\d+\.\d+$/.test(pinned)) {
    fail(`package.json must pin solc to an exact version, found ${JSON.stringify(pinned)}`);
  }
  return pinned;
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const solc = require("solc");
  const pinned = pinnedSolcVersion();
  const version = solc.version();
  if (!version.startsWith(`${pinned}+`)) {
    fail(`loaded solc ${version} but package.json pins ${pinned}; run npm ci`);
  }
  if (!fs.existsSync(args.src)) fail(`source directory not found: ${args.src}`);

  // Source unit names are paths relative to the source dir, so the output does not depend on
  // where the checkout lives (the names end up in the metadata hash inside the bytecode).
  const sourceHashes = {};
  const sources = {};
  const ownSources = new Set();
  for (const file of listSolFiles(args.src)) {
    const name = path.relative(args.src, file).split(path.sep).join("/");
    const content = fs.readFileSync(file);
    sources[name] = { content: content.toString("utf8") };
    sourceHashes[name] = sha256(content);
    ownSources.add(name);
  }
  if (ownSources.size === 0) fail(`no .sol files under ${args.src}`);

  // Imports that are not one of our sources: node_modules packages (@openzeppelin/...), or a
  // path relative to the source dir. Never escape either root.
  const findImport = (importPath) => {
    const roots = [nodeModules, args.src];
    for (const root of roots) {
      const full = path.resolve(root, importPath);
      if (!full.startsWith(root + path.sep)) continue;
      if (fs.existsSync(full)) {
        const content = fs.readFileSync(full);
        sourceHashes[importPath] = sha256(content);
        return { contents: content.toString("utf8") };
      }
    }
    return { error: `import not found: ${importPath} (looked in node_modules and ${args.src})` };
  };

  const input = {
    language: "Solidity",
    sources,
    settings: { ...SETTINGS, outputSelection: OUTPUT_SELECTION },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImport }));

  const diagnostics = output.errors ?? [];
  const errors = diagnostics.filter((d) => d.severity === "error");
  for (const d of diagnostics) {
    if (d.severity !== "error" && !args.quiet) process.stderr.write(`${d.formattedMessage}\n`);
  }
  if (errors.length > 0) {
    for (const d of errors) process.stderr.write(`${d.formattedMessage}\n`);
    fail(`${errors.length} compilation error(s)`);
  }

  const artifacts = {};
  const summary = {};
  for (const sourceName of Object.keys(output.contracts ?? {}).sort()) {
    if (!ownSources.has(sourceName)) continue; // dependencies (OpenZeppelin) get no artifact
    const contracts = output.contracts[sourceName];
    for (const contractName of Object.keys(contracts).sort()) {
      if (artifacts[contractName]) {
        fail(`contract name ${contractName} is defined in both ${artifacts[contractName].sourceName} and ${sourceName}`);
      }
      const c = contracts[contractName];
      const metadata = JSON.parse(c.metadata);
      const closure = {};
      for (const dep of Object.keys(metadata.sources).sort()) closure[dep] = sourceHashes[dep];
      const deployedHex = c.evm.deployedBytecode.object;
      const deployed = Buffer.from(deployedHex, "hex");
      artifacts[contractName] = {
        abi: c.abi,
        bytecode: `0x${c.evm.bytecode.object}`,
        compiler: { name: "solc-js", version },
        contractName,
        deployedBytecode: `0x${deployedHex}`,
        deployedBytecodeSha256: sha256(deployed),
        deployedBytecodeSize: deployed.length,
        immutableReferences: c.evm.deployedBytecode.immutableReferences ?? {},
        linkReferences: {
          bytecode: c.evm.bytecode.linkReferences ?? {},
          deployedBytecode: c.evm.deployedBytecode.linkReferences ?? {},
        },
        metadata: c.metadata,
        methodIdentifiers: c.evm.methodIdentifiers ?? {},
        settings: SETTINGS,
        sourceName,
        sourceSha256: sourceHashes[sourceName],
        sources: closure,
      };
      summary[contractName] = {
        deployedBytecodeSha256: sha256(deployed),
        deployedBytecodeSize: deployed.length,
        sourceName,
      };
      if (deployed.length > EIP170_LIMIT) {
        process.stderr.write(
          `compile-contracts: warning: ${contractName} is ${deployed.length} bytes, over the EIP-170 limit\n`,
        );
      }
    }
  }

  fs.mkdirSync(args.out, { recursive: true });
  const written = new Set();
  for (const name of Object.keys(artifacts)) {
    fs.writeFileSync(path.join(args.out, `${name}.json`), stableJson(artifacts[name]));
    written.add(`${name}.json`);
  }
  const sortedHashes = {};
  for (const name of Object.keys(sourceHashes).sort()) sortedHashes[name] = sourceHashes[name];
  fs.writeFileSync(
    path.join(args.out, "build-info.json"),
    stableJson({ compiler: { name: "solc-js", version }, contracts: summary, settings: SETTINGS, sources: sortedHashes }),
  );
  written.add("build-info.json");

  // Remove artifacts of contracts that no longer exist (only files that look like ours).
  for (const entry of fs.readdirSync(args.out)) {
    if (!entry.endsWith(".json") || written.has(entry)) continue;
    const full = path.join(args.out, entry);
    try {
      const parsed = JSON.parse(fs.readFileSync(full, "utf8"));
      if (parsed && typeof parsed === "object" && "contractName" in parsed) fs.unlinkSync(full);
    } catch {
      // not JSON we wrote: leave it alone
    }
  }

  if (!args.quiet) {
    for (const name of Object.keys(summary)) {
      process.stdout.write(`${name.padEnd(32)} ${String(summary[name].deployedBytecodeSize).padStart(6)} bytes\n`);
    }
    process.stdout.write(`solc ${version}: ${Object.keys(artifacts).length} artifact(s) in ${args.out}\n`);
  }
}

main();
