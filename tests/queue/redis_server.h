// The real redis-server for tests: queue/local_redis.h under the names the
// tests use.
#pragma once

#include "common/process.h"
#include "queue/local_redis.h"

namespace ppml::testing {

using RedisServer = queue::LocalRedisServer;
using RedisServerOptions = queue::LocalRedisOptions;
using ppml::PickFreePort;
using ppml::TempDir;

}  // namespace ppml::testing
