// The approximated RNN or GRU of a spec run end to end under CKKS.
//
// Who does what. The client (key holder) encrypts each time step's 28 inputs
// for a ciphertext of 8 images, and decrypts the 10 logits at the end. The
// server does every matrix product, activation polynomial and gate update on
// ciphertexts. SEAL has no bootstrapping, so when a ciphertext has too few
// levels left for what comes next, the key holder *refreshes* it: decrypts,
// re-encrypts at the top level -- and, for the hidden state between steps,
// in the replicated layout the next product needs (which saves the server the
// replication rotations). Every refresh is counted and reported; its
// decrypt/encode/encrypt are counted operations like all others.
//
// Per step, at level l of the hidden state (layouts: layout.mjs):
//   RNN: u = rotsum(aU (.) H + aW (.) X) + (a b + c)          1 level
//        h = p_t(u), masked to the output slots               depth(p_t) levels
//        where a = 2/(hi-lo), c = -(hi+lo)/(hi-lo) fold the interval map into the weights.
//   GRU: z, r: sigmoid fits; n: tanh fit; h' = n + z (.) (h - n)
//        r_pre, z_pre, nh = Un h + bn_h (matrix products)      1
//        r = s_t(r_pre)                                      depth(s_t)
//        n_pre = r (.) nh + (Wn x + bn_x)                     1
//        n = p_t(n_pre)                                      depth(p_t)
//        h' = n + z (.) (h_out - n)                          1
//        where h_out is the previous state in this step's output layout (an
//        identity product of the replicated state).
// Ciphertexts that meet at one level get planned scales (session.mjs) so
// that additions are exact.
//
// Thread safety: none.
import { BlockLayout } from './layout.mjs';
import { evaluatePolynomial, polynomialDepth } from './poly_eval.mjs';
import { argmax, stepInput } from './plain_model.mjs';

function affine(fit) {
  return { alpha: 2 / (fit.hi - fit.lo), beta: -(fit.hi + fit.lo) / (fit.hi - fit.lo) };
}
function scaleMatrix(M, alpha) { return M.map((row) => row.map((w) => w * alpha)); }
function identity(n) { return Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => +(i === j))); }

// Levels the spec's cells need; throws naming the cell when one cannot fit the budget.
export function checkDepths(spec) {
  for (const [t, cell] of spec.cells.entries()) {
    for (const name of spec.cell === 'gru' ? ['tanh', 'sigmoid'] : ['tanh']) {
      const depth = polynomialDepth(cell[name].coeffs);
      if (depth + 1 > spec.budget) {
        throw new Error(`${spec.file}: cells[${t}].${name}: degree ${cell[name].coeffs.length - 1} needs ${depth} levels ` +
                        `plus 1 for the product before it, more than the budget of ${spec.budget}`);
      }
    }
  }
}

export class EncryptedRecurrentRun {
  constructor(ops, spec) {
    this.ops = ops;
    this.s = ops.s;
    this.spec = spec;
    this.layout = BlockLayout.forSizes([spec.hiddenSize, spec.inputSize, spec.classes], this.s.slots);
    this.top = this.s.levels;
    this.refreshes = { state: 0, mid_cell: 0 };  // ciphertexts refreshed, summed over groups
    checkDepths(spec);
  }

  static rotationSteps(spec, slots) {
    return BlockLayout.forSizes([spec.hiddenSize, spec.inputSize, spec.classes], slots).allRotationSteps();
  }

  // Runs `samples`; returns per-image encrypted logits and predictions.
  // `checkpoint(t)` is called after every 7th step (cost sampling, untimed by the caller).
  run(samples, log = () => {}, checkpoint = () => {}) {
    const per = this.layout.imagesPerCiphertext;
    const groups = [];
    for (let i = 0; i < samples.length; i += per) {
      const members = samples.slice(i, i + per);
      const H0 = this.ops.encrypt(this.layout.packInput('T', members.map(() => [])), this.top);
      groups.push({ samples: members, layout: 'T', H: this.ops.arena.keep(H0) });
    }
    for (let t = 0; t < this.spec.steps; ++t) {
      for (const group of groups) {
        const next = this.spec.cell === 'rnn' ? this.rnnStep(group, t) : this.gruStep(group, t);
        group.H.delete();
        group.H = this.ops.arena.keep(next);
        this.ops.arena.release();
      }
      this.ops.clearCache('step');
      if (t % 7 === 6 || t === this.spec.steps - 1) {
        log(`rnn: step ${t + 1}/${this.spec.steps}, state at level ${this.s.levelOf(groups[0].H)}, ` +
            `refreshes so far ${this.refreshes.state + this.refreshes.mid_cell}`);
        if (t < this.spec.steps - 1) checkpoint(t);
      }
    }
    const results = [];
    for (const group of groups) {
      results.push(...this.logits(group));
      group.H.delete();
      this.ops.arena.release();
    }
    this.ops.clearCache('model');
    return { results, groups: groups.length, refreshesPerImage: this.refreshesPerGroup(groups.length) };
  }

