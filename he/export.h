// What `ppml he search` hands on: the approximated model as a plain ONNX
// graph, and the spec JSON the encrypted (node-seal) side reads.
//
// ONNX: the input f32 [N,1,28,28] is reshaped to [N, steps, inputs]; every
// step is unrolled (Gather of its row, MatMul by the transposed weights,
// Add) and each activation is its polynomial in Horner form,
//   u = x·scale + shift;  acc = c_d·u;  acc = (acc + c_{d-1})·u; ... + c_0
// (an Add of a zero coefficient is left out), with exactly the float
// operations the simulator performs, so any ONNX runtime reproduces the
// simulated accuracy. Only Reshape, Gather, MatMul, Add, Sub and Mul nodes
// (Tanh/Sigmoid where a cell keeps the exact function).
//
// Spec JSON ("format": "ppml-he-rnn/1"), documented in docs/HE.md:
//   cell, input_size, hidden_size, steps, classes, input_transform,
//   weights (rnn: W U b; gru: Wz Uz bz Wr Ur br Wn Un bn_x bn_h; fc: W b),
//   cells [{step, degree, tanh{lo,hi,coeffs}, sigmoid{...}}], budget, depth,
//   bootstraps, test_samples [{index, pixels, label, plain_prediction, plain_logits}].
//
// Thread safety: pure functions.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "he/depth.h"
#include "he/rnn.h"
#include "he/simulate.h"

namespace ppml::he {

// Serialized ONNX ModelProto (opset 13). `cells` has one entry per step.
Result<std::string> ExportApproxOnnx(const RnnModel& model, std::span<const CellPolynomials> cells);

struct SpecSample {
  int index = 0;
  std::span<const float> pixels;  // raw dataset values in [0, 1]
  int label = 0;
  std::vector<float> logits;      // from the simulation with the chosen polynomials
};

// `degrees` has one entry per step; every cell must have its polynomials.
Result<std::string> BuildSpecJson(const RnnModel& model, std::span<const CellPolynomials> cells,
                                  const std::vector<int>& degrees, int budget, const DepthReport& depth,
                                  const std::vector<SpecSample>& samples);

}  // namespace ppml::he
