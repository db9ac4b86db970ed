// Encrypted evaluation of a polynomial p(u) = sum_k c_k u^k (power basis) with
// the least multiplicative depth: ceil(log2(deg + 1)) levels, the
// coefficients' plaintext multiplies included.
//
// Power-of-two baby-step giant-step. With m the largest power of two <= deg:
//
//   p(u) = low(u) + u^m * high(u),   deg low < m,  deg high <= deg - m < m
//
// applied recursively down to leaves c0 + c1*u, where c1*u is the only
// plaintext multiply (one level, taken from u, which has the most levels
// left). u^m = ((u^2)^2)... costs log2(m) squarings; each split one
// ciphertext multiply. Zero coefficients are skipped, so an odd polynomial
// (tanh) has no constant leaves at all.
//
// Every leaf's coefficients are multiplied by `mask` ({name, values}: a slot
// vector, 1 where the result is wanted, 0 elsewhere; a named mask lets the
// coefficient plaintexts be cached for the time step): the result is exactly zero outside the
// mask at no extra level, which the RNN layouts rely on. Intermediate powers
// still see the unmasked slots.
//
// Scales are planned top-down: the caller asks for the result at
// (levelOf(u) - depth, targetScale); each split asks its high part for the
// scale that, multiplied by u^m's scale and rescaled by the prime of that
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

// u^(2^k) by repeated squaring, with copies switched down to lower levels on demand.
class PowerLadder {
  constructor(ops, u) {
    this.ops = ops;
    this.powers = [u];                 // powers[k] = u^(2^k) at its natural level
    this.switched = new Map();         // "k@level" -> copy at that level
  }
  at(k, level) {
    while (this.powers.length <= k) {
      const last = this.powers[this.powers.length - 1];
      this.powers.push(this.ops.multiply(last, last));
    }
    const natural = this.powers[k];
    const naturalLevel = this.ops.s.levelOf(natural);
    if (level > naturalLevel) throw new Error(`u^${2 ** k} is at level ${naturalLevel}, needed at ${level}`);
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

// Evaluates `coeffs` on ladder's u; result {ct} at outLevel with targetScale, or
// {constant} when the part is a constant (no ciphertext made).
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
  const high = evaluatePart(ops, ladder, c.slice(m), mask, outLevel + 1,
                            (targetScale * ops.s.prime(outLevel + 1)) / giant.scale);
  const y = high.ct ? ops.multiply(high.ct, giant, targetScale)
                    : multiplyByConstant(ops, giant, mask, high.constant, targetScale);
  const low = evaluatePart(ops, ladder, c.slice(0, m), mask, outLevel, targetScale);
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
  const ladder = new PowerLadder(ops, u);
  return evaluatePart(ops, ladder, coeffs, mask, level - depth, targetScale).ct;
}
