// CkksSession: one Microsoft SEAL (node-seal, WebAssembly) CKKS context with
// its keys, plus the level and scale bookkeeping every other module relies on.
//
// Modulus chain, for N = poly_modulus_degree and L = levels:
//
//   q_0 (60 bits)  q_1 .. q_L (scale_bits each)  special prime (60 bits)
//   (edge primes smaller at small N, see chooseModulus)
//   ^ holds the     ^ one prime dropped per          ^ key switching only
//     result          rescale
//
// A ciphertext's level is the number of rescales it has left
// (coeffModulusSize - 1): a fresh one is at level L, one at level 0 can no
// longer be multiplied. 128-bit security (SEAL's tc128 table) bounds the total
// modulus: 438 bits at N = 2^14, 881 at 2^15; the scale is chosen as large as
// fits, at most 40 bits.
//
// Exact scales. SEAL adds only ciphertexts whose scales are equal, and a
// rescale divides by the actual prime q_l (not 2^scale_bits), so scales drift.
// Each level has a canonical scale
//
//   S_L = 2^scale_bits,   S_{l-1} = S_l^2 / q_l
//
// so that the product of two canonical ciphertexts at level l, rescaled, is
// canonical at l-1. Plaintext multiplies pick their plaintext's scale so that
// the result lands on whatever scale the consumer needs (targetScale), which
// is how ciphertexts that meet at a level they did not start from are kept
// exactly compatible without spending a level on a correction.
//
// Thread safety: none (WebAssembly SEAL is single-threaded here).
import SEAL from 'node-seal';

export const MAX_SCALE_BITS = 40;
const EDGE_PRIME_BITS = 60;

let sealLibrary = null;
export async function loadSeal() {
  if (!sealLibrary) sealLibrary = await SEAL();
  return sealLibrary;
}

// The largest total modulus SEAL allows at 128-bit security for degree n.
export async function maxModulusBits(n) {
  const seal = await loadSeal();
  return seal.CoeffModulus.MaxBitCount(n, seal.SecurityLevel.tc128);
}

const MIN_SCALE_BITS = 25;  // below this CKKS keeps too few bits for a degree-17 polynomial

// {scaleBits, edgeBits} for `levels` levels at degree n, or an Error saying
// why none fits. The edge primes (q_0 and the special prime) get 60 bits when
// that leaves room, less at small N, always >= 10 bits above the scale so
// that q_0 holds the result's integer part.
export async function chooseModulus(n, levels) {
  const allowed = await maxModulusBits(n);
  for (const edgeBits of [EDGE_PRIME_BITS, 50, 40]) {
    const scaleBits = Math.min(MAX_SCALE_BITS, Math.floor((allowed - 2 * edgeBits) / levels));
    if (scaleBits >= MIN_SCALE_BITS && edgeBits >= scaleBits + 10) return { scaleBits, edgeBits };
  }
  throw new Error(`${levels} levels do not fit N=${n} at 128-bit security (${allowed} bits of modulus in all, ` +
                  `${MIN_SCALE_BITS}+ bits per level needed); lower the budget or raise N`);
}

export class CkksSession {
  // options: {n, levels, rotationSteps: number[]}; the primes from chooseModulus.
  static async create({ n, levels, rotationSteps = [] }) {
    const seal = await loadSeal();
    if (!Number.isInteger(Math.log2(n)) || n < 4096 || n > 65536) {
      throw new Error(`--n ${n}: must be a power of two between 4096 and 65536`);
    }
    const { scaleBits, edgeBits } = await chooseModulus(n, levels);
    const bits = [edgeBits, ...Array(levels).fill(scaleBits), edgeBits];
    const total = bits.reduce((a, b) => a + b, 0);
    const allowed = seal.CoeffModulus.MaxBitCount(n, seal.SecurityLevel.tc128);
    if (total > allowed) {
      throw new Error(`modulus of ${total} bits exceeds the ${allowed} bits 128-bit security allows at N=${n}`);
    }
    const parms = seal.EncryptionParameters(seal.SchemeType.ckks);
    parms.setPolyModulusDegree(n);
    parms.setCoeffModulus(seal.CoeffModulus.Create(n, Int32Array.from(bits)));
    const context = seal.Context(parms, true, seal.SecurityLevel.tc128);
    if (!context.parametersSet()) throw new Error(`SEAL rejected the CKKS parameters N=${n}, primes ${bits.join(',')}`);
    return new CkksSession(seal, context, { n, levels, scaleBits, edgeBits, rotationSteps });
  }

  constructor(seal, context, { n, levels, scaleBits, edgeBits, rotationSteps }) {
    this.seal = seal;
    this.context = context;
    this.n = n;
    this.levels = levels;
    this.scaleBits = scaleBits;
    this.edgeBits = edgeBits;
    this.slots = n / 2;
    const keygen = seal.KeyGenerator(context);
    this.secretKey = keygen.secretKey();
    this.publicKey = keygen.createPublicKey();
    this.relinKeys = keygen.createRelinKeys();
    this.rotationSteps = [...new Set(rotationSteps)];
    this.galoisKeys = this.rotationSteps.length > 0 ? keygen.createGaloisKeys(Int32Array.from(this.rotationSteps)) : null;
    keygen.delete();
    this.encoder = seal.CKKSEncoder(context);
    this.evaluator = seal.Evaluator(context);
    this.encryptor = seal.Encryptor(context, this.publicKey);
    this.decryptor = seal.Decryptor(context, this.secretKey);

    // parms ids and primes by level: the first data level is L, the last 0.
    this.parmsIdByLevel = [];
    this.primeByLevel = [];
    for (let data = context.firstContextData; data; data = data.nextContextData) {
      const level = data.chainIndex;
      this.parmsIdByLevel[level] = data.parmsId;
      const moduli = data.parms.coeffModulus;
      this.primeByLevel[level] = Number(moduli[moduli.length - 1]);
      if (level === 0) break;
    }
    if (this.parmsIdByLevel.length !== levels + 1) {
      throw new Error(`expected ${levels + 1} data levels, SEAL made ${this.parmsIdByLevel.length}`);
    }
    this.canonicalScaleByLevel = [];
    this.canonicalScaleByLevel[levels] = 2 ** scaleBits;
    for (let level = levels; level > 0; --level) {
      const s = this.canonicalScaleByLevel[level];
      this.canonicalScaleByLevel[level - 1] = (s * s) / this.primeByLevel[level];
    }
  }

  levelOf(ct) { return ct.coeffModulusSize - 1; }
  canonicalScale(level) { return this.canonicalScaleByLevel[level]; }
  prime(level) { return this.primeByLevel[level]; }
  parmsId(level) { return this.parmsIdByLevel[level]; }
  // Where the key switching (rotations) comes from: a step must have a key.
  hasRotation(step) { return this.rotationSteps.includes(step); }

  describe() {
    return `CKKS N=${this.n}, ${this.slots} slots, ${this.levels} levels of ${this.scaleBits}-bit primes ` +
           `(+2x${this.edgeBits}), 128-bit security`;
  }
}
