// CountedOps: every CKKS operation the encrypted runs perform goes through
// here, so that each is counted by (operation, level) and timed. The counts
// times the per-operation costs measured beforehand (costs.mjs) give the
// estimated time that `ppml he bench` compares with the measured one.
//
// Operation names (also the keys of the cost table):
//   encode        encode a vector at a level (incl. the plaintext mod switch)
//   encrypt       public-key encryption at a level
//   decrypt       decryption (level of the ciphertext)
//   decode        decoding a decrypted plaintext
//   multiply_plain, rescale, multiply (ct x ct), relinearize, rotate,
//   add (ct + ct, also sub), add_plain, mod_switch (down one level)
//
// Memory: SEAL objects live in WebAssembly memory that JavaScript's garbage
// collector does not see. Every ciphertext made here is registered in the
// current Arena; the caller keeps what it needs (arena.keep) and releases the
// rest at the end of a step.
//
// Thread safety: none.
import { performance } from 'node:perf_hooks';

export const OPERATIONS = ['encode', 'encrypt', 'decrypt', 'decode', 'multiply_plain', 'rescale', 'multiply',
                           'relinearize', 'rotate', 'add', 'add_plain', 'mod_switch'];

// Owns SEAL objects until released; kept objects survive a release.
export class Arena {
  constructor() { this.objects = new Set(); }
  add(object) { this.objects.add(object); return object; }
  keep(object) { this.objects.delete(object); return object; }
  release() {
    for (const object of this.objects) object.delete();
    this.objects.clear();
  }
}

export class OpCounter {
  constructor() { this.entries = new Map(); }  // "op@level" -> {op, level, count, ms}
  record(op, level, ms) {
    const key = `${op}@${level}`;
    let entry = this.entries.get(key);
    if (!entry) this.entries.set(key, entry = { op, level, count: 0, ms: 0 });
    entry.count += 1;
    entry.ms += ms;
  }
  // {op: count} summed over levels.
  totals() {
    const out = Object.fromEntries(OPERATIONS.map((op) => [op, 0]));
    for (const { op, count } of this.entries.values()) out[op] += count;
    return out;
  }
  measuredOpMs() {
    let ms = 0;
    for (const entry of this.entries.values()) ms += entry.ms;
    return ms;
  }
  // Sum of count x cost(op, level); costs.perLevel[op][level] in ms.
  estimateMs(costs) {
    let ms = 0;
    for (const { op, level, count } of this.entries.values()) {
      const cost = costs.perLevel[op]?.[level];
      if (cost === undefined) throw new Error(`no measured cost for ${op} at level ${level}`);
      ms += count * cost;
    }
    return ms;
  }
}

export class CountedOps {
  constructor(session, counter = new OpCounter()) {
    this.s = session;
    this.ev = session.evaluator;
    this.counter = counter;
    this.arena = new Arena();
    // Encoded plaintexts reused across ciphertexts: model weights for the
    // whole run, polynomial coefficients for one time step.
    this.caches = { model: new Map(), step: new Map() };
  }

  clearCache(scope) {
    for (const plain of this.caches[scope].values()) plain.delete();
    this.caches[scope].clear();
  }

  // The plaintext of `values` (an array or a function making it) at
  // scale/level, encoded once per cache key when `cache` = {key, scope}.
  plaintext(values, scale, level, cache) {
    const make = () => this.encode(typeof values === 'function' ? values() : values, scale, level);
    if (!cache) return { plain: make(), owned: true };
    const key = `${cache.key}|${scale}|${level}`;
    const map = this.caches[cache.scope];
    if (!map.has(key)) map.set(key, make());
    return { plain: map.get(key), owned: false };
  }

  timed(op, level, fn) {
    const start = performance.now();
    const result = fn();
    this.counter.record(op, level, performance.now() - start);
    return result;
  }
  own(ct) { return this.arena.add(ct); }

  // A plaintext of `values` (zero-padded to the slot count) at `level` with `scale`.
  encode(values, scale, level) {
    const padded = new Float64Array(this.s.slots);
    padded.set(values.length > this.s.slots ? values.subarray(0, this.s.slots) : values);
    return this.timed('encode', level, () => {
      const plain = this.s.encoder.encode(padded, scale);
      if (level < this.s.levels) this.ev.plainModSwitchTo(plain, this.s.parmsId(level), plain);
      return plain;
    });
  }

  // Encrypts `values` at `level` with `scale` (canonical for the level unless given).
  encrypt(values, level, scale = this.s.canonicalScale(level)) {
    const plain = this.encode(values, scale, level);
    const ct = this.timed('encrypt', level, () => this.s.encryptor.encrypt(plain));
    plain.delete();
    return this.own(ct);
  }

