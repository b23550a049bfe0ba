// Reference GPT-2 encoder for bpe_tokenizer_test: prints the ids that the npm package
// gpt-3-encoder@1.1.4 (an independent JavaScript port of OpenAI's encoder.py) gives for a UTF-8
// file, separated by spaces.
//
//   FOXSERVE_NPM_DIR=<dir> node encode.js <input-file>
//
// where <dir>/node_modules/gpt-3-encoder was installed by
//   npm install --no-save --no-package-lock --prefix <dir> gpt-3-encoder@1.1.4
//
// The package's encode() concatenates arrays once per pre-token, which is quadratic in the text
// length, so long texts are encoded in pieces cut right after a "\n" that has a non-space
// character on each side. Such a cut never changes the result: the regex match before it ends at
// that "\n" in the whole text too (a single whitespace character followed by a non-space is
// matched alone by `\s+`, and no match crosses from a non-space into it), and matching restarts
// there with nothing carried over (no lookbehind, and the BPE of each pre-token is independent).
'use strict';

const fs = require('fs');
const path = require('path');

const npmDir = process.env.FOXSERVE_NPM_DIR;
const input = process.argv[2];
if (!npmDir || !input) {
  console.error('usage: FOXSERVE_NPM_DIR=<dir> node encode.js <input-file>');
  process.exit(2);
}
const packageDir = path.join(npmDir, 'node_modules', 'gpt-3-encoder');
if (!fs.existsSync(path.join(packageDir, 'Encoder.js'))) {
  console.error(`gpt-3-encoder is not installed under ${npmDir}; install it with\n` +
                `  npm install --no-save --no-package-lock --prefix ${npmDir} gpt-3-encoder@1.1.4`);
  process.exit(3);
}
const { encode } = require(packageDir);

const text = fs.readFileSync(input, 'utf8');
const kPieceChars = 4096;
const ids = [];
let start = 0;
for (let i = kPieceChars; i < text.length - 1; i++) {
  if (text[i] === '\n' && /\S/.test(text[i - 1]) && /\S/.test(text[i + 1])) {
    for (const id of encode(text.slice(start, i + 1))) ids.push(id);
    start = i + 1;
    i = start + kPieceChars;
  }
}
for (const id of encode(text.slice(start))) ids.push(id);
process.stdout.write(ids.join(' ') + '\n');
