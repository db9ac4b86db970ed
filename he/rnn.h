// The recurrent classifiers the HE study approximates: one SimpleRNN (tanh)
// or GRU cell unrolled over `steps` time steps, then a linear layer on the
// last hidden state.
//
// LoadRnnModel reads the weights from an ONNX file exported by PyTorch
// (models/train_he_rnn.py): one RNN or GRU node (forward, zero initial
// state, default activations) and a Gemm, or MatMul + Add, producing the
// logits. The weights are kept with PyTorch semantics, row-major:
//
//   rnn:  pre_t = W x_t + U h_{t-1} + b            h_t = tanh(pre_t)
//   gru:  z = σ(Wz x + Uz h + bz)    r = σ(Wr x + Ur h + br)
//         n = tanh(Wn x + bn_x + r ⊙ (Un h + bn_h))
//         h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}
//   logits = Wfc h_T + bfc
//
// (ONNX's GRU stores gates in the order z, r, h and, with
// linear_before_reset = 1 as PyTorch exports it, applies r after the
// recurrent product: exactly the n above.) A model with no RNN/GRU node, an
// LSTM, a bidirectional cell, an activation other than the defaults, a clip,
// or any op outside this pattern is an error naming the node.
//
// Thread safety: plain values.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace ppml::he {

enum class CellKind { kRnn, kGru };
const char* CellKindName(CellKind cell);  // "rnn" or "gru"

// A dense row-major matrix of floats.
struct Matrix {
  int rows = 0;
  int cols = 0;
  std::vector<float> values;  // rows * cols
  float at(int r, int c) const { return values[static_cast<size_t>(r) * cols + c]; }
};

struct RnnModel {
  std::string name;  // the file, for messages
  CellKind cell = CellKind::kRnn;
  int input_size = 0;   // features per step (28: one image row)
  int hidden_size = 0;  // 32
  int steps = 0;        // 28
  int classes = 0;      // 10
  // x_model = input_scale * pixel + input_shift before the cell (identity for
  // the models we train; kept so the HE side never guesses).
  float input_scale = 1;
  float input_shift = 0;

  // rnn: W [H,I], U [H,H], b [H] (= b_ih + b_hh).
  Matrix w, u;
  std::vector<float> b;
  // gru: per gate input and recurrent matrices, [H,I] and [H,H].
  Matrix wz, uz, wr, ur, wn, un;
  std::vector<float> bz, br;    // b_ih + b_hh of the gate
  std::vector<float> bn_x, bn_h;  // the candidate's two biases (r multiplies bn_h only)

  Matrix fc_w;  // [C,H]
  std::vector<float> fc_b;  // [C]
};

// Parses a serialized ONNX model; `name` appears in messages.
Result<RnnModel> ParseRnnModel(std::span<const std::byte> onnx_bytes, const std::string& name);
Result<RnnModel> LoadRnnModel(const std::string& path);

}  // namespace ppml::he