  decrypt(ct) {
    const level = this.s.levelOf(ct);
    const plain = this.timed('decrypt', level, () => this.s.decryptor.decrypt(ct));
    const values = this.timed('decode', level, () => this.s.encoder.decode(plain));
    plain.delete();
    return values;
  }

  // ct * plain without rescale (the caller rescales once after summing products).
  multiplyPlainNoRescale(ct, plain) {
    return this.own(this.timed('multiply_plain', this.s.levelOf(ct), () => this.ev.multiplyPlain(ct, plain)));
  }
  rescaleInPlace(ct) {
    this.timed('rescale', this.s.levelOf(ct), () => this.ev.rescaleToNext(ct, ct));
    return ct;
  }

  // The scale a plaintext needs so that ct * plaintext, rescaled, has `targetScale`.
  plainScaleFor(ct, targetScale) {
    return (targetScale * this.s.prime(this.s.levelOf(ct))) / ct.scale;
  }

  // ct * values, rescaled, with the result's scale exactly `targetScale`.
  multiplyValuesTo(ct, values, targetScale, cache = null) {
    const level = this.s.levelOf(ct);
    const { plain, owned } = this.plaintext(values, this.plainScaleFor(ct, targetScale), level, cache);
    const product = this.multiplyPlainNoRescale(ct, plain);
    if (owned) plain.delete();
    return this.snapScale(this.rescaleInPlace(product), targetScale);
  }

  // Floating-point rounding makes a computed scale differ from the planned one
  // in the last bits, which SEAL's exact comparison would reject; anything
  // larger is a planning error.
  snapScale(ct, targetScale) {
    if (Math.abs(ct.scale - targetScale) > 1e-9 * targetScale) {
      throw new Error(`scale ${ct.scale} is not the planned ${targetScale}`);
    }
    ct.setScale(targetScale);
    return ct;
  }

  // a * b, relinearized and rescaled. Both at the same level; `targetScale`
  // is the planned scale of the result (default: canonical when both are).
  multiply(a, b, targetScale = (a.scale * b.scale) / this.s.prime(this.s.levelOf(a))) {
    const level = this.s.levelOf(a);
    if (level !== this.s.levelOf(b)) throw new Error(`multiply: levels ${level} and ${this.s.levelOf(b)} differ`);
    const product = this.own(this.timed('multiply', level, () => this.ev.multiply(a, b)));
    this.timed('relinearize', level, () => this.ev.relinearize(product, this.s.relinKeys, product));
    return this.snapScale(this.rescaleInPlace(product), targetScale);
  }

  rotate(ct, step) {
    return this.own(this.timed('rotate', this.s.levelOf(ct), () => this.ev.rotateVector(ct, step, this.s.galoisKeys)));
  }

  addInPlace(accumulator, ct) {
    this.checkScales('add', accumulator, ct);
    this.timed('add', this.s.levelOf(accumulator), () => this.ev.add(accumulator, ct, accumulator));
    return accumulator;
  }
  add(a, b) {
    this.checkScales('add', a, b);
    return this.own(this.timed('add', this.s.levelOf(a), () => this.ev.add(a, b)));
  }
  sub(a, b) {
    this.checkScales('sub', a, b);
    return this.own(this.timed('add', this.s.levelOf(a), () => this.ev.sub(a, b)));
  }

  // ct + values (encoded at ct's level and scale), in place.
  addValuesInPlace(ct, values, cache = null) {
    const level = this.s.levelOf(ct);
    const { plain, owned } = this.plaintext(values, ct.scale, level, cache);
    this.timed('add_plain', level, () => this.ev.addPlain(ct, plain, ct));
    if (owned) plain.delete();
    return ct;
  }

  // A copy of ct at `level` (<= its own); the scale is unchanged. Counted per level dropped.
  modSwitchTo(ct, level) {
    const from = this.s.levelOf(ct);
    if (level > from) throw new Error(`mod switch from level ${from} up to ${level}`);
    const out = this.own(ct.clone());
    for (let l = from; l > level; --l) this.timed('mod_switch', l, () => this.ev.cipherModSwitchToNext(out, out));
    return out;
  }

  checkScales(op, a, b) {
    const la = this.s.levelOf(a), lb = this.s.levelOf(b);
    if (la !== lb) throw new Error(`${op}: levels ${la} and ${lb} differ`);
    if (Math.abs(a.scale - b.scale) > 1e-9 * a.scale) {
      throw new Error(`${op}: scales ${a.scale} and ${b.scale} differ at level ${la}`);
    }
  }
}
