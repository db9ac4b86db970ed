// Slot layouts of the encrypted RNN: several images per ciphertext, and a
// matrix-vector product that costs one slot-wise plaintext multiply plus
// log2(B) rotate-and-add steps.
//
// Each image owns a block of B x B slots (B = the next power of two >= the
// hidden, input and class sizes; 32 here, so 1024 slots and 8 images per
// ciphertext at N = 2^14). Slot (a, b) of image g is g*B*B + a*B + b.
//
//   input layout "T" (tiled):     slot (a, b) = v[b]   every row holds v
//   input layout "R" (repeated):  slot (a, b) = v[a]   every column holds v
//
// y = M v from "T": multiply by M[a][b] at (a, b), then add the ciphertext
// rotated left by 1, 2, ..., B/2: slot (a, 0) sums row a, so y[a] lands at
// (a, 0) -- output "A". From "R": multiply by M[b][a], rotate by B, 2B, ...,
// B*B/2: y[b] lands at (0, b) -- output "B". Other slots hold partial sums
// (garbage) that the activation's mask zeroes.
//
// Replicating a masked output for the next step (rotate right and add,
// log2(B) times) turns "A" into "R" and "B" into "T", so the steps alternate
// T -> A -> R -> B -> T ... and the weights are laid out to match.
//
//   block of one image (B = 4 shown), input T, after the multiply and sums:
//     a=0: [y0 g g g]      output A: y[a] at column 0
//     a=1: [y1 g g g]
//     ...
export class BlockLayout {
  constructor(blockSide, slots) {
    this.B = blockSide;
    this.blockSlots = blockSide * blockSide;
    this.slots = slots;
    this.imagesPerCiphertext = Math.floor(slots / this.blockSlots);
    if (this.imagesPerCiphertext < 1) throw new Error(`a ${blockSide}x${blockSide} block does not fit ${slots} slots`);
  }

  static forSizes(sizes, slots) {
    const side = 2 ** Math.ceil(Math.log2(Math.max(2, ...sizes)));
    return new BlockLayout(side, slots);
  }

  slot(image, a, b) { return image * this.blockSlots + a * this.B + b; }

  // The output kind of a product from input layout `input`, and back.
  static outputOf(input) { return input === 'T' ? 'A' : 'B'; }
  static replicatedFrom(output) { return output === 'A' ? 'R' : 'T'; }

  // Left rotations that sum a product in input layout `input`.
  sumSteps(input) {
    const stride = input === 'T' ? 1 : this.B;
    return Array.from({ length: Math.log2(this.B) }, (_, k) => stride * 2 ** k);
  }
  // Right rotations (negative steps) that replicate output `output`.
  replicateSteps(output) {
    const stride = output === 'A' ? 1 : this.B;
    return Array.from({ length: Math.log2(this.B) }, (_, k) => -stride * 2 ** k);
  }
  allRotationSteps() {
    return [...this.sumSteps('T'), ...this.sumSteps('R'), ...this.replicateSteps('A'), ...this.replicateSteps('B')];
  }

  // vectors[g] in input layout `input` for image g.
  packInput(input, vectors) {
    const out = new Float64Array(this.slots);
    vectors.forEach((v, g) => {
      for (let a = 0; a < this.B; ++a) {
        for (let b = 0; b < this.B; ++b) {
          const i = input === 'T' ? b : a;
          if (i < v.length) out[this.slot(g, a, b)] = v[i];
        }
      }
    });
    return out;
  }

  // Matrix M (rows x cols, y = M v) laid out for input `input`, in every block.
  packMatrix(input, M) {
    const out = new Float64Array(this.slots);
    for (let g = 0; g < this.imagesPerCiphertext; ++g) {
      M.forEach((row, i) => row.forEach((w, j) => {
        out[input === 'T' ? this.slot(g, i, j) : this.slot(g, j, i)] = w;
      }));
    }
    return out;
  }

  outputSlot(output, image, i) { return output === 'A' ? this.slot(image, i, 0) : this.slot(image, 0, i); }

  // v at the first v.length output slots of every block (the same v for all images).
  packOutputEverywhere(output, v) {
    const out = new Float64Array(this.slots);
    for (let g = 0; g < this.imagesPerCiphertext; ++g) v.forEach((x, i) => { out[this.outputSlot(output, g, i)] = x; });
    return out;
  }
  // vectors[g] at the output slots of image g.
  packOutput(output, vectors) {
    const out = new Float64Array(this.slots);
    vectors.forEach((v, g) => v.forEach((x, i) => { out[this.outputSlot(output, g, i)] = x; }));
    return out;
  }
  readOutput(output, slotValues, image, length) {
    return Array.from({ length }, (_, i) => slotValues[this.outputSlot(output, image, i)]);
  }
  // 1 at the first `length` output slots of each block.
  outputMask(output, length) {
    return { name: `mask-${output}-${length}`, values: this.packOutputEverywhere(output, new Array(length).fill(1)) };
  }
}
