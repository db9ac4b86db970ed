#!/usr/bin/env node
// ckks.mjs: the real CKKS check of the HE-friendly RNNs (issue 10) with
// Microsoft SEAL 4.1 (npm node-seal, WebAssembly, one thread).
//
//   node ckks.mjs costs [--n 32768] [--levels 9] [--reps 3] [--json]
//       per-operation costs on a fresh ciphertext (the cost model's input)
//   node ckks.mjs poly --spec S [--n 16384] [--json]
//       every distinct fitted polynomial of the spec evaluated encrypted on
//       points across its interval: error against the plaintext polynomial
//   node ckks.mjs rnn --spec S [--images 20] [--n 16384] [--reps 5] [--json]
//       the approximated RNN/GRU encrypted end to end: agreement with the
//       plaintext simulation, time per image measured and estimated
//   node ckks.mjs bench --json-out FILE [--n 32768] [--spec S --images 20 --run-n 16384]
//       costs, and the rnn run when a spec is given, as one JSON object in
//       FILE (what `ppml he bench` runs); nothing on stdout
//
// Progress goes to stderr. With --json the last stdout line is one JSON
// object. Exit status: 0 ok, 1 failure (bad spec, run failed), 2 usage.
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { CkksSession } from './session.mjs';
import { CountedOps, OPERATIONS } from './ops.mjs';
import { costSummary, meanCosts, measureCosts } from './costs.mjs';
import { evaluatePolynomial, polynomialDegree, polynomialDepth } from './poly_eval.mjs';
import { isSpecError, loadSpec } from './spec.mjs';
import { EncryptedRecurrentRun, checkDepths } from './encrypted_rnn.mjs';
import { activation, argmax, plainLogits } from './plain_model.mjs';

const PROGRAM = 'ckks.mjs';

class UsageError extends Error {}

const log = (line) => process.stderr.write(`${line}\n`);

// --name value / --flag parsing against a table of {name: default}; flags default to false.
function parseOptions(args, defaults) {
  const options = { ...defaults };
  for (let i = 0; i < args.length; ++i) {
    const arg = args[i];
    if (!arg.startsWith('--')) throw new UsageError(`unexpected argument "${arg}"`);
    const name = arg.slice(2);
    if (!(name in defaults)) throw new UsageError(`unknown option ${arg}; known: ${Object.keys(defaults).map((k) => `--${k}`).join(' ')}`);
    if (typeof defaults[name] === 'boolean') {
      options[name] = true;
      continue;
    }
    if (i + 1 >= args.length) throw new UsageError(`${arg} needs a value`);
    const value = args[++i];
    if (typeof defaults[name] === 'number') {
      const number = Number(value);
      if (!Number.isInteger(number) || number <= 0) throw new UsageError(`${arg} must be a positive integer, got "${value}"`);
      options[name] = number;
    } else {
      options[name] = value;
    }
  }
  return options;
}

function round(x, digits = 3) { return Number(x.toFixed(digits)); }

async function runCosts({ n, levels, reps }) {
  const session = await CkksSession.create({ n, levels, rotationSteps: [1] });
  log(`costs: ${session.describe()}, median of ${reps} after a warm-up, top level`);
  const costs = measureCosts(session, { reps, levels: [session.levels], log });
  return costSummary(session, costs);
}

function printCosts(summary) {
  console.log(`CKKS per-operation costs, N=${summary.n} (${summary.levels} levels of ${summary.scale_bits} bits), ` +
              'fresh ciphertext, one thread:');
  for (const key of ['encrypt_ms', 'plain_multiply_ms', 'multiply_relin_rescale_ms', 'rotate_ms', 'add_ms', 'decrypt_ms']) {
    console.log(`  ${key.padEnd(28)} ${summary[key].toFixed(2)}`);
  }
}

// The distinct fitted polynomials of a spec, each with the cells that use it.
function distinctFits(spec) {
  const fits = new Map();
  spec.cells.forEach((cell, t) => {
    for (const kind of ['tanh', 'sigmoid']) {
      const fit = cell[kind];
      if (!fit) continue;
      const key = JSON.stringify([kind, fit.lo, fit.hi, fit.coeffs]);
      if (!fits.has(key)) fits.set(key, { kind, fit, steps: [] });
      fits.get(key).steps.push(t);
    }
  });
  return [...fits.values()];
}

