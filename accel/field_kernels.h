// The two ways FieldLinear can compute (X W) mod p, exposed inside accel/
// for the tests and the limb-vs-double benchmark (bench/accel_field_gemm.cc).
// FieldLinear::Create picks between them (see linear.cc).
#pragma once

#include <memory>

#include "accel/field.h"
#include "accel/int8_linear.h"

namespace ppml::accel {

// Three 8-bit limbs of every input element stacked in the batch dimension
// (3 * batch images), one oneDNN INT8 primitive, recombined in int64.
Result<std::unique_ptr<FieldLinear>> CreateLimbFieldLinear(const LinearSpec& spec, int64_t batch,
                                                           Int8Kernel kernel = Int8Kernel::kAuto);

// Dense layers only: an exact double-precision GEMM (every product
// |x w| < 2^24 * 2^6 and every sum of K < 2^23 of them < 2^53, so no
// rounding happens), then one reduction mod p.
Result<std::unique_ptr<FieldLinear>> CreateDoubleDenseFieldLinear(const LinearSpec& spec, int64_t batch);

// Which of the two FieldLinear::Create uses for dense layers; conv layers
// always use limbs. Chosen from the measurement in docs/ACCEL.md.
inline constexpr bool kDenseUsesDouble = false;

}  // namespace ppml::accel
