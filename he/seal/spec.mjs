// Reads and checks a "ppml-he-rnn/1" spec (written by `ppml he search
// --spec-out`): the trained RNN or GRU, one fitted tanh (and sigmoid) per
// time step, the level budget and test samples with their plaintext
// predictions. Every problem is an Error whose message names the file and
// the field, e.g.
//   approx.json: cells[3].tanh.coeffs[2]: expected a finite number, got "x"
// The format is documented in docs/HE.md ("Encrypted RNN check (SEAL)").
import { readFileSync } from 'node:fs';

export const SPEC_FORMAT = 'ppml-he-rnn/1';

class SpecError extends Error {}

// Typed access to one JSON value with its path for messages.
class Field {
  constructor(file, path, value) { this.file = file; this.path = path; this.value = value; }
  fail(problem) { throw new SpecError(`${this.file}: ${this.path || '(top level)'}: ${problem}`); }
  got() {
    const text = JSON.stringify(this.value);
    return text === undefined ? 'nothing' : text.length > 40 ? `${text.slice(0, 40)}...` : text;
  }
  child(key) {
    if (this.value === null || typeof this.value !== 'object' || Array.isArray(this.value)) this.fail(`expected an object, got ${this.got()}`);
    const path = this.path ? `${this.path}.${key}` : key;
    if (!(key in this.value)) throw new SpecError(`${this.file}: ${path}: missing`);
    return new Field(this.file, path, this.value[key]);
  }
  has(key) { return this.value !== null && typeof this.value === 'object' && key in this.value; }
  number() {
    if (typeof this.value !== 'number' || !Number.isFinite(this.value)) this.fail(`expected a finite number, got ${this.got()}`);
    return this.value;
  }
  integer(min = -Infinity) {
    if (!Number.isInteger(this.value)) this.fail(`expected an integer, got ${this.got()}`);
    if (this.value < min) this.fail(`must be >= ${min}, got ${this.value}`);
    return this.value;
  }
  string() {
    if (typeof this.value !== 'string') this.fail(`expected a string, got ${this.got()}`);
    return this.value;
  }
  array(length) {
    if (!Array.isArray(this.value)) this.fail(`expected an array, got ${this.got()}`);
    if (length !== undefined && this.value.length !== length) this.fail(`expected ${length} elements, got ${this.value.length}`);
    return this.value.map((v, i) => new Field(this.file, `${this.path}[${i}]`, v));
  }
  numbers(length) { return this.array(length).map((f) => f.number()); }
  matrix(rows, cols) { return this.array(rows).map((row) => row.numbers(cols)); }
}

function readActivation(cell, name) {
  const f = cell.child(name);
  const lo = f.child('lo').number();
  const hi = f.child('hi').number();
  if (!(hi > lo)) f.child('hi').fail(`must be greater than lo (${lo}), got ${hi}`);
  const coeffs = f.child('coeffs').numbers();
  if (coeffs.length < 2) f.child('coeffs').fail('needs at least 2 coefficients (degree >= 1)');
  return { lo, hi, coeffs };
}

// The parsed spec; throws SpecError (or a read error naming the file).
export function loadSpec(file) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new SpecError(`${file}: cannot read the spec: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
  }
  let json;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SpecError(`${file}: not valid JSON: ${e.message}`);
  }
  const root = new Field(file, '', json);
  const format = root.child('format').string();
  if (format !== SPEC_FORMAT) root.child('format').fail(`expected "${SPEC_FORMAT}", got "${format}"`);
  const cell = root.child('cell').string();
  if (cell !== 'rnn' && cell !== 'gru') root.child('cell').fail(`expected "rnn" or "gru", got "${cell}"`);
  const inputSize = root.child('input_size').integer(1);
  const hiddenSize = root.child('hidden_size').integer(1);
  const steps = root.child('steps').integer(1);
  const classes = root.child('classes').integer(2);

  const transform = root.child('input_transform');
  const inputTransform = { scale: transform.child('scale').number(), shift: transform.child('shift').number() };

  const weightsField = root.child('weights');
  const cellWeights = weightsField.child(cell);
  const H = hiddenSize, I = inputSize;
  const weights = {};
  if (cell === 'rnn') {
    weights.W = cellWeights.child('W').matrix(H, I);
    weights.U = cellWeights.child('U').matrix(H, H);
    weights.b = cellWeights.child('b').numbers(H);
  } else {
    for (const g of ['z', 'r', 'n']) {
      weights[`W${g}`] = cellWeights.child(`W${g}`).matrix(H, I);
      weights[`U${g}`] = cellWeights.child(`U${g}`).matrix(H, H);
    }
    weights.bz = cellWeights.child('bz').numbers(H);
    weights.br = cellWeights.child('br').numbers(H);
    weights.bn_x = cellWeights.child('bn_x').numbers(H);
    weights.bn_h = cellWeights.child('bn_h').numbers(H);
  }
  const fc = weightsField.child('fc');
  weights.fcW = fc.child('W').matrix(classes, H);
  weights.fcB = fc.child('b').numbers(classes);

  const cells = root.child('cells').array(steps).map((c, t) => {
    const step = c.child('step').integer(0);
    if (step !== t) c.child('step').fail(`expected ${t} (cells in step order), got ${step}`);
    const out = { step, tanh: readActivation(c, 'tanh') };
    if (cell === 'gru') out.sigmoid = readActivation(c, 'sigmoid');
    return out;
  });

  const budget = root.has('budget') ? root.child('budget').integer(2) : 9;
  const bootstraps = root.has('bootstraps') ? root.child('bootstraps').integer(0) : null;
  const depth = root.has('depth') ? root.child('depth').integer(0) : null;

  const samples = root.child('test_samples').array().map((s) => {
    const sample = {
      index: s.child('index').integer(0),
      pixels: s.child('pixels').numbers(steps * inputSize),
      label: s.child('label').integer(0),
      plainPrediction: s.child('plain_prediction').integer(0),
      plainLogits: s.has('plain_logits') ? s.child('plain_logits').numbers(classes) : null,
    };
    if (sample.plainPrediction >= classes) s.child('plain_prediction').fail(`must be < classes (${classes})`);
    return sample;
  });
  if (samples.length === 0) root.child('test_samples').fail('has no samples');

  return { file, cell, inputSize, hiddenSize, steps, classes, inputTransform, weights, cells, budget, bootstraps,
           depth, samples };
}

export function isSpecError(e) { return e instanceof SpecError; }