  refreshesPerGroup(groupCount) {
    return { state: this.refreshes.state / groupCount, mid_cell: this.refreshes.mid_cell / groupCount };
  }

  // Levels the state needs at the start of step t (t == steps: the final product).
  levelsNeededAt(t) {
    if (t >= this.spec.steps) return 1;
    const cell = this.spec.cells[t];
    if (this.spec.cell === 'rnn') return 1 + polynomialDepth(cell.tanh.coeffs);
    return Math.min(this.top, 3 + polynomialDepth(cell.sigmoid.coeffs) + polynomialDepth(cell.tanh.coeffs));
  }

  // y = sum_k M_k v_k (+ bias at the output slots), every term {ct, key, matrix()} in
  // input layout `input` at one level and scale. Result at level-1 with targetScale.
  matVec(terms, input, bias, biasKey, targetScale) {
    const ops = this.ops;
    const level = this.s.levelOf(terms[0].ct);
    let sum = null;
    for (const term of terms) {
      const { plain } = ops.plaintext(() => this.layout.packMatrix(input, term.matrix()),
                                      ops.plainScaleFor(term.ct, targetScale), level,
                                      { key: `${term.key}/${input}`, scope: 'model' });
      const product = ops.multiplyPlainNoRescale(term.ct, plain);
      sum = sum ? ops.addInPlace(sum, product) : product;
    }
    ops.snapScale(ops.rescaleInPlace(sum), targetScale);
    for (const step of this.layout.sumSteps(input)) ops.addInPlace(sum, ops.rotate(sum, step));
    const output = BlockLayout.outputOf(input);
    if (bias) {
      ops.addValuesInPlace(sum, () => this.layout.packOutputEverywhere(output, bias),
                           { key: `${biasKey}/${output}`, scope: 'model' });
    }
    return sum;
  }

  // The client encrypts step t's inputs in layout `input` at `level` with `scale`.
  encryptInputs(group, t, input, level, scale) {
    const vectors = group.samples.map((s) => stepInput(this.spec, s.pixels, t));
    return this.ops.encrypt(this.layout.packInput(input, vectors), level, scale);
  }

  // Key holder: decrypts ct (masked, output layout `output`) and re-encrypts it
  // at the top level, in `asInput` layout (replicated) or as it was.
  refresh(group, ct, output, asInput, kind) {
    const values = this.ops.decrypt(ct);
    const vectors = group.samples.map((_, g) => this.layout.readOutput(output, values, g, this.spec.hiddenSize));
    const packed = asInput ? this.layout.packInput(asInput, vectors) : this.layout.packOutput(output, vectors);
    this.refreshes[kind] += 1;
    return this.ops.encrypt(packed, this.top);
  }

  // The state for step t from h (masked, output layout `output`): replicated by
  // rotations when it has the levels step t needs, else refreshed by the key holder.
  nextState(group, h, output, t) {
    const replicated = BlockLayout.replicatedFrom(output);
    group.layout = replicated;
    if (this.s.levelOf(h) >= this.levelsNeededAt(t)) {
      let r = h;
      for (const step of this.layout.replicateSteps(output)) r = this.ops.add(r, this.ops.rotate(r, step));
      return r;
    }
    return this.refresh(group, h, output, replicated, 'state');
  }

  mask(output) { return this.layout.outputMask(output, this.spec.hiddenSize); }

  rnnStep(group, t) {
    const { ops, s, spec } = this;
    const fit = spec.cells[t].tanh;
    const depth = polynomialDepth(fit.coeffs);
    const { alpha, beta } = affine(fit);
    const input = group.layout, output = BlockLayout.outputOf(input);
    const H = group.H, level = s.levelOf(H);
    const X = this.encryptInputs(group, t, input, level, H.scale);
    const w = spec.weights;
    const pre = this.matVec([{ ct: H, key: `U*${alpha}`, matrix: () => scaleMatrix(w.U, alpha) },
                             { ct: X, key: `W*${alpha}`, matrix: () => scaleMatrix(w.W, alpha) }],
                            input, w.b.map((v) => alpha * v + beta), `b*${alpha}+${beta}`, s.canonicalScale(level - 1));
    const h = evaluatePolynomial(ops, pre, fit.coeffs, this.mask(output), s.canonicalScale(level - 1 - depth));
    return this.nextState(group, h, output, t + 1);
  }

