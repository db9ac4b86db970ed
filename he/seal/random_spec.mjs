#!/usr/bin/env node
// random_spec.mjs: a "ppml-he-rnn/1" spec with random (untrained) weights and
// random images, for developing and testing the encrypted runs without the
// trained models of `ppml he search`. Plain predictions come from
// plain_model.mjs. Deterministic for a given --seed.
//
//   node random_spec.mjs --cell rnn|gru --out FILE [--degree 7] [--samples 24]
//        [--steps 28] [--budget 9] [--seed 1]
import { writeFileSync } from 'node:fs';
import { argmax, plainLogits } from './plain_model.mjs';

function options(argv) {
  const o = { cell: 'rnn', out: '', degree: 7, samples: 24, steps: 28, budget: 9, seed: 1 };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '');
    if (!(name in o) || i + 1 >= argv.length) throw new Error(`bad option ${argv[i]}`);
    o[name] = typeof o[name] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
  }
  if (!o.out) throw new Error('--out FILE is required');
  return o;
}

// mulberry32: a small seeded generator, enough for test data.
function generator(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Least-squares power-basis fit in u on [-1, 1] of f(lo + (u+1)(hi-lo)/2).
function fit(f, lo, hi, degree, odd) {
  const points = 400;
  const powers = [];
  for (let k = 0; k <= degree; ++k) if (!odd || k % 2 === 1) powers.push(k);
  const A = powers.map(() => new Array(powers.length).fill(0));
  const rhs = new Array(powers.length).fill(0);
  for (let i = 0; i < points; ++i) {
    const u = Math.cos((Math.PI * (i + 0.5)) / points);  // Chebyshev nodes keep the system well conditioned
    const y = f(lo + ((u + 1) * (hi - lo)) / 2);
    powers.forEach((p, r) => {
      rhs[r] += y * u ** p;
      powers.forEach((q, c) => { A[r][c] += u ** (p + q); });
    });
  }
  // Gaussian elimination with partial pivoting.
  const m = powers.length;
  for (let c = 0; c < m; ++c) {
    let pivot = c;
    for (let r = c + 1; r < m; ++r) if (Math.abs(A[r][c]) > Math.abs(A[pivot][c])) pivot = r;
    [A[c], A[pivot]] = [A[pivot], A[c]];
    [rhs[c], rhs[pivot]] = [rhs[pivot], rhs[c]];
    for (let r = c + 1; r < m; ++r) {
      const factor = A[r][c] / A[c][c];
      for (let k = c; k < m; ++k) A[r][k] -= factor * A[c][k];
      rhs[r] -= factor * rhs[c];
    }
  }
  const solution = new Array(m).fill(0);
  for (let r = m - 1; r >= 0; --r) {
    let s = rhs[r];
    for (let k = r + 1; k < m; ++k) s -= A[r][k] * solution[k];
    solution[r] = s / A[r][r];
  }
  const coeffs = new Array(degree + 1).fill(0);
  powers.forEach((p, i) => { coeffs[p] = solution[i]; });
  return { lo, hi, coeffs };
}

const o = options(process.argv.slice(2));
const random = generator(o.seed);
const H = 32, I = 28, C = 10;
const matrix = (rows, cols, scale) => Array.from({ length: rows }, () => Array.from({ length: cols }, () => (random() * 2 - 1) * scale));
const vector = (n, scale) => Array.from({ length: n }, () => (random() * 2 - 1) * scale);
const weights = {};
if (o.cell === 'rnn') {
  weights.rnn = { W: matrix(H, I, 0.3), U: matrix(H, H, 0.25), b: vector(H, 0.1) };
} else {
  const g = {};
  for (const k of ['z', 'r', 'n']) { g[`W${k}`] = matrix(H, I, 0.3); g[`U${k}`] = matrix(H, H, 0.25); }
  Object.assign(g, { bz: vector(H, 0.1), br: vector(H, 0.1), bn_x: vector(H, 0.1), bn_h: vector(H, 0.1) });
  weights.gru = g;
}
weights.fc = { W: matrix(C, H, 1), b: vector(C, 0.1) };
const sigmoid = (x) => 1 / (1 + Math.exp(-x));
const cells = Array.from({ length: o.steps }, (_, t) => {
  const cell = { step: t, degree: o.degree, tanh: fit(Math.tanh, -6, 6, o.degree, true) };
  if (o.cell === 'gru') cell.sigmoid = fit(sigmoid, -6, 6, o.degree, false);
  return cell;
});
const spec = {
  format: 'ppml-he-rnn/1', cell: o.cell, input_size: I, hidden_size: H, steps: o.steps, classes: C,
  input_transform: { scale: 2, shift: -1 }, weights, cells, budget: o.budget,
  test_samples: [],
};
const model = { cell: o.cell, inputSize: I, hiddenSize: H, steps: o.steps, classes: C,
                inputTransform: { scale: 2, shift: -1 }, cells,
                weights: o.cell === 'rnn' ? { ...weights.rnn } : { ...weights.gru } };
Object.assign(model.weights, { fcW: weights.fc.W, fcB: weights.fc.b });
for (let i = 0; i < o.samples; ++i) {
  const pixels = Array.from({ length: o.steps * I }, () => Number(random().toFixed(4)));
  const logits = plainLogits(model, pixels);
  spec.test_samples.push({ index: i, pixels, label: argmax(logits), plain_prediction: argmax(logits), plain_logits: logits });
}
writeFileSync(o.out, JSON.stringify(spec));
process.stderr.write(`random_spec: wrote ${o.out} (${o.cell}, degree ${o.degree}, ${o.samples} samples)\n`);
