// Encrypted evaluation of a polynomial p(u) = sum_k c_k u^k (given in the
// power basis, u in [-1, 1]) with the least multiplicative depth:
// ceil(log2(deg + 1)) levels, the coefficients' plaintext multiplies included.
//
// Chebyshev basis. A degree-17 tanh fit has power-basis coefficients up to
// ~13000 of alternating sign (sum of |c_k| ~ 46000), so CKKS noise on u^k
// would be amplified ~2^15 by the cancellation; in the Chebyshev basis the
// same polynomial's coefficients are below ~1.5. So p is converted,
// p = sum_k a_k T_k(u), and evaluated there.
//
// Power-of-two baby-step giant-step. With m the largest power of two <= deg:
//
//   p = low + T_m * high,   deg low < m,  deg high <= deg - m < m
//   (T_m T_j = (T_{m+j} + T_{m-j}) / 2 gives high and low from a_k)
//
// applied recursively down to leaves a0 + a1*T_1 = a0 + a1*u, where a1*u is
// the only plaintext multiply (one level, taken from u, which has the most
// levels left). T_{2m} = 2 T_m^2 - 1 costs one squaring (the doubling is an
// addition); each split one ciphertext multiply. Zero coefficients are
// skipped, so an odd polynomial (tanh) has no constant leaves at all.
//
// Every leaf's coefficients are multiplied by `mask` ({name, values}: a slot
// vector, 1 where the result is wanted, 0 elsewhere; a named mask lets the
// coefficient plaintexts be cached for the time step): the result is exactly zero outside the
// mask at no extra level, which the RNN layouts rely on. Intermediate powers
// still see the unmasked slots.
//
// Scales are planned top-down: the caller asks for the result at
// (levelOf(u) - depth, targetScale); each split asks its high part for the
// scale that, multiplied by T_m's scale and rescaled by the prime of that
// level, gives the target; leaves hit their target through the plaintext's
// scale (CountedOps.multiplyValuesTo).
//
// Thread safety: none.

// Coefficients without trailing exact zeros.
export function trimPolynomial(coeffs) {
  let end = coeffs.length;
  while (end > 0 && coeffs[end - 1] === 0) --end;
  return coeffs.slice(0, end);
}

export function polynomialDegree(coeffs) {
  return Math.max(0, trimPolynomial(coeffs).length - 1);
}

export function polynomialDepth(coeffs) {
  const degree = polynomialDegree(coeffs);
  return degree === 0 ? 0 : Math.ceil(Math.log2(degree + 1));
}

// Plaintext value of the polynomial at u (Horner).
export function evaluatePlain(coeffs, u) {
  let y = 0;
  for (let k = coeffs.length - 1; k >= 0; --k) y = y * u + coeffs[k];
  return y;
}

// The same polynomial in the Chebyshev basis: a with p(u) = sum_k a_k T_k(u).
// Built from u^(k+1) = u * u^k and u T_j = (T_{j+1} + T_{|j-1|}) / 2; terms of
// the other parity stay exact zeros, so an odd polynomial stays odd.
export function powerToChebyshev(coeffs) {
  const n = coeffs.length;
  const a = new Array(n).fill(0);
  let power = new Array(n).fill(0);  // u^k in the Chebyshev basis
  power[0] = 1;
  for (let k = 0; k < n; ++k) {
    if (k > 0) {
      const next = new Array(n).fill(0);
      for (let j = 0; j < k; ++j) {
        if (power[j] === 0) continue;
        if (j === 0) {
          next[1] += power[0];
        } else {
          next[j + 1] += power[j] / 2;
          next[j - 1] += power[j] / 2;
        }
      }
      power = next;
    }
    if (coeffs[k] === 0) continue;
    for (let j = 0; j <= k; ++j) a[j] += coeffs[k] * power[j];
  }
  return a;
}