async function runPoly({ spec: specFile, n }) {
  const spec = loadSpec(specFile);
  const session = await CkksSession.create({ n, levels: spec.budget });
  log(`poly: ${session.describe()}`);
  const ops = new CountedOps(session);
  const points = session.slots;
  const results = [];
  for (const { kind, fit, steps } of distinctFits(spec)) {
    const depth = polynomialDepth(fit.coeffs);
    if (depth + 1 > session.levels) {
      throw new Error(`${specFile}: the ${kind} fit of step ${steps[0]} needs ${depth + 1} levels, the budget is ${session.levels}`);
    }
    // x across [lo, hi], encrypted; u = (2x-(hi+lo))/(hi-lo) and p(u) computed encrypted.
    const x = Float64Array.from({ length: points }, (_, i) => fit.lo + ((fit.hi - fit.lo) * i) / (points - 1));
    const start = performance.now();
    const ctX = ops.encrypt(x, session.levels);
    const alpha = 2 / (fit.hi - fit.lo), beta = -(fit.hi + fit.lo) / (fit.hi - fit.lo);
    const u = ops.multiplyValuesTo(ctX, new Float64Array(points).fill(alpha), session.canonicalScale(session.levels - 1));
    ops.addValuesInPlace(u, new Float64Array(points).fill(beta));
    const mask = { name: null, values: new Float64Array(points).fill(1) };
    const y = evaluatePolynomial(ops, u, fit.coeffs, mask, session.canonicalScale(session.levels - 1 - depth));
    const decrypted = ops.decrypt(y);
    const ms = performance.now() - start;
    ops.arena.release();
    let maxError = 0, sumError = 0, maxAbs = 0, maxApprox = 0;
    const exact = kind === 'tanh' ? Math.tanh : (v) => 1 / (1 + Math.exp(-v));
    for (let i = 0; i < points; ++i) {
      const plain = activation(fit, x[i]);
      const error = Math.abs(decrypted[i] - plain);
      maxError = Math.max(maxError, error);
      sumError += error;
      maxAbs = Math.max(maxAbs, Math.abs(plain));
      maxApprox = Math.max(maxApprox, Math.abs(plain - exact(x[i])));
    }
    results.push({ kind, steps, degree: polynomialDegree(fit.coeffs), depth, lo: fit.lo, hi: fit.hi, points,
                   max_abs_error: maxError, mean_abs_error: sumError / points, max_abs_value: maxAbs,
                   max_abs_approximation_error: maxApprox, ms: round(ms, 1) });
  }
  return { n, levels: session.levels, scale_bits: session.scaleBits, polynomials: results,
           max_abs_error: Math.max(...results.map((r) => r.max_abs_error)) };
}

function printPoly(report) {
  console.log(`Encrypted polynomial evaluation, N=${report.n}, ${report.levels} levels of ${report.scale_bits} bits ` +
              `(error of the encrypted result against the plaintext polynomial):`);
  console.log('  kind     degree depth interval        steps        max|err|    mean|err|   max|p-f|');
  for (const r of report.polynomials) {
    const steps = r.steps.length > 4 ? `${r.steps.slice(0, 3).join(',')},..(${r.steps.length})` : r.steps.join(',');
    console.log(`  ${r.kind.padEnd(8)} ${String(r.degree).padStart(6)} ${String(r.depth).padStart(5)} ` +
                `[${r.lo}, ${r.hi}]`.padEnd(16) + ` ${steps.padEnd(12)} ${r.max_abs_error.toExponential(2).padStart(10)} ` +
                `${r.mean_abs_error.toExponential(2).padStart(11)} ${r.max_abs_approximation_error.toExponential(2).padStart(10)}`);
  }
}

