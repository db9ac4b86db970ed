// The plan cache: one plan (kernels + activation arena) per set of input
// shapes. A batcher meets every batch size up to its maximum, so the cache
// keeps the plans used most recently and, under a memory budget, gives up old
// arenas rather than failing a batch.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <vector>

#include "engine/engine.h"
#include "tests/engine/onnx_builder.h"

namespace ppml::test {
namespace {

constexpr int64_t kChannels = 8, kSide = 16;

// Conv -> Relu -> Conv -> GlobalAveragePool over a batch-dynamic input.
OnnxBuilder BatchDynamicCnn() {
  OnnxBuilder b(13, "batch_dynamic_cnn");
  b.Input("x", {-1, kChannels, kSide, kSide});
  b.Initializer("w1", {kChannels, kChannels, 3, 3}, RandomFloats(kChannels * kChannels * 9, 1, -0.2f, 0.2f));
  b.Initializer("w2", {kChannels, kChannels, 3, 3}, RandomFloats(kChannels * kChannels * 9, 2, -0.2f, 0.2f));
  b.Node("Conv", {"x", "w1"}, {"c1"}, "conv1").Ints("pads", {1, 1, 1, 1});
  b.Node("Relu", {"c1"}, {"r1"}, "relu1");
  b.Node("Conv", {"r1", "w2"}, {"c2"}, "conv2").Ints("pads", {1, 1, 1, 1});
  b.Node("GlobalAveragePool", {"c2"}, {"y"}, "gap");
  b.Output("y");
  return b;
}

std::vector<Tensor> Batch(int64_t n) {
  std::vector<Tensor> inputs;
  inputs.push_back(MakeTensor({n, kChannels, kSide, kSide},
                              RandomFloats(n * kChannels * kSide * kSide, static_cast<uint64_t>(100 + n))));
  return inputs;
}

TEST(PlanCache, TheLeastRecentlyUsedPlanIsEvicted) {
  engine::EngineOptions options;
  options.max_plans = 2;
  options.split_batch_max_weight_bytes = 0;  // one plan per batch size
  auto model = BatchDynamicCnn().Load(options);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const int64_t at_load = (*model)->stats().plans_built;
  // Batch 2 is used again before batch 4 arrives: batch 3's plan goes, 2's
  // stays (evicting by shape order would drop 2 and build it again).
  for (int64_t n : {2, 3, 2, 4, 2}) {
    auto out = (*model)->Run(Batch(n));
    ASSERT_TRUE(out.ok()) << "batch " << n << ": " << out.status().ToString();
  }
  EXPECT_EQ((*model)->stats().plans_built - at_load, 3);  // batches 2, 3, 4 once each
}

TEST(PlanCache, EveryBatchSizeRunsWhenTheBudgetHoldsOnlySomeArenas) {
  constexpr int64_t kMaxBatch = 8;
  // What the model needs beside arenas, and batch kMaxBatch's own arena.
  LimitedBudget measure(SIZE_MAX);
  engine::EngineOptions options;
  options.memory_budget = &measure;
  size_t fixed = 0, largest_arena = 0;
  std::map<int64_t, std::vector<float>> want;
  {
    auto model = BatchDynamicCnn().Load(options);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    (*model)->Run(Batch(1)).value();  // a plan for a dynamic model is built on first use
    const size_t with_one = measure.in_use();
    (*model)->Run(Batch(kMaxBatch)).value();
    largest_arena = measure.in_use() - with_one;
    fixed = with_one;
    for (int64_t n = 1; n <= kMaxBatch; ++n) want[n] = ToVector((*model)->Run(Batch(n)).value()[0]);
  }
  ASSERT_GT(largest_arena, 0u);

  // Room for about two of the larger arenas, far less than all eight.
  LimitedBudget tight(fixed + 2 * largest_arena);
  options.memory_budget = &tight;
  auto model = BatchDynamicCnn().Load(options);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  for (int round = 0; round < 2; ++round) {
    for (int64_t n = 1; n <= kMaxBatch; ++n) {
      auto out = (*model)->Run(Batch(n));
      ASSERT_TRUE(out.ok()) << "round " << round << ", batch " << n << ": " << out.status().ToString();
      EXPECT_TRUE(AllClose((*out)[0], {n, kChannels, 1, 1}, want[n])) << "batch " << n;
    }
  }
  EXPECT_LE(tight.peak(), fixed + 2 * largest_arena);
  EXPECT_GT((*model)->stats().plans_built, kMaxBatch);  // arenas were given up and rebuilt
}

// Relu straight on the graph input (an op the plan may run in place on the
// input's bytes), then the CNN above.
OnnxBuilder ReluFirstCnn() {
  OnnxBuilder b(13, "relu_first_cnn");
  b.Input("x", {-1, kChannels, kSide, kSide});
  b.Initializer("w1", {kChannels, kChannels, 3, 3}, RandomFloats(kChannels * kChannels * 9, 1, -0.2f, 0.2f));
  b.Node("Relu", {"x"}, {"r0"}, "relu0");
  b.Node("Conv", {"r0", "w1"}, {"c1"}, "conv1").Ints("pads", {1, 1, 1, 1});
  b.Node("GlobalAveragePool", {"c1"}, {"y"}, "gap");
  b.Output("y");
  return b;
}

void ExpectSameBits(const Tensor& a, const Tensor& b) {
  ASSERT_EQ(a.shape(), b.shape());
  EXPECT_EQ(0, std::memcmp(a.raw_data(), b.raw_data(), a.byte_size()));
}

// Inputs written into the plan's arena (RunWith) give what the caller's
// tensors give (Run), either way round, and Run leaves the caller's tensor as it was.
TEST(RunWith, InputsWrittenIntoTheArenaMatchRun) {
  for (OnnxBuilder builder : {BatchDynamicCnn(), ReluFirstCnn()}) {
    auto model = builder.Load();
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    for (int64_t n : {1, 3}) {
      std::vector<Tensor> inputs = Batch(n);
      for (float& v : inputs[0].values<float>()) v -= 0.5f;  // negatives for the Relu
      const Tensor untouched = inputs[0].Clone();
      auto by_run = (*model)->Run(inputs);
      ASSERT_TRUE(by_run.ok()) << by_run.status().ToString();
      ExpectSameBits(inputs[0], untouched);
      const std::vector<Shape> shapes = {inputs[0].shape()};
      int calls = 0;
      auto by_write = (*model)->RunWith(shapes, [&](std::span<const std::span<std::byte>> places) {
        ++calls;
        EXPECT_EQ(places.size(), 1u);
        EXPECT_EQ(places[0].size(), untouched.byte_size());
        std::memcpy(places[0].data(), untouched.raw_data(), untouched.byte_size());
        return Status::Ok();
      });
      ASSERT_TRUE(by_write.ok()) << by_write.status().ToString();
      EXPECT_EQ(calls, 1);
      ExpectSameBits((*by_write)[0], (*by_run)[0]);
      auto again = (*model)->Run(inputs);  // the input bound to the caller's bytes again
      ASSERT_TRUE(again.ok());
      ExpectSameBits((*again)[0], (*by_run)[0]);
    }
  }
}

TEST(RunWith, TheWritersErrorAndBadShapesFailTheRun) {
  auto model = BatchDynamicCnn().Load();
  ASSERT_TRUE(model.ok());
  const std::vector<Shape> shapes = {{2, kChannels, kSide, kSide}};
  auto failed = (*model)->RunWith(shapes, [](auto) { return Status::DataLoss("frame 3 failed"); });
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(failed.status().message(), "frame 3 failed");
  auto none = (*model)->RunWith({}, [](auto) { return Status::Ok(); });
  EXPECT_EQ(none.status().code(), StatusCode::kInvalidArgument);
  const std::vector<Shape> wrong = {{2, kChannels + 1, kSide, kSide}};
  auto bad = (*model)->RunWith(wrong, [](auto) { return Status::Ok(); });
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("input 'x'"), std::string::npos) << bad.status().ToString();
}

}  // namespace
}  // namespace ppml::test