  // ct switched down to `level` (itself when already there).
  at(ct, level) { return this.s.levelOf(ct) === level ? ct : this.ops.modSwitchTo(ct, level); }

  // A gate pre-activation needing `depth` levels for its polynomial and one more after:
  // refreshed (same layout) when it has fewer.
  ensureLevels(group, ct, output, depth) {
    return this.s.levelOf(ct) >= depth + 1 ? ct : this.refresh(group, ct, output, null, 'mid_cell');
  }

  gruStep(group, t) {
    const { ops, s, spec } = this;
    const w = spec.weights;
    const sig = spec.cells[t].sigmoid, tanh = spec.cells[t].tanh;
    const Ds = polynomialDepth(sig.coeffs), Dt = polynomialDepth(tanh.coeffs);
    const as = affine(sig), at = affine(tanh);
    const input = group.layout, output = BlockLayout.outputOf(input);
    const mask = this.mask(output);
    const H = group.H, level = s.levelOf(H);
    const X = this.encryptInputs(group, t, input, level, H.scale);
    const gate = (g, a) => [{ ct: H, key: `U${g}*${a.alpha}`, matrix: () => scaleMatrix(w[`U${g}`], a.alpha) },
                            { ct: X, key: `W${g}*${a.alpha}`, matrix: () => scaleMatrix(w[`W${g}`], a.alpha) }];
    const gateBias = (b, a) => b.map((v) => a.alpha * v + a.beta);

    // r, then n_pre = r (.) nh + nx at the product level pr-1.
    let rPre = this.matVec(gate('r', as), input, gateBias(w.br, as), `br*${as.alpha}+${as.beta}`,
                           s.canonicalScale(level - 1));
    rPre = this.ensureLevels(group, rPre, output, Ds);
    const levelR = s.levelOf(rPre) - Ds;
    const pr = Math.min(levelR, level - 1);
    const nh = this.matVec([{ ct: this.at(H, pr + 1), key: `Un*${at.alpha}`, matrix: () => scaleMatrix(w.Un, at.alpha) }],
                           input, w.bn_h.map((v) => at.alpha * v), `bn_h*${at.alpha}`, s.canonicalScale(pr));
    const r = this.at(evaluatePolynomial(ops, rPre, sig.coeffs, mask, s.canonicalScale(pr)), pr);
    const nx = this.matVec([{ ct: this.at(X, pr), key: `Wn*${at.alpha}`, matrix: () => scaleMatrix(w.Wn, at.alpha) }],
                           input, gateBias(w.bn_x, at), `bn_x*${at.alpha}+${at.beta}`, s.canonicalScale(pr - 1));
    let nPre = ops.addInPlace(ops.multiply(r, nh), nx);
    nPre = this.ensureLevels(group, nPre, output, Dt);
    const levelN = s.levelOf(nPre) - Dt;

    let zPre = this.matVec(gate('z', as), input, gateBias(w.bz, as), `bz*${as.alpha}+${as.beta}`,
                           s.canonicalScale(level - 1));
    zPre = this.ensureLevels(group, zPre, output, Ds);
    const levelZ = s.levelOf(zPre) - Ds;

    // h' = n + z (.) (h_out - n) at level p-1, scale S_{p-1}: n and h_out carry
    // S_{p-1}; z carries q_p so that z * d rescaled by q_p keeps S_{p-1}.
    const levelD = Math.min(levelN, level - 1);
    const p = Math.min(levelZ, levelD);
    const T = s.canonicalScale(p - 1);
    const n = evaluatePolynomial(ops, nPre, tanh.coeffs, mask, T);
    const hOut = this.matVec([{ ct: this.at(H, levelD + 1), key: 'I', matrix: () => identity(spec.hiddenSize) }],
                             input, null, null, T);
    const d = this.at(ops.sub(hOut, this.at(n, levelD)), p);
    const z = this.at(evaluatePolynomial(ops, zPre, sig.coeffs, mask, s.prime(p)), p);
    const hNew = ops.addInPlace(ops.multiply(z, d, T), this.at(n, p - 1));
    return this.nextState(group, hNew, output, t + 1);
  }

  // The client's view: logits of each image of the group (decrypted), and its prediction.
  logits(group) {
    const { s, spec } = this;
    const input = group.layout, output = BlockLayout.outputOf(input);
    const level = s.levelOf(group.H);
    const ct = this.matVec([{ ct: group.H, key: 'fcW', matrix: () => spec.weights.fcW }], input, spec.weights.fcB, 'fcB',
                           s.canonicalScale(level - 1));
    const values = this.ops.decrypt(ct);
    return group.samples.map((sample, g) => {
      const logits = this.layout.readOutput(output, values, g, spec.classes);
      return { sample, logits, prediction: argmax(logits) };
    });
  }
}
