#include "common/status.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace ppml {
namespace {

TEST(StatusTest, DefaultIsOk) {
  Status status;
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(status.code(), StatusCode::kOk);
  EXPECT_EQ(status.ToString(), "OK");
}

TEST(StatusTest, ErrorCarriesCodeAndMessage) {
  Status status = Status::NotFound("models/x.onnx: no such file");
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(status.code(), StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "models/x.onnx: no such file");
  EXPECT_EQ(status.ToString(), "NotFound: models/x.onnx: no such file");
}

TEST(StatusTest, EveryCodeHasAName) {
  EXPECT_STREQ(StatusCodeName(StatusCode::kInvalidArgument), "InvalidArgument");
  EXPECT_STREQ(StatusCodeName(StatusCode::kUnsupported), "Unsupported");
  EXPECT_STREQ(StatusCodeName(StatusCode::kDataLoss), "DataLoss");
  EXPECT_STREQ(StatusCodeName(StatusCode::kInternal), "Internal");
  EXPECT_EQ(Status::Unavailable("redis").ToString(), "Unavailable: redis");
  EXPECT_EQ(Status::DeadlineExceeded("r1").code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(Status::ResourceExhausted("q").code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(Status::PermissionDenied("k").code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(Status::FailedPrecondition("p").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(Status::IoError("disk").code(), StatusCode::kIoError);
}

TEST(StatusTest, WithContextPrefixesErrorsOnly) {
  EXPECT_EQ(Status::DataLoss("truncated").WithContext("a.npy").message(), "a.npy: truncated");
  EXPECT_EQ(Status::DataLoss("truncated").WithContext("a.npy").code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Status::Ok().WithContext("ignored").ok());
  EXPECT_EQ(Status::Ok().WithContext("ignored").message(), "");
}

TEST(ResultTest, HoldsValue) {
  Result<int> result(42);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(*result, 42);
  EXPECT_TRUE(result.status().ok());
}

TEST(ResultTest, HoldsError) {
  Result<int> result(Status::InvalidArgument("bad"));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(result.status().message(), "bad");
}

TEST(ResultTest, OkStatusWithoutValueIsAnInternalError) {
  Result<int> result{Status::Ok()};
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kInternal);
}

TEST(ResultTest, MoveOnlyValue) {
  Result<std::unique_ptr<int>> result(std::make_unique<int>(7));
  ASSERT_TRUE(result.ok());
  std::unique_ptr<int> value = std::move(result).value();
  EXPECT_EQ(*value, 7);
}

Status FailIfNegative(int x) { return x < 0 ? Status::InvalidArgument("negative") : Status::Ok(); }

Status Chain(int x, bool* reached_end) {
  PPML_RETURN_IF_ERROR(FailIfNegative(x));
  *reached_end = true;
  return Status::Ok();
}

Result<int> Half(int x) {
  if (x % 2) return Status::InvalidArgument("odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  PPML_ASSIGN_OR_RETURN(int half, Half(x));
  PPML_ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

TEST(StatusMacrosTest, ReturnIfErrorStopsAtTheFirstError) {
  bool reached = false;
  EXPECT_TRUE(Chain(1, &reached).ok());
  EXPECT_TRUE(reached);
  reached = false;
  EXPECT_EQ(Chain(-1, &reached).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(reached);
}

TEST(StatusMacrosTest, AssignOrReturn) {
  ASSERT_TRUE(Quarter(8).ok());
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().message(), "odd");
  EXPECT_EQ(Quarter(3).status().message(), "odd");
}

}  // namespace
}  // namespace ppml
