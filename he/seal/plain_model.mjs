// Plaintext simulation of the approximated RNN/GRU in float64: exactly the
// computation the encrypted run performs, minus the CKKS noise (each cell's
// tanh/sigmoid replaced by its fitted polynomial in u = (2x-(hi+lo))/(hi-lo),
// no clamp). Its logits are the reference for the encrypted logits.
import { evaluatePlain } from './poly_eval.mjs';

export function activation(fit, x) {
  return evaluatePlain(fit.coeffs, (2 * x - (fit.hi + fit.lo)) / (fit.hi - fit.lo));
}

function matVec(M, v) { return M.map((row) => row.reduce((s, w, j) => s + w * v[j], 0)); }
function addAll(...vs) { return vs[0].map((_, i) => vs.reduce((s, v) => s + v[i], 0)); }

// Model inputs for step t: input_transform applied to the pixels of row t.
export function stepInput(spec, pixels, t) {
  const { scale, shift } = spec.inputTransform;
  const I = spec.inputSize;
  return Array.from({ length: I }, (_, j) => scale * pixels[t * I + j] + shift);
}

export function plainLogits(spec, pixels) {
  const w = spec.weights;
  let h = new Array(spec.hiddenSize).fill(0);
  for (let t = 0; t < spec.steps; ++t) {
    const x = stepInput(spec, pixels, t);
    const cell = spec.cells[t];
    if (spec.cell === 'rnn') {
      h = addAll(matVec(w.W, x), matVec(w.U, h), w.b).map((p) => activation(cell.tanh, p));
    } else {
      const z = addAll(matVec(w.Wz, x), matVec(w.Uz, h), w.bz).map((p) => activation(cell.sigmoid, p));
      const r = addAll(matVec(w.Wr, x), matVec(w.Ur, h), w.br).map((p) => activation(cell.sigmoid, p));
      const nh = addAll(matVec(w.Un, h), w.bn_h);
      const n = addAll(matVec(w.Wn, x), w.bn_x).map((p, i) => activation(cell.tanh, p + r[i] * nh[i]));
      h = n.map((ni, i) => ni + z[i] * (h[i] - ni));
    }
  }
  return addAll(matVec(w.fcW, h), w.fcB);
}

export function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; ++i) if (values[i] > values[best]) best = i;
  return best;
}