async function runRnn({ spec: specFile, images, n, reps = 5 }) {
  const spec = loadSpec(specFile);
  const samples = spec.samples.slice(0, images);
  if (samples.length < images) log(`rnn: ${specFile} has only ${samples.length} test samples; running those`);
  const keysStart = performance.now();
  const session = await CkksSession.create({ n, levels: spec.budget,
                                             rotationSteps: EncryptedRecurrentRun.rotationSteps(spec, n / 2) });
  const keySeconds = (performance.now() - keysStart) / 1000;
  log(`rnn: ${spec.cell}, ${spec.steps} steps, ${samples.length} images; ${session.describe()}; ` +
      `keys in ${keySeconds.toFixed(1)} s`);
  // Costs at every level, with this run's parameters and keys, measured in
  // this process before the run, every 7 steps during it (outside its timed
  // part) and after it: the estimate uses their mean, so that the changing
  // load of a shared machine is sampled where the run meets it.
  log('rnn: measuring per-operation costs at every level for the estimate');
  const costSamples = [measureCosts(session, { reps })];
  const ops = new CountedOps(session);
  const run = new EncryptedRecurrentRun(ops, spec);
  let untimedMs = 0;
  const checkpoint = () => {
    const t0 = performance.now();
    costSamples.push(measureCosts(session, { reps: Math.max(1, Math.floor(reps / 2)) }));
    untimedMs += performance.now() - t0;
  };
  const start = performance.now();
  const { results, groups, refreshesPerImage } = run.run(samples, log, checkpoint);
  const measuredMs = performance.now() - start - untimedMs;
  log('rnn: measuring per-operation costs again after the run');
  costSamples.push(measureCosts(session, { reps }));
  const costs = meanCosts(costSamples);
  const estimatedMs = ops.counter.estimateMs(costs);
  const estimatedBeforeMs = ops.counter.estimateMs(costSamples[0]);
  const estimatedAfterMs = ops.counter.estimateMs(costSamples[costSamples.length - 1]);

  let agree = 0, correct = 0, agreeSpec = 0, maxLogitError = 0;
  const perImage = results.map(({ sample, logits, prediction }) => {
    const simulated = plainLogits(spec, sample.pixels);
    const simulatedPrediction = argmax(simulated);
    maxLogitError = Math.max(maxLogitError, ...logits.map((v, i) => Math.abs(v - simulated[i])));
    agree += prediction === simulatedPrediction;
    agreeSpec += prediction === sample.plainPrediction;
    correct += prediction === sample.label;
    return { index: sample.index, label: sample.label, plain_prediction: sample.plainPrediction,
             simulated_prediction: simulatedPrediction, encrypted_prediction: prediction };
  });
  // The spec's plain_prediction comes from the other implementation (C++);
  // our float64 simulation of the same approximated model must match it.
  const simulationMatchesSpec = perImage.filter((r) => r.simulated_prediction === r.plain_prediction).length;
  const count = results.length;
  const totals = ops.counter.totals();
  return {
    cell: spec.cell, n, levels: session.levels, scale_bits: session.scaleBits,
    images: count, images_per_ciphertext: run.layout.imagesPerCiphertext, ciphertext_groups: groups,
    agreement: agree / count, agreement_with_spec_plain_prediction: agreeSpec / count,
    simulation_matches_spec: simulationMatchesSpec / count, accuracy: correct / count,
    max_abs_logit_error: maxLogitError,
    seconds_per_image_measured: measuredMs / 1000 / count,
    seconds_per_image_estimated: estimatedMs / 1000 / count,
    estimate_over_measured: estimatedMs / measuredMs,
    cost_samples: costSamples.length,
    seconds_per_image_estimated_costs_before: estimatedBeforeMs / 1000 / count,
    seconds_per_image_estimated_costs_after: estimatedAfterMs / 1000 / count,
    seconds_in_counted_operations_per_image: ops.counter.measuredOpMs() / 1000 / count,
    refreshes_per_image: refreshesPerImage.state + refreshesPerImage.mid_cell,
    state_refreshes_per_image: refreshesPerImage.state, mid_cell_refreshes_per_image: refreshesPerImage.mid_cell,
    spec_bootstraps: spec.bootstraps, spec_depth: spec.depth, key_seconds: keySeconds,
    operations: totals,
    operations_per_image: Object.fromEntries(OPERATIONS.map((op) => [op, round(totals[op] / count, 2)])),
    run_costs: costSummary(session, costs),
    per_image: perImage,
  };
}

