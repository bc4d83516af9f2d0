// Score nnwatch verdicts from JavaScript (Node.js), with onnxruntime-node and nothing of nnwatch.
//
//   npm install onnxruntime-node
//   node verdict.js compiled/verdict.onnx input.bin WIDTH
//
// input.bin holds float32 rows of the verdict input (the tapped model's nnwatch/verdict_input
// output, WIDTH = classes + taps + 1 values per row), little-endian, row after row. Prints one
// line per row: its index, predicted class, flag and confidence (the conformal p-value).
const fs = require('fs');

const USAGE = 'usage: node verdict.js VERDICT.onnx INPUT.bin WIDTH (float32 rows of WIDTH values each)';

function fail(message) {
  console.error(`verdict.js: ${message}\n${USAGE}`);
  process.exit(2);
}

async function main() {
  const [model, input, widthArg] = process.argv.slice(2);
  if (!model || !input || !widthArg) fail('expected three arguments');
  const width = Number(widthArg);
  if (!Number.isInteger(width) || width < 2) fail(`WIDTH must be an integer >= 2, got ${widthArg}`);
  for (const path of [model, input]) if (!fs.existsSync(path)) fail(`${path} does not exist`);
  const bytes = fs.readFileSync(input);
  if (bytes.byteLength % (4 * width) !== 0) {
    fail(`${input} holds ${bytes.byteLength} bytes, not a whole number of float32 rows of ${width} values`);
  }
  const values = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  const rows = values.length / width;
  const ort = require('onnxruntime-node');  // after the checks: a usage error needs no runtime
  const session = await ort.InferenceSession.create(model);
  const feeds = {'nnwatch/verdict_input': new ort.Tensor('float32', values, [rows, width])};
  const out = await session.run(feeds, ['pred', 'flag', 'confidence']);
  for (let i = 0; i < rows; i++) {
    console.log(`${i} pred=${out.pred.data[i]} flag=${Boolean(out.flag.data[i])} confidence=${out.confidence.data[i]}`);
  }
}

main().catch((err) => { console.error(err.message); process.exit(1); });
