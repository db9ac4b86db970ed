// Images as model inputs for `ppml infer --input x.png`.
//
// PNG decoding uses libpng's simplified API (png_image) and exists only when
// the build found libpng (Debian: libpng-dev; client/CMakeLists.txt sets
// PPML_HAVE_PNG). Without it, PngToTensor is Unsupported and says so.
//
// Layout: the model input's shape decides it, after a leading -1 (batch)
// becomes 1:
//   rank 4 [N, C, H, W] with C in {1, 3, 4}     NCHW (checked first)
//   rank 4 [N, H, W, C] with C in {1, 3, 4}     NHWC
//   rank 3 [N, H, W]                             one grey channel
//   rank 2 [N, H*W]                              grey, flattened row by row
// C = 1 grey, 3 RGB, 4 RGBA; libpng converts whatever the file holds (palette,
// grey, 16-bit, alpha) to that. H and W must match the image (a -1 takes the
// image's size): no resizing here.
// Values: FP32 inputs get pixel / 255 (what the Fashion-MNIST model was
// trained on); UINT8 inputs the pixels as they are; other datatypes are
// Unsupported.
//
// Thread safety: stateless.
#pragma once

#include <string>

#include "common/kserve.h"
#include "common/status.h"
#include "common/tensor.h"

namespace ppml::client {

// Whether this build decodes PNG.
bool PngSupported();

// The tensor for `input` from the PNG file at `path`. Errors name the file
// and, for a size or layout mismatch, the input's shape.
Result<Tensor> PngToTensor(const std::string& path, const kserve::TensorMetadata& input);

}  // namespace ppml::client
