#!/usr/bin/env node
// Validates an AsyncAPI document with the official parser, @asyncapi/parser:
//
//   node scripts/asyncapi-validate.cjs asyncapi.json
//
// Prints every diagnostic (errors and warnings) with its path in the document
// and exits 1 when any is an error, 2 when the parser cannot be loaded. The
// parser is looked up in $KAFKAESK_NODE_DIR (default
// ~/.cache/kafkaesk-ci/node), where scripts/asyncapi-parser.sh installs it,
// so the repository holds no node_modules.
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { createRequire } = require('node:module');

const SEVERITY = ['error', 'warning', 'information', 'hint'];

function loadParser() {
  const dir = process.env.KAFKAESK_NODE_DIR || path.join(os.homedir(), '.cache', 'kafkaesk-ci', 'node');
  try {
    return createRequire(path.join(dir, 'package.json'))('@asyncapi/parser');
  } catch (err) {
    console.error(`asyncapi-validate: cannot load @asyncapi/parser from ${dir} (${err.message}); run scripts/asyncapi-parser.sh`);
    process.exit(2);
  }
}

async function main() {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: asyncapi-validate.cjs FILE');
    process.exit(2);
  }
  const { Parser } = loadParser();
  const text = fs.readFileSync(file, 'utf8');
  const { document, diagnostics } = await new Parser().parse(text, { source: path.resolve(file) });
  let errors = 0;
  for (const d of diagnostics) {
    if (d.severity === 0) errors += 1;
    const where = (d.path || []).join('/');
    console.error(`${SEVERITY[d.severity] || d.severity}: ${d.code}: ${d.message} at /${where}`);
  }
  if (errors > 0 || document === undefined) {
    console.error(`asyncapi-validate: ${file} is not a valid AsyncAPI document (${errors} error(s))`);
    process.exit(1);
  }
  console.log(`asyncapi-validate: ${file} is valid AsyncAPI ${document.version()} (${diagnostics.length} diagnostic(s) besides)`);
}

main().catch((err) => {
  console.error(`asyncapi-validate: ${err.stack || err}`);
  process.exit(2);
});