function printRnn(r) {
  console.log(`Encrypted ${r.cell.toUpperCase()} end to end, N=${r.n}, ${r.levels} levels of ${r.scale_bits} bits, ` +
              `${r.images} images (${r.images_per_ciphertext} per ciphertext, ${r.ciphertext_groups} ciphertexts):`);
  console.log(`  agreement with the plaintext simulation  ${(100 * r.agreement).toFixed(1)}%` +
              ` (spec plain_prediction ${(100 * r.agreement_with_spec_plain_prediction).toFixed(1)}%)`);
  console.log(`  top-1 accuracy on these images            ${(100 * r.accuracy).toFixed(1)}%`);
  console.log(`  max |encrypted - plaintext logit|          ${r.max_abs_logit_error.toExponential(2)}`);
  console.log(`  seconds per image measured / estimated    ${r.seconds_per_image_measured.toFixed(3)} / ` +
              `${r.seconds_per_image_estimated.toFixed(3)} (estimate/measured ${r.estimate_over_measured.toFixed(3)}; ` +
              `costs measured before ${r.seconds_per_image_estimated_costs_before.toFixed(3)}, ` +
              `after ${r.seconds_per_image_estimated_costs_after.toFixed(3)})`);
  console.log(`  refreshes per image (key holder)           ${r.refreshes_per_image} ` +
              `(state ${r.state_refreshes_per_image}, mid-cell ${r.mid_cell_refreshes_per_image}; spec bootstraps ${r.spec_bootstraps ?? 'n/a'})`);
  console.log(`  operations per image                       ${Object.entries(r.operations_per_image).map(([k, v]) => `${k} ${v}`).join(', ')}`);
}

const COMMANDS = {
  costs: {
    defaults: { n: 32768, levels: 9, reps: 3, json: false },
    async run(o) { const r = await runCosts(o); printCosts(r); return r; },
  },
  poly: {
    defaults: { spec: '', n: 16384, json: false },
    async run(o) { const r = await runPoly(o); printPoly(r); return r; },
  },
  rnn: {
    defaults: { spec: '', images: 20, n: 16384, reps: 5, json: false },
    async run(o) { const r = await runRnn(o); printRnn(r); return r; },
  },
  bench: {
    defaults: { n: 32768, levels: 9, reps: 3, spec: '', images: 20, 'run-n': 16384, 'json-out': '' },
    async run(o) {
      if (!o['json-out']) throw new UsageError('bench needs --json-out FILE');
      // A bad spec fails now, not after a minute of cost measurement.
      if (o.spec) checkDepths(loadSpec(o.spec));
      const out = { costs: await runCosts(o) };
      if (o.spec) out.rnn = await runRnn({ spec: o.spec, images: o.images, n: o['run-n'] });
      writeFileSync(o['json-out'], `${JSON.stringify(out)}\n`);
      return null;
    },
  },
};

async function main(argv) {
  const [command, ...rest] = argv;
  const entry = COMMANDS[command];
  if (!entry) throw new UsageError(`usage: ${PROGRAM} costs|poly|rnn|bench [options] (got "${command ?? ''}")`);
  const options = parseOptions(rest, entry.defaults);
  if ('spec' in entry.defaults && command !== 'bench' && !options.spec) throw new UsageError(`${command} needs --spec FILE`);
  const result = await entry.run(options);
  if (options.json && result) console.log(JSON.stringify(result));
}

main(process.argv.slice(2)).catch((e) => {
  // SEAL's WebAssembly errors arrive as plain Errors; never show a stack for input problems.
  const usage = e instanceof UsageError;
  log(`${PROGRAM}: ${usage ? 'usage' : 'error'}: ${e.message}`);
  if (!usage && !isSpecError(e) && process.env.PPML_DEBUG) log(e.stack);
  process.exit(usage ? 2 : 1);
});
