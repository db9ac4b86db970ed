// he_seal_rnn_small: a 2-step GRU with random weights (random_spec.mjs),
// degree-3 fits, 4 images (one ciphertext), run encrypted by `ckks.mjs rnn` at N = 2^13 with a
// 5-level budget, so that the state refresh (with re-layout) and the mid-cell
// refresh are both exercised. Every encrypted prediction must equal the
// plaintext simulation's and the spec's; the logits must be close.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const sealDir = process.argv[2];
const dir = mkdtempSync(join(tmpdir(), 'he-seal-test-'));
try {
  const spec = join(dir, 'gru.json');
  execFileSync('node', [join(sealDir, 'random_spec.mjs'), '--cell', 'gru', '--degree', '3', '--steps', '2',
                        '--samples', '4', '--budget', '5', '--out', spec], { stdio: 'inherit' });
  const stdout = execFileSync('node', [join(sealDir, 'ckks.mjs'), 'rnn', '--spec', spec, '--images', '4',
                                       '--n', '8192', '--reps', '1', '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = stdout.trim().split('\n');
  console.log(lines.slice(0, -1).join('\n'));
  const result = JSON.parse(lines[lines.length - 1]);
  assert.equal(result.images, 4);
  assert.equal(result.agreement, 1, 'encrypted vs plaintext-simulation predictions');
  assert.equal(result.agreement_with_spec_plain_prediction, 1);
  assert.ok(result.max_abs_logit_error < 0.1, `logit error ${result.max_abs_logit_error}`);
  assert.ok(result.state_refreshes_per_image >= 1, 'a state refresh');
  assert.ok(result.mid_cell_refreshes_per_image >= 1, 'a mid-cell refresh');
  assert.ok(result.operations.rotate > 0 && result.operations.multiply > 0);
  console.log('he_seal_rnn_small: ok');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
