// he_seal_poly: a degree-7 odd polynomial (the shape of a fitted tanh) and a
// degree-3 general one (a sigmoid's) evaluated encrypted at N = 2^13, with
// u = (2x - (hi+lo))/(hi-lo) computed encrypted from x as in `ckks.mjs poly`.
// Checks: the error against the plaintext polynomial, the result's level
// (depth ceil(log2(d+1)) + 1 for the interval map), the number of ciphertext
// multiplies of the power-of-two BSGS, and that the mask zeroes its slots.
import assert from 'node:assert/strict';
import { pathToFileURL } from 'node:url';

const sealDir = process.argv[2];
const load = (name) => import(pathToFileURL(`${sealDir}/${name}`).href);
const { CkksSession } = await load('session.mjs');
const { CountedOps } = await load('ops.mjs');
const { evaluatePolynomial, evaluatePlain, polynomialDepth } = await load('poly_eval.mjs');

const levels = 4;
const session = await CkksSession.create({ n: 8192, levels });
const cases = [
  { name: 'odd degree 7 on [-4, 4]', lo: -4, hi: 4, coeffs: [0, 1.18, 0, -0.41, 0, 0.13, 0, -0.02], multiplies: 5 },
  { name: 'degree 3 on [-6, 2]', lo: -6, hi: 2, coeffs: [0.5, 0.25, -0.03, -0.02], multiplies: 2 },
];
for (const c of cases) {
  const ops = new CountedOps(session);
  const slots = session.slots;
  const x = Float64Array.from({ length: slots }, (_, i) => c.lo + ((c.hi - c.lo) * i) / (slots - 1));
  const alpha = 2 / (c.hi - c.lo), beta = -(c.hi + c.lo) / (c.hi - c.lo);
  const ctX = ops.encrypt(x, levels);
  const u = ops.multiplyValuesTo(ctX, new Float64Array(slots).fill(alpha), session.canonicalScale(levels - 1));
  ops.addValuesInPlace(u, new Float64Array(slots).fill(beta));
  // Keep the even slots, zero the odd ones.
  const mask = { name: 'even', values: Float64Array.from({ length: slots }, (_, i) => +(i % 2 === 0)) };
  const depth = polynomialDepth(c.coeffs);
  const y = evaluatePolynomial(ops, u, c.coeffs, mask, session.canonicalScale(levels - 1 - depth));
  assert.equal(session.levelOf(y), levels - 1 - depth, `${c.name}: result level`);
  const out = ops.decrypt(y);
  let maxError = 0;
  for (let i = 0; i < slots; ++i) {
    const want = i % 2 === 0 ? evaluatePlain(c.coeffs, alpha * x[i] + beta) : 0;
    maxError = Math.max(maxError, Math.abs(out[i] - want));
  }
  console.log(`${c.name}: depth ${depth}, max |encrypted - plaintext| = ${maxError.toExponential(2)}`);
  assert.ok(maxError < 1e-3, `${c.name}: error ${maxError} >= 1e-3`);
  assert.equal(ops.counter.totals().multiply, c.multiplies, `${c.name}: ciphertext multiplies`);
  ops.arena.release();
}
console.log('he_seal_poly: ok');
