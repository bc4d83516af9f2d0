// Score nnwatch verdicts from JavaScript (Node.js), with onnxruntime-node and nothing of nnwatch.
//
//   npm install onnxruntime-node
//   node verdict.js compiled/verdict.onnx input.bin WIDTH
//
// input.bin holds float32 rows of the verdict input (the tapped model's nnwatch/verdict_input
// output, WIDTH = classes + taps + 1 values per row), little-endian, row after row. Prints one
// line per row: its index, predicted class, flag and confidence (the conformal p-value).
const ort = require('onnxruntime-node');
const fs = require('fs');

async function main() {
  const [model, input, width] = process.argv.slice(2);
  const bytes = fs.readFileSync(input);
  const values = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const rows = values.length / Number(width);
  const session = await ort.InferenceSession.create(model);
  const feeds = {'nnwatch/verdict_input': new ort.Tensor('float32', values, [rows, Number(width)])};
  const out = await session.run(feeds, ['pred', 'flag', 'confidence']);
  for (let i = 0; i < rows; i++) {
    console.log(`${i} pred=${out.pred.data[i]} flag=${Boolean(out.flag.data[i])} confidence=${out.confidence.data[i]}`);
  }
}

main().catch((err) => { console.error(err.message); process.exit(1); });