// T_(2^k)(u) by T_2m = 2 T_m^2 - 1, with copies switched down to lower levels on demand.
class ChebyshevLadder {
  constructor(ops, u) {
    this.ops = ops;
    this.powers = [u];                 // powers[k] = T_(2^k)(u) at its natural level
    this.switched = new Map();         // "k@level" -> copy at that level
  }
  at(k, level) {
    while (this.powers.length <= k) {
      const last = this.powers[this.powers.length - 1];
      const square = this.ops.multiply(last, last);
      const next = this.ops.add(square, square);
      this.ops.addValuesInPlace(next, () => new Float64Array(this.ops.s.slots).fill(-1),
                                { key: 'minus-one', scope: 'model' });
      this.powers.push(next);
    }
    const natural = this.powers[k];
    const naturalLevel = this.ops.s.levelOf(natural);
    if (level > naturalLevel) throw new Error(`T_${2 ** k} is at level ${naturalLevel}, needed at ${level}`);
    if (level === naturalLevel) return natural;
    const key = `${k}@${level}`;
    if (!this.switched.has(key)) this.switched.set(key, this.ops.modSwitchTo(natural, level));
    return this.switched.get(key);
  }
}

// mask * c, lazily, with a cache key when the mask has a name (see CountedOps.plaintext).
function scaled(mask, c) {
  const values = () => {
    const out = new Float64Array(mask.values.length);
    for (let i = 0; i < out.length; ++i) out[i] = mask.values[i] * c;
    return out;
  };
  return { values, cache: mask.name ? { key: `${mask.name}*${c}`, scope: 'step' } : null };
}

function multiplyByConstant(ops, ct, mask, c, targetScale) {
  const { values, cache } = scaled(mask, c);
  return ops.multiplyValuesTo(ct, values, targetScale, cache);
}

function addConstant(ops, ct, mask, c) {
  const { values, cache } = scaled(mask, c);
  return ops.addValuesInPlace(ct, values, cache);
}

// Splits Chebyshev coefficients a (degree d >= m) as low + T_m * high.
function splitChebyshev(a, m) {
  const d = a.length - 1;
  const high = [a[m]];
  const low = a.slice(0, m);
  for (let j = 1; j <= d - m; ++j) {
    high.push(2 * a[m + j]);
    low[m - j] -= a[m + j];
  }
  return { low, high };
}

// Evaluates Chebyshev coefficients on ladder's u; result {ct} at outLevel with
// targetScale, or {constant} when the part is a constant (no ciphertext made).
function evaluatePart(ops, ladder, coeffs, mask, outLevel, targetScale) {
  const c = trimPolynomial(coeffs);
  const degree = c.length - 1;
  if (degree <= 0) return { constant: c.length ? c[0] : 0 };
  if (degree === 1) {
    const y = multiplyByConstant(ops, ladder.at(0, outLevel + 1), mask, c[1], targetScale);
    if (c[0] !== 0) addConstant(ops, y, mask, c[0]);
    return { ct: y };
  }
  const m = 2 ** Math.floor(Math.log2(degree));
  const k = Math.log2(m);
  const giant = ladder.at(k, outLevel + 1);
  const parts = splitChebyshev(c, m);
  const high = evaluatePart(ops, ladder, parts.high, mask, outLevel + 1,
                            (targetScale * ops.s.prime(outLevel + 1)) / giant.scale);
  const y = high.ct ? ops.multiply(high.ct, giant, targetScale)
                    : multiplyByConstant(ops, giant, mask, high.constant, targetScale);
  const low = evaluatePart(ops, ladder, parts.low, mask, outLevel, targetScale);
  if (low.ct) {
    ops.addInPlace(y, low.ct);
  } else if (low.constant !== 0) {
    addConstant(ops, y, mask, low.constant);
  }
  return { ct: y };
}

// p(u) at level levelOf(u) - polynomialDepth(coeffs) with scale `targetScale`.
// Needs levelOf(u) >= depth; degree >= 1. Temporaries stay in ops.arena.
export function evaluatePolynomial(ops, u, coeffs, mask, targetScale) {
  const depth = polynomialDepth(coeffs);
  if (depth === 0) throw new Error('a constant polynomial has nothing to evaluate encrypted');
  const level = ops.s.levelOf(u);
  if (level < depth) throw new Error(`a degree-${polynomialDegree(coeffs)} polynomial needs ${depth} levels, the input has ${level}`);
  const ladder = new ChebyshevLadder(ops, u);
  return evaluatePart(ops, ladder, powerToChebyshev(trimPolynomial(coeffs)), mask, level - depth, targetScale).ct;
}
