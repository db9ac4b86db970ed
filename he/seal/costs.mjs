// Per-operation CKKS costs: the median wall time of each CountedOps operation
// at each level, measured on this session's parameters and keys. The
// encrypted runs' estimate is sum over (op, level) of count x cost.
//
// The summary (top level, a fresh ciphertext) is the cost model's input,
// written by `ckks.mjs costs --json` and read by `ppml he search --costs FILE`:
//   {"n", "levels", "scale_bits", "encrypt_ms", "plain_multiply_ms" (multiply by
//    a plaintext + rescale), "multiply_relin_rescale_ms", "rotate_ms", "add_ms",
//    "per_level": {op: {level: ms}}}
import { performance } from 'node:perf_hooks';
import { CountedOps, OPERATIONS } from './ops.mjs';

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

// Time of fn() in ms; fn returns SEAL objects (or one) to delete untimed.
function timeOnce(fn) {
  const start = performance.now();
  const made = fn();
  const ms = performance.now() - start;
  for (const object of [made].flat()) object?.delete?.();
  return ms;
}

// Median of `reps` runs after one untimed warm-up (WebAssembly tier-up, allocator).
function measure(reps, fn) {
  timeOnce(fn);
  return median(Array.from({ length: reps }, () => timeOnce(fn)));
}

// Costs of every operation at each level in `levels` (default: all).
// The session needs a rotation key for step 1.
export function measureCosts(session, { reps = 3, levels = null, log = () => {} } = {}) {
  const s = session;
  const ev = s.evaluator;
  const ops = new CountedOps(s);
  const perLevel = Object.fromEntries(OPERATIONS.map((op) => [op, {}]));
  const values = Float64Array.from({ length: s.slots }, (_, i) => Math.sin(i) * 0.5);
  const wanted = levels ?? Array.from({ length: s.levels + 1 }, (_, l) => l);
  for (const level of wanted) {
    const started = performance.now();
    const scale = s.canonicalScale(level);
    const ct = ops.encrypt(values, level);
    const other = ops.encrypt(values, level);
    const plain = ops.encode(values, scale, level);
    const cost = perLevel;
    cost.encode[level] = measure(reps, () => ops.encode(values, scale, level));
    cost.encrypt[level] = measure(reps, () => s.encryptor.encrypt(plain));
    const decrypted = s.decryptor.decrypt(ct);
    cost.decrypt[level] = measure(reps, () => s.decryptor.decrypt(ct));
    cost.decode[level] = measure(reps, () => { s.encoder.decode(decrypted); return null; });
    decrypted.delete();
    cost.add[level] = measure(reps, () => ev.add(ct, other));
    cost.add_plain[level] = measure(reps, () => ev.addPlain(ct, plain));
    if (level > 0) {
      cost.multiply_plain[level] = measure(reps, () => ev.multiplyPlain(ct, plain));
      cost.mod_switch[level] = measure(reps, () => ev.cipherModSwitchToNext(ct));
      // Rescale and relinearize change their input: time them on fresh products.
      const product = () => ev.multiply(ct, other);
      cost.multiply[level] = measure(reps, product);
      const relinTimes = [], rescaleTimes = [];
      for (let i = 0; i <= reps; ++i) {
        const p = product();
        let t = performance.now();
        ev.relinearize(p, s.relinKeys, p);
        if (i > 0) relinTimes.push(performance.now() - t);
        t = performance.now();
        ev.rescaleToNext(p, p);
        if (i > 0) rescaleTimes.push(performance.now() - t);
        p.delete();
      }
      cost.relinearize[level] = median(relinTimes);
      cost.rescale[level] = median(rescaleTimes);
      cost.rotate[level] = measure(reps, () => ev.rotateVector(ct, s.rotationSteps[0], s.galoisKeys));
    } else {
      // Level 0 takes no multiply (its product would not fit q_0); rotations still work.
      cost.rotate[level] = measure(reps, () => ev.rotateVector(ct, s.rotationSteps[0], s.galoisKeys));
    }
    for (const object of [ct, other, plain]) object.delete();
    log(`costs: level ${level} measured in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  }
  return { perLevel };
}

export function costSummary(session, costs) {
  const top = session.levels;
  const at = (op) => costs.perLevel[op][top];
  return {
    n: session.n,
    levels: session.levels,
    scale_bits: session.scaleBits,
    encrypt_ms: at('encode') + at('encrypt'),
    plain_multiply_ms: at('multiply_plain') + at('rescale'),
    multiply_relin_rescale_ms: at('multiply') + at('relinearize') + at('rescale'),
    rotate_ms: at('rotate'),
    add_ms: at('add'),
    decrypt_ms: at('decrypt') + at('decode'),
    per_level: costs.perLevel,
  };
}

// The mean of several measurements of the same table (before, during and
// after a run, so that changes of load on a shared machine average out).
export function meanCosts(tables) {
  const perLevel = {};
  for (const [op, levels] of Object.entries(tables[0].perLevel)) {
    perLevel[op] = {};
    for (const level of Object.keys(levels)) {
      perLevel[op][level] = tables.reduce((sum, t) => sum + t.perLevel[op][level], 0) / tables.length;
    }
  }
  return { perLevel };
}
